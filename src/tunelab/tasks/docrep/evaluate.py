"""Extrinsic evaluation of document vectors (the only place labels are used).

Given train and test document vectors (dense arrays or scipy sparse, e.g. TF-IDF) and their labels:

- **Logistic regression** (main): features standardised to zero mean / unit variance on the train
  vectors (``StandardScaler``; for sparse input only scaled, ``with_mean=False``, to stay sparse), then
  scikit-learn's ``LogisticRegression`` (L2, C=1, lbfgs, max_iter=5000, ``random_state=seed``). Reported:
  test accuracy and **macro-F1** (the main metric: every category counts the same).
  Standardising puts every representation (TF-IDF weights, Doc2Vec, 384-d encoder means) on the same
  footing for one fixed C.
- **kNN accuracy** (no training at all): each test document takes the majority label of its k = 5 nearest
  train documents by cosine similarity (``KNeighborsClassifier(5, metric="cosine")``, raw vectors; k is
  lowered to the number of train documents when there are fewer).
- **Clustering NMI**: KMeans with k = number of categories (``n_init=10``, ``random_state=seed``) on the
  L2-normalised test vectors, normalised mutual information with the true categories (arithmetic mean).

The logistic regression of the last evaluation (the one behind ``predictions.tsv``) is saved in the run
folder as ``probe.safetensors`` (:func:`save_probe`: the scaler's ``mean_`` / ``scale_``, the regression's
``coef_`` / ``intercept_`` / ``classes_`` as arrays, the category names in the metadata; no pickle), so
``tunelab predict`` labels new documents with it (:func:`load_probe`: fresh scikit-learn objects given
those attributes, hence exactly the fitted pipeline's ``predict`` / ``predict_proba``).
"""

import json
import os


import numpy as np

KNN_K = 5


def classification_scores(y_true, y_pred) -> dict:
    """{"accuracy", "macro_f1"}."""
    from sklearn.metrics import accuracy_score, f1_score

    return {"accuracy": float(accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, average="macro"))}


PROBE_FILE = "probe.safetensors"


def fit_probe(train_x, train_y, seed: int = 0):
    """The fitted pipeline: StandardScaler (``with_mean=False`` for sparse input) + LogisticRegression."""
    import scipy.sparse as sp
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(with_mean=not sp.issparse(train_x)),
                        LogisticRegression(C=1.0, max_iter=5000, random_state=seed))
    return clf.fit(train_x, train_y)


def logistic_regression_predict(train_x, train_y, test_x, seed: int = 0):
    """Fit standardise + logistic regression on the train vectors; predict the test labels."""
    return fit_probe(train_x, train_y, seed).predict(test_x)


def save_probe(path: str, clf, class_names: list) -> None:
    """Write a :func:`fit_probe` pipeline as safetensors: ``mean`` (zeros when the scaler did not centre),
    ``scale``, ``coef``, ``intercept``, ``classes`` (the class ids it was fitted on); metadata: the names of
    class ids 0.. (``class_names``), whether it centres and scales."""
    from safetensors.numpy import save_file

    scaler, lr = clf[0], clf[-1]
    n = lr.coef_.shape[1]
    scale = scaler.scale_ if scaler.scale_ is not None else np.ones(n)
    mean = scaler.mean_ if scaler.with_mean else np.zeros(n)
    tensors = {"mean": np.ascontiguousarray(mean), "scale": np.ascontiguousarray(scale),
               "coef": np.ascontiguousarray(lr.coef_), "intercept": np.ascontiguousarray(lr.intercept_),
               "classes": np.ascontiguousarray(np.asarray(lr.classes_, dtype=np.int64))}
    meta = {"format": "tunelab docrep probe: StandardScaler + LogisticRegression",
            "class_names": json.dumps([str(c) for c in class_names]),
            "with_mean": json.dumps(bool(scaler.with_mean)), "with_std": json.dumps(bool(scaler.with_std))}
    tmp = path + ".tmp"
    save_file(tensors, tmp, metadata=meta)
    os.replace(tmp, path)


