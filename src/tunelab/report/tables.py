"""Per-task summaries: each method label's numbers over its seeds (mean ± std), compared with full
fine-tuning, and the table rows the renderers print (best value per column marked).

Numbers are shown at run.json's own precision (metrics 4 decimals, times 3, memory 1), so a
single-seed cell reads exactly like its run.json.
"""

from dataclasses import dataclass, field

from .budget import FLAG, TOLERANCE, achieved_share, off_budget
from .stats import SHORT_VERDICTS, Significance, compare_to_reference, majority_baseline, mean_std, verdict

from ..metrics import higher_is_better  # noqa: F401  (the direction is the registered metric's)
from ..tasks import load_families


@dataclass
class MethodSummary:
    label: str
    method: str
    planned: int  # seeds in the grid
    rows: list  # completed store rows
    failed: list  # store rows not completed
    metrics: dict = field(default_factory=dict)  # name -> (mean, std)
    params: dict = field(default_factory=dict)  # trainable, total, pct, without_head, pct_without_head
    train_seconds: tuple = (None, None)
    samples_per_second: tuple = (None, None)
    peak_rss_mb: tuple = (None, None)
    peak_cuda_mb: tuple = (None, None)
    significance: Significance | None = None
    share: tuple = (None, None)  # achieved time-averaged share of the non-head backbone (report/budget.py)

    @property
    def n(self) -> int:
        return len(self.rows)


@dataclass
class TaskSummary:
    model: str
    task: str
    metric_names: list
    main_metric: str
    methods: list  # MethodSummary, grid order
    reference: str | None  # label of full fine-tuning
    majority: dict = field(default_factory=dict)
    layer_budget: float | None = None  # the study's --layer-budget (report/budget.py), set by document.build

    def get(self, label):
        return next((m for m in self.methods if m.label == label), None)


def summarize(rows: list, grid: list | None = None) -> list:
    """Store rows (all statuses) -> [TaskSummary] in grid order."""
    load_families()  # the families register their metrics (and so their directions)
    order = []
    for r in rows:
        key = (r["model"], r["task"])
        if key not in order:
            order.append(key)
    out = []
    for model, task in order:
        trows = [r for r in rows if r["model"] == model and r["task"] == task]
        labels = []
        for r in trows:
            if r["label"] not in labels:
                labels.append(r["label"])
        methods = []
        for label in labels:
            lr = [r for r in trows if r["label"] == label]
            done = [r for r in lr if r["status"] == "completed"]
            methods.append(_method_summary(label, lr[0]["method"], len(lr), done, [r for r in lr if r not in done]))
        first = next((r for r in trows if r["status"] == "completed"), None)
        names = report_columns(task, list(first["metrics"])) if first else []
        main = first["main_metric"] if first else None
        ref = next((m.label for m in methods if m.method == "full" and m.rows), None)
        ts = TaskSummary(model, task, names, main, methods, ref)
        if ref:
            refm = ts.get(ref)
            for m in methods:
                if m.label != ref and m.rows and main:
                    m.significance = compare_to_reference(m.rows, refm.rows, main)
            try:
                ts.majority = majority_baseline(refm.rows[0]["run_dir"] + "/predictions.tsv", names)
            except (OSError, KeyError, ValueError):  # no file, or not a label/prediction file (keyphrase lists)
                pass
        out.append(ts)
    return out


def report_columns(task: str, names: list) -> list:
    """The metric columns of a task's table: all of run.json's metrics, unless the task names a shorter
    list (``report_metrics`` on the task object, e.g. keyphrase: F1@5/@10/@M of both splits, not the 18)."""
    from ..errors import UserError
    from ..tasks import get_task

    try:
        keep = get_task(task).report_metrics
    except UserError:  # a task this install does not know: show everything
        keep = ()
    return [n for n in names if n in keep] if keep else names


