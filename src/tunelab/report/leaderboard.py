"""``tunelab leaderboard DIR [DIR ...] --output-dir OUT``: the result stores of several compares (any task
families) merged into one method x task matrix, written as OUT/leaderboard.md and the self-contained
OUT/leaderboard.html.

- Each compare folder's ``results.sqlite`` is read as ``tunelab report`` reads it (results/store.py:
  the rows of its latest grid, run folders found under DIR/runs). A (model, task) pair that two
  compares both ran becomes two columns, ``task [study]``.
- Methods are matched across compares by their label (``full``, ``lora``, ``selective``, ...).
- The matrix, ranks, Friedman test, Nemenyi critical difference and recommendation are the compare
  report's (report/overview.py): each task's main metric in its registered direction (a lower CER
  ranks higher).
- Normalised: a method's score relative to full fine-tuning (the ``full`` method's label) on the same
  task, in %, oriented so that > 100 % is better than full FT: ``100 * score / full`` for
  higher-is-better metrics, ``100 * full / score`` for lower-is-better ones (CER, loss). It is
  undefined ("—") when either value is <= 0 (an MCC of 0, a CER of 0). Tasks without a full-FT run
  are shown, not normalised. Next to it, the method's rank on that task among all its methods.
"""

import os

import numpy as np

from ..errors import UserError
from ..metrics import higher_is_better
from .tables import Table

ASSETS = "leaderboard_files"


def _load(dirs: list) -> tuple:
    """-> (rows of every store, [(study, dir, rows count, completed)])."""
    from ..results.store import Store
    from .document import _run_dir

    studies, all_rows, names = [], [], set()
    for d in dirs:
        db = os.path.join(d, "results.sqlite")
        if not os.path.isdir(d):
            raise UserError(f"leaderboard: {d}: no such folder")
        if not os.path.isfile(db):
            raise UserError(f"leaderboard: {d}: no results.sqlite (run tunelab compare first)")
        store = Store(db)
        try:
            meta = store.meta()
            rows = store.rows(meta.get("grid"))
        finally:
            store.close()
        name = meta.get("name") or os.path.basename(os.path.abspath(d))
        if name in names:
            name = f"{name} ({os.path.basename(os.path.abspath(d))})"
        names.add(name)
        for r in rows:
            r["run_dir"] = _run_dir(r, d)
            r["study"] = name
        studies.append((name, d, len(rows), sum(r["status"] == "completed" for r in rows)))
        all_rows += rows
    # a (model, task) that several compares ran: one column per compare
    owners = {}
    for r in all_rows:
        owners.setdefault((r["model"], r["task"]), set()).add(r["study"])
    for r in all_rows:
        if len(owners[(r["model"], r["task"])]) > 1:
            r["task"] = f"{r['task']} [{r['study']}]"
    return all_rows, studies


def _family(rows: list) -> str:
    """The task family of a column, from a run's own run.json (task labels may be renamed)."""
    from ..results.record import read_record
    from ..tasks import get_task

    for r in rows:
        try:
            name = read_record(r["run_dir"]).get("task")
            return get_task(name).family
        except (OSError, ValueError, UserError, AttributeError):
            continue
    return "?"


def normalised(score: float | None, full: float | None, higher: bool) -> float | None:
    """Score relative to full FT in %, > 100 = better than full FT in the metric's own direction."""
    if score is None or full is None or score <= 0 or full <= 0:
        return None
    return 100.0 * (score / full if higher else full / score)


def normalised_table(cols: list, agg) -> tuple:
    """(Table, values {(label, title): %}): relative-to-full-FT % and the per-task rank."""
    from scipy.stats import rankdata

    from .overview import method_labels

    labels = method_labels(cols)
    header = ["method"] + [f"{c.title}: % of full FT (rank)" for c in cols] + ["mean rank"]
    values, rows, best = {}, [], set()
    per_task_rank = {}
    for c in cols:
        present = [lb for lb in labels if c.mean(lb) is not None]
        rk = rankdata([-c.mean(lb) if c.higher else c.mean(lb) for lb in present])
        per_task_rank[c.title] = dict(zip(present, rk))
    for i, lb in enumerate(labels):
        row = [lb]
        for j, c in enumerate(cols):
            v = c.mean(lb)
            if v is None:
                row.append("—")
                continue
            ref = c.ts.reference
            rank = per_task_rank[c.title][lb]
            rank_s = f"#{rank:g}" + f"/{len(per_task_rank[c.title])}"
            if ref is None:
                row.append(f"no full FT ({rank_s})")
                continue
            n = normalised(v, c.mean(ref), c.higher)
            values[(lb, c.title)] = n
            row.append(("—" if n is None else f"{n:.1f} %") + f" ({rank_s})")
            if rank == 1:
                best.add((i, j + 1))
        row.append(f"{agg.mean_rank[lb]:.2f}" if lb in agg.mean_rank else "—")
        rows.append(row)
    if agg.mean_rank:
        top = min(agg.mean_rank.values())
        best |= {(i, len(cols) + 1) for i, lb in enumerate(labels) if agg.mean_rank.get(lb) == top}
    return Table(header, rows, best), values


