"""Significance of "method vs full fine-tuning".

- >= 2 paired seeds (``ACROSS_SEEDS``): paired t-test over the seeds' main metric (scipy
  ``ttest_rel``; a pair = the method and full FT run with the same seed, i.e. the same training
  subset, order and head initialisation), so seed variance is part of the noise. This is the only
  test the findings call "significant" (report/findings.py). Paired rather than Welch on per-seed
  values: the seed is a shared factor of both runs, and pairing removes it. With 2 seeds the test
  has 1 degree of freedom (critical |t| = 12.7): it rarely says "significant", which is the honest
  answer from two seeds.
- one seed: paired bootstrap over the dev examples (Koehn 2004; Berg-Kirkpatrick et al. 2012):
  resample the evaluation examples with replacement, recompute both runs' metric on the same
  resample, and test H0 "no difference" with the shifted-bootstrap two-sided p-value
  ``P(|d* - d| >= |d|)``. This only measures the noise of the finite dev set, not seed variance; the
  table shows it marked "bootstrap" and the findings never call it significant.
"""

import csv
import math
from dataclasses import dataclass

import numpy as np

BOOTSTRAP_SAMPLES = 2000
ALPHA = 0.05  # the significance level of every test the report calls significant
ACROSS_SEEDS = 2  # paired seeds from which the t-test over seeds replaces the dev-set bootstrap


@dataclass
class Significance:
    p: float | None
    test: str  # "bootstrap" | "t-test" | reason it is missing
    n: int  # seeds paired
    delta: float | None  # mean (method - reference) of the main metric over the paired seeds


def read_predictions(path: str, split: str | None = None) -> dict:
    """predictions.tsv -> {line: (label, prediction)} for one split (default: the first one in the file).
    Columns ``label``/``prediction``, or ``reference``/``hypothesis`` (speech recognition: text)."""
    out = {}
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if split is None:
                split = row["split"]
            if row["split"] != split:
                continue
            label = row["label"] if "label" in row else row["reference"]
            pred = row["prediction"] if "prediction" in row else row["hypothesis"]
            out[int(row["line"]) if row["line"] not in ("", "0") else -int(row["index"]) - 1] = (
                _num(label), _num(pred))
    return out


def _num(s: str):
    """A number as int/float; anything else (a transcript) stays text."""
    try:
        f = float(s)
    except ValueError:
        return s
    return int(f) if f.is_integer() and "." not in s else f


# ---------------------------------------------------------------- metrics on many resamples at once

def _binary_counts(y, p):
    tp = ((p == 1) & (y == 1)).sum(-1).astype(float)
    fp = ((p == 1) & (y != 1)).sum(-1).astype(float)
    fn = ((p != 1) & (y == 1)).sum(-1).astype(float)
    tn = ((p != 1) & (y != 1)).sum(-1).astype(float)
    return tp, fp, fn, tn


def _mcc(y, p):
    classes = np.union1d(np.unique(y), np.unique(p))
    if len(classes) <= 2 and set(classes.tolist()) <= {0, 1}:
        tp, fp, fn, tn = _binary_counts(y, p)
        den = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, (tp * tn - fp * fn) / np.where(den > 0, den, 1), 0.0)
    # multiclass (Gorodkin): from per-class counts
    n = y.shape[-1]
    c = (y == p).sum(-1).astype(float)
    tk = np.stack([(y == k).sum(-1) for k in classes], -1).astype(float)
    pk = np.stack([(p == k).sum(-1) for k in classes], -1).astype(float)
    num = c * n - (tk * pk).sum(-1)
    den = np.sqrt((n * n - (pk * pk).sum(-1)) * (n * n - (tk * tk).sum(-1)))
    return np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)


def _f1(y, p):
    tp, fp, fn, _ = _binary_counts(y, p)
    den = 2 * tp + fp + fn
    return np.where(den > 0, 2 * tp / np.where(den > 0, den, 1), 0.0)


def _pearson(y, p):
    y = y - y.mean(-1, keepdims=True)
    p = p - p.mean(-1, keepdims=True)
    den = np.sqrt((y * y).sum(-1) * (p * p).sum(-1))
    return np.where(den > 0, (y * p).sum(-1) / np.where(den > 0, den, 1), 0.0)


VECTORISED = {
    "accuracy": lambda y, p: (y == p).mean(-1),
    "f1": _f1,
    "mcc": _mcc,
    "pearson": _pearson,
}


def bootstrappable(name: str) -> bool:
    """A registered per-example metric that can be recomputed from predictions.tsv's label/prediction."""
    from ..metrics import lookup
    from ..tasks import load_families

    load_families()

    m = lookup(name)
    return m is not None and m.per_example and m.fn is not None


