"""The answer at a glance: one method x task matrix of the main metric, the aggregate over tasks
(mean rank, Friedman test, Nemenyi critical difference) and a recommendation computed from the
numbers. Used by the compare report (report/document.py) and by ``tunelab leaderboard``
(report/leaderboard.py), both from ``TaskSummary`` objects (report/tables.py).

- A cell is the task's main metric, mean ± sample std over seeds, in the metric's registered
  direction (``metrics.higher_is_better``: CER is lower-is-better). The best mean per task is bold.
- "Not distinguishable from the best" (marked ≈): a paired t-test over seeds (scipy ``ttest_rel``,
  a pair = the same seed) of the method against the best-mean method on that task gives
  p >= ``ALPHA``. It needs >= 2 paired seeds; with one seed no test over seeds is possible and
  nothing is marked (the recommendation says so). The tests are not corrected for multiplicity, so
  fewer methods are called indistinguishable than with a correction; a difference of a constant
  non-zero amount on every seed counts as distinguishable (t is infinite).
- Aggregate: per task, methods are ranked by their mean (1 = best, ties share the average rank,
  scipy ``rankdata``) over the methods completed on *every* task (the Friedman test needs complete
  blocks). Friedman's chi-square is scipy's ``friedmanchisquare`` over the per-task means (>= 3
  methods and >= 2 tasks, else "not applicable"); the post-hoc is Nemenyi's critical difference
  ``CD = q_alpha * sqrt(k (k + 1) / (6 N))`` (Demšar 2006) with ``q_alpha`` the studentized range
  quantile / sqrt(2) (scipy ``studentized_range``); two methods whose mean ranks differ by less than
  CD are not significantly different, drawn as a critical-difference diagram (report/plots.py).
- Recommendation: per task, among the best-mean method and the methods not distinguishable from
  it, the cheapest: lowest train time, then fewest trainable parameters, then lowest peak memory,
  with its cost relative to full fine-tuning on that task. Overall: the cheapest method that is
  not distinguishable from the best on every task.
"""

import math
from dataclasses import dataclass, field

import numpy as np

from ..metrics import higher_is_better
from .stats import ALPHA, paired_ttest
from .tables import Table, TaskSummary, fmt

TIE = "≈"


@dataclass
class Column:
    """One task of the matrix: its summary, the best-mean label(s) and each method's test against the best."""
    ts: TaskSummary
    title: str
    higher: bool
    best: list  # labels with the best mean
    tests: dict = field(default_factory=dict)  # label -> (p | None, paired seeds) vs the best
    done: list = field(default_factory=list)  # MethodSummary with a main-metric value

    @property
    def metric(self) -> str:
        return self.ts.main_metric

    def mean(self, label):
        m = self.ts.get(label)
        return None if m is None or not m.rows or self.metric not in m.metrics else m.metrics[self.metric][0]

    def tested(self) -> bool:
        """At least one method was compared with the best over >= 2 paired seeds."""
        return any(n >= 2 for _, n in self.tests.values())

    def tie(self, label) -> bool:
        """Not distinguishable from the best by the paired test over seeds (the best itself included)."""
        if label in self.best:
            return True
        p, n = self.tests.get(label, (None, 0))
        return n >= 2 and p is not None and p >= ALPHA

    def seeds(self) -> int:
        return max((m.n for m in self.done), default=0)


def direction(metric: str) -> str:
    return "↑" if higher_is_better(metric) else "↓ lower is better"


