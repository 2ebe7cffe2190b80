"""Keyphrase data and metrics: reading, splits, BIO labels, windows, decoding, P/R/F1@k (issue 9)."""

import hashlib
import os
import re
from pathlib import Path

import numpy as np
import pytest

from tunelab.errors import UserError
from tunelab.tasks.keyphrase.data import (LABEL2ID, bio_labels, decode_keyphrases, decode_spans, encode_windows,
                                          find_dataset, merge_word_probs, phrase_key, presence_counts,
                                          read_keyphrase_dir, split_docs, stem_word, tokenize_words)
from tunelab.tasks.keyphrase.metrics import keyphrase_scores


@pytest.fixture(scope="module")
def inspec(kp_root):
    return read_keyphrase_dir(find_dataset(kp_root, "inspec"))


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from tunelab.models.aliases import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model("minilm"))


# --- reading ---

def test_read_inspec_counts_match_the_files(kp_root, inspec):
    docs, files = inspec
    folder = kp_root / "Inspec"
    txt = sorted(f for f in os.listdir(folder / "docsutf8") if f.endswith(".txt"))
    key = sorted(f for f in os.listdir(folder / "keys") if f.endswith(".key"))
    assert len(docs) == len(txt) == len(key) == 2000
    assert [d.id for d in docs] == sorted(f[:-4] for f in txt)
    # non-empty key lines, counted on the raw bytes (CRLF / tab-prefixed lines included)
    n_lines = sum(1 for f in key for line in re.split(rb"\r\n|\r|\n", (folder / "keys" / f).read_bytes())
                  if line.strip())
    assert sum(len(d.keys) for d in docs) == n_lines == 28220  # SOURCE.md's count
    assert len(files) == 4000
    some = str((folder / "keys" / key[0]).resolve())
    assert files[some] == hashlib.sha256(Path(some).read_bytes()).hexdigest()
    d2 = next(d for d in docs if d.id == "2")
    assert d2.text.startswith("Waiting for the wave to crest [wavelength services]\nWavelength")
    assert "\r" not in d2.text
    assert all(k == k.strip() and k for d in docs for k in d.keys)
    d100 = next(d for d in docs if d.id == "100")  # its key file has a tab-prefixed line "\tinvestment"
    assert b"\tinvestment" in (folder / "keys" / "100.key").read_bytes() and "investment" in d100.keys


def test_find_dataset_accepts_parent_or_dataset_folder(kp_root):
    assert find_dataset(kp_root, "kdd") == kp_root / "kdd"
    assert find_dataset(kp_root / "www", "www") == kp_root / "www"
    with pytest.raises(UserError, match="no nope/docsutf8"):
        find_dataset(kp_root, "nope")


def _write(folder: Path, name: str, data: bytes):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


def test_malformed_folders_name_the_file(tmp_path):
    ok = tmp_path / "ok"
    _write(ok / "docsutf8", "1.txt", b"A title\r\nSome text about graphs.\r\n")
    _write(ok / "keys", "1.key", b"graphs\r\n\tgraph theory\r\n\r\n")
    docs, files = read_keyphrase_dir(ok)
    assert docs[0].keys == ["graphs", "graph theory"] and docs[0].text == "A title\nSome text about graphs.\n"

    orphan = tmp_path / "orphan"
    _write(orphan / "docsutf8", "1.txt", b"text")
    _write(orphan / "keys", "1.key", b"k")
    _write(orphan / "keys", "2.key", b"k")
    with pytest.raises(UserError, match=r"2\.key: key file without its document"):
        read_keyphrase_dir(orphan)

    nokey = tmp_path / "nokey"
    _write(nokey / "docsutf8", "1.txt", b"text")
    _write(nokey / "keys", "x.key", b"k")
    _write(nokey / "docsutf8", "x.txt", b"text")
    with pytest.raises(UserError, match=r"1\.txt: document without its key file"):
        read_keyphrase_dir(nokey)

    bad = tmp_path / "bad"
    _write(bad / "docsutf8", "1.txt", b"line one\nline two \xff\xfe\n")
    _write(bad / "keys", "1.key", b"k")
    with pytest.raises(UserError, match=r"1\.txt: line 2: not valid UTF-8"):
        read_keyphrase_dir(bad)

    empty = tmp_path / "empty"
    _write(empty / "docsutf8", "1.txt", b" \r\n\t\n")
    _write(empty / "keys", "1.key", b"k")
    with pytest.raises(UserError, match=r"1\.txt: empty document"):
        read_keyphrase_dir(empty)

    nokeys = tmp_path / "nokeys"
    _write(nokeys / "docsutf8", "1.txt", b"text")
    _write(nokeys / "keys", "1.key", b"\r\n \t\r\n")
    with pytest.raises(UserError, match=r"1\.key: no keyphrases"):
        read_keyphrase_dir(nokeys)

    with pytest.raises(UserError, match="not a keyphrase dataset folder"):
        read_keyphrase_dir(tmp_path)


