"""Adaptive Layer-wise Fine-tuning (ALF, seed 003): train only the layers whose weights change fastest.

Algorithm (options and defaults):

- Units: the L transformer layers. The head (classifier + pooler) always trains. Embeddings are
  never chosen: they stay frozen, so no backward pass runs below the lowest active layer (on
  all-MiniLM-L6-v2 they would not fit the default budget anyway: 52.8 % of the denominator).
- Budget ``--alf-budget b`` (default 0.25): at every optimizer step the trainable non-head
  parameters are at most ``b`` x the backbone's non-head parameters (embeddings + all layers);
  M = the most layers that fit (all-MiniLM-L6-v2: b = 0.25 -> M = 3 layers = 23.6 %; BERT-base:
  M = 3 of 12). With ``--adapter lora`` the denominator is all LoRA parameters (M = floor(b L)).
  Every score variant below keeps at most M layers active at every step, so all of them run at
  the same (per-step and time-averaged) budget.
- Decisions every ``--alf-interval`` k steps (default 20) and once early: after step 1 (after
  step ``--alf-probe-steps`` for ``change``, which needs a window to measure). Before the first
  decision only the head trains, except with ``change``, where the top M layers train during
  its first probe window (so its time-averaged share is that of M layers, like the others).
- Probe: the step(s) before a decision compute gradients for every layer (a full backward pass).
  For layers outside the active set the gradient is only measured and then discarded before
  clipping and the optimizer step, so those weights do not move. All other steps backpropagate
  only down to the lowest active layer. ``rho_l = ||g_l|| / ||W_l||`` (over the layer's tensors).

Scores (``--alf-score``):

- ``change``: seed 003's weight change rate, measured on the same footing for every layer. In a
  probe window of the last w = ``--alf-probe-steps`` (default 3) steps before a decision, every
  layer, active or frozen, takes *shadow* AdamW steps: a fresh AdamW state (m = v = 0) with the
  run's betas, eps and learning rate (as scheduled at that step) is fed the layer's real gradient
  of each window step, and the updates it would make are summed; the score is the relative
  change per step ``s_l = ||sum_t u_l,t|| / ||W_l|| / w``. Nothing is applied: the weights of
  frozen layers stay bit-identical and active layers train as usual. Why a shadow and not the
  measured change of the active layers: an active layer's real update comes from a warm AdamW
  state, a candidate's from a fresh one (whose first step moves every element by exactly lr), so
  the two are not comparable; the calibrated estimate below compares a measured Adam change with
  an SGD-like gradient ratio and favours the lower layers whose relative gradients are 2-3x
  larger (BENCHMARKS.md). In the shadow every layer has the same optimizer, the same state age,
  the same batches and the same steps, so the score is what AdamW would move each layer by, which
  for a fresh Adam state measures how consistent the layer's gradient directions are across the
  window (sign agreement), scaled by lr / rms(W). Weight decay is left out (it adds the same
  lr x wd to every decayed tensor). Cost: w full backward passes per interval and, during the
  window, three fp32 buffers per layer parameter (freed at the decision). Rotating real probe
  windows (a frozen layer trains a few steps in place of an active one) were rejected for the
  fresh-vs-warm state bias above and because they take steps from the active layers.
- ``calibrated`` (the score ALF used before; bit-identical): measured change
  ``||W_l(t) - W_l(t-k)|| / ||W_l(t-k)||`` over the closing interval for every layer that trained
  in it; a frozen layer gets ``c * rho_l`` with ``c = median over measured layers m of
  s_m / rho_m``; at the first decision ``s_l = rho_l``. One probe step per interval.
- ``grad-norm``: ``s_l = rho_l`` for every layer. One probe step per interval.
- ``random``: a control. At every decision M layers drawn uniformly at random from a generator
  seeded with ``--seed`` (its own generator: data order and dropout are unchanged). No probe.
- ``static``: a control. The top M layers from the first decision on; never moves. No probe.

- Hysteresis ``--alf-hysteresis h`` (default 0.1, scored variants): the active set keeps its
  members unless a frozen layer scores more than (1 + h) x the weakest active one; then they
  swap (repeatedly).
- Why each decision was taken: each timeline entry of run.json holds ``scores`` (every layer),
  ``active`` (the chosen set), ``decision`` (``rule``: the rule applied, ``swaps``: [out, in,
  score out, score in] for each swap, ``kept``: incumbents kept by hysteresis although a frozen
  layer scored higher) and, for the probing variants, ``rho`` and ``calibration`` (c), so every
  score can be recomputed from the record; ``change`` adds ``probe_steps`` (w of that window).
- Memory: a deactivated layer's gradients and AdamW state are freed (``methods/dynamic.py``).
- ``--adapter lora``: LoRA (PEFT, all layers, the ``--lora-*`` options) and ALF decides which
  layers' LoRA matrices train; W in the formulas is then the layer's LoRA matrices.

Default lr 3e-4: a layer subset needs a higher rate than full fine-tuning (1e-4) on this model.
With ``--adapter lora`` the default is LoRA's (2e-3): on SST-2 (2,000 x 3, seeds 0-2) ALF-LoRA
reached 0.756 at 3e-4 and 0.788 at 2e-3 (BENCHMARKS.md, "lr sweep: alf --adapter lora").
"""

