"""docrep: the BBC reader, the split, chunking, contrastive pairs and loss, document vectors, the
evaluation and the baselines, each against an independent computation on real data or a hand example."""

import math
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import torch

from tunelab.tasks.docrep import baselines, chunks, embed, evaluate, news, objective
from tunelab.errors import UserError

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def bbc(bbc_dir):
    return news.read_bbc(bbc_dir)


@pytest.fixture(scope="module")
def minilm():
    return baselines.load_encoder("minilm")


# --- reading and splitting -------------------------------------------------------------------

def test_read_bbc_counts_and_fallback(bbc_dir, bbc):
    docs, files, info = bbc
    expected = {c: len([f for f in os.listdir(os.path.join(bbc_dir, c)) if f.endswith(".txt")])
                for c in os.listdir(bbc_dir) if os.path.isdir(os.path.join(bbc_dir, c))}
    assert info["per_category"] == expected == dict(Counter(d.label for d in docs))
    assert len(docs) == sum(expected.values()) == 2225
    assert [(f["file"], f["encoding"], f["invalid_utf8_bytes"]) for f in info["fallback_decoded"]] == \
        [("sport/199.txt", "latin-1", 1)]
    by_source = {d.source: d for d in docs}
    assert "£15.8m" in by_source["sport/199.txt"].text
    with open(os.path.join(bbc_dir, "business", "001.txt"), encoding="utf-8") as f:
        assert by_source["business/001.txt"].text == f.read().strip()
    assert list(files) == [os.path.abspath(bbc_dir)] and len(files[os.path.abspath(bbc_dir)]) == 64


def _corpus(root, files: dict) -> str:
    for rel, raw in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(raw)
    return str(root)


def test_read_bad_input_is_one_line_user_error(tmp_path):
    ok = {"a/1.txt": b"one", "b/1.txt": b"two"}
    d = _corpus(tmp_path / "bad", {**ok, "a/2.txt": "caf\u00e9 \u00a3 5".encode("latin-1")})
    with pytest.raises(UserError, match=r"a/2\.txt: not valid UTF-8 at byte offset 3 \(byte 0xe9\)"):
        news.read_bbc(d)
    docs, _, info = news.read_bbc(d, legacy_files={"a/2.txt": "latin-1"})  # a recorded fallback
    assert [x.text for x in docs if x.source == "a/2.txt"] == ["caf\u00e9 \u00a3 5"]
    assert info["fallback_decoded"][0] == {"file": "a/2.txt", "encoding": "latin-1", "invalid_utf8_bytes": 2,
                                           "first_invalid_offset": 3}
    with pytest.raises(UserError, match=r"b/2\.txt: empty file"):
        news.read_bbc(_corpus(tmp_path / "empty", {**ok, "b/2.txt": b" \n"}))
    with pytest.raises(UserError, match="at least 2 categories"):
        news.read_bbc(_corpus(tmp_path / "one", {"a/1.txt": b"x", "a/2.txt": b"y"}))
    docs, _, _ = news.read_bbc(_corpus(tmp_path / "single", {**ok, "b/2.txt": b"three"}))
    with pytest.raises(UserError, match="category 'a' has 1 document"):
        news.stratified_split([x.label for x in docs], 0.2, 0)


def test_read_table_csv(tmp_path):
    p = tmp_path / "news.csv"
    p.write_text('category,body\nsport,"a goal, late"\ntech,chips\n', encoding="utf-8")
    docs, _, info = news.read_table(str(p), text_column="body", label_column="category")
    assert [(d.text, d.label, d.source) for d in docs] == [("a goal, late", "sport", "news.csv:2"),
                                                          ("chips", "tech", "news.csv:3")]
    with pytest.raises(UserError, match=r"news\.csv:2: needs columns 'text' and 'label'"):
        news.read_table(str(p))