# --- splits ---

def test_inspec_split_is_the_original_one(inspec):
    docs, _ = inspec
    parts, rule = split_docs(docs, "inspec", seed=0)
    assert {s: len(p) for s, p in parts.items()} == {"train": 1000, "validation": 500, "test": 500} == rule["sizes"]
    ids = {s: {d.id for d in p} for s, p in parts.items()}
    assert not (ids["train"] & ids["validation"]) and not (ids["train"] & ids["test"])
    assert ids["train"] | ids["validation"] | ids["test"] == {d.id for d in docs}
    # membership checked in boudinfl/ake-datasets' Inspec train/dev/test folders
    assert {"2", "4", "41", "193", "414", "2200"} <= ids["test"]
    assert {"15", "19", "192", "1461", "1929"} <= ids["validation"]
    assert {"9", "11", "146", "538", "999", "1460"} <= ids["train"]
    again, rule2 = split_docs(list(reversed(docs)), "inspec", seed=7)  # order and seed do not matter
    assert {s: [d.id for d in p] for s, p in again.items()} == {s: [d.id for d in p] for s, p in parts.items()}
    assert rule2["ids_sha256_16"] == rule["ids_sha256_16"]


def test_seeded_split_is_deterministic_and_document_level(kp_root):
    docs, _ = read_keyphrase_dir(kp_root / "kdd")
    parts, rule = split_docs(docs, "kdd", seed=0)
    n = len(docs)
    assert rule["sizes"] == {"train": n - 2 * round(0.15 * n), "validation": round(0.15 * n), "test": round(0.15 * n)}
    same, _ = split_docs(list(reversed(docs)), "kdd", seed=0)
    other, _ = split_docs(docs, "kdd", seed=1)
    assert [d.id for d in same["test"]] == [d.id for d in parts["test"]]
    assert [d.id for d in other["test"]] != [d.id for d in parts["test"]]
    assert sorted(d.id for p in parts.values() for d in p) == sorted(d.id for d in docs)


# --- labels ---

def test_bio_labels_hand_example():
    words = tokenize_words("Deep neural networks for keyphrase extraction. Neural network models extract keyphrases.")
    assert words == ["Deep", "neural", "networks", "for", "keyphrase", "extraction", ".",
                     "Neural", "network", "models", "extract", "keyphrases", "."]
    keys = ["neural network", "keyphrase extraction", "deep neural networks", "network", "graph theory",
            "Neural Networks"]  # the last one duplicates the first after stemming
    labels, n_present, n_absent = bio_labels(words, keys)
    assert labels == ["B", "I", "I", "O", "B", "I", "O", "B", "I", "O", "O", "O", "O"]
    # present: neural network (stemmed match of "networks"), keyphrase extraction, deep neural networks,
    # network (inside the longer ones); absent: graph theory
    assert (n_present, n_absent) == (4, 1)
    assert stem_word("Networks") == stem_word("network") == "network"
    assert tokenize_words("graph-based user's (0,1)-matrix") == ["graph-based", "user's", "(", "0", ",", "1", ")",
                                                                 "-", "matrix"]


def test_absent_share_matches_a_string_search(kp_root):
    docs, _ = read_keyphrase_dir(kp_root / "kdd")
    got = presence_counts(docs)
    present = absent = 0  # independent: substring search in the space-joined stemmed text
    for d in docs:
        text = " " + " ".join(stem_word(w) for w in tokenize_words(d.text)) + " "
        keys = {" ".join(stem_word(w) for w in tokenize_words(k)) for k in d.keys} - {""}
        hits = sum(1 for k in keys if f" {k} " in text)
        present += hits
        absent += len(keys) - hits
    assert (got["n_present"], got["n_absent"]) == (present, absent)
    assert got["absent_share"] == pytest.approx(absent / (present + absent))
    assert 0.3 < got["absent_share"] < 0.9  # author keywords of KDD abstracts: most are absent


# --- windows ---

def _tokens_per_word(tokenizer, words):
    return [len(tokenizer(w, add_special_tokens=False)["input_ids"]) for w in words]


