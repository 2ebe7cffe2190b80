"""Per-epoch bookkeeping shared by both training paths (tunelab's loop and the TRL/Trainer bridge):
the history, the best epoch and early stopping, all in the direction of the registered main
metric (``metrics.Metric.higher_is_better``), and the runner's ``on_epoch`` callback; and
``FitSummary``, what a training run hands back (``Task.fit`` returns one; the runner reads it)."""

from dataclasses import dataclass, field

from ..metrics import lookup


@dataclass
class FitSummary:
    """The result of ``Task.fit`` (and of ``train.loop.train``): the epoch history and the best epoch
    in the main metric's direction, the final model's metrics and predictions (``final_predictions``:
    split name -> the family's prediction object, for ``Task.write_predictions``), the loop's
    ``TrainState`` (steps, samples, seconds) and ``record``: extra run.json keys."""

    history: list
    state: object  # train.loop.TrainState
    best_epoch: int | None
    best: float | None
    main_metric: str | None
    stopped_early: bool
    final_metrics: dict
    final_predictions: dict
    record: dict = field(default_factory=dict)


class EpochTracker:
    def __init__(self, main_metric: str | None, patience: int | None = None, on_epoch=None, write=print):
        self.main = main_metric
        self.patience = patience
        self.on_epoch = on_epoch
        self.write = write
        self.history = []
        self.best = self.best_epoch = None
        self.bad_epochs = 0
        self.stopped_early = False
        self.last_metrics, self.last_predictions = {}, {}

    def end_epoch(self, rec: dict, predictions) -> bool:
        """Record one evaluation (``rec``: epoch, step, train_loss, metrics, eval_seconds); returns
        True when training should stop (patience epochs without improvement)."""
        metrics = rec["metrics"]
        self.history.append(rec)
        self.last_metrics, self.last_predictions = metrics, predictions
        loss = rec.get("train_loss")
        self.write(f"epoch {rec['epoch']}: " + (f"loss {loss:.4f} " if loss is not None else "")
                   + " ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, (int, float))))
        if self.on_epoch:
            self.on_epoch(rec, predictions)
            from .reporting import active

            if active() is not None:  # --report-to (train/reporting.py); silent trackers (best_of) have no on_epoch
                active().epoch(rec)
        main = self.main or next(iter(metrics), None)
        self.main = main
        score = metrics.get(main) if main else None
        metric = lookup(main) if main else None
        higher = True if metric is None else metric.higher_is_better
        if score is not None and (self.best is None or (score > self.best if higher else score < self.best)):
            self.best, self.best_epoch, self.bad_epochs = score, rec["epoch"], 0
        else:
            self.bad_epochs += 1
        if self.patience and self.bad_epochs >= self.patience:
            self.stopped_early = True
        return self.stopped_early

    def summary(self, state=None, record: dict | None = None) -> FitSummary:
        return FitSummary(history=self.history, state=state, best_epoch=self.best_epoch, best=self.best,
                          main_metric=self.main, stopped_early=self.stopped_early, final_metrics=self.last_metrics,
                          final_predictions=self.last_predictions, record=dict(record or {}))

    @classmethod
    def best_of(cls, main_metric: str | None, history: list) -> "EpochTracker":
        """A tracker that has seen ``history`` (epoch records of several training phases) silently:
        its ``best`` / ``best_epoch`` are those of the whole history."""
        tracker = cls(main_metric, write=lambda _line: None)
        for rec in history:
            tracker.end_epoch(rec, None)
        return tracker
