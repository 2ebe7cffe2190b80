"""AutoFreeze (Liu, Agarwal, Venkataraman 2021): progressively freeze the front layers whose
gradients have stopped changing.

Training starts with everything trainable (the embeddings are the front-most block). Every
``--autofreeze-interval`` steps (default 50) each still-trainable block b gets
``G_b = ||sum of its gradients over the interval||`` and its gradient-norm change rate
``r_b = |G_b - G_b(previous interval)| / G_b(previous interval)``. The threshold is the
``--autofreeze-percentile`` (default 50, the median the paper found to match its SVCCA analysis)
of the r of all trainable blocks; blocks are frozen front to back (embeddings, layer 0, 1, ...)
while their r is below the threshold; the first block at or above it stops the freezing, and the
last layer never freezes. Frozen blocks stay frozen; their gradient buffers and optimizer state
are freed. As in the paper, the frozen prefix's activations are cached (``frozen_for_good``:
train/activation_cache.py computes the embeddings and the frozen layers once per example, in eval
mode, and carries the stored states up through each newly frozen layer); ``--no-activation-cache``
turns that off.

``--layer-budget SHARE`` caps it at every step (methods/budget.py): it starts with the embeddings
and the bottom layers frozen and the top k layers trainable (k = the most that fit in SHARE of the
non-head backbone), then freezes front to back as above. It never unfreezes, so its time-averaged
share is at most SHARE, equal to it (up to layer granularity) until its own rule freezes a layer.

Timeline ``scores``: r of every layer (null where frozen or not yet computable).
"""

import numpy as np

from ..config import declare, opt
from . import METHODS
from .budget import layers_in_budget
from .dynamic import DynamicLayerMethod


@declare("autofreeze", reads=("autofreeze",))
class AutoFreezeOptions:
    autofreeze_interval: int = opt(50, "autofreeze: steps between freezing decisions", min=1)
    autofreeze_percentile: float = opt(50, "autofreeze: freeze front layers whose gradient-norm change is below this "
                                           "percentile", min=0, max=100)


@METHODS.register("autofreeze")
class AutoFreeze(DynamicLayerMethod):
    """AutoFreeze: freeze front layers once their gradient-norm change rate falls below a percentile."""

    name = "autofreeze"
    may_train_embeddings = True
    uses_grad_hook = True
    revision = 2  # 2026-11-24: the frozen prefix is cached (run in eval mode: no dropout there)
    score_name = "gradient-norm change rate |G_t - G_t-1| / G_t-1 (accumulated gradients per interval)"

    def configure(self, cfg):
        self.interval = cfg.autofreeze_interval
        self.percentile = cfg.autofreeze_percentile
        self.budget = cfg.layer_budget
        self.may_train_embeddings = self.budget is None  # capped: the embeddings (52.8 % of minilm) start frozen

    def prepare(self, model, ctx):
        model = super().prepare(model, ctx)
        self._acc = {}  # param -> accumulated gradient over the interval
        self._prev = {}  # block -> G of the previous interval
        self.freeze_log = []
        if self.budget is not None:
            self.start_layers = layers_in_budget(self, self.budget)
            self.budget_numel = self.budget * self.denominator
        return model

    def frozen_for_good(self):  # front to back, never unfrozen
        if self.emb_active or not self.active:
            return None
        return min(self.active)  # the active set is always the top layers from here up

    def grad_hook(self, layer, p):
        if p.grad is None:
            return
        buf = self._acc.get(p)
        if buf is None:
            self._acc[p] = p.grad.detach().clone()
        else:
            buf.add_(p.grad.detach())

    def _params(self, block):
        return self.embed_params if block == "emb" else self.layer_params[block]

    def start(self, state):
        if self.budget is not None:
            self.set_active(range(self.num_layers - self.start_layers, self.num_layers), False)
        else:
            self.set_active(range(self.num_layers), True)
        return None

    def decide(self, state, change):
        blocks = (["emb"] if self.emb_active else []) + sorted(self.active)
        G = {}
        for b in blocks:
            G[b] = float(np.sqrt(sum(float(self._acc[p].float().pow(2).sum()) for _, p in self._params(b) if p in self._acc)))
        rates = {b: abs(G[b] - self._prev[b]) / self._prev[b] for b in blocks if self._prev.get(b)}
        self._prev = G
        self._acc = {}
        scores = [rates.get(i) for i in range(self.num_layers)]
        if not rates:
            return scores
        threshold = float(np.percentile(list(rates.values()), self.percentile))
        frozen = []
        for b in blocks:  # front to back
            if b == self.num_layers - 1 or b not in rates or rates[b] >= threshold:
                break
            frozen.append(b)
        self.freeze_log.append({"step": state.step, "threshold": round(threshold, 6), "frozen": frozen,
                                "embeddings_rate": None if "emb" not in rates else round(rates["emb"], 6)})
        if frozen:
            emb = self.emb_active and "emb" not in frozen
            self.set_active([i for i in self.active if i not in frozen], emb)
        return scores

    def state_dict(self):
        names = {id(p): n for n, p in [*self.embed_params, *(q for ps in self.layer_params for q in ps)]}
        return {**super().state_dict(), "acc": {names[id(p)]: g for p, g in self._acc.items()},
                "prev": {str(b): g for b, g in self._prev.items()}, "freeze_log": self.freeze_log}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        params = dict([*self.embed_params, *(q for ps in self.layer_params for q in ps)])
        self._acc = {params[n]: g.to(params[n].device) for n, g in state["acc"].items()}
        self._prev = {(b if b == "emb" else int(b)): g for b, g in state["prev"].items()}
        self.freeze_log = list(state["freeze_log"])

    def describe(self):
        d = super().describe()
        d.update({"percentile": self.percentile, "layer_budget": self.budget,
                  "embeddings": "trained until frozen" if self.budget is None else "frozen (budget)",
                  "freeze_log": getattr(self, "freeze_log", [])})
        return d
