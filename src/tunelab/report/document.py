"""The report as a list of blocks, built from ``OUTPUT_DIR/results.sqlite`` (and the run folders for
predictions, layer-activity heatmaps and attention analyses); ``render_md`` / ``render_html`` print it.

Blocks: ("h", level, text) · ("p", text) · ("table", Table) · ("img", abs_path, rel_path, caption)
· ("code", text[, lang]) · ("marked", caption, [(text, tag)]) (tasks/keyphrase/report.py).
A task family adds its own section through ``tasks.REPORT_SECTIONS`` (name -> fn(completed rows) ->
(heading, blocks)); its tables come as ("table", header, rows).
"""

import json
import os
import shlex
import time

from ..tasks import REPORT_SECTIONS, load_families
from .budget import TOLERANCE, study_budget
from .findings import significance_notes
from .overview import overview_blocks, task_bullet
from ..tasks.keyphrase.report import keyphrase_blocks
from .plots import make_plots
from .search import search_blocks
from .tables import Table, runs_table, summarize, task_table

ASSETS = "report_files"


def _rel(path: str, root: str) -> str:
    return os.path.relpath(path, root).replace(os.sep, "/")


def _run_dir(r: dict, root: str) -> str:
    """The run's folder: OUTPUT_DIR/runs/<run-id> (so a moved or copied study still reports), else as stored."""
    here = os.path.join(root, "runs", r["run_id"])
    return here if os.path.isdir(here) else r["run_dir"]


