"""Metrics against independent hand computations."""

import math

import numpy as np
import pytest

from tunelab.tasks import get_task


def test_classification_metrics_by_hand():
    refs = [1, 1, 1, 0, 0, 0, 1, 0]
    preds = [1, 0, 1, 0, 1, 0, 1, 0]
    tp, tn, fp, fn = 3, 3, 1, 1
    f1 = 2 * tp / (2 * tp + fp + fn)
    mcc = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    m = get_task("mrpc").metrics(preds, refs)
    assert m == pytest.approx({"f1": f1, "accuracy": 6 / 8})
    c = get_task("cola").metrics(preds, refs)
    assert c["mcc"] == pytest.approx(mcc)
    assert list(c)[0] == "mcc"  # main metric first


def test_regression_metrics_by_hand():
    refs = np.array([0.0, 1.0, 2.5, 4.0, 5.0])
    preds = np.array([0.5, 0.7, 3.0, 3.5, 4.9])
    m = get_task("stsb").metrics(preds, refs)
    assert m["pearson"] == pytest.approx(np.corrcoef(preds, refs)[0, 1])
    ranks = lambda x: np.argsort(np.argsort(x))  # noqa: E731 (no ties here)
    assert m["spearman"] == pytest.approx(np.corrcoef(ranks(preds), ranks(refs))[0, 1])


def test_constant_regression_prediction_is_zero_not_nan():
    m = get_task("stsb").metrics([1.0, 1.0, 1.0], [0.0, 2.0, 4.0])
    assert m == {"pearson": 0.0, "spearman": 0.0}
