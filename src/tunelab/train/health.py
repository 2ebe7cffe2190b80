"""Training health, watched on both training paths (the loop and the TRL bridge):

- a non-finite loss or gradient norm stops the run at once (``RunDiverged``): the runner records
  status ``failed`` with the reason ("loss became nan at step 37: try a lower --lr");
- a loss that climbs far above where it started is flagged: ``summary()`` goes into run.json as
  ``training_health`` with ``diverged: true`` when a 5-step mean exceeds ``--divergence-factor`` x
  the mean of the first 5 steps; the report marks such runs and compare counts them failed.
"""

import math

from ..errors import RunFailed


class RunDiverged(RunFailed):
    """Training produced a non-finite loss or gradient norm."""


WINDOW = 5


class LossWatch:
    def __init__(self, factor: float):
        self.factor = factor
        self.start = None  # mean of the first WINDOW step losses
        self.window, self.worst, self.worst_step, self.steps = [], None, None, 0

    def check_finite(self, value: float, what: str, step: int) -> None:
        if not math.isfinite(value):
            raise RunDiverged(f"{what} became {value} at step {step}: training diverged; try a lower --lr "
                              "(or --max-grad-norm 1.0)")

    def step(self, loss: float, step: int) -> None:
        self.check_finite(loss, "loss", step)
        self.steps += 1
        self.window.append(loss)
        if len(self.window) < WINDOW:
            return
        mean = sum(self.window) / WINDOW
        self.window = []
        if self.start is None:
            self.start = mean
        elif self.worst is None or mean > self.worst:
            self.worst, self.worst_step = mean, step

    @property
    def diverged(self) -> bool:
        return self.start is not None and self.worst is not None and self.worst > self.factor * max(self.start, 1e-8)

    def summary(self) -> dict:
        return {"diverged": self.diverged, "start_loss": None if self.start is None else round(self.start, 6),
                "max_loss": None if self.worst is None else round(self.worst, 6), "max_loss_step": self.worst_step,
                "factor": self.factor, "window_steps": WINDOW,
                "rule": f"diverged when a {WINDOW}-step mean loss exceeds factor x the first {WINDOW}-step mean"}
