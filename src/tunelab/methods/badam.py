"""BAdam (Luo et al. 2024, block coordinate descent with Adam; the ``BlockOptimizer`` of the BAdam
package): one block of layers trains at a time; the block switches every ``--badam-interval`` K
steps (default 50, as in the BAdam / LLaMA-Factory examples) in ``--badam-order`` (default
``descending`` as in ``BlockOptimizer``; ``ascending``; ``random`` = a fresh random permutation of
all blocks per round). A block is ``--badam-block-layers`` consecutive layers (default 1 = one
transformer layer per block, as published). Embeddings stay frozen (BAdam's default
``include_embedding=False``); the head always trains (our "active modules"). The optimizer state of
the block that is switched off is dropped, so each block starts a fresh Adam state (as BAdam does).

``--layer-budget SHARE`` (methods/budget.py) sizes the blocks: k = the most layers that fit in SHARE
of the non-head backbone, blocks of k consecutive layers, the last one moved down to end at the top
layer when k does not divide the layer count (so every block, and every step, trains k layers).

Timeline ``scores``: BAdam has no score; we record each layer's measured weight change rate over
the interval itself (null where it was frozen).
"""

import random

from ..errors import UserError
from ..config import declare, opt
from . import METHODS
from .budget import blocks_of, layers_in_budget, refuse_changed
from .dynamic import DynamicLayerMethod

ORDERS = ("descending", "ascending", "random")


@declare("badam", reads=("badam",))
class BAdamOptions:
    badam_interval: int = opt(50, "badam: steps between switching the active block", min=1)
    badam_order: str = opt("descending", "badam: block order: descending | ascending | random",
                           choices=("descending", "ascending", "random"))
    badam_block_layers: int = opt(1, "badam: consecutive layers per block", min=1)


@METHODS.register("badam")
class BAdam(DynamicLayerMethod):
    """BAdam: one block of layers at a time, switched every K steps (descending/ascending/random)."""

    name = "badam"
    scores_are_change = True
    score_name = "weight change rate in the interval (recorded only; BAdam switches in a fixed order)"

    @classmethod
    def apply_layer_budget(cls, cfg):
        """The budget sizes the blocks (--badam-block-layers refused)."""
        refuse_changed(cfg, "badam_block_layers", "the budget sizes BAdam's blocks")

    def configure(self, cfg):
        self.interval = cfg.badam_interval
        self.order = cfg.badam_order
        self.block_layers = cfg.badam_block_layers
        self.rng = random.Random(cfg.seed)
        self.budget = cfg.layer_budget

    def prepare(self, model, ctx):
        model = super().prepare(model, ctx)
        b = self.block_layers
        if self.budget is not None:
            self.block_layers = b = layers_in_budget(self, self.budget)
            self.budget_numel = self.budget * self.denominator
            self.blocks = blocks_of(self.num_layers, b)
        elif b > self.num_layers:
            raise UserError(f"--badam-block-layers {b}: the model has only {self.num_layers} layers")
        else:
            self.blocks = [list(range(i, min(i + b, self.num_layers))) for i in range(0, self.num_layers, b)]
        self._queue = []
        return model

    def _next_block(self):
        if not self._queue:
            idx = list(range(len(self.blocks)))
            if self.order == "descending":
                idx.reverse()
            elif self.order == "random":
                self.rng.shuffle(idx)
            self._queue = idx
        return self.blocks[self._queue.pop(0)]

    def start(self, state):
        self.set_active(self._next_block())
        return None

    def decide(self, state, change):
        self.set_active(self._next_block())
        return None

    def state_dict(self):
        return {**super().state_dict(), "rng": self.rng.getstate(), "queue": list(self._queue)}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.rng.setstate(state["rng"])
        self._queue = list(state["queue"])

    def describe(self):
        d = super().describe()
        d.update({"order": self.order, "layer_budget": self.budget, "block_layers": self.block_layers,
                  "blocks": getattr(self, "blocks", None), "embeddings": "frozen"})
        return d