def columns(summaries: list, titles: dict | None = None) -> list:
    """[Column] for every task summary with a completed main metric."""
    out = []
    multi_model = len({ts.model for ts in summaries}) > 1
    for ts in summaries:
        done = [m for m in ts.methods if m.rows and ts.main_metric and ts.main_metric in m.metrics
                and m.metrics[ts.main_metric][0] is not None]
        if not done:
            continue
        up = higher_is_better(ts.main_metric)
        top = (max if up else min)(m.metrics[ts.main_metric][0] for m in done)
        best = [m.label for m in done if m.metrics[ts.main_metric][0] == top]
        title = (titles or {}).get((ts.model, ts.task)) or (f"{ts.task} ({ts.model})" if multi_model else ts.task)
        col = Column(ts, title, up, best, done=done)
        ref = ts.get(best[0])
        for m in done:
            if m.label in best:
                continue
            col.tests[m.label] = paired_vs(m, ref, ts.main_metric)
        out.append(col)
    return out


def paired_vs(m, ref, metric: str) -> tuple:
    """(p, paired seeds) of a paired t-test over seeds, method vs reference; p None below 2 pairs."""
    by_seed = {r["seed"]: r["metrics"].get(metric) for r in ref.rows}
    pairs = [(r["metrics"].get(metric), by_seed[r["seed"]]) for r in m.rows
             if r["seed"] in by_seed and r["metrics"].get(metric) is not None and by_seed[r["seed"]] is not None]
    if len(pairs) < 2:
        return None, len(pairs)
    p = paired_ttest([a for a, _ in pairs], [b for _, b in pairs])
    return (0.0 if p is None else p), len(pairs)  # None: a constant non-zero difference, t infinite


def method_labels(cols: list) -> list:
    out = []
    for c in cols:
        for m in c.ts.methods:
            if m.label not in out:
                out.append(m.label)
    return out


# ---------------------------------------------------------------- costs relative to full FT

def peak_memory(m) -> tuple:
    """(MB, kind): peak GPU memory when the run recorded one, else the process's peak RSS."""
    if m.peak_cuda_mb[0] is not None:
        return m.peak_cuda_mb[0], "GPU"
    return m.peak_rss_mb[0], "RSS"


def reference(ts: TaskSummary):
    return ts.get(ts.reference) if ts.reference else None


def time_ratio(m, ts) -> float | None:
    ref = reference(ts)
    if ref is None or not ref.train_seconds[0] or m.train_seconds[0] is None:
        return None
    return m.train_seconds[0] / ref.train_seconds[0]


def costs(label: str, cols: list) -> dict:
    """A method's cost over the tasks it completed: trainable % (mean), train time x full FT (geometric
    mean of the per-task ratios), peak memory (max, MB, GPU if recorded else RSS)."""
    ms = [(c.ts.get(label), c.ts) for c in cols if c.ts.get(label) is not None and c.ts.get(label).rows]
    pct = [m.params.get("pct") for m, _ in ms if m.params.get("pct") is not None]
    ratios = [r for r in (time_ratio(m, ts) for m, ts in ms) if r]
    mem = [peak_memory(m) for m, _ in ms]
    mem_v = [v for v, _ in mem if v is not None]
    return {"pct": float(np.mean(pct)) if pct else None,
            "time_x": float(np.exp(np.mean(np.log(ratios)))) if ratios else None,
            "mem": max(mem_v) if mem_v else None,
            "mem_kind": "GPU" if any(k == "GPU" for _, k in mem) else "RSS"}


# ---------------------------------------------------------------- ranks and tests over tasks

@dataclass
class Aggregate:
    labels: list  # methods completed on every task (the complete block)
    tasks: list  # column titles
    scores: np.ndarray  # (tasks, methods) per-task means, raw (each metric's own scale and direction)
    ranks: np.ndarray  # (tasks, methods), 1 = best
    mean_rank: dict  # label -> mean rank over tasks
    statistic: float | None = None  # Friedman chi-square
    p: float | None = None
    cd: float | None = None  # Nemenyi critical difference at ALPHA
    reason: str = ""  # why the test is not applicable


def rank_block(scores: np.ndarray, higher: list) -> np.ndarray:
    """Per-task ranks (rows = tasks), 1 = best in each task's own direction; ties averaged."""
    from scipy.stats import rankdata

    return np.vstack([rankdata(-row if up else row) for row, up in zip(scores, higher)])


