"""Official GLUE metrics via scikit-learn / scipy."""

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef


def compute(names, predictions, references) -> dict:
    preds = np.asarray(predictions)
    refs = np.asarray(references)
    out = {}
    for n in names:
        if n == "accuracy":
            out[n] = float(accuracy_score(refs, preds))
        elif n == "f1":
            out[n] = float(f1_score(refs, preds))
        elif n == "mcc":
            out[n] = float(matthews_corrcoef(refs, preds))
        elif n == "pearson":
            out[n] = float(pearsonr(preds, refs)[0]) if np.std(preds) > 0 else 0.0
        elif n == "spearman":
            out[n] = float(spearmanr(preds, refs)[0]) if np.std(preds) > 0 else 0.0
        else:
            raise ValueError(f"unknown metric {n!r}")
    return out