def build(output_dir: str, store) -> tuple:
    """-> (title, blocks)."""
    load_families()  # metric directions and the families' report sections
    meta = store.meta()
    grid = meta.get("grid")
    rows = store.rows(grid)
    for r in rows:
        r["run_dir"] = _run_dir(r, output_dir)
    name = meta.get("name") or os.path.basename(os.path.abspath(output_dir))
    title = f"tunelab compare: {name}"
    summaries = summarize(rows)
    budget = study_budget(meta, rows)
    for ts in summaries:
        ts.layer_budget = budget
    done = [r for r in rows if r["status"] == "completed"]
    blocks = [("h", 1, title), ("h", 2, "Overview")]
    top, cols, _agg = overview_blocks(summaries, os.path.join(output_dir, ASSETS), output_dir)
    blocks += top
    blocks.append(("h", 2, "Study"))
    labels = list(dict.fromkeys(r["label"] for r in rows))
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    models = list(dict.fromkeys(r["model"] for r in rows))
    seeds = sorted({r["seed"] for r in rows})
    blocks.append(("p", f"{len(done)} of {len(rows)} runs completed: tasks {', '.join(tasks)}; methods "
                        f"{', '.join(labels)}; models {', '.join(models)}; seeds {', '.join(map(str, seeds))}. "
                        f"Report written {time.strftime('%Y-%m-%d %H:%M:%S %z')} from {_rel(store.path, output_dir)}."))
    if meta.get("jobs"):
        blocks.append(("p", f"Runs executed {meta['jobs']} at a time, each its own process; torch threads per run: "
                            f"{', '.join('default' if t is None else str(t) for t in meta.get('threads') or [None])}."))
    if meta.get("description"):
        blocks.append(("p", meta["description"]))

    blocks.append(("h", 2, "Findings"))
    blocks.append(("ul", [task_bullet(c) for c in cols], "findings"))
    notes = significance_notes(summaries)
    if notes:
        blocks.append(("p", " ".join(notes), "small"))

    blocks.append(("h", 2, "Results per task"))
    blocks.append(("p", "Dev-set metrics as mean ± sample std over seeds (one seed: the run's value). "
                        "Δ and p compare each method with full fine-tuning on the same task and seeds. Trainable "
                        "parameters are counted at the start of training, with and without the task head "
                        "(each run's head.modules: classifier + pooler for encoders, the score layer of a reward "
                        "model, none for causal-LM objectives and Whisper, whose LM head is tied to the token "
                        "embeddings); the % is of all model parameters. Train time excludes model loading and "
                        "evaluation; peak RSS is the run process's high-water mark. "
                        "Best value per column in bold; train time × full = the ratio of mean train times; the "
                        "verdict vs full is the findings' (significant only from the paired t-test over seeds)."
                        + _share_note(summaries, budget)))
    plots = make_plots(summaries, os.path.join(output_dir, ASSETS))
    for ts in summaries:
        blocks.append(("h", 3, f"{ts.task} — {ts.model} (main metric: {ts.main_metric or 'n/a'})"))
        blocks.append(("table", task_table(ts)))
        dyn = _dynamic_table(ts)
        if dyn:
            blocks.append(("p", "Layer-selecting methods (dynamic ones change which layers train): their time-averaged "
                                "trainable share of the backbone (embeddings + layers, head excluded) and optimizer state:"))
            blocks.append(("table", dyn))
        p = plots.get((ts.model, ts.task), {})
        if p.get("pareto"):
            blocks.append(("img", p["pareto"], _rel(p["pareto"], output_dir),
                           f"{ts.task}: dev {ts.main_metric} vs trainable % (log) and vs train time; "
                           f"error bars = std over seeds; dashed = Pareto front"))
        if p.get("curves"):
            blocks.append(("img", p["curves"], _rel(p["curves"], output_dir),
                           f"{ts.task}: dev {ts.main_metric} after each epoch (mean over seeds)"))

    heat = [(r, os.path.join(r["run_dir"], "layer_activity.png")) for r in done
            if os.path.isfile(os.path.join(r["run_dir"], "layer_activity.png"))]
    if heat:
        blocks.append(("h", 2, "Layer activity of dynamic methods"))
        blocks.append(("p", "Which transformer layers trained at each step (from each run's layer timeline)."))
        for r, path in heat:
            blocks.append(("img", path, _rel(path, output_dir), f"{r['run_id']}: layer activity"))

    for name in REPORT_SECTIONS.names():  # each task family's own section (transcripts, keyphrase examples)
        heading, extra = REPORT_SECTIONS.get(name)(done)
        if extra:
            blocks.append(("h", 2, heading))
            blocks += [("table", Table(b[1], b[2])) if b[0] == "table" and len(b) == 3 else b for b in extra]

    att = _attention_blocks(done, output_dir)
    if att:
        blocks.append(("h", 2, "Attention analysis"))
        blocks += att

    blocks += search_blocks(meta)  # compare search: (report/search.py)
    blocks += _reproduce_blocks(meta, rows, output_dir)
    blocks.append(("h", 2, "All runs"))
    blocks.append(("p", "Every run of the grid; each folder's run.json holds the full record."))
    blocks.append(("table", runs_table(rows)))
    return title, blocks


def _share_note(summaries: list, budget: float | None) -> str:
    """What the 'backbone share %' column means (report/budget.py); empty when no row has one."""
    if not any(m.share[0] is not None for ts in summaries for m in ts.methods):
        return ""
    s = (" Backbone share % = the time-averaged share of the backbone's non-head parameters (embeddings + "
         "layers) that trained (run.json params.trainable_fraction_mean); ")
    if budget is None:
        return s + "the study sets no single layer budget."
    return s + (f"the study's layer budget is {100 * budget:g} %, and a layer-selecting method more than "
                f"{100 * TOLERANCE:g} points off it is flagged ⚠.")


