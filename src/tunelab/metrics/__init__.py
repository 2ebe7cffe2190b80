"""Metrics as registered objects: name, function, direction (higher or lower is better) and whether
it can be bootstrapped per example. Early stopping, the best epoch, the report's best marks,
significance tests and findings all read the direction from here; nothing guesses it from a name.

A task family registers its metrics in its own package (``register(Metric(...))``) when it is imported;
whoever looks a family's metric up by name has loaded the families first (``tasks.load_families``: the
runner, compare and the report do). A run.json key
may carry a prefix naming the split or the model it was measured on (``mismatched_accuracy``,
``real_cer``, ``base_pref_accuracy``): ``lookup`` finds the registered metric it ends with.
"""

from dataclasses import dataclass
from typing import Callable

from ..registry import Registry


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable | None  # (predictions, references) -> float; None: the task computes it itself
    higher_is_better: bool = True
    per_example: bool = True  # a mean/aggregate over examples that a paired bootstrap can resample
    description: str = ""

    def better(self, a: float, b: float | None) -> bool:
        """Is ``a`` strictly better than ``b`` (``b`` None: nothing yet)?"""
        if b is None:
            return True
        return a > b if self.higher_is_better else a < b


METRICS = Registry("metric")


def register(metric: Metric) -> Metric:
    METRICS.add(metric.name, metric)
    return metric


from . import classification  # noqa: E402,F401  (accuracy, f1, macro_f1, mcc, pearson, spearman)


def get_metric(name: str) -> Metric:
    return METRICS.get(name)


def lookup(key: str) -> Metric | None:
    """The registered metric a run.json key names, exactly or as ``<prefix>_<name>``; None if none."""
    if key in METRICS:
        return METRICS.get(key)
    best = None
    for name in METRICS.names():
        if key.endswith("_" + name) and (best is None or len(name) > len(best)):
            best = name
    return METRICS.get(best) if best else None


def higher_is_better(key: str) -> bool:
    """Direction of a metric key; an unregistered key counts as higher-is-better."""
    m = lookup(key or "")
    return True if m is None else m.higher_is_better


def compute(names, predictions, references) -> dict:
    """Registered metric functions over one split's predictions."""
    out = {}
    for n in names:
        m = get_metric(n)
        if m.fn is None:
            raise ValueError(f"metric {n!r} is computed by its task, not from predictions")
        out[n] = m.fn(predictions, references)
    return out