def metric_on_resamples(name: str, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``y``, ``p``: (B, n) arrays -> (B,) metric values, same definitions as the registered metrics."""
    if name in VECTORISED:
        return VECTORISED[name](y, p)
    from ..metrics import compute

    return np.array([compute([name], p[i], y[i])[name] for i in range(y.shape[0])])


def metric_value(name: str, refs, preds) -> float:
    return float(metric_on_resamples(name, np.asarray(refs)[None], np.asarray(preds)[None])[0])


# ---------------------------------------------------------------- the tests

def paired_bootstrap(pairs: list, metric: str, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> tuple:
    """pairs: [(refs, preds_method, preds_reference)] (aligned arrays, one per seed).
    Returns (observed mean difference, two-sided p-value)."""
    rng = np.random.default_rng(seed)
    if metric not in VECTORISED:
        samples = min(samples, 300)
    observed, boot = 0.0, np.zeros(samples)
    for refs, a, b in pairs:
        refs, a, b = np.asarray(refs), np.asarray(a), np.asarray(b)
        observed += metric_value(metric, refs, a) - metric_value(metric, refs, b)
        idx = rng.integers(0, len(refs), size=(samples, len(refs)))
        boot += metric_on_resamples(metric, refs[idx], a[idx]) - metric_on_resamples(metric, refs[idx], b[idx])
    observed /= len(pairs)
    boot /= len(pairs)
    if observed == 0:
        return 0.0, 1.0
    extreme = int(np.sum(np.abs(boot - observed) >= abs(observed)))
    return observed, (extreme + 1) / (samples + 1)


def paired_ttest(a: list, b: list) -> float | None:
    from scipy.stats import ttest_rel

    d = np.asarray(a, float) - np.asarray(b, float)
    if np.allclose(d, d[0]):
        return 1.0 if abs(d[0]) < 1e-12 else None  # no spread: the t statistic is undefined
    return float(ttest_rel(a, b).pvalue)


def compare_to_reference(method_rows: list, ref_rows: list, metric: str) -> Significance:
    """Rows (store rows of completed runs) of one method and of the reference, paired by seed."""
    ref = {r["seed"]: r for r in ref_rows}
    paired = [(r, ref[r["seed"]]) for r in method_rows if r["seed"] in ref]
    if not paired:
        return Significance(None, "no paired reference run", 0, None)
    vals = [(r["metrics"][metric], q["metrics"][metric]) for r, q in paired]
    delta = float(np.mean([a - b for a, b in vals]))
    if len(paired) >= ACROSS_SEEDS:
        return Significance(paired_ttest([a for a, _ in vals], [b for _, b in vals]), "t-test", len(paired), delta)
    if not bootstrappable(metric):
        return Significance(None, f"{metric} is not recomputable from predictions; needs >= {ACROSS_SEEDS} seeds",
                            len(paired), delta)
    pairs = []
    for r, q in paired:
        try:
            pa = read_predictions(f"{r['run_dir']}/predictions.tsv")
            pb = read_predictions(f"{q['run_dir']}/predictions.tsv")
        except (OSError, KeyError, ValueError):
            return Significance(None, "predictions.tsv missing", len(paired), delta)
        common = sorted(set(pa) & set(pb))
        if not common:
            return Significance(None, "no common dev examples", len(paired), delta)
        pairs.append(([pa[k][0] for k in common], [pa[k][1] for k in common], [pb[k][1] for k in common]))
    _, p = paired_bootstrap(pairs, metric)
    return Significance(p, "bootstrap", len(paired), delta)


def majority_baseline(predictions_path: str, metrics: list) -> dict:
    """Each metric of always predicting the most frequent dev label (classification only)."""
    rows = read_predictions(predictions_path)
    refs = [y for y, _ in rows.values()]
    if not refs or any(isinstance(y, (float, str)) for y in refs):  # regression scores, transcripts
        return {}
    values, counts = np.unique(refs, return_counts=True)
    maj = values[int(np.argmax(counts))]
    return {m: metric_value(m, refs, [maj] * len(refs)) for m in metrics if m in VECTORISED}


def mean_std(values: list) -> tuple:
    v = [float(x) for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not v:
        return None, None
    return float(np.mean(v)), (float(np.std(v, ddof=1)) if len(v) > 1 else None)


SHORT_VERDICTS = {  # the same verdicts in a table cell
    "same": "within noise (t-test)",
    "below": "worse (t-test)",
    "above": "better (t-test)",
    "noise": "within noise (1 seed, bootstrap)",
    "one-seed": "1 seed: not tested",
    "untested": "no p-value",
}


def verdict(sig, higher_is_better_: bool) -> str:
    """A method-vs-full-FT verdict: significant only from the across-seed t-test."""
    if sig.p is None:
        return "untested"
    if sig.test != "t-test":  # one seed: a bootstrap over dev examples
        return "noise" if sig.p >= ALPHA else "one-seed"
    if sig.p >= ALPHA:
        return "same"
    return "above" if (sig.delta > 0) == higher_is_better_ else "below"