def _dynamic_table(ts) -> Table | None:
    rows = []
    for m in ts.methods:
        ps = [r.get("params") or {} for r in m.rows]
        if not ps or "trainable_fraction_mean" not in ps[0]:
            continue
        mean = sum(p["trainable_fraction_mean"] for p in ps) / len(ps)
        rows.append([m.label, f"{100 * mean:.2f}", f"{100 * max(p.get('trainable_fraction_max', 0) for p in ps):.2f}",
                     _f(ps, "optimizer_state_mb_mean"), _f(ps, "optimizer_state_mb_peak"),
                     _f(ps, "optimizer_state_mb_if_not_released"), _f(ps, "optimizer_state_mb_if_all_trained")])
    if not rows:
        return None
    header = ["method", "mean trainable % of backbone", "max %", "optimizer state MB (mean)",
              "optimizer state MB (peak)", "MB if frozen layers kept their state", "MB if every layer trained"]
    keep = [j for j in range(len(header)) if j == 0 or any(r[j] != "—" for r in rows)]
    return Table([header[j] for j in keep], [[r[j] for j in keep] for r in rows])


def _f(ps, key):
    vals = [p[key] for p in ps if p.get(key) is not None]
    return f"{sum(vals) / len(vals):.2f}" if vals else "—"


def _f4(v, signed: bool = False) -> str:
    if not isinstance(v, (int, float)):
        return "—"
    return f"{v:+.4f}" if signed else f"{v:.4f}"


def _attention_blocks(done: list, root: str) -> list:
    out = []
    for r in done:
        d = r["run_dir"]
        jpath, ipath = os.path.join(d, "attention.json"), os.path.join(d, "attention.png")
        if not (os.path.isfile(jpath) or os.path.isfile(ipath)):
            continue
        out.append(("h", 3, r["run_id"]))
        if os.path.isfile(jpath):
            try:
                with open(jpath, encoding="utf-8") as f:
                    data = json.load(f)
            except (OSError, ValueError):
                data = None
            overall = data.get("overall") if isinstance(data, dict) else None
            if isinstance(overall, dict) and all(isinstance(v, dict) for v in overall.values()):
                # tunelab analyze attention: means over layers and heads, base vs fine-tuned
                defs = data.get("definitions") or {}
                out.append(("p", f"{data.get('samples', '?')} {data.get('split', 'dev')} examples, "
                                 f"{data.get('query_tokens', '?')} query tokens; means over all layers and heads."))
                out.append(("table", Table(["measure", "base", "fine-tuned", "Δ", "meaning"], [
                    [k, _f4(v.get("base")), _f4(v.get("finetuned")), _f4(v.get("delta"), signed=True), defs.get(k, "")]
                    for k, v in overall.items()])))
            elif isinstance(data, dict):
                items = [(k, v) for k, v in data.items() if isinstance(v, (str, int, float, bool)) or v is None]
                if items:
                    out.append(("table", Table(["key", "value"], [[k, _f4(v) if isinstance(v, float) else str(v)]
                                                                    for k, v in items])))
        if os.path.isfile(ipath):
            out.append(("img", ipath, _rel(ipath, root), f"{r['run_id']}: attention analysis"))
    return out


def _reproduce_blocks(meta: dict, rows: list, root: str) -> list:
    out = [("h", 2, "Reproduce")]
    cmd = meta.get("command")
    if cmd:
        out.append(("p", "Command (run from " + meta.get("cwd", "?") + "):"))
        out.append(("code", " ".join(shlex.quote(a) for a in cmd), "sh"))
    if meta.get("config_text"):
        out.append(("p", f"Config ({meta.get('source', '')}); command-line overrides: "
                         f"{', '.join(meta.get('overrides') or []) or 'none'}:"))
        out.append(("code", meta["config_text"], "yaml"))
    versions = {}
    for r in rows:
        for k, v in (r.get("versions") or {}).items():
            versions.setdefault(k, set()).add(str(v))
    if versions:
        out.append(("p", "Versions recorded by the runs:"))
        out.append(("table", Table(["package", "version"], [[k, ", ".join(sorted(v))] for k, v in versions.items()])))
    data = {}
    for r in rows:
        data.update(r.get("data") or {})
    if data:
        out.append(("p", "Data files read (sha256):"))
        out.append(("table", Table(["file", "sha256"], [[k, v] for k, v in sorted(data.items())])))
    return out