def nemenyi_cd(k: int, n: int, alpha: float = ALPHA) -> float:
    """Nemenyi's critical difference of mean ranks for k methods over n tasks (Demšar 2006)."""
    from scipy.stats import studentized_range

    q = studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2)
    return float(q * math.sqrt(k * (k + 1) / (6.0 * n)))


def aggregate(cols: list) -> Aggregate:
    labels = [lb for lb in method_labels(cols) if all(c.mean(lb) is not None for c in cols)]
    scores = np.array([[c.mean(lb) for lb in labels] for c in cols], float).reshape(len(cols), len(labels))
    ranks = rank_block(scores, [c.higher for c in cols]) if labels else scores
    agg = Aggregate(labels, [c.title for c in cols], scores, ranks,
                    {lb: float(ranks[:, j].mean()) for j, lb in enumerate(labels)})
    k, n = len(labels), len(cols)
    if k < 3 or n < 2:
        agg.reason = (f"needs >= 3 methods completed on every task and >= 2 tasks; here {k} method"
                      f"{'s' if k != 1 else ''} on {n} task{'s' if n != 1 else ''}")
        return agg
    if np.all(ranks == ranks[0]) and np.all(ranks[0] == ranks[0][0]):
        agg.reason = "every method ties on every task"
        return agg
    from scipy.stats import friedmanchisquare

    # scipy ranks each task's values itself; the statistic does not depend on the direction
    oriented = np.where(np.array([c.higher for c in cols])[:, None], scores, -scores)
    res = friedmanchisquare(*[oriented[:, j] for j in range(k)])
    agg.statistic, agg.p = float(res.statistic), float(res.pvalue)
    agg.cd = nemenyi_cd(k, n)
    return agg


def cliques(agg: Aggregate) -> list:
    """Maximal groups of methods (by mean rank) whose ranks differ by less than the CD: [[label, ...]]."""
    if agg.cd is None:
        return []
    order = sorted(agg.labels, key=lambda lb: agg.mean_rank[lb])
    out = []
    for i, a in enumerate(order):
        group = [b for b in order[i:] if agg.mean_rank[b] - agg.mean_rank[a] < agg.cd]
        if len(group) > 1 and not any(set(group) <= set(g) for g in out):
            out.append(group)
    return out


# ---------------------------------------------------------------- the matrix

def matrix_table(cols: list, agg: Aggregate | None = None, cost: bool = True) -> Table:
    labels = method_labels(cols)
    header = ["method"] + [f"{c.title}: {c.metric} {'↑' if c.higher else '↓'}" for c in cols]
    if agg is not None and len(cols) > 1:
        header.append("mean rank")
    if cost:
        mem_kind = "GPU" if any(peak_memory(m)[1] == "GPU" for c in cols for m in c.done) else "RSS"
        header += ["trainable %", "train time × full FT", f"peak {mem_kind} (MB)"]
    rows, best, tied = [], set(), set()
    for i, lb in enumerate(labels):
        row = [lb]
        for j, c in enumerate(cols):
            m = c.ts.get(lb)
            if m is None or m not in c.done:
                row.append("—" if m is None else f"not completed ({len(m.failed)} failed)" if m.failed else "—")
                continue
            text = fmt(m.metrics[c.metric], 4)
            if lb in c.best:
                best.add((i, j + 1))
            elif c.tie(lb):
                text += f" {TIE}"
                tied.add((i, j + 1))
            row.append(text)
        if agg is not None and len(cols) > 1:
            row.append(f"{agg.mean_rank[lb]:.2f}" if lb in agg.mean_rank else "—")
        if cost:
            k = costs(lb, cols)
            row += ["—" if k["pct"] is None else f"{k['pct']:.3g}",
                    "—" if k["time_x"] is None else f"{k['time_x']:.2f}",
                    "—" if k["mem"] is None else f"{k['mem']:.0f}"]
        rows.append(row)
    if agg is not None and len(cols) > 1 and agg.mean_rank:
        top = min(agg.mean_rank.values())
        j = len(cols) + 1
        best |= {(i, j) for i, lb in enumerate(labels) if agg.mean_rank.get(lb) == top}
    return Table(header, rows, best, tied=tied)