def test_hub_offline_is_one_line_user_error():
    code = ("from tunelab.tasks.docrep.news import load_hub\n"
            "try:\n    load_hub()\nexcept Exception as e:\n    print(type(e).__name__, e)\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("UserError cannot load SetFit/bbc-news from the hub"), out


def test_split_is_stratified_and_deterministic(bbc):
    labels = [d.label for d in bbc[0]]
    tr, te, info = news.stratified_split(labels, 0.2, 0)
    assert sorted(tr + te) == list(range(len(labels))) and not set(tr) & set(te)
    assert len(te) == math.ceil(0.2 * len(labels))  # sklearn rounds the test size up
    for cat, n in Counter(labels).items():
        n_test = sum(labels[i] == cat for i in te)
        assert abs(n_test - 0.2 * n) <= 1, cat
        assert info["per_category_train_test"][cat] == [n - n_test, n_test]
    assert news.stratified_split(labels, 0.2, 0)[1] == te == info["test_indices"]
    assert news.stratified_split(labels, 0.2, 1)[1] != te


# --- chunking --------------------------------------------------------------------------------

def test_chunk_ids_hand_example():
    assert chunks.chunk_ids(list(range(10)), 6, [101], [102]) == \
        [[101, 0, 1, 2, 102], [101, 3, 4, 5, 102], [101, 6, 7, 8, 9, 102]]
    assert chunks.chunk_ids([], 6, [101], [102]) == [[101, 102]]
    assert chunks.truncate_ids(list(range(10)), 6, [101], [102]) == [101, 0, 1, 2, 3, 102]


def test_chunking_uses_every_token(bbc, minilm):
    _, tok = minilm
    docs = bbc[0]
    texts = [d.text for d in docs[::50]] + [max((d.text for d in docs), key=len)]
    assert chunks.special_tokens(tok) == ([tok.cls_token_id], [tok.sep_token_id])
    for length in (128, 512):
        per_doc = chunks.chunk_documents(tok, texts, length)
        for text, cs in zip(texts, per_doc):
            full = tok(text, truncation=False, verbose=False)["input_ids"]  # independent: one pass, with specials
            assert sum(len(c) - 2 for c in cs) == len(full) - 2
            assert [t for c in cs for t in c[1:-1]] == full[1:-1]
            assert all(c[0] == tok.cls_token_id and c[-1] == tok.sep_token_id and len(c) <= length for c in cs)
            sizes = [len(c) for c in cs]
            assert max(sizes) - min(sizes) <= 1 and len(cs) == math.ceil((len(full) - 2) / (length - 2))
    counts = [len(tok(t, truncation=False, verbose=False)["input_ids"]) for t in texts]
    rep = chunks.length_report([c - 2 for c in counts], (128, 512))
    assert rep["over_128"] == sum(c > 128 for c in counts) and rep["over_512"] == sum(c > 512 for c in counts)
    assert chunks.model_length(tok, minilm[0].config) == 512


# --- contrastive objective -------------------------------------------------------------------

def _toy_docs():
    """Doc d, chunk c: [101, 1000 + 10 d + c, ... (length varies), 102]; docs have 1 to 3 chunks."""
    return [[[101] + [1000 + 10 * d + c] * (2 + (d + c) % 4) + [102] for c in range(1 + d % 3)] for d in range(11)]


@pytest.mark.parametrize("obj", ["declutr", "simcse"])
def test_pair_batches_pair_only_chunks_of_one_document(obj):
    docs = _toy_docs()
    batches = list(objective.pair_batches(docs, 4, torch.Generator().manual_seed(0), obj))
    assert len(batches) == objective.batches_per_epoch(len(docs), 4) == 3  # 4 + 4 + 3
    seen = []
    for b in batches:
        n = len(b["doc_index"])
        ids, mask = b["input_ids"], b["attention_mask"]
        assert ids.shape[0] == 2 * n and len(set(b["doc_index"].tolist())) == n  # no document twice
        for r, d in enumerate(b["doc_index"].tolist()):
            first = ids[r][mask[r] == 1].tolist()
            second = ids[n + r][mask[n + r] == 1].tolist()
            assert first in docs[d] and second in docs[d]  # both views from document d
            ca, cb = b["chunk_index"][r].tolist()
            assert first == docs[d][ca] and second == docs[d][cb]
            assert (ca != cb) == (obj == "declutr" and len(docs[d]) >= 2)
        seen += b["doc_index"].tolist()
    assert sorted(seen) == list(range(len(docs)))
    again = list(objective.pair_batches(docs, 4, torch.Generator().manual_seed(0), obj))
    assert all(torch.equal(x["input_ids"], y["input_ids"]) for x, y in zip(batches, again))


def test_info_nce_hand_example():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    b = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    t = 0.5

    def cos(u, v):
        return sum(x * y for x, y in zip(u, v)) / math.sqrt(sum(x * x for x in u) * sum(y * y for y in v))

    s = [[cos(a[i].tolist(), b[j].tolist()) / t for j in range(3)] for i in range(3)]
    rows = [-s[i][i] + math.log(sum(math.exp(x) for x in s[i])) for i in range(3)]
    cols = [-s[j][j] + math.log(sum(math.exp(s[i][j]) for i in range(3))) for j in range(3)]
    expected = (sum(rows) / 3 + sum(cols) / 3) / 2
    assert objective.info_nce(a, b, t).item() == pytest.approx(expected, rel=1e-6)

    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    assert objective.mean_pool(hidden, torch.tensor([[1, 1, 0]])).tolist() == [[2.0, 3.0]]


def test_contrastive_step_changes_weights_and_lowers_loss(bbc, minilm):
    _, tok = minilm
    model = baselines.load_encoder("minilm")[0]  # a private copy: this test trains it
    docs_chunks = chunks.chunk_documents(tok, [d.text for d in bbc[0][:400:50]], 48)
    batch = next(objective.pair_batches(docs_chunks, 8, torch.Generator().manual_seed(0)))
    assert len(batch["doc_index"]) == 8 and (batch["chunk_index"][:, 0] != batch["chunk_index"][:, 1]).all()
    weight = model.encoder.layer[0].attention.self.query.weight
    before_w = weight.detach().clone()
    model.eval()  # no dropout: the same loss both times
    with torch.no_grad():
        before = objective.contrastive_loss(model, batch).item()
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5)
    objective.contrastive_loss(model, batch).backward()
    opt.step()
    model.eval()
    with torch.no_grad():
        after = objective.contrastive_loss(model, batch).item()
    assert not torch.equal(before_w, weight.detach())
    assert after < before, (before, after)


