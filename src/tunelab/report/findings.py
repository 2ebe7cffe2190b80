"""The findings paragraph, written only from the summary tables' numbers: the best method per task,
each method's gap to full fine-tuning with its p-value, its trainable-parameter and train-time ratio
to full FT, which methods stayed at the majority-class level, and what the p-values measure."""

from .tables import TaskSummary

ALPHA = 0.05
MAJORITY_MARGIN = 0.01  # within this of the majority-class score = "did not learn"


def _clause(m, ref) -> str:
    parts = [f"Δ {m.significance.delta:+.4f}"]
    if m.significance.p is not None:
        parts.append(f"p = {m.significance.p:.3f}" if m.significance.p >= 0.001 else "p < 0.001")
    if ref.params.get("trainable"):
        parts.append(f"{100 * m.params['trainable'] / ref.params['trainable']:.1f} % of its trainable parameters")
    if ref.train_seconds[0] and m.train_seconds[0] is not None:
        parts.append(f"{m.train_seconds[0] / ref.train_seconds[0]:.2f}× its train time")
    return f"{m.label} ({', '.join(parts)})"


def task_findings(ts: TaskSummary) -> str:
    done = [m for m in ts.methods if m.rows and ts.main_metric in m.metrics]
    if not done:
        return f"{ts.task}: no completed runs."
    main = ts.main_metric
    best = max(done, key=lambda m: m.metrics[main][0])
    s = [f"On {ts.task} ({ts.model}, dev {main}) the highest mean was {best.label} with {best.metrics[main][0]:.4f}"]
    ref = ts.get(ts.reference) if ts.reference else None
    if ref is None:
        return s[0] + "; there is no full fine-tuning run to compare with."
    if best is not ref:
        s[0] += f"; full fine-tuning reached {ref.metrics[main][0]:.4f}"
    s[0] += "."
    groups = {"below": [], "same": [], "above": [], "untested": []}
    for m in done:
        if m is ref or m.significance is None or m.significance.delta is None:
            continue
        p = m.significance.p
        key = "untested" if p is None else ("same" if p >= ALPHA else ("above" if m.significance.delta > 0 else "below"))
        groups[key].append(_clause(m, ref))
    if groups["same"]:
        s.append(f"Not significantly different from full FT (p ≥ {ALPHA}): " + "; ".join(groups["same"]) + ".")
    if groups["below"]:
        s.append(f"Significantly below full FT (p < {ALPHA}): " + "; ".join(groups["below"]) + ".")
    if groups["above"]:
        s.append(f"Significantly above full FT (p < {ALPHA}): " + "; ".join(groups["above"]) + ".")
    if groups["untested"]:
        s.append("Without a p-value: " + "; ".join(groups["untested"]) + ".")
    if main in ts.majority:
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
                b = max(done, key=lambda m: m.metrics[ts.main_metric][0])
                wins[b.label] = wins.get(b.label, 0) + 1
        out.append("Highest mean main metric per task: " + ", ".join(f"{k} on {v} of {len(scored)}" for k, v in wins.items()) + ".")
        labels = [m.label for m in scored[0].methods]
        ok = []
        for label in labels:
            ms = [ts.get(label) for ts in scored]
            if all(m is not None and m.significance is not None and m.significance.p is not None
                   and (m.significance.p >= ALPHA or m.significance.delta > 0) for m in ms):
                ok.append((ms[0].params.get("trainable") or 0, label))
        if ok:
            out.append("Not significantly below full FT on every task: "
                       + ", ".join(label for _, label in sorted(ok)) + " (fewest trainable parameters first).")
    tests = sorted({m.significance.test for ts in summaries for m in ts.methods if m.significance and m.significance.p is not None})
    if "bootstrap" in tests:
        out.append("p-values marked 'bootstrap' come from a paired bootstrap over the dev examples of the same "
                   "seed(s); they measure dev-set sampling noise, not seed-to-seed variance.")
    if "t-test" in tests:
        out.append("p-values marked 't-test' are paired t-tests over seeds.")
    return out