def legend(cols: list, agg: Aggregate | None, cost: bool = True) -> str:
    seeds = sorted({m.n for c in cols for m in c.done})
    s = ("Main metric per task (the split the task reports), " + ("one seed: the run's value" if seeds == [1] else
         f"mean ± sample std over {'/'.join(map(str, seeds))} seeds") + "; ↑ higher is better, ↓ lower is better; "
         f"bold = best mean; {TIE} = not distinguishable from the best (paired t-test over seeds, p ≥ {ALPHA}, "
         "uncorrected).")
    if all(not c.tested() for c in cols):
        s += f" One seed per cell: no test over seeds is possible, so nothing is marked {TIE}."
    if agg is not None and len(cols) > 1:
        s += (" Mean rank over the tasks (1 = best) among the methods completed on every task.")
    if cost:
        s += (" Trainable % = trainable parameters (head included) as % of all parameters, mean over tasks; "
              "train time × full FT = geometric mean over tasks of the ratio to full fine-tuning's train time on "
              "that task; peak memory = the largest over tasks (GPU when recorded, else the process's RSS).")
    return s


def aggregate_text(agg: Aggregate) -> str:
    n = len(agg.tasks)
    if agg.statistic is None:
        return (f"Friedman test over tasks: not applicable ({agg.reason})."
                + (" Mean ranks: " + ", ".join(f"{lb} {agg.mean_rank[lb]:.2f}" for lb in
                                                sorted(agg.labels, key=agg.mean_rank.get)) + "." if agg.labels and n > 1 else ""))
    order = sorted(agg.labels, key=agg.mean_rank.get)
    p = "< 0.001" if agg.p < 0.001 else f"= {agg.p:.3f}"
    s = (f"Friedman test over {n} tasks and {len(agg.labels)} methods (scipy friedmanchisquare on the per-task means): "
         f"χ² = {agg.statistic:.3f}, p {p}. Mean ranks: "
         + ", ".join(f"{lb} {agg.mean_rank[lb]:.2f}" for lb in order) + ". ")
    if agg.p >= ALPHA:
        s += (f"With p ≥ {ALPHA} the ranks give no evidence that the methods differ across tasks. ")
    else:
        s += f"With p < {ALPHA} at least one method ranks differently from the others across tasks. "
    s += (f"Nemenyi post-hoc: critical difference {agg.cd:.2f} ranks at α = {ALPHA} (Demšar 2006); methods "
          f"whose mean ranks differ by less than it are not significantly different (joined by a bar in the diagram).")
    if n < 5:
        s += f" With only {n} tasks these tests have little power."
    return s


# ---------------------------------------------------------------- the recommendation

def _cost_key(m, ts):
    mem = peak_memory(m)[0]
    return (m.train_seconds[0] if m.train_seconds[0] is not None else math.inf,
            m.params.get("trainable") if m.params.get("trainable") is not None else math.inf,
            mem if mem is not None else math.inf)


def _cost_words(m, ts) -> str:
    ref = reference(ts)
    mem, kind = peak_memory(m)
    if ref is None:
        parts = ([f"train time {m.train_seconds[0]:.1f} s"] if m.train_seconds[0] is not None else []) + (
            [f"{m.params['pct']:.3g} % of parameters trainable"] if m.params.get("pct") is not None else []) + (
            [f"peak {kind} {mem:.0f} MB"] if mem is not None else [])
        return ", ".join(parts + ["no full fine-tuning run on this task to compare with"])
    if m is ref:
        return "it is full fine-tuning itself"
    parts = []
    r = time_ratio(m, ts)
    if r is not None:
        parts.append(f"{r:.2f}× full FT's train time")
    if ref.params.get("trainable") and m.params.get("trainable") is not None:
        parts.append(f"{100 * m.params['trainable'] / ref.params['trainable']:.3g} % of its trainable parameters")
    rmem = peak_memory(ref)[0]
    if rmem and mem is not None:
        parts.append(f"{mem / rmem:.2f}× its peak {kind}")
    return ", ".join(parts)