# --- document vectors ------------------------------------------------------------------------

def test_document_vectors_are_means_of_unbatched_chunk_vectors(bbc, minilm):
    model, tok = minilm
    texts = [d.text for d in bbc[0][:3]]
    per_doc = chunks.chunk_documents(tok, texts, 128)
    got = embed.document_vectors(model, per_doc, batch_size=4)
    with torch.no_grad():  # independent: each chunk alone (no padding), sentence-transformers-style mean
        for d, cs in enumerate(per_doc):
            vecs = []
            for c in cs:
                h = model(input_ids=torch.tensor([c])).last_hidden_state[0]
                vecs.append(h.mean(0).numpy())
            np.testing.assert_allclose(got[d], np.mean(vecs, 0), atol=2e-5)
    ids = chunks.tokenize_documents(tok, texts[:1])
    trunc = embed.truncated_vectors(model, tok, ids, 64)
    with torch.no_grad():
        first = tok(texts[0], truncation=True, max_length=64, return_tensors="pt")
        np.testing.assert_allclose(trunc[0], model(**first).last_hidden_state[0].mean(0).numpy(), atol=2e-5)


# --- evaluation and baselines ----------------------------------------------------------------

def test_evaluation_metrics_match_hand_and_sklearn():
    from sklearn.metrics import f1_score, normalized_mutual_info_score

    y, p = ["a", "a", "b", "b", "c", "c"], ["a", "b", "b", "b", "c", "a"]
    s = evaluate.classification_scores(y, p)
    f1_a, f1_b, f1_c = 2 * .5 * .5 / 1, 2 * (2 / 3) * 1 / (2 / 3 + 1), 2 * 1 * .5 / 1.5  # hand: P, R per class
    assert s["accuracy"] == pytest.approx(4 / 6)
    assert s["macro_f1"] == pytest.approx((f1_a + f1_b + f1_c) / 3) == pytest.approx(f1_score(y, p, average="macro"))

    # cosine 3-NN by hand: train directions at 0, 10, 20 degrees (label x) and 80, 90, 100, 170 (label y)
    ang = np.radians([0, 10, 20, 80, 90, 100, 170])
    tr = np.stack([np.cos(ang), np.sin(ang)], 1) * np.array([[1], [3], [2], [1], [5], [1], [2]])
    ty = ["x", "x", "x", "y", "y", "y", "y"]
    te_ang = np.radians([5, 62, 95, 38])
    te = np.stack([np.cos(te_ang), np.sin(te_ang)], 1)
    sims = (te / np.linalg.norm(te, axis=1, keepdims=True)) @ (tr / np.linalg.norm(tr, axis=1, keepdims=True)).T
    votes = [Counter(ty[j] for j in np.argsort(-row)[:3]).most_common(1)[0][0] for row in sims]
    assert votes == ["x", "y", "y", "x"]
    assert evaluate.knn_accuracy(tr, ty, te, ["x", "x", "y", "x"], k=3) == pytest.approx(3 / 4)

    # three tight blobs, one point labelled into the wrong category: NMI of the blob clustering
    rng = np.random.RandomState(0)
    centers = np.array([[10, 0, 0], [0, 10, 0], [0, 0, 10]], float)
    blob = np.repeat(np.arange(3), 10)
    x = centers[blob] + rng.normal(scale=0.1, size=(30, 3))
    labels = blob.copy()
    labels[0] = 1
    assert evaluate.cluster_nmi(x, labels, seed=0) == pytest.approx(normalized_mutual_info_score(labels, blob))

    # logistic regression on the same blobs: separable, so perfect on fresh points from each blob
    test_x = centers + 0.1
    m = evaluate.evaluate_vectors(x, blob, test_x, [0, 1, 2], seed=0, k=3)
    assert m["accuracy"] == m["macro_f1"] == m["knn_accuracy"] == m["nmi"] == 1.0


