"""Shared machinery of the dynamic layer methods (``alf``, ``lisa``, ``autofreeze``, ``badam``).

Units are the backbone's transformer layers (found by ``Layout``). The head (classifier + BERT
pooler) always trains. The embeddings are one more unit that only LISA and AutoFreeze may train;
ALF and BAdam keep them frozen, so that no backward pass runs below the lowest active layer
(autograd skips every frozen module whose inputs need no gradient; nothing here turns input
gradients on).

What ``DynamicLayerMethod`` does for every method:

- ``prepare``: freeze everything, let the head train. A layer's candidates are all its parameters
  (with ``--adapter lora``: its LoRA matrices only).
- ``optimizer_params``: every candidate (AdamW creates a parameter's state lazily on its first
  gradient and skips parameters whose grad is None, so frozen weights stay bit-identical).
- ``set_active``: toggles ``requires_grad``; a parameter that leaves the active set loses its
  gradient and its AdamW state (``del optimizer.state[p]``): frozen layers hold no optimizer
  memory. A layer that comes back starts with a fresh state.
- Budget accounting. The denominator of every share is the backbone's non-head parameters:
  embeddings + all layers (+ any other non-head tensor such as a final norm), i.e. what full
  fine-tuning would train besides the head; with ``--adapter lora`` it is all LoRA parameters.
  On all-MiniLM-L6-v2 one layer is 7.9 % of it and the embeddings 52.8 %.
- Telemetry (``record_extras()["layers"]``): one entry per interval between two decisions:
  ``step`` (decision made after this optimizer step; the set trains from the next step on),
  ``until`` (last step of the interval), ``active`` (layer indices), ``embeddings`` (bool),
  ``scores`` (the method's score of every layer at the decision; null where it has none; LISA
  and BAdam choose without scores, so theirs are the measured change of the interval itself) and
  ``change`` (measured relative weight change ||W_end - W_start|| / ||W_start|| of every layer
  active in the interval; null for layers that were frozen, whose weights did not move).
  ``params_extras()``: ``trainable_fraction_mean`` (time-average over optimizer steps of the
  share above that trained), ``trainable_fraction_max``, the peak optimizer-state size.
- ``save``: the weights (the runner draws ``layer_activity.png`` from the timeline: analysis/figures.py).
"""

import math

import torch

from .base import Method


def relative_change(before: list, after: list) -> float:
    """||W_after - W_before||_F / ||W_before||_F over a layer's tensors taken together."""
    diff = sum(float((a.float() - b.float()).pow(2).sum()) for a, b in zip(after, before))
    base = sum(float(b.float().pow(2).sum()) for b in before)
    return math.sqrt(diff) / math.sqrt(base) if base > 0 else float("inf") if diff > 0 else 0.0


def tensors_norm(tensors) -> float:
    return math.sqrt(sum(float(t.detach().float().pow(2).sum()) for t in tensors))


def max_layers_for_budget(budget: float, layer_sizes: list, denominator: int) -> int:
    """Most layers whose parameters together stay <= budget x denominator (largest layers
    counted first, so any choice of that many layers fits)."""
    cap = budget * denominator
    total, n = 0, 0
    for size in sorted(layer_sizes, reverse=True):
        if total + size > cap + 1e-9:
            break
        total += size
        n += 1
    return n


