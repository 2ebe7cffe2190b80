"""Classification metrics (GLUE's official ones, and macro-F1 for multi-class families) via scikit-learn /
scipy, registered by name."""

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from . import Metric, register


def _accuracy(p, r):
    return float(accuracy_score(np.asarray(r), np.asarray(p)))


def _f1(p, r):
    return float(f1_score(np.asarray(r), np.asarray(p)))


def _macro_f1(p, r):
    return float(f1_score(np.asarray(r), np.asarray(p), average="macro"))


def _mcc(p, r):
    return float(matthews_corrcoef(np.asarray(r), np.asarray(p)))


def _pearson(p, r):
    p, r = np.asarray(p), np.asarray(r)
    return float(pearsonr(p, r)[0]) if np.std(p) > 0 else 0.0


def _spearman(p, r):
    p, r = np.asarray(p), np.asarray(r)
    return float(spearmanr(p, r)[0]) if np.std(p) > 0 else 0.0


register(Metric("accuracy", _accuracy, True, True, "share of correct predictions"))
register(Metric("f1", _f1, True, True, "F1 of the positive class"))
register(Metric("mcc", _mcc, True, True, "Matthews correlation coefficient"))
register(Metric("pearson", _pearson, True, True, "Pearson correlation (regression)"))
register(Metric("spearman", _spearman, True, True, "Spearman rank correlation (regression)"))
register(Metric("macro_f1", _macro_f1, True, True, "F1 averaged over classes (each class counts the same)"))
