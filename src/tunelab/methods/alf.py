"""Adaptive Layer-wise Fine-tuning (ALF, seed 003): train only the layers whose weights change fastest.

Algorithm (options and defaults):

- Units: the L transformer layers. The head (classifier + pooler) always trains. Embeddings are
  never chosen: they stay frozen, so no backward pass runs below the lowest active layer (on
  all-MiniLM-L6-v2 they would not fit the default budget anyway: 52.8 % of the denominator).
- Budget ``--alf-budget b`` (default 0.25): at every optimizer step the trainable non-head
  parameters are at most ``b`` x the backbone's non-head parameters (embeddings + all layers);
  M = the most layers that fit (all-MiniLM-L6-v2: b = 0.25 -> M = 3 layers = 23.6 %; BERT-base:
  M = 3 of 12). With ``--adapter lora`` the denominator is all LoRA parameters (M = floor(b L)).
- Decisions after step 1 and then every ``--alf-interval`` steps (default 20): score every layer,
  keep the M best. Step 1 trains only the head.
- Probe: the step that precedes a decision computes gradients for every layer (one full backward
  pass per interval). For layers outside the active set the gradient is only measured
  (``rho_l = ||g_l|| / ||W_l||`` over the layer's tensors) and then discarded before clipping and
  the optimizer step, so those weights do not move. All other steps backpropagate only down to
  the lowest active layer.
- ``--alf-score change`` (default), the weight change rate of seed 003:
  ``s_l = ||W_l(t) - W_l(t-k)|| / ||W_l(t-k)||`` over the k steps of the closing interval, measured
  for every layer that trained in it. A frozen layer has no change of its own; it gets the change
  an update would have made, estimated from its probe gradient: ``s_l = c * rho_l`` with
  ``c = median over measured layers m of s_m / rho_m`` (how much relative change one unit of
  relative gradient produced in this interval, same optimizer, same learning rates). At the first
  decision nothing has moved yet and ``s_l = rho_l``.
- ``--alf-score grad-norm``: ``s_l = rho_l`` for every layer.
- Each timeline entry of run.json also holds ``rho`` (every layer's probe value) and
  ``calibration`` (c), so every score can be recomputed from the record.
- Hysteresis ``--alf-hysteresis h`` (default 0.1): the active set keeps its members unless a
  frozen layer scores more than (1 + h) x the weakest active one; then they swap (repeatedly).
- Memory: a deactivated layer's gradients and AdamW state are freed (``methods/dynamic.py``).
- ``--adapter lora``: LoRA (PEFT, all layers, the ``--lora-*`` options) and ALF decides which
  layers' LoRA matrices train; W in the formulas is then the layer's LoRA matrices.

Default lr 3e-4: a layer subset needs a higher rate than full fine-tuning (1e-4) on this model.
"""

import statistics

from ..errors import UserError
from . import METHODS
from .dynamic import DynamicLayerMethod, max_layers_for_budget, tensors_norm


def calibration(change: list, rho: list):
    """c = median over measured layers of change / rho (None when no layer was measured)."""
    ratios = [c / r for c, r in zip(change, rho) if c is not None and r and r > 0]
    return statistics.median(ratios) if ratios else None


def change_scores(change: list, rho: list) -> list:
    """ALF's ``change`` score from measured changes (None = not measured) and probe ``rho``."""
    c = calibration(change, rho)
    if c is None:
        c = 1.0  # first decision: nothing has moved yet, rank by rho
    return [change[i] if change[i] is not None else c * rho[i] for i in range(len(rho))]


def grad_norm_scores(change: list, rho: list) -> list:
    return list(rho)


SCORES = {"change": change_scores, "grad-norm": grad_norm_scores}