class DynamicLayerMethod(Method):
    """Base of the methods whose trainable layer set changes during training."""

    default_lr = 3e-4
    interval = 20  # steps between decisions (set from the config in ``configure``)
    score_name = ""  # what ``scores`` in the timeline means (for run.json and the plot)
    may_train_embeddings = False
    selects_layers = True  # reads --layer-budget (methods/budget.py)
    changes_trainable_set = True  # train/distributed.py all-reduces the gradients itself (no DDP reducer)
    grads_synced_later = False  # data-parallel run: grad_hook runs on the all-reduced gradients (after_grad_sync)
    scores_are_change = False  # no score of its own: the timeline's scores = measured change in the interval

    # ------------------------------------------------------------------ setup
    def configure(self, cfg) -> None:
        """Read the method's options (called from ``prepare``)."""

    def wrap(self, model, ctx):
        """Return the model to train (ALF + LoRA wraps it with PEFT)."""
        return model

    def is_candidate(self, name: str) -> bool:
        """Whether a parameter inside a layer may train (all of them, unless adapters)."""
        return True

    def prepare(self, model, ctx):
        self.cfg = ctx.cfg
        self.layout = ctx.layout
        self.configure(ctx.cfg)
        model = self.wrap(model, ctx)
        L = ctx.layout.num_layers
        self.num_layers = L
        self.layer_params = [[] for _ in range(L)]  # (name, param)
        self.embed_params, self.head_params = [], []
        denom_all = 0
        peft_head = getattr(self, "uses_peft", False)
        for n, p in model.named_parameters():
            kind = ctx.layout.classify(n)
            if kind == "head":
                # PEFT keeps a frozen copy of the head (original_module): only train its trainable copy
                if not peft_head or p.requires_grad:
                    self.head_params.append((n, p))
                continue
            if isinstance(kind, tuple) and self.is_candidate(n):
                self.layer_params[kind[1]].append((n, p))
            elif kind == "embeddings":
                self.embed_params.append((n, p))
            denom_all += p.numel()
        self.layer_numel = [sum(p.numel() for _, p in ps) for ps in self.layer_params]
        self.embed_numel = sum(p.numel() for _, p in self.embed_params)
        # denominator: non-head backbone params; with adapters: the adapter params only
        self.denominator = sum(self.layer_numel) if peft_head else denom_all
        for p in model.parameters():
            p.requires_grad_(False)
        for _, p in self.head_params:
            p.requires_grad_(True)
        self.active, self.emb_active = set(), False
        self._ever_active, self._ever_emb = set(), False
        self.budget_numel = None  # set by methods with a parameter budget
        self.timeline, self._fractions, self._opt_bytes, self._numels = [], [], [], []
        self.total_params = sum(p.numel() for p in {id(q): q for q in model.parameters()}.values())
        self._hooks, self._snap = [], {}
        self.optimizer = None
        return model

    def optimizer_params(self, model):
        out = list(self.head_params)
        for ps in self.layer_params:
            out.extend(ps)
        if self.may_train_embeddings:
            out.extend(self.embed_params)
        return out

    # ------------------------------------------------------------------ switching
    def _release(self, p) -> None:
        p.grad = None
        if self.optimizer is not None:
            self.optimizer.state.pop(p, None)

    def active_numel(self, layers=None, embeddings=None) -> int:
        layers = self.active if layers is None else layers
        embeddings = self.emb_active if embeddings is None else embeddings
        return sum(self.layer_numel[i] for i in layers) + (self.embed_numel if embeddings else 0)

    def set_active(self, layers, embeddings: bool = False) -> None:
        from ..train import distributed

        # data-parallel: every rank takes rank 0's decision (they agree anyway; this makes it certain)
        layers, embeddings = distributed.broadcast_object((sorted(int(i) for i in layers), bool(embeddings)))
        layers = set(layers)
        if self.budget_numel is not None and self.active_numel(layers, embeddings) > self.budget_numel:
            raise RuntimeError(f"{self.name}: active set {sorted(layers)} exceeds the budget")  # invariant
        for i, ps in enumerate(self.layer_params):
            on = i in layers
            for _, p in ps:
                if not on and (i in self.active or p.requires_grad):
                    self._release(p)
                p.requires_grad_(on)
        for _, p in self.embed_params:
            if not embeddings:
                self._release(p)
            p.requires_grad_(embeddings)
        self.active, self.emb_active = layers, bool(embeddings)
        self._ever_active |= layers
        self._ever_emb = self._ever_emb or bool(embeddings)

    def enable_all_layers_for_gradients(self) -> None:
        """Let every layer compute gradients on the next step without joining the active set
        (ALF's probe; the grad hook discards inactive layers' gradients)."""
        for ps in self.layer_params:
            for _, p in ps:
                p.requires_grad_(True)

    # ------------------------------------------------------------------ hooks
    def grad_hook(self, layer, p) -> None:
        """Called when a candidate's gradient is ready (``layer`` = index or 'emb'). Override."""

    uses_grad_hook = False

    def _install_hooks(self) -> None:
        if not self.uses_grad_hook:
            return
        units = [(i, ps) for i, ps in enumerate(self.layer_params)]
        if self.may_train_embeddings:
            units.append(("emb", self.embed_params))
        for unit, ps in units:
            for _, p in ps:
                was = p.requires_grad
                p.requires_grad_(True)  # torch registers hooks only on tensors that require grad
                self._hooks.append(p.register_post_accumulate_grad_hook(
                    lambda q, u=unit: None if self.grads_synced_later else self.grad_hook(u, q)))
                p.requires_grad_(was)

    def after_grad_sync(self) -> None:
        """Data-parallel runs (train/distributed.py): the gradients were just averaged over the ranks;
        run ``grad_hook`` on them now instead of on each rank's own during backward, so probe
        statistics (ALF's rho, AutoFreeze's accumulated gradients) are the global batch's."""
        if not self.uses_grad_hook:
            return
        units = list(enumerate(self.layer_params)) + ([("emb", self.embed_params)] if self.may_train_embeddings else [])
        for unit, ps in units:
            for _, p in ps:
                if p.grad is not None:
                    self.grad_hook(unit, p)

    # ------------------------------------------------------------------ telemetry
    def _snapshot(self) -> None:
        self._snap = {i: [p.detach().clone() for _, p in self.layer_params[i]] for i in self.active}

    def _close_interval(self, step: int) -> list:
        """Measured change of each layer over the open interval (null if it was frozen)."""
        change = [None] * self.num_layers
        for i, before in self._snap.items():
            change[i] = relative_change(before, [p.detach() for _, p in self.layer_params[i]])
        if self.timeline:
            self.timeline[-1]["until"] = step
            self.timeline[-1]["change"] = [None if c is None else round(c, 8) for c in change]
            if self.scores_are_change:
                self.timeline[-1]["scores"] = self.timeline[-1]["change"]
        return change

    def _open_interval(self, step: int, scores) -> None:
        self.timeline.append({
            "step": step, "until": None, "active": sorted(self.active), "embeddings": self.emb_active,
            "scores": None if scores is None else [None if s is None else float(f"{s:.6g}") for s in scores],
            "change": None, **getattr(self, "_entry_extras", {}),
        })
        self._snapshot()

    def _optimizer_state_bytes(self) -> int:
        total = 0
        for st in self.optimizer.state.values():
            for v in st.values():
                if torch.is_tensor(v):
                    total += v.numel() * v.element_size()
        return total

    # ------------------------------------------------------------------ protocol
    def start(self, state) -> list | None:
        """Choose the initial active set (call ``set_active``); return scores or None.
        Return ``False`` to open no timeline entry at step 0 (ALF decides after step 1)."""
        raise NotImplementedError

    def decide(self, state, change: list) -> list | None:
        """Choose the next active set at a decision step; return the scores."""
        raise NotImplementedError

    def is_decision_step(self, step: int) -> bool:
        return step % self.interval == 0

    def after_step(self, state) -> None:
        """Called after the bookkeeping of every step (e.g. to arm a probe)."""

    def on_train_start(self, state):
        from ..train import distributed

        self.grads_synced_later = distributed.is_distributed()
        self.optimizer = state.optimizer
        self.total_steps = state.total_steps
        self._install_hooks()
        scores = self.start(state)
        if scores is not False:
            self._open_interval(0, scores)
        self.after_step(state)

    def on_step(self, state):
        self._numels.append(self.active_numel())
        self._fractions.append(self._numels[-1] / self.denominator if self.denominator else 0.0)
        self._opt_bytes.append(self._optimizer_state_bytes())
        if state.step < state.total_steps and self.is_decision_step(state.step):
            change = self._close_interval(state.step)
            scores = self.decide(state, change)
            self._open_interval(state.step, scores)
        self.after_step(state)

    def on_train_end(self, state):
        if self.timeline and self.timeline[-1]["until"] is None:
            self._close_interval(state.step)
        for h in self._hooks:
            h.remove()
        self._hooks = []
        self._snap = {}

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self):
        """Active set, telemetry so far and the open interval's weight snapshot (``--save-every``)."""
        return {"active": sorted(self.active), "emb_active": self.emb_active,
                "ever_active": sorted(self._ever_active), "ever_emb": self._ever_emb,
                "timeline": self.timeline, "fractions": self._fractions, "opt_bytes": self._opt_bytes,
                "numels": self._numels, "snap": {int(i): ts for i, ts in self._snap.items()},
                "entry_extras": getattr(self, "_entry_extras", {})}

    def load_state_dict(self, state):
        self.set_active(state["active"], state["emb_active"])
        self._ever_active, self._ever_emb = set(state["ever_active"]), state["ever_emb"]
        self.timeline, self._fractions = list(state["timeline"]), list(state["fractions"])
        self._opt_bytes, self._numels = list(state["opt_bytes"]), list(state["numels"])
        device = next(iter(p.device for _, p in self.head_params), None)
        self._snap = {int(i): [t.to(device) for t in ts] for i, ts in state["snap"].items()}
        self._entry_extras = dict(state["entry_extras"])

    # ------------------------------------------------------------------ record
    def describe(self):
        d = {"score": self.score_name, "interval": self.interval,
             "budget_denominator": "LoRA parameters" if getattr(self, "uses_peft", False)
             else "non-head backbone parameters (embeddings + layers)",
             "denominator_params": getattr(self, "denominator", None),
             "layer_params": getattr(self, "layer_numel", None),
             "embedding_params": getattr(self, "embed_numel", None)}
        return d

    def record_extras(self):
        return {"layers": self.timeline}

    def params_extras(self):
        if not self._fractions:
            return {}
        # AdamW keeps two fp32 moments per parameter: what the state would be if the head and
        # every candidate (layers, embeddings or adapters) trained, as in full fine-tuning
        head = sum(p.numel() for _, p in self.head_params)
        full_state = 8 * (self.denominator + head)
        # without releasing, AdamW would keep the state of every layer that ever trained
        kept = 8 * (head + self.active_numel(self._ever_active, self._ever_emb))
        peak = max(self._numels)
        return {
            # the runner counts at prepare time (head only for most dynamic methods): report the
            # peak number trainable at one step instead, and the time-average below
            "trainable": head + peak, "trainable_without_head": peak,
            "trainable_pct": round(100.0 * (head + peak) / self.total_params, 4),
            "trainable_layers": sorted(self._ever_active),
            "trainable_counting": "dynamic method: peak trainable at one step (head included); "
                                  "time-average of the non-head share in trainable_fraction_mean",
            "trainable_fraction_mean": round(sum(self._fractions) / len(self._fractions), 6),
            "trainable_fraction_max": round(max(self._fractions), 6),
            "trainable_fraction_of": self.describe()["budget_denominator"],
            "layer_budget": None if self.budget_numel is None else round(self.budget_numel / self.denominator, 6),
            "optimizer_state_mb_peak": round(max(self._opt_bytes) / 2**20, 2),
            "optimizer_state_mb_mean": round(sum(self._opt_bytes) / len(self._opt_bytes) / 2**20, 2),
            "optimizer_state_mb_if_all_trained": round(full_state / 2**20, 2),
            "optimizer_state_mb_if_not_released": round(kept / 2**20, 2),
        }

    def save(self, model, out_dir):
        if getattr(self, "uses_peft", False):
            model.save_pretrained(out_dir, safe_serialization=True)
            return ["adapter_model.safetensors", "adapter_config.json"]
        return super().save(model, out_dir)
