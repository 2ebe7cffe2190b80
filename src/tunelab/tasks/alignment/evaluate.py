"""Held-out evaluation, the same for every objective.

- ``pref_accuracy``: share of held-out pairs where the model ranks chosen above rejected: by the
  summed log-likelihood of the response given the prompt (generative models), or by the reward
  model's score (the ``reward`` objective). Ties count half.
- ``chosen_logppl``: log-perplexity of the chosen responses given the prompt (mean negative
  log-likelihood per response token, EOS included).
- ``win_rate``: greedy generations of the model vs the base model on the first held-out prompts,
  both scored by the frozen judge on the plain prompt; a win counts 1, a tie 0.5.
The base model's numbers on the same pairs come from ``base_evaluation`` (cached: deterministic).
"""

import hashlib
import json
import os

from ...cache import cache_dir
from ...results.record import write_json_atomic
from ...cache import model_fingerprint
from .judge import pairs_digest
from .scoring import generate, response_logprobs, reward_scores

N_SAMPLES = 4  # generations shown side by side in run.json


def _ranked(c: float, r: float) -> float:
    return 1.0 if c > r else 0.5 if c == r else 0.0


def lm_preference_metrics(model, pairs, pad_id, batch_size, device, context=list):
    """-> (metrics, per-pair rows). ``context(prompt_ids)`` is what the model is conditioned on."""
    has_rej = pairs[0].rejected_ids is not None
    items = [(context(p.prompt_ids), p.chosen_ids) for p in pairs]
    if has_rej:
        items += [(context(p.prompt_ids), p.rejected_ids) for p in pairs]
    lp = response_logprobs(model, items, pad_id, batch_size, device)
    n = len(pairs)
    chosen, rejected = lp[:n], lp[n:] if has_rej else [(None, None)] * n
    rows = [{"chosen_score": c[0], "rejected_score": r[0], "chosen_tokens": c[1], "rejected_tokens": r[1]}
            for c, r in zip(chosen, rejected)]
    metrics = {}
    if has_rej:
        metrics["pref_accuracy"] = sum(_correct(rows, per_token=False)) / n
        # the same ranking by mean log-likelihood per response token: the summed one is dominated by
        # response length (a longer response has a lower sum), so it barely moves in short runs
        metrics["pref_accuracy_per_token"] = sum(_correct(rows, per_token=True)) / n
    metrics["chosen_logppl"] = -sum(c[0] for c in chosen) / max(1, sum(c[1] for c in chosen))
    return metrics, rows


def _correct(rows: list, per_token: bool) -> list:
    """Per pair: 1 if chosen scores above rejected, 0.5 on a tie, else 0 (by the sum or per token)."""

    def score(r, side):
        s = r[f"{side}_score"]
        return s / max(1, r[f"{side}_tokens"]) if per_token else s

    return [_ranked(score(r, "chosen"), score(r, "rejected")) for r in rows]


def change_vs_base(base_rows: list, rows: list) -> dict:
    """Pair by pair, the trained model's ranking against the base model's on the same held-out pairs:
    how many pairs it newly ranks right (``gained``) or newly ranks wrong (``lost``), and the exact
    two-sided sign test on those changed pairs (McNemar's exact test; a pair tied under either
    model is left out). Per ranking: summed log-likelihood and per token."""
    from scipy.stats import binomtest

    out = {}
    for key, per_token in (("pref_accuracy", False), ("pref_accuracy_per_token", True)):
        b, t = _correct(base_rows, per_token), _correct(rows, per_token)
        gained = sum(1 for x, y in zip(b, t) if x == 0.0 and y == 1.0)
        lost = sum(1 for x, y in zip(b, t) if x == 1.0 and y == 0.0)
        p = binomtest(gained, gained + lost, 0.5).pvalue if gained + lost else 1.0
        out[key] = {"gained": gained, "lost": lost, "sign_test_p": round(float(p), 6)}
    return out


def reward_preference_metrics(model, pairs, pad_id, batch_size, device):
    c = reward_scores(model, [p.prompt_ids + p.chosen_ids for p in pairs], pad_id, batch_size, device)
    r = reward_scores(model, [p.prompt_ids + p.rejected_ids for p in pairs], pad_id, batch_size, device)
    metrics = {"pref_accuracy": sum(_ranked(a, b) for a, b in zip(c, r)) / len(pairs)}
    return metrics, [{"chosen_score": a, "rejected_score": b} for a, b in zip(c, r)]


def base_evaluation(get_base, tok, pairs, n_generate: int, cfg, device, source: str) -> dict:
    """The base model (``get_base()``, called only on a cache miss) on the held-out pairs: preference
    metrics + greedy generations of the first ``n_generate`` prompts. Cached under
    $TUNELAB_CACHE/base-eval/ (pure function of its inputs)."""
    key_src = {"v": 2, "model": model_fingerprint(source), "pairs": pairs_digest(pairs), "n_generate": n_generate,
               "max_new_tokens": cfg.max_response_length}
    key = hashlib.sha256(json.dumps(key_src, sort_keys=True).encode()).hexdigest()[:20]
    path = cache_dir("base-eval", key + ".json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            out = json.load(f)
        out["cached"] = True
        return out
    base = get_base()
    metrics, rows = lm_preference_metrics(base, pairs, tok.pad_token_id, cfg.eval_batch_size, device)
    gens = generate(base, tok, [p.prompt_ids for p in pairs[:n_generate]], cfg.max_response_length,
                    cfg.eval_batch_size, device)
    out = {"metrics": metrics, "rows": rows, "generations": gens}
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_json_atomic(path, out)
    out["cached"] = False
    return out


def win_rate_and_samples(model, tok, pairs, base_generations, judge, cfg, device, context=list, n_win=0):
    """-> (metrics, details, samples). Generates for max(n_win, N_SAMPLES) prompts; win rate on the first n_win."""
    n = min(len(pairs), max(n_win, N_SAMPLES), len(base_generations))
    prompts = pairs[:n]
    gens = generate(model, tok, [context(p.prompt_ids) for p in prompts], cfg.max_response_length,
                    cfg.eval_batch_size, device)
    metrics, details, m_scores, b_scores = {}, {}, [None] * n, [None] * n
    if judge is not None and n_win:
        k = min(n_win, n)
        texts = [p.prompt for p in prompts[:k]]
        m_scores[:k] = judge.score(texts, gens[:k])
        b_scores[:k] = judge.score(texts, base_generations[:k])
        metrics["win_rate"] = sum(_ranked(a, b) for a, b in zip(m_scores[:k], b_scores[:k])) / k
        details = {"prompts": k, "mean_judge_score_model": sum(m_scores[:k]) / k,
                   "mean_judge_score_base": sum(b_scores[:k]) / k,
                   "identical_generations": sum(a == b for a, b in zip(gens[:k], base_generations[:k]))}
    samples = []
    for i in range(min(N_SAMPLES, n)):
        s = {"prompt": prompts[i].prompt, "chosen": prompts[i].chosen, "base": base_generations[i], "model": gens[i]}
        if b_scores[i] is not None:
            s.update(judge_base=round(b_scores[i], 4), judge_model=round(m_scores[i], 4))
        samples.append(s)
    return metrics, details, samples
