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
"""

import numpy as np

KNN_K = 5


def classification_scores(y_true, y_pred) -> dict:
    """{"accuracy", "macro_f1"}."""
    from sklearn.metrics import accuracy_score, f1_score

    return {"accuracy": float(accuracy_score(y_true, y_pred)),
            "macro_f1": float(f1_score(y_true, y_pred, average="macro"))}


def logistic_regression_predict(train_x, train_y, test_x, seed: int = 0):
    """Fit standardise + logistic regression on the train vectors; predict the test labels."""
    import scipy.sparse as sp
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(with_mean=not sp.issparse(train_x)),
                        LogisticRegression(C=1.0, max_iter=5000, random_state=seed))
    clf.fit(train_x, train_y)
    return clf.predict(test_x)


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
    logistic regression's and the kNN vote's predicted labels and the KMeans cluster ids."""
    from sklearn.metrics import normalized_mutual_info_score

    pred = logistic_regression_predict(train_x, train_y, test_x, seed)
    knn = knn_predict(train_x, train_y, test_x, k)
    clusters = cluster(test_x, len(set(np.asarray(test_y).tolist())), seed)
    out = classification_scores(test_y, pred)
    out["knn_accuracy"] = float(np.mean(knn == np.asarray(test_y)))
    out["nmi"] = float(normalized_mutual_info_score(test_y, clusters))
    return out, {"logreg": pred, "knn": knn, "cluster": clusters}