def recommend_task(c: Column) -> str:
    ts, best = c.ts, c.ts.get(c.best[0])
    head = f"{c.title} ({c.metric} {'↑' if c.higher else '↓'})"
    best_txt = (f"best mean {best.label} {best.metrics[c.metric][0]:.4f}" if len(c.best) == 1 else
                f"best mean {', '.join(c.best)} (tied, {best.metrics[c.metric][0]:.4f})")
    cands = [m for m in c.done if c.tie(m.label)]
    pick = min(cands, key=lambda m: _cost_key(m, ts))
    others = len(cands) - 1
    if pick.label in c.best:
        tail = (f"{pick.label} is also the cheapest of the {len(cands)} methods not distinguishable from the best"
                if others else f"every other method is distinguishable from it (worse), so: {pick.label}")
    else:
        tail = (f"cheapest not distinguishable from it (paired t-test over seeds, p = "
                f"{c.tests[pick.label][0]:.2f}): {pick.label}")
    return f"{head}: {best_txt}; {tail} ({_cost_words(pick, ts)})."


def recommend_overall(cols: list, agg: Aggregate) -> str:
    if len(cols) < 2:
        return ""
    untested = [c.title for c in cols if not c.tested()]
    if len(untested) == len(cols):
        return ("Overall: every task has one seed per method, so no method can be called indistinguishable from "
                "the best anywhere; run more seeds (e.g. seeds=0,1,2) before choosing by these numbers.")
    ok = [lb for lb in agg.labels if all(c.tie(lb) for c in cols)]
    if untested:
        return ("Overall: with tasks that have one seed, no method can be called indistinguishable from the best "
                "on every task.")
    if not ok:
        top = min(agg.mean_rank, key=agg.mean_rank.get) if agg.mean_rank else None
        return ("Overall: no method is indistinguishable from the best on every task"
                + (f"; best mean rank: {top} ({agg.mean_rank[top]:.2f})." if top else "."))
    k = {lb: costs(lb, cols) for lb in ok}
    pick = min(ok, key=lambda lb: (k[lb]["time_x"] if k[lb]["time_x"] is not None else math.inf,
                                   k[lb]["pct"] if k[lb]["pct"] is not None else math.inf,
                                   k[lb]["mem"] if k[lb]["mem"] is not None else math.inf))
    cost = k[pick]
    bits = []
    if cost["time_x"] is not None:
        bits.append(f"{cost['time_x']:.2f}× full FT's train time (geometric mean over tasks)")
    if cost["pct"] is not None:
        bits.append(f"{cost['pct']:.3g} % of parameters trainable")
    return (f"Overall: {len(ok)} method{'s' if len(ok) != 1 else ''} ({', '.join(ok)}) "
            f"{'is' if len(ok) == 1 else 'are'} not distinguishable from the best on every task; the cheapest is "
            f"{pick}" + (f" ({', '.join(bits)})." if bits else "."))