def test_tfidf_and_doc2vec_baselines(bbc, bbc_dir):
    docs = bbc[0][::40]
    train, test = [d.text for d in docs[:40]], [d.text for d in docs[40:]]
    xtr, xte = baselines.baseline_vectors("tfidf", train, test)
    assert xtr.shape[0] == 40 and xte.shape == (len(test), xtr.shape[1])
    np.testing.assert_allclose(np.asarray(xtr.multiply(xtr).sum(1)).ravel(), 1.0, rtol=1e-6)  # l2 rows
    with pytest.raises(UserError, match="unknown docrep baseline 'bm25'"):
        baselines.baseline_vectors("bm25", train, test)
    # Doc2Vec: the same vectors in two processes with different hash salts (training and inference)
    code = ("import sys, numpy as np; from tunelab.tasks.docrep.baselines import doc2vec_vectors\n"
            "from tunelab.tasks.docrep.news import read_bbc\n"
            "d = [x.text for x in read_bbc(sys.argv[1])[0][::40]]\n"
            "a, b = doc2vec_vectors(d[:40], d[40:], seed=0, epochs=5)\n"
            "print(a.shape, b.shape, np.round(np.r_[a[0], b[0]], 6).tolist())\n")
    outs = []
    for salt in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": salt}
        r = subprocess.run([sys.executable, "-c", code, bbc_dir], capture_output=True,
                           text=True, env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        outs.append(r.stdout)
    assert outs[0] == outs[1] and outs[0].startswith(f"(40, 100) ({len(test)}, 100)")
