"""LISA (Pan et al. 2024, "Layerwise Importance Sampled AdamW"; LMFlow's implementation).

The embeddings and the head always train; every ``--lisa-interval`` K steps (default 20) all
layers are frozen and ``--lisa-layers`` gamma of them (default 2) are drawn uniformly at random
without replacement (seeded by ``--seed``) to train until the next draw. Optimizer state of layers
that leave the active set is dropped (a re-drawn layer keeps its state). ``--lisa-freeze-embeddings``
keeps the embeddings frozen (not in the published method; on all-MiniLM-L6-v2 they are 52.8 % of
the non-head parameters, so published LISA trains far more than a 25 % budget).

``--layer-budget SHARE`` (methods/budget.py): the embeddings stay frozen and gamma = the most layers
that fit in SHARE of the non-head backbone (minilm, 0.25: 3 layers, 23.6 % at every step).

Timeline ``scores``: LISA has no score of its own; we record each layer's measured weight change
rate over the interval itself (null where it was frozen). It does not influence the draw.
"""

import random

from ..errors import UserError
from ..config import declare, opt
from . import METHODS
from .budget import layers_in_budget, refuse_changed
from .dynamic import DynamicLayerMethod


@declare("lisa", reads=("lisa",))
class LISAOptions:
    lisa_layers: int = opt(2, "lisa: layers sampled (gamma) every --lisa-interval steps", min=1)
    lisa_interval: int = opt(20, "lisa: steps between re-sampling the active layers (K)", min=1)
    lisa_freeze_embeddings: bool = opt(False, "lisa: keep the embeddings frozen (published LISA trains them)")


@METHODS.register("lisa")
class LISA(DynamicLayerMethod):
    """LISA: embeddings + head train; every K steps gamma random layers train."""

    name = "lisa"
    may_train_embeddings = True
    scores_are_change = True
    score_name = "weight change rate in the interval (recorded only; LISA draws at random)"

    @classmethod
    def apply_layer_budget(cls, cfg):
        """The budget decides gamma (--lisa-layers refused); the embeddings stay frozen."""
        refuse_changed(cfg, "lisa_layers", "the budget decides how many layers LISA samples")
        cfg.lisa_freeze_embeddings, cfg.sources["lisa_freeze_embeddings"] = True, "layer_budget (frozen)"

    def configure(self, cfg):
        self.interval = cfg.lisa_interval
        self.gamma = cfg.lisa_layers
        self.train_embeddings = not cfg.lisa_freeze_embeddings
        self.may_train_embeddings = self.train_embeddings
        self.rng = random.Random(cfg.seed)
        self.budget = cfg.layer_budget  # config.py froze the embeddings when it is set

    def prepare(self, model, ctx):
        model = super().prepare(model, ctx)
        if self.budget is not None:
            self.gamma = layers_in_budget(self, self.budget)
            self.budget_numel = self.budget * self.denominator
        if self.gamma > self.num_layers:
            raise UserError(f"--lisa-layers {self.gamma}: the model has only {self.num_layers} layers")
        return model

    def _draw(self):
        self.set_active(self.rng.sample(range(self.num_layers), self.gamma), self.train_embeddings)

    def start(self, state):
        self._draw()
        return None

    def decide(self, state, change):
        self._draw()
        return None

    def state_dict(self):
        return {**super().state_dict(), "rng": self.rng.getstate()}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.rng.setstate(state["rng"])

    def describe(self):
        d = super().describe()
        d.update({"gamma": self.gamma, "layer_budget": self.budget,
                  "embeddings": "trained" if self.train_embeddings else "frozen"})
        return d