def heatmap(cols: list, values: dict, path: str) -> str | None:
    """Methods x tasks heatmap of the score relative to full FT (%), centred on 100."""
    from .overview import method_labels
    from .plots import _plt

    labels = method_labels(cols)
    grid = np.array([[values.get((lb, c.title)) if values.get((lb, c.title)) is not None else np.nan
                      for c in cols] for lb in labels], float)
    if np.all(np.isnan(grid)):
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(2.2 + 1.5 * len(cols), 1.2 + 0.38 * len(labels)))
    span = max(5.0, float(np.nanmax(np.abs(grid - 100))))
    im = ax.imshow(grid, cmap="RdYlGn", vmin=100 - span, vmax=100 + span, aspect="auto")
    ax.set_xticks(range(len(cols)), [f"{c.title.replace(' (', chr(10) + '(')}\n{c.metric} {'↑' if c.higher else '↓'}" for c in cols],
                  fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    for i in range(len(labels)):
        for j in range(len(cols)):
            if not np.isnan(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.0f}", ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax, label="% of full FT (> 100 = better)")
    ax.set_title("score relative to full fine-tuning", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def build(dirs: list, output_dir: str) -> tuple:
    from ..tasks import load_families
    from .overview import overview_blocks
    from .tables import summarize

    load_families()
    rows, studies = _load(dirs)
    summaries = summarize(rows)
    assets = os.path.join(output_dir, ASSETS)
    title = "tunelab leaderboard"
    blocks = [("h", 1, title)]
    top, cols, agg = overview_blocks(summaries, assets, output_dir, stem="leaderboard")
    blocks.append(("h", 2, "Main metric per task"))
    blocks += top[:3]  # matrix, recommendation, legend
    if cols:
        blocks.append(("h", 2, "Relative to full fine-tuning"))
        table, values = normalised_table(cols, agg)
        blocks.append(("table", table))
        blocks.append(("p", "Each cell: the method's mean score as % of full fine-tuning's on the same task, oriented so "
                            "that > 100 % is better than full FT (score / full for ↑ metrics, full / score for ↓ "
                            "metrics such as CER; '—' where either is ≤ 0), and its rank on that task among the "
                            "methods that ran it (1 = best in the metric's direction). Tasks without a full "
                            "fine-tuning run are shown, not normalised. Mean rank: over the tasks, among the methods "
                            "completed on every task.", "small"))
        os.makedirs(assets, exist_ok=True)
        hm = heatmap(cols, values, os.path.join(assets, "leaderboard-relative.png"))
        if hm:
            blocks.append(("img", hm, os.path.relpath(hm, output_dir).replace(os.sep, "/"),
                           "score relative to full fine-tuning per method and task (%; green = better than full FT)"))
        blocks += top[3:]  # aggregate over tasks: Friedman, Nemenyi, CD diagram
    blocks.append(("h", 2, "Tasks"))
    trow = []
    for c in cols:
        trs = [r for m in c.ts.methods for r in m.rows]
        trow.append([c.title, _family(trs), c.ts.model, c.metric,
                     "higher is better" if higher_is_better(c.metric) else "lower is better",
                     ", ".join(sorted({r["study"] for r in trs})), str(c.seeds()), c.ts.reference or "none"])
    blocks.append(("table", Table(["task", "family", "model", "main metric", "direction", "compare", "seeds",
                                   "full FT reference"], trow)))
    blocks.append(("h", 2, "Sources"))
    blocks.append(("table", Table(["compare", "folder", "runs", "completed"],
                                  [[n, os.path.abspath(d), str(k), str(done)] for n, d, k, done in studies])))
    return title, blocks


def write_leaderboard(dirs: list, output_dir: str) -> tuple:
    """Write OUTPUT_DIR/leaderboard.md and leaderboard.html; returns their paths."""
    from . import _write
    from .render_html import render_html
    from .render_md import render_md

    if not dirs:
        raise UserError("leaderboard: give at least one compare folder")
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise UserError(f"--output-dir {output_dir}: exists and is not a folder")
    title, blocks = build(dirs, output_dir)  # every input is read before anything is written
    os.makedirs(output_dir, exist_ok=True)
    md, html = os.path.join(output_dir, "leaderboard.md"), os.path.join(output_dir, "leaderboard.html")
    _write(md, render_md(blocks))
    _write(html, render_html(blocks, title))
    return md, html