def test_windows_label_first_subtokens_and_cover_every_word(inspec, tokenizer):
    docs, _ = inspec
    doc = max(docs, key=lambda d: len(d.words))  # the longest abstract: several windows at 128 tokens
    labels, _, _ = bio_labels(doc.words, doc.keys)
    assert "B" in labels
    wins = encode_windows(doc.words, labels, tokenizer, max_length=128, stride=32)
    assert len(wins) >= 4
    per_word = _tokens_per_word(tokenizer, doc.words)
    seen = set()
    for win in wins:
        ids, lab, wid = win["input_ids"], win["labels"], win["word_ids"]
        assert len(ids) == len(lab) == len(wid) == len(win["attention_mask"]) <= 128
        assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
        assert wid[0] == wid[-1] == -1 and lab[0] == lab[-1] == -100
        inner = wid[1:-1]
        words_here = sorted(set(inner))
        assert words_here == list(range(words_here[0], words_here[-1] + 1))  # consecutive whole words
        assert inner == [w for w in words_here for _ in range(per_word[w])]
        for t, w in enumerate(wid):
            if w < 0:
                continue
            first = wid[t - 1] != w
            assert lab[t] == (LABEL2ID[labels[w]] if first else -100)
        seen.update(words_here)
    assert seen == set(range(len(doc.words)))
    for a, b in zip(wins, wins[1:]):  # overlap of at most `stride` tokens, at least one word
        shared = set(a["word_ids"]) & set(b["word_ids"]) - {-1}
        assert shared and sum(per_word[w] for w in shared) <= 32
    # at the model's 512 tokens: this 671-token abstract needs two windows, a short one a single window
    assert sum(per_word) > 510 and len(encode_windows(doc.words, labels, tokenizer, 512, 128)) == 2
    short = docs[0]
    assert sum(_tokens_per_word(tokenizer, short.words)) <= 510
    assert len(encode_windows(short.words, None, tokenizer, 512, 128)) == 1


def test_merge_word_probs_averages_overlapping_windows(inspec, tokenizer):
    docs, _ = inspec
    doc = max(docs, key=lambda d: len(d.words))
    wins = encode_windows(doc.words, None, tokenizer, max_length=64, stride=24)
    assert all(lab == -100 for w in wins for lab in w["labels"])
    # window i predicts [i, 1, 0] on every token (padded to a common length, as a batch would be)
    width = max(len(w["input_ids"]) for w in wins) + 3
    probs = [np.tile([float(i), 1.0, 0.0], (width, 1)) for i in range(len(wins))]
    merged = merge_word_probs(wins, probs, len(doc.words))
    for w in range(len(doc.words)):
        containing = [i for i, win in enumerate(wins) if w in win["word_ids"]]
        assert merged[w, 0] == pytest.approx(np.mean(containing))
    assert any(len([i for i, win in enumerate(wins) if w in win["word_ids"]]) == 2 for w in range(len(doc.words)))
    # a word no window covers falls back to O
    extra = merge_word_probs(wins, probs, len(doc.words) + 1)
    assert list(extra[-1]) == [1.0, 0.0, 0.0]


# --- decoding ---

def test_decode_hand_example():
    words = ["neural", "networks", "are", "network", "models", "neural", "network", "graphs", "theory"]
    #                O     B     I
    probs = np.array([[0.1, 0.8, 0.1],    # neural   B
                      [0.2, 0.1, 0.7],    # networks I   -> "neural networks" 0.85
                      [0.9, 0.05, 0.05],  # are      O
                      [0.3, 0.2, 0.5],    # network  I without B: starts a span
                      [0.4, 0.1, 0.5],    # models   I   -> "network models" mean(0.7, 0.6) = 0.65
                      [0.05, 0.9, 0.05],  # neural   B
                      [0.1, 0.05, 0.85],  # network  I   -> "neural network" 0.925, same stem as "neural networks"
                      [0.2, 0.7, 0.1],    # graphs   B   -> "graphs" 0.8
                      [0.3, 0.6, 0.1]])   # theory   B   -> "theory" 0.7 (B after B: a new span)
    spans = decode_spans(words, probs)
    assert [s["phrase"] for s in spans] == ["neural network", "graphs", "theory", "network models"]
    assert [s["score"] for s in spans] == pytest.approx([0.925, 0.8, 0.7, 0.65])
    assert (spans[0]["start"], spans[0]["end"]) == (5, 7)
    assert decode_keyphrases(words, probs) == ["neural network", "graphs", "theory", "network models"]
    assert decode_keyphrases(["a", "b"], np.array([[1.0, 0, 0], [0.9, 0.05, 0.05]])) == []