def select_layers(scores: list, current: set, m: int, hysteresis: float) -> set:
    """Top-m layers by score; members of ``current`` are only displaced by a layer scoring more
    than (1 + hysteresis) x theirs."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    active = [i for i in order if i in current][:m]
    for i in order:
        if len(active) >= m:
            break
        if i not in active:
            active.append(i)
    active = set(active)
    while True:
        frozen = [i for i in order if i not in active]
        if not frozen or not active:
            return active
        worst = min(active, key=lambda i: (scores[i], -i))
        best = frozen[0]
        if scores[best] > (1 + hysteresis) * scores[worst]:
            active.remove(worst)
            active.add(best)
        else:
            return active


@METHODS.register("alf")
class ALF(DynamicLayerMethod):
    """Adaptive layer-wise FT: train the layers whose weights change fastest, within a budget."""

    name = "alf"
    uses_grad_hook = True
    uses_peft = False

    def validate(self, cfg):
        if cfg.adapter != "lora":  # a LoRA option set to a non-default value would be silently unused
            from ..config import FIELDS

            given = [k for k in ("lora_r", "lora_alpha", "lora_dropout", "lora_targets")
                     if cfg.sources.get(k) == "given" and getattr(cfg, k) != FIELDS[k].default]
            if given:
                raise UserError(f"--{given[0].replace('_', '-')} applies to --method alf only with --adapter lora")

    def configure(self, cfg):
        self.interval = cfg.alf_interval
        self.budget = cfg.alf_budget
        self.hysteresis = cfg.alf_hysteresis
        self.score_kind = cfg.alf_score
        self.score_fn = SCORES[cfg.alf_score]
        self.score_name = ("weight change rate ||W_t - W_t-k|| / ||W_t-k|| (frozen layers: probe estimate)"
                           if cfg.alf_score == "change" else "relative gradient norm ||g|| / ||W|| (probe)")
        self.uses_peft = cfg.adapter == "lora"

    def wrap(self, model, ctx):
        if not self.uses_peft:
            return model
        from peft import get_peft_model

        from .lora import LoRA

        if ctx.cfg.layers:
            raise UserError("--method alf --adapter lora puts adapters on every layer; drop --layers")
        self.peft_config = LoRA().build_config(ctx)
        try:
            return get_peft_model(model, self.peft_config)
        except ValueError as e:
            raise UserError(f"--lora-targets: {str(e).splitlines()[0]}") from e

    def is_candidate(self, name):
        return not self.uses_peft or "lora_" in name

    def prepare(self, model, ctx):
        model = super().prepare(model, ctx)
        self.max_layers = max_layers_for_budget(self.budget, self.layer_numel, self.denominator)
        if self.max_layers < 1:
            share = min(self.layer_numel) / self.denominator
            raise UserError(f"--alf-budget {self.budget}: smaller than one layer ({share:.1%} of "
                            f"{self.describe()['budget_denominator']}); use at least {share:.3f}")
        self.budget_numel = self.budget * self.denominator
        self._gsq = [0.0] * self.num_layers
        self._probing = False
        return model

    # probe: measure every layer's gradient, keep only the active layers' ones
    def grad_hook(self, layer, p):
        if self._probing and p.grad is not None:
            self._gsq[layer] += float(p.grad.detach().float().pow(2).sum())
            if layer not in self.active:
                p.grad = None

    def _arm_probe(self):
        self._gsq = [0.0] * self.num_layers
        self._probing = True
        self.enable_all_layers_for_gradients()

    def is_decision_step(self, step):
        return step == 1 or step % self.interval == 0

    def start(self, state):
        return False  # the first decision follows the probe of step 1

    def after_step(self, state):
        nxt = state.step + 1  # decisions happen only before the last step (see on_step)
        if nxt < state.total_steps and self.is_decision_step(nxt):
            self._arm_probe()

    def decide(self, state, change):
        self._probing = False
        rho = []
        for i, ps in enumerate(self.layer_params):
            w = tensors_norm(p for _, p in ps)
            rho.append(self._gsq[i] ** 0.5 / w if w > 0 else 0.0)
        c = calibration(change, rho) if self.score_kind == "change" else None
        self._entry_extras = {"rho": [float(f"{r:.6g}") for r in rho],
                              "calibration": None if c is None else float(f"{c:.6g}")}
        scores = self.score_fn(change, rho)
        chosen = select_layers(scores, self.active, self.max_layers, self.hysteresis)
        self.set_active(chosen)
        return scores

    def state_dict(self):
        return {**super().state_dict(), "gsq": list(self._gsq), "probing": self._probing}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self._gsq, self._probing = list(state["gsq"]), state["probing"]

    def describe(self):
        d = super().describe()
        d.update({"budget": self.budget, "max_layers": getattr(self, "max_layers", None),
                  "score_kind": self.score_kind, "hysteresis": self.hysteresis,
                  "adapter": "lora" if self.uses_peft else None, "embeddings": "frozen"})
        if self.uses_peft:
            d["lora"] = {k: (sorted(v) if isinstance(v, set) else v) for k, v in self.peft_config.to_dict().items()
                         if k in ("r", "lora_alpha", "lora_dropout", "target_modules", "modules_to_save")}
        return d
