"""Keyphrase metrics: P / R / F1 at 5, 10 and M (all predictions), macro over documents.

Conventions (the keyphrase literature's; Meng et al. 2017 and its OpenNMT-kpg evaluation code,
Chan et al. 2019, Yuan et al. 2020):
- Matching: exact match of the whole phrase after lower-casing and Porter-stemming every word of both
  sides (words as in keyphrase_data.tokenize_words, so "Neural Networks" == "neural network").
- Gold and predicted lists are deduplicated after stemming (predictions keep their first, best-ranked
  occurrence; empty phrases are dropped) before cutting at k.
- P@k = correct in the top k / k, also when fewer than k phrases are predicted (the "hard cutoff" of
  OpenNMT-kpg's p_hard, the F1@5 "with padding" of Chan et al. / Yuan et al.): a system is not rewarded
  for predicting little. P@M = correct / number predicted (0 when nothing is predicted).
- R@k = correct in the top k / number of distinct gold keys (present and absent: absent keys count
  against recall, as in the papers that report all gold keys).
- F1@k per document = harmonic mean of that document's P@k and R@k (0 when both are 0); every score is
  the mean over documents (macro). A document with no gold key scores 0 everywhere (as OpenNMT-kpg does)
  and still counts in the mean; the LIAAD data has none (read_keyphrase_dir refuses empty key files).
"""

from .data import phrase_key

KS = (5, 10)
METRIC_NAMES = tuple(f"{m}@{k}" for k in (*KS, "M") for m in ("f1", "p", "r"))
MAIN_METRIC = "f1@10"


def dedupe(phrases) -> list:
    """Stemmed keys of `phrases`, duplicates and empty phrases removed, order kept."""
    out, seen = [], set()
    for p in phrases:
        k = phrase_key(p)
        if k and k not in seen:
            seen.add(k)
            out.append(k)
    return out


def _prf(pred_keys, gold_set, cutoff):
    """(P, R, F1) of one document; cutoff = an int k or None for M (all predicted)."""
    if not gold_set:
        return 0.0, 0.0, 0.0
    top = pred_keys if cutoff is None else pred_keys[:cutoff]
    correct = sum(1 for k in top if k in gold_set)
    denom = len(top) if cutoff is None else cutoff
    p = correct / denom if denom else 0.0
    r = correct / len(gold_set)
    f = 2 * p * r / (p + r) if p + r > 0 else 0.0
    return p, r, f


def keyphrase_scores(pred_lists, gold_lists, ranked_lists=None) -> dict:
    """Macro P/R/F1 @5, @10, @M over documents. pred_lists[i]: the predicted phrases of document i (@M:
    all of them); gold_lists[i]: its gold keyphrases; ranked_lists[i]: the ranked list @5 / @10 cut (the
    fine-tuned model's: its argmax phrases, then its most probable other spans, data.rank_candidates),
    default pred_lists[i] (a ranked extractor such as YAKE). Keys: f1@5 p@5 r@5 f1@10 p@10 r@10 f1@M p@M r@M
    (main: f1@10)."""
    if len(pred_lists) != len(gold_lists):
        raise ValueError(f"keyphrase_scores: {len(pred_lists)} prediction lists for {len(gold_lists)} documents")
    ranked_lists = pred_lists if ranked_lists is None else ranked_lists
    if len(ranked_lists) != len(gold_lists):
        raise ValueError(f"keyphrase_scores: {len(ranked_lists)} ranked lists for {len(gold_lists)} documents")
    sums = {name: 0.0 for name in METRIC_NAMES}
    for preds, ranked, gold in zip(pred_lists, ranked_lists, gold_lists):
        pred_keys, ranked_keys, gold_set = dedupe(preds), dedupe(ranked), set(dedupe(gold))
        for k in (*KS, "M"):
            p, r, f = _prf(pred_keys if k == "M" else ranked_keys, gold_set, None if k == "M" else k)
            sums[f"p@{k}"] += p
            sums[f"r@{k}"] += r
            sums[f"f1@{k}"] += f
    n = len(gold_lists)
    return {name: (v / n if n else 0.0) for name, v in sums.items()}