# --- metrics ---

def test_metrics_hand_example():
    gold_a = ["neural networks", "Neural Network", "keyphrase extraction", "deep learning", "BERT"]  # 4 distinct
    pred_a = ["neural network", "networks", "keyphrase extractions", "Neural Networks", "transformer", "BERT",
              "attention", "deep learning"]  # 7 distinct; correct at ranks 1, 3, 5, 7
    gold_b = ["support vector machine", "kernel"]
    pred_b = ["kernels", "svm"]  # fewer than 5 predictions: P@5 still divides by 5
    s = keyphrase_scores([pred_a, pred_b], [gold_a, gold_b])
    f = lambda p, r: 2 * p * r / (p + r)  # noqa: E731
    # doc A: @5 3 correct of 5 (R 3/4); @10 4 correct (P 4/10, R 1); @M 4 of 7
    # doc B: @5 1 correct (P 1/5, R 1/2); @10 P 1/10; @M 1 of 2
    assert s["p@5"] == pytest.approx((3 / 5 + 1 / 5) / 2)
    assert s["r@5"] == pytest.approx((3 / 4 + 1 / 2) / 2)
    assert s["f1@5"] == pytest.approx((f(3 / 5, 3 / 4) + f(1 / 5, 1 / 2)) / 2)
    assert s["p@10"] == pytest.approx((4 / 10 + 1 / 10) / 2)
    assert s["r@10"] == pytest.approx((1 + 1 / 2) / 2)
    assert s["f1@10"] == pytest.approx((f(4 / 10, 1) + f(1 / 10, 1 / 2)) / 2)
    assert s["p@M"] == pytest.approx((4 / 7 + 1 / 2) / 2)
    assert s["r@M"] == pytest.approx((1 + 1 / 2) / 2)
    assert s["f1@M"] == pytest.approx((8 / 11 + 1 / 2) / 2)
    assert s["f1@10"] == pytest.approx(0.369048, abs=1e-6)
    # a document with no gold key scores 0 and counts in the mean; no prediction at all gives 0 too
    s2 = keyphrase_scores([pred_a, ["x"], []], [gold_a, [], ["y"]])
    assert s2["f1@M"] == pytest.approx(f(4 / 7, 1) / 3)
    assert keyphrase_scores([], []) == {k: 0.0 for k in s}
    assert phrase_key("Keyphrase Extractions") == phrase_key("keyphrase extraction") == ("keyphras", "extract")


def test_yake_baseline_on_inspec_test(inspec):
    from tunelab.tasks.keyphrase.baselines import yake_keyphrases

    docs, _ = inspec
    test = split_docs(docs, "inspec")[0]["test"]
    preds = [yake_keyphrases(d.text, 10) for d in test]
    assert all(1 <= len(p) <= 10 for p in preds)
    s = keyphrase_scores(preds, [d.keys for d in test])
    assert 0.10 < s["f1@10"] < 0.30  # 0.1705 measured (all gold keys, controlled + uncontrolled)


def test_keybert_baseline_extracts_words_of_the_document(inspec):
    from tunelab.tasks.keyphrase.baselines import keybert_keyphrases

    docs, _ = inspec
    test = split_docs(docs, "inspec")[0]["test"][:3]
    preds = keybert_keyphrases([d.text for d in test], n=5)
    assert len(preds) == 3 and all(1 <= len(p) <= 5 for p in preds)
    for d, p in zip(test, preds):
        doc_words = set(re.findall(r"\w+", d.text.lower()))  # CountVectorizer splits "out-of-print"
        assert all(w in doc_words for phrase in p for w in phrase.split())
    assert keybert_keyphrases([test[0].text], n=5) == [preds[0]]  # one text: still a list of lists


def test_load_hub_online_or_one_clear_line():
    from tunelab.tasks.keyphrase.data import load_hub

    with pytest.raises(UserError, match="known are inspec, kdd, www"):
        load_hub("semeval")
    try:
        splits, source = load_hub("kdd")
    except UserError as e:  # offline (this machine, CI): one line naming the repo and the offline way
        msg = str(e)
        assert "\n" not in msg and "midas/kdd" in msg and "--data-dir" in msg
    else:  # online: the hub copy of KDD has its 755 documents in one test file
        assert source["hub"] == "midas/kdd" and list(splits) == ["test"]
        assert len(splits["test"]) == 755 and all(d.keys and d.words for d in splits["test"])