def _method_summary(label, method, planned, done, failed) -> MethodSummary:
    m = MethodSummary(label, method, planned, done, failed)
    if not done:
        return m
    for name in done[0]["metrics"]:
        m.metrics[name] = mean_std([r["metrics"].get(name) for r in done])
    r0 = done[0]
    m.params = {"trainable": r0["trainable"], "total": r0["total"], "pct": r0["trainable_pct"],
                "without_head": r0["trainable_without_head"],
                "pct_without_head": round(100.0 * r0["trainable_without_head"] / r0["total"], 4) if r0["total"] else None}
    m.train_seconds = mean_std([r["train_seconds"] for r in done])
    m.samples_per_second = mean_std([r["samples_per_second"] for r in done])
    m.peak_rss_mb = mean_std([r["peak_rss_mb"] for r in done])
    m.peak_cuda_mb = mean_std([r["peak_cuda_mb"] for r in done])
    m.share = achieved_share(done)
    return m


# ---------------------------------------------------------------- table rows for the renderers

def fmt(ms: tuple, digits: int) -> str:
    mean, std = ms
    if mean is None:
        return "—"
    s = f"{mean:.{digits}f}"
    return s + (f" ± {std:.{digits}f}" if std is not None else "")


def fmt_p(sig: Significance | None) -> str:
    if sig is None:
        return "—"
    if sig.p is None:
        return f"n/a ({sig.test})"
    p = "< 0.001" if sig.p < 0.001 else f"{sig.p:.3f}"
    return f"{p} ({sig.test}{', n=' + str(sig.n) if sig.test == 't-test' else ''})"


@dataclass
class Table:
    header: list
    rows: list  # list of list[str]
    best: set = field(default_factory=set)  # (row, col) marked best
    notes: list = field(default_factory=list)
    flagged: set = field(default_factory=set)  # (row, col) marked as a warning (off the study's layer budget)
    tied: set = field(default_factory=set)  # (row, col) not distinguishable from the best (report/overview.py)


