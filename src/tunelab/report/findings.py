"""The findings paragraph, written only from the summary tables' numbers: the best method per task,
each method's gap to full fine-tuning with its p-value, its trainable-parameter and train-time ratio
to full FT, which methods stayed at the majority-class level, the layer budget and each
layer-selecting method's achieved share (report/budget.py), and what the p-values measure.

"Significant" is said only from the across-seed test (a paired t-test over >= 2 seeds per cell,
report/stats.py): with p >= 0.05 the difference is "within noise across seeds". A one-seed cell is
never called significant: its dev-set bootstrap p measures only the noise of the dev examples, so
it is "within noise" (bootstrap p >= 0.05) or "one seed: not tested across seeds"."""

from .budget import budget_sentence
from .stats import ALPHA, verdict
from .tables import TaskSummary, higher_is_better
MAJORITY_MARGIN = 0.01  # within this of the majority-class score = "did not learn"


def _clause(m, ref) -> str:
    parts = [f"Δ {m.significance.delta:+.4f}"]
    if m.significance.p is not None:
        parts.append(f"p = {m.significance.p:.3f}" if m.significance.p >= 0.001 else "p < 0.001")
    if ref.params.get("trainable"):
        parts.append(f"{100 * m.params['trainable'] / ref.params['trainable']:.1f} % of full FT's trainable parameters")
    if ref.train_seconds[0] and m.train_seconds[0] is not None:
        parts.append(f"{m.train_seconds[0] / ref.train_seconds[0]:.2f}× its train time")
    share = (m.rows[0].get("params") or {}).get("trainable_fraction_mean")
    if share is not None:
        parts.append(f"{100 * share:.1f} % of the backbone trainable on average")
    return f"{m.label} ({', '.join(parts)})"


VERDICTS = {  # verdict -> the findings' wording (in this order)
    "same": f"Within noise across seeds (paired t-test over seeds, p ≥ {ALPHA})",
    "below": f"Significantly worse than full FT across seeds (paired t-test over seeds, p < {ALPHA})",
    "above": f"Significantly better than full FT across seeds (paired t-test over seeds, p < {ALPHA})",
    "noise": f"Within noise (one seed; even the dev-set bootstrap gives p ≥ {ALPHA})",
    "one-seed": (f"One seed: not tested across seeds (only the dev-set bootstrap, p < {ALPHA}, which ignores "
                 f"seed-to-seed variance; more seeds: the quick-seeds preset)"),
    "untested": "Without a p-value",
}

def task_findings(ts: TaskSummary) -> str:
    done = [m for m in ts.methods if m.rows and ts.main_metric in m.metrics]
    if not done:
        return f"{ts.task}: no completed runs."
    main = ts.main_metric
    up = higher_is_better(main)
    word = "highest" if up else "lowest (best)"
    top = (max if up else min)(m.metrics[main][0] for m in done)
    best = [m for m in done if m.metrics[main][0] == top]
    if len(best) == 1:
        s = [f"On {ts.task} ({ts.model}, dev {main}) the {word} mean was {best[0].label} with {top:.4f}"]
    else:
        s = [f"On {ts.task} ({ts.model}, dev {main}) {', '.join(m.label for m in best)} tied for the {word} mean, {top:.4f}"]
    ref = ts.get(ts.reference) if ts.reference else None
    if ref is None:
        budget = budget_sentence(ts)
        return s[0] + "; there is no full fine-tuning run to compare with." + (" " + budget if budget else "")
    if ref not in best:
        s[0] += f"; full fine-tuning reached {ref.metrics[main][0]:.4f}"
    s[0] += "."
    groups = {key: [] for key in VERDICTS}
    for m in done:
        if m is ref or m.significance is None or m.significance.delta is None:
            continue
        groups[verdict(m.significance, up)].append(_clause(m, ref))
    for key, text in VERDICTS.items():
        if groups[key]:
            s.append(text + ": " + "; ".join(groups[key]) + ".")
    sentence = budget_sentence(ts)
    if sentence:
        s.append(sentence)
    if main in ts.majority and up:
        maj = ts.majority[main]
        low = [m.label for m in done if m.metrics[main][0] <= maj + MAJORITY_MARGIN]
        if low:
            s.append(f"At or near the majority-class {main} ({maj:.4f}): {', '.join(low)}.")
        else:
            s.append(f"Every method is above the majority-class {main} ({maj:.4f}) by more than {MAJORITY_MARGIN}.")
    return " ".join(s)


def overall_findings(summaries: list) -> list:
    out = [task_findings(ts) for ts in summaries]
    scored = [ts for ts in summaries if any(m.rows for m in ts.methods)]
    if len(scored) > 1:
        wins = {}
        for ts in scored:
            done = [m for m in ts.methods if m.rows and ts.main_metric in m.metrics]
            if done:
                top = (max if higher_is_better(ts.main_metric) else min)(m.metrics[ts.main_metric][0] for m in done)
                for m in done:
                    if m.metrics[ts.main_metric][0] == top:
                        wins[m.label] = wins.get(m.label, 0) + 1
        out.append("Best mean main metric (ties counted for each): "
                   + ", ".join(f"{k} on {v} of {len(scored)} tasks" for k, v in wins.items()) + ".")
        labels = [m.label for m in scored[0].methods]
        ok = []
        for label in labels:
            ms = [ts.get(label) for ts in scored]
            if all(m is not None and m.significance is not None
                   and verdict(m.significance, higher_is_better(ts.main_metric)) in ("same", "above")
                   for m, ts in zip(ms, scored)):
                ok.append((ms[0].params.get("trainable") or 0, label))
        if ok:
            out.append("Not significantly worse than full FT across seeds on any task: "
                       + ", ".join(label for _, label in sorted(ok)) + " (fewest trainable parameters first).")
    return out + significance_notes(summaries)


def significance_notes(summaries: list) -> list:
    """What the p-values vs full FT in the tables measure."""
    out = []
    tests = sorted({m.significance.test for ts in summaries for m in ts.methods if m.significance and m.significance.p is not None})
    if "bootstrap" in tests:
        out.append("p-values marked 'bootstrap' come from a paired bootstrap over the dev examples of one seed; "
                   "they measure dev-set sampling noise, not seed-to-seed variance, so these findings call no "
                   "one-seed difference significant.")
    if "t-test" in tests:
        out.append("p-values marked 't-test' are paired t-tests over seeds (scipy ttest_rel, a pair = the same "
                   "seed), the only test these findings call significant.")
    return out