def recommendation(cols: list, agg: Aggregate) -> list:
    """The recommendation: one sentence per task with >= 2 paired seeds, one for the tasks with too few
    seeds to test anything, then the overall one."""
    untested = [c for c in cols if not c.tested()]
    tops = "; ".join(f"{c.title} {', '.join(c.best)} {c.mean(c.best[0]):.4f}" for c in untested)
    if len(untested) == len(cols):
        s = (f"one seed per method{' on every task' if len(cols) > 1 else ''}: too few to test which methods are "
             f"indistinguishable from the best, so this report claims no recommendation. Highest mean"
             f"{'s' if len(cols) > 1 else ''} (not tested): {tops}.")
        if len(cols) > 1 and agg.mean_rank:
            top = min(agg.mean_rank, key=agg.mean_rank.get)
            s += f" Best mean rank: {top} ({agg.mean_rank[top]:.2f})."
        return [s + " Run more seeds (e.g. seeds=0,1,2, the quick-seeds preset) to get one."]
    out = [recommend_task(c) for c in cols if c.tested()]
    if untested:
        out.append(f"{', '.join(c.title for c in untested)}: one seed per method, too few to test, so no "
                   f"recommendation (highest mean{'s' if len(untested) > 1 else ''}, not tested: {tops}).")
    overall = recommend_overall(cols, agg)
    return out + ([overall] if overall else [])


def task_bullet(c: Column) -> str:
    """One short findings bullet per task (the per-method numbers are in the task's table)."""
    from .budget import budget_sentence
    from .findings import MAJORITY_MARGIN

    ts = c.ts
    ref = reference(ts)
    s = f"On {ts.task} ({ts.model}, dev {c.metric}): best {', '.join(c.best)} {c.mean(c.best[0]):.4f}"
    if ref is not None and ref.label not in c.best and c.mean(ref.label) is not None:
        s += f"; full FT {c.mean(ref.label):.4f}"
    elif ref is None:
        s += "; no full fine-tuning run"
    if c.tested():
        ties = [m.label for m in c.done if c.tie(m.label) and m.label not in c.best]
        s += (f"; {len(ties)} of {len(c.done) - len(c.best)} others not distinguishable from it across seeds"
              + (f" ({', '.join(ties)})" if ties else ""))
    else:
        s += "; one seed: no test over seeds"
    if ts.main_metric in ts.majority and c.higher:
        maj = ts.majority[ts.main_metric]
        low = [m.label for m in c.done if m.metrics[ts.main_metric][0] <= maj + MAJORITY_MARGIN]
        if low:
            s += f"; at or near the majority-class {c.metric} ({maj:.4f}): {', '.join(low)}"
    s += "."
    budget = budget_sentence(ts)
    return s + (" " + budget if budget else "")


# ---------------------------------------------------------------- blocks for the renderers

def overview_blocks(summaries: list, asset_dir: str, root: str, stem: str = "overview", cost: bool = True,
                    titles: dict | None = None) -> tuple:
    """(blocks, cols, agg): the matrix, the recommendation, its legend and the aggregate over tasks
    (text + critical-difference diagram under ``asset_dir``; image paths relative to ``root``)."""
    import os

    from .plots import cd_diagram

    cols = columns(summaries, titles)
    if not cols:
        return [("p", "No completed runs yet: nothing to compare.")], cols, None
    agg = aggregate(cols)
    blocks = [("table", matrix_table(cols, agg, cost)),
              ("p", "Recommendation: " + " ".join(recommendation(cols, agg)), "rec"),
              ("p", legend(cols, agg, cost), "small")]
    if len(cols) < 2:
        blocks.append(("p", f"Aggregate over tasks (mean rank, Friedman test): not applicable ({agg.reason}).",
                       "small"))
        return blocks, cols, agg
    blocks.append(("h", 3, "Aggregate over tasks"))
    blocks.append(("p", aggregate_text(agg)))
    os.makedirs(asset_dir, exist_ok=True)
    path = cd_diagram(agg, cliques(agg), os.path.join(asset_dir, f"{stem}-cd.png"))
    if path:
        blocks.append(("img", path, os.path.relpath(path, root).replace(os.sep, "/"),
                       f"critical-difference diagram: mean rank over {len(cols)} tasks (1 = best); methods joined "
                       f"by a bar are within the Nemenyi CD ({agg.cd:.2f}) of each other"))
    return blocks, cols, agg