import math
import random
import statistics

import torch

from ..config import declare, opt
from ..errors import UserError
from . import METHODS
from .dynamic import DynamicLayerMethod, max_layers_for_budget, tensors_norm


def calibration(change: list, rho: list):
    """c = median over measured layers of change / rho (None when no layer was measured)."""
    ratios = [c / r for c, r in zip(change, rho) if c is not None and r and r > 0]
    return statistics.median(ratios) if ratios else None


def calibrated_scores(change: list, rho: list) -> list:
    """ALF's ``calibrated`` score from measured changes (None = not measured) and probe ``rho``."""
    c = calibration(change, rho)
    if c is None:
        c = 1.0  # first decision: nothing has moved yet, rank by rho
    return [change[i] if change[i] is not None else c * rho[i] for i in range(len(rho))]


def grad_norm_scores(change: list, rho: list) -> list:
    return list(rho)


SCORES = {"calibrated": calibrated_scores, "grad-norm": grad_norm_scores}
PROBING = ("change", "calibrated", "grad-norm")  # variants that run a full backward before a decision


def select_layers(scores: list, current: set, m: int, hysteresis: float, log: dict | None = None) -> set:
    """Top-m layers by score; members of ``current`` are only displaced by a layer scoring more
    than (1 + hysteresis) x theirs. ``log`` (a dict) receives what happened: ``filled`` (layers
    added to reach m), ``swaps`` ([out, in, score out, score in]) and ``kept`` (True when a frozen
    layer outscored the weakest incumbent but not by the margin)."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    active = [i for i in order if i in current][:m]
    filled = []
    for i in order:
        if len(active) >= m:
            break
        if i not in active:
            active.append(i)
            filled.append(i)
    active = set(active)
    swaps = []
    while True:
        frozen = [i for i in order if i not in active]
        if not frozen or not active:
            break
        worst = min(active, key=lambda i: (scores[i], -i))
        best = frozen[0]
        if scores[best] > (1 + hysteresis) * scores[worst]:
            active.remove(worst)
            active.add(best)
            swaps.append([worst, best, scores[worst], scores[best]])
        else:
            break
    if log is not None:
        kept = bool(frozen) and bool(active) and scores[frozen[0]] > scores[min(active, key=lambda i: (scores[i], -i))]
        log.update({"filled": sorted(filled), "swaps": [[o, n, float(f"{so:.6g}"), float(f"{sn:.6g}")]
                                                          for o, n, so, sn in swaps], "kept": kept})
    return active


class ShadowAdam:
    """The updates a fresh AdamW would make to a layer over a few steps, never applied.

    ``add(p, g, lr)`` takes one step's gradient of a tensor; ``step()`` turns the gradients of one
    optimizer step into one shadow AdamW update (m, v start at 0; bias-corrected; no weight decay)
    and adds it to the running sum; ``relative_change(tensors)`` = ||sum of updates|| / ||W||."""

    def __init__(self, betas=(0.9, 0.999), eps=1e-8):
        self.b1, self.b2 = betas
        self.eps = eps
        self.t = 0
        self.grad, self.lr, self.m, self.v, self.sum = {}, {}, {}, {}, {}

    def add(self, p, g, lr: float, accumulate: bool) -> None:
        g = g.detach().float()
        if accumulate and p in self.grad:
            self.grad[p] = self.grad[p] + g
        else:
            self.grad[p] = g.clone()
        self.lr[p] = lr

    def step(self) -> None:
        if not self.grad:
            return
        self.t += 1
        c1, c2 = 1 - self.b1 ** self.t, 1 - self.b2 ** self.t
        for p, g in self.grad.items():
            if p not in self.m:
                self.m[p], self.v[p], self.sum[p] = torch.zeros_like(g), torch.zeros_like(g), torch.zeros_like(g)
            m, v = self.m[p], self.v[p]
            m.mul_(self.b1).add_(g, alpha=1 - self.b1)
            v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
            self.sum[p].add_((m / c1) / ((v / c2).sqrt() + self.eps), alpha=self.lr[p])
        self.grad = {}

    def relative_change(self, params) -> float | None:
        """None if no tensor of this layer received a gradient in the window."""
        ps = [p for p in params if p in self.sum]
        if not ps:
            return None
        w = tensors_norm(p for p in params)
        return math.sqrt(sum(float(self.sum[p].pow(2).sum()) for p in ps)) / w if w > 0 else 0.0


@declare("alf", reads=("alf",))
class ALFOptions:
    alf_budget: float = opt(0.25, "alf: max share of the backbone's non-head params (embeddings + layers) trainable at "
                                  "any step", above=0, max=1)
    alf_interval: int = opt(20, "alf: re-score layers and re-choose the active set every N optimizer steps", min=1)
    alf_score: str = opt("change", "alf: layer importance score: change (measured weight change rate of every layer, "
                                   "shadow AdamW probe) | calibrated (c * probe gradient for frozen layers) | grad-norm | "
                                   "random (seeded control) | static (top layers, never moves)",
                         choices=("change", "calibrated", "grad-norm", "random", "static"))
    alf_probe_steps: int = opt(3, "alf --alf-score change: steps of the probe window before each decision (every layer's "
                                  "change rate is measured over them)", min=1)
    alf_hysteresis: float = opt(0.1, "alf: a frozen layer replaces an active one only if its score is > (1+h) x higher",
                                min=0)
    adapter: str = opt(None, "alf: adapt LoRA matrices instead of weights (lora); the LoRA options apply",
                       choices=(None, "lora"))


@METHODS.register("alf")
class ALF(DynamicLayerMethod):
    """Adaptive layer-wise FT: train the layers whose weights change fastest, within a budget."""

    name = "alf"
    revision = 2  # 2026-11-24: --alf-score change became the shadow-AdamW probe (was what is now `calibrated`)
    uses_grad_hook = True
    uses_peft = False

    SCORE_NAMES = {
        "change": "weight change rate per step of a shadow AdamW (fresh state) over the probe window, every layer alike",
        "calibrated": "weight change rate ||W_t - W_t-k|| / ||W_t-k|| (frozen layers: c x probe gradient estimate)",
        "grad-norm": "relative gradient norm ||g|| / ||W|| (probe)",
        "random": "none: a seeded random draw of layers (control)",
        "static": "none: the top layers, fixed (control)",
    }

    @classmethod
    def option_defaults(cls, given=None) -> dict:
        d = super().option_defaults(given)
        if (given or {}).get("adapter") == "lora":  # LoRA matrices train at LoRA's rate
            from .lora import LoRA

            d["lr"] = LoRA.default_lr
        return d

    @classmethod
    def apply_layer_budget(cls, cfg):
        """--alf-budget = --layer-budget (set at config time, so run.json's config says so)."""
        b = cfg.layer_budget
        if cfg.sources.get("alf_budget") == "given" and cfg.alf_budget != b:
            raise UserError(f"--alf-budget {cfg.alf_budget} and --layer-budget {b} disagree: give one of them")
        cfg.alf_budget, cfg.sources["alf_budget"] = b, "layer_budget (= --layer-budget)"

    def validate(self, cfg):
        if cfg.adapter != "lora":  # a LoRA option set to a non-default value would be silently unused
            from ..config import FIELDS

            given = [k for k in ("lora_r", "lora_alpha", "lora_dropout", "lora_targets")
                     if cfg.sources.get(k) == "given" and getattr(cfg, k) != FIELDS[k].default]
            if given:
                raise UserError(f"--{given[0].replace('_', '-')} applies to --method alf only with --adapter lora")
        from ..config import FIELDS

        # compare hands every resolved option to a cell: only a non-default value is an error
        if (cfg.sources.get("alf_probe_steps") == "given" and cfg.alf_score != "change"
                and cfg.alf_probe_steps != FIELDS["alf_probe_steps"].default):
            raise UserError("--alf-probe-steps applies only with --alf-score change")

    def configure(self, cfg):
        self.interval = cfg.alf_interval
        self.budget = cfg.alf_budget
        self.hysteresis = cfg.alf_hysteresis
        self.score_kind = cfg.alf_score
        self.score_fn = SCORES.get(cfg.alf_score)
        self.score_name = self.SCORE_NAMES[cfg.alf_score]
        self.uses_peft = cfg.adapter == "lora"
        # probe window before each decision: w steps for change (at most one interval), 1 for the
        # gradient scores, none for the controls
        self.probe_steps = (min(cfg.alf_probe_steps, cfg.alf_interval) if cfg.alf_score == "change"
                            else 1 if cfg.alf_score in PROBING else 0)
        self.first_decision = self.probe_steps if cfg.alf_score == "change" else 1
        self.rng = random.Random(cfg.seed) if cfg.alf_score == "random" else None
        self.seed = cfg.seed

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
        self._shadow = None
        return model

    def on_train_start(self, state):
        if self.score_kind == "change":
            # group index, not the group dict: a resumed optimizer's load_state_dict replaces the dicts
            self._group_of = {p: i for i, g in enumerate(state.optimizer.param_groups) for p in g["params"]}
        super().on_train_start(state)

    # probe: measure every layer's gradient, keep only the active layers' ones
    def grad_hook(self, layer, p):
        if self._probing and p.grad is not None:
            self._gsq[layer] += float(p.grad.detach().float().pow(2).sum())
            if self._shadow is not None:
                # an active layer's grad accumulates over micro-batches (keep the latest total); an
                # inactive one's is discarded below after each micro-batch (add them up)
                lr = float(self.optimizer.param_groups[self._group_of[p]]["lr"])
                self._shadow.add(p, p.grad, lr, accumulate=layer not in self.active)
            if layer not in self.active:
                p.grad = None

    def _arm_probe(self):
        self._gsq = [0.0] * self.num_layers
        self._probing = True
        if self.score_kind == "change":
            g = self.optimizer.param_groups[0]
            self._shadow = ShadowAdam(betas=g.get("betas", (0.9, 0.999)), eps=g.get("eps", 1e-8))
        self.enable_all_layers_for_gradients()

    def is_decision_step(self, step):
        return step == self.first_decision or (step > self.first_decision and step % self.interval == 0)

    def start(self, state):
        if self.score_kind == "change":
            # the first probe window needs a few steps: the top M layers train meanwhile (so the
            # share stays at the budget's M layers from step 1 on)
            m = self.max_layers
            self.set_active(range(self.num_layers - m, self.num_layers))
            self._entry_extras = {"decision": {"rule": f"start: the top {m} layers until the first probe window "
                                                       f"closes"}}
            return None
        return False  # the first decision follows the probe of step 1

    def _next_decision(self, step):
        """First decision step after ``step``."""
        if step < self.first_decision:
            return self.first_decision
        return (step // self.interval + 1) * self.interval

    def on_step(self, state):
        if self._shadow is not None:
            self._shadow.step()  # this step's gradients -> one shadow AdamW update
        super().on_step(state)

    def after_step(self, state):
        if not self.probe_steps or self._probing:
            return
        # arm the probe so that it covers the last probe_steps steps before the next decision
        # (decisions happen only before the last step, see on_step)
        d = self._next_decision(state.step)
        nxt = state.step + 1
        if d < state.total_steps and nxt > d - self.probe_steps:
            self._arm_probe()

    def _rho(self):
        rho = []
        for i, ps in enumerate(self.layer_params):
            w = tensors_norm(p for _, p in ps)
            rho.append(self._gsq[i] ** 0.5 / w if w > 0 else 0.0)
        return rho

    def decide(self, state, change):
        self._probing = False
        m = self.max_layers
        first = not self.timeline
        log = {}
        if self.score_kind == "random":
            chosen = set(self.rng.sample(range(self.num_layers), m))
            scores, self._entry_extras = None, {"decision": {"rule": f"random draw of {m} layers (seed {self.seed})"}}
        elif self.score_kind == "static":
            chosen = set(range(self.num_layers - m, self.num_layers))
            scores, self._entry_extras = None, {"decision": {"rule": f"static: the top {m} layers"}}
        else:
            rho = self._rho()
            if self.score_kind == "change":
                c = None
                window = self._shadow.t
                scores = [0.0 if s is None else s / window for s in
                          (self._shadow.relative_change([p for _, p in ps]) for ps in self.layer_params)]
                self._shadow = None  # free the window's buffers
            else:
                c = calibration(change, rho) if self.score_kind == "calibrated" else None
                scores = self.score_fn(change, rho)
            chosen = select_layers(scores, self.active, m, self.hysteresis, log)
            rule = (f"top {m} by score" if first else
                    f"top {m} by score; an incumbent is replaced only by a layer scoring > (1 + {self.hysteresis}) x its score")
            self._entry_extras = {"rho": [float(f"{r:.6g}") for r in rho],
                                  "calibration": None if c is None else float(f"{c:.6g}"),
                                  "decision": {"rule": rule, **log}}
            if self.score_kind == "change":
                self._entry_extras["probe_steps"] = window
        self.set_active(chosen)
        return scores

    def state_dict(self):
        shadow = None
        if self._shadow is not None:  # an open probe window of `change` (keyed by parameter name)
            name = {p: n for ps in self.layer_params for n, p in ps}
            sh = self._shadow
            shadow = {"t": sh.t, **{k: {name[p]: t for p, t in getattr(sh, k).items()} for k in ("m", "v", "sum")}}
        rng = None
        if self.rng is not None:
            v, internal, gauss = self.rng.getstate()
            rng = [v, list(internal), gauss]
        return {**super().state_dict(), "gsq": list(self._gsq), "probing": self._probing, "shadow": shadow,
                "rng": rng}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self._gsq, self._probing = list(state["gsq"]), state["probing"]
        self._shadow = None
        if state.get("shadow") is not None:
            g = self.optimizer.param_groups[0]
            self._shadow = ShadowAdam(betas=g.get("betas", (0.9, 0.999)), eps=g.get("eps", 1e-8))
            self._shadow.t = state["shadow"]["t"]
            param = {n: p for ps in self.layer_params for n, p in ps}
            for k in ("m", "v", "sum"):
                setattr(self._shadow, k, {param[n]: t.to(param[n].device) for n, t in state["shadow"][k].items()})
        if state.get("rng") is not None:
            v, internal, gauss = state["rng"]
            self.rng.setstate((v, tuple(internal), gauss))

    def describe(self):
        d = super().describe()
        d.update({"budget": self.budget, "max_layers": getattr(self, "max_layers", None),
                  "score_kind": self.score_kind, "hysteresis": self.hysteresis,
                  "probe_steps": getattr(self, "probe_steps", None),
                  "first_decision_step": getattr(self, "first_decision", None),
                  "adapter": "lora" if self.uses_peft else None, "embeddings": "frozen"})
        if self.uses_peft:
            d["lora"] = {k: (sorted(v) if isinstance(v, set) else v) for k, v in self.peft_config.to_dict().items()
                         if k in ("r", "lora_alpha", "lora_dropout", "target_modules", "modules_to_save")}
        return d