def task_table(ts: TaskSummary) -> Table:
    """One row per method label; best value per column marked (max for quality, min for cost)."""
    mm = ts.metric_names
    has_cuda = any(m.peak_cuda_mb[0] is not None for m in ts.methods)
    has_share = any(m.share[0] is not None for m in ts.methods)
    budget = ts.layer_budget
    share_head = ["backbone share %" + ("" if budget is None else f" (budget {100 * budget:g})")] if has_share else []
    header = (["method", "seeds"] + [n if higher_is_better(n) else f"{n} (lower is better)" for n in mm] + share_head
              + [f"Δ {ts.main_metric} vs full", "p vs full", "trainable params",
              "trainable %", "trainable excl. head", "excl. head %", "train time (s)", "samples/s", "peak RSS (MB)"]
              + (["peak GPU (MB)"] if has_cuda else []) + ["train time × full", "verdict vs full"])
    # (column index, value getter, higher is better)
    cols = [(2 + i, (lambda m, n=n: m.metrics.get(n, (None,))[0]), higher_is_better(n)) for i, n in enumerate(mm)]
    base = 2 + len(mm) + len(share_head)
    cols += [(base + 2, lambda m: m.params.get("trainable"), False), (base + 3, lambda m: m.params.get("pct"), False),
             (base + 4, lambda m: m.params.get("without_head"), False),
             (base + 5, lambda m: m.params.get("pct_without_head"), False),
             (base + 6, lambda m: m.train_seconds[0], False), (base + 7, lambda m: m.samples_per_second[0], True),
             (base + 8, lambda m: m.peak_rss_mb[0], False)]
    if has_cuda:
        cols.append((base + 9, lambda m: m.peak_cuda_mb[0], False))
    rows, best, flagged = [], set(), set()
    for m in ts.methods:
        status = f"{m.n}/{m.planned}" + (f" ({len(m.failed)} not completed)" if m.failed else "")
        if not m.rows:
            rows.append([m.label, status] + ["—"] * (len(header) - 2))
            continue
        sig = m.significance
        delta = "—" if sig is None or sig.delta is None else f"{sig.delta:+.4f}"
        share = []
        if has_share:
            share = [_share_cell(m, budget)]
            if off_budget(m.method, m.share[0], budget):
                flagged.add((len(rows), 2 + len(mm)))
        row = [m.label, status] + [fmt(m.metrics.get(n, (None, None)), 4) for n in mm] + share + [
            "(reference)" if m.label == ts.reference else delta,
            "(reference)" if m.label == ts.reference else fmt_p(sig),
            str(m.params["trainable"]), f"{m.params['pct']:.4f}", str(m.params["without_head"]),
            "—" if m.params["pct_without_head"] is None else f"{m.params['pct_without_head']:.4f}",
            fmt(m.train_seconds, 3), fmt(m.samples_per_second, 3), fmt(m.peak_rss_mb, 1)]
        if has_cuda:
            row.append(fmt(m.peak_cuda_mb, 1))
        ref = ts.get(ts.reference) if ts.reference else None
        ratio = (m.train_seconds[0] / ref.train_seconds[0] if ref is not None and ref.train_seconds[0]
                 and m.train_seconds[0] is not None else None)
        row += ["—" if ratio is None else f"{ratio:.2f}",
                "(reference)" if m.label == ts.reference else _verdict_cell(sig, ts.main_metric)]
        rows.append(row)
    done = [(i, m) for i, m in enumerate(ts.methods) if m.rows]
    if len(done) > 1:
        for col, get, higher in cols:
            vals = [(i, get(m)) for i, m in done if get(m) is not None]
            if len({v for _, v in vals}) < 2:
                continue  # all equal: nothing is "best"
            target = max(v for _, v in vals) if higher else min(v for _, v in vals)
            best |= {(i, col) for i, v in vals if v == target}
    t = Table(header, rows, best, flagged=flagged)
    if flagged:
        t.notes.append(f"{FLAG} off budget: the achieved time-averaged share is more than {100 * TOLERANCE:g} points "
                       f"from the study's layer budget ({100 * budget:g} %), so this row is not an equal-budget "
                       f"comparison.")
    if ts.majority:
        t.rows.append(["majority class (dev labels)", "—"] + [f"{ts.majority[n]:.4f}" if n in ts.majority else "—" for n in mm]
                      + ["—"] * (len(header) - 2 - len(mm)))
    return t


def _verdict_cell(sig, main) -> str:
    """The findings' verdict vs full FT in a few words (report/stats.py ``verdict``)."""
    if sig is None or sig.delta is None:
        return "—"
    return SHORT_VERDICTS[verdict(sig, higher_is_better(main))]


def _share_cell(m: MethodSummary, budget: float | None) -> str:
    mean, std = m.share
    if mean is None:
        return "—"
    s = f"{100 * mean:.1f}" + (f" ± {100 * std:.1f}" if std is not None else "")
    return s + (f" {FLAG} off budget" if off_budget(m.method, mean, budget) else "")


def runs_table(rows: list) -> Table:
    """Appendix: every run of the grid with its own numbers."""
    header = ["run id", "seed", "status", "config hash", "main metric", "value", "train time (s)", "peak RSS (MB)"]
    out = []
    for r in rows:
        ok = r["status"] == "completed"
        out.append([r["run_id"], str(r["seed"]), r["status"] + (f": {r['error']}" if r.get("error") and not ok else ""),
                    r["config_hash"], r["main_metric"] or "—",
                    f"{r['main_value']:.4f}" if ok and r["main_value"] is not None else "—",
                    f"{r['train_seconds']:.3f}" if ok and r["train_seconds"] is not None else "—",
                    f"{r['peak_rss_mb']:.1f}" if ok and r["peak_rss_mb"] is not None else "—"])
    return Table(header, out)
