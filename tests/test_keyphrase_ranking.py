"""Keyphrase F1@5 / F1@10 rank candidate spans by probability (issue 22): a model that tags fewer than k
phrases is still scored on k candidates, its tagged phrases first; F1@M stays the tagged (argmax) phrases."""

import itertools

import numpy as np
import pytest

from tunelab.tasks.keyphrase.data import decode_spans, phrase_key, rank_candidates
from tunelab.tasks.keyphrase.metrics import keyphrase_scores

WORDS = ["deep", "neural", "networks", "for", "graph", "theory", ",", "and", "kernels"]
#                 O     B     I
PROBS = np.array([[0.75, 0.20, 0.05],   # deep
                  [0.10, 0.80, 0.10],   # neural    B  (argmax)
                  [0.20, 0.10, 0.70],   # networks  I  -> the one argmax span "neural networks"
                  [0.90, 0.05, 0.05],   # for
                  [0.50, 0.45, 0.05],   # graph
                  [0.55, 0.05, 0.40],   # theory
                  [0.40, 0.30, 0.30],   # ,         never inside a candidate (no letter or digit)
                  [0.95, 0.03, 0.02],   # and
                  [0.85, 0.10, 0.05]])  # kernels


def brute_force(words, probs, max_words=6):
    """Every span without a punctuation-only word, by P(B) * prod P(I) * (1 - P(I) of the next word)."""
    out = []
    for s, e in itertools.combinations(range(len(words) + 1), 2):
        if e - s > max_words or not all(any(c.isalnum() for c in w) for w in words[s:e]):
            continue
        p = probs[s, 1] * np.prod(probs[s + 1:e, 2]) * (1 - probs[e, 2] if e < len(words) else 1.0)
        out.append((" ".join(words[s:e]), p, s))
    return sorted(out, key=lambda t: (-t[1], t[2]))


def test_at_k_gets_k_candidates_when_the_model_tags_fewer():
    spans = decode_spans(WORDS, PROBS)
    assert [s["phrase"] for s in spans] == ["neural networks"]  # the model tags one phrase
    ranked = rank_candidates(WORDS, PROBS, k=5)
    assert len(ranked) == 5 and ranked[0]["phrase"] == "neural networks" and ranked[0]["argmax"]
    assert not any(r["argmax"] for r in ranked[1:])
    # the others: the most probable spans, as an independent brute force ranks them (stemmed duplicates skipped)
    seen, expect = {phrase_key("neural networks")}, []
    for phrase, p, _ in brute_force(WORDS, PROBS):
        if phrase_key(phrase) not in seen:
            seen.add(phrase_key(phrase))
            expect.append((phrase, p))
    assert [(r["phrase"], r["score"]) for r in ranked[1:]] == [(ph, pytest.approx(p)) for ph, p in expect[:4]]
    assert [r["phrase"] for r in ranked[1:]] == ["graph", "neural", "deep", "graph theory"]
    assert ranked[1]["score"] == pytest.approx(0.45 * (1 - 0.40))  # P(B graph) * (1 - P(I theory))
    assert all("," not in r["phrase"] for r in rank_candidates(WORDS, PROBS, k=100))
    # a text with fewer candidate spans than k gives them all
    assert [r["phrase"] for r in rank_candidates(["graph", ","], PROBS[4:6][[0, 1]], k=10)] == ["graph"]


def test_f1_at_k_uses_the_ranked_list_and_f1_at_m_the_tagged_phrases():
    ranked = [r["phrase"] for r in rank_candidates(WORDS, PROBS, k=10)]
    tagged = [s["phrase"] for s in decode_spans(WORDS, PROBS)]
    gold = ["neural network", "graph theory"]
    assert "graph theory" in ranked[:5]
    new, old = keyphrase_scores([tagged], [gold], [ranked]), keyphrase_scores([tagged], [gold])
    assert new["r@5"] == 1.0 and old["r@5"] == 0.5  # before: scored on the one tagged phrase only
    assert new["p@5"] == pytest.approx(2 / 5) and old["p@5"] == pytest.approx(1 / 5)
    assert new["f1@M"] == old["f1@M"] == pytest.approx(2 * 1.0 * 0.5 / 1.5)  # @M: the tagged phrase alone
    # a model that tags nothing is still ranked (the 24-papers case of the issue): @M 0, @k not
    nothing = np.tile([[0.9, 0.06, 0.04]], (len(WORDS), 1))
    assert decode_spans(WORDS, nothing) == [] and len(rank_candidates(WORDS, nothing, k=5)) == 5