def load_probe(path: str):
    """(pipeline, class names) from :func:`save_probe`'s file: a fresh StandardScaler and
    LogisticRegression given the saved attributes (no refitting, no pickle)."""
    from safetensors import safe_open
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    with safe_open(path, framework="numpy") as f:
        meta = f.metadata() or {}
        t = {k: f.get_tensor(k) for k in f.keys()}
    with_mean = json.loads(meta.get("with_mean", "true"))
    scaler = StandardScaler(with_mean=with_mean, with_std=json.loads(meta.get("with_std", "true")))
    scaler.mean_ = t["mean"] if with_mean else None
    scaler.scale_ = t["scale"]
    scaler.var_ = t["scale"] ** 2
    scaler.n_features_in_ = t["coef"].shape[1]
    scaler.n_samples_seen_ = 0
    lr = LogisticRegression(C=1.0, max_iter=5000)
    lr.coef_, lr.intercept_, lr.classes_ = t["coef"], t["intercept"], t["classes"]
    lr.n_features_in_ = t["coef"].shape[1]
    lr.n_iter_ = np.zeros(1, dtype=np.int32)
    return make_pipeline(scaler, lr), json.loads(meta["class_names"])


def knn_predict(train_x, train_y, test_x, k: int = KNN_K):
    """Labels of a k-nearest-neighbour vote by cosine similarity (no fitting beyond storing vectors)."""
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(n_neighbors=min(k, train_x.shape[0]), metric="cosine", algorithm="brute")
    knn.fit(train_x, train_y)
    return knn.predict(test_x)


def knn_accuracy(train_x, train_y, test_x, test_y, k: int = KNN_K) -> float:
    """Accuracy of :func:`knn_predict`."""
    return float(np.mean(knn_predict(train_x, train_y, test_x, k) == np.asarray(test_y)))


def cluster(x, k: int, seed: int = 0):
    """KMeans(k, n_init=10) cluster ids of the L2-normalised vectors."""
    from sklearn.cluster import KMeans
    from sklearn.preprocessing import normalize

    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(normalize(x))


def cluster_nmi(x, y, seed: int = 0) -> float:
    """NMI between the categories and KMeans(k = #categories) clusters of the L2-normalised vectors."""
    from sklearn.metrics import normalized_mutual_info_score

    clusters = cluster(x, len(set(np.asarray(y).tolist())), seed)
    return float(normalized_mutual_info_score(y, clusters))


def evaluate_vectors(train_x, train_y, test_x, test_y, seed: int = 0, k: int = KNN_K) -> dict:
    """All metrics for one representation: {"accuracy", "macro_f1", "knn_accuracy", "nmi"}
    (accuracy / macro_f1 from the logistic regression; nmi from clustering the test documents)."""
    return evaluate_with_predictions(train_x, train_y, test_x, test_y, seed, k)[0]


def evaluate_with_predictions(train_x, train_y, test_x, test_y, seed: int = 0, k: int = KNN_K) -> tuple:
    """(metrics as :func:`evaluate_vectors`, per test document {"logreg", "knn", "cluster"} arrays): the
    logistic regression's and the kNN vote's predicted labels and the KMeans cluster ids; "probe": the
    fitted logistic regression pipeline (for :func:`save_probe`)."""
    from sklearn.metrics import normalized_mutual_info_score

    probe = fit_probe(train_x, train_y, seed)
    pred = probe.predict(test_x)
    knn = knn_predict(train_x, train_y, test_x, k)
    clusters = cluster(test_x, len(set(np.asarray(test_y).tolist())), seed)
    out = classification_scores(test_y, pred)
    out["knn_accuracy"] = float(np.mean(knn == np.asarray(test_y)))
    out["nmi"] = float(normalized_mutual_info_score(test_y, clusters))
    return out, {"logreg": pred, "knn": knn, "cluster": clusters, "probe": probe}
