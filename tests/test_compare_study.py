"""A real compare study end to end (see ``compare_study`` in conftest.py): kill + resume, the SQLite
store, and report.md numbers against each run's run.json."""

import json
import re
import sqlite3
import statistics

import pytest

from compare_helpers import KILL_AFTER, N_RUNS, run_json

LABELS = ["full", "lora-r4", "lora-r16"]


def store_rows(out):
    with sqlite3.connect(out / "results.sqlite") as con:
        con.row_factory = sqlite3.Row
        return [dict(r) for r in con.execute("SELECT * FROM runs")]


def md_table(md: str, heading_prefix: str) -> list:
    """Rows (as lists of cells) of the first table after the heading starting with heading_prefix."""
    part = md.split(heading_prefix, 1)[1]
    block = []
    for ln in part.splitlines():
        if ln.startswith("|"):
            block.append(ln)
        elif block:
            break
    header = [c.strip() for c in block[0].strip("|").split("|")]
    return [dict(zip(header, [c.strip().strip("*") for c in ln.strip("|").split("|")])) for ln in block[2:]]


def test_sigkill_mid_grid_then_rerun_completes_only_the_missing_runs(compare_study):
    s = compare_study
    out = s["dir"]
    assert len(s["killed_completed"]) >= KILL_AFTER and len(s["killed_completed"]) < N_RUNS
    assert s["killed_in_flight"], "the kill did not land while a run was training"
    assert s["orphans"] == [], "a run process outlived the killed compare"
    assert all(st != "completed" for st in s["in_flight_status_after_kill"].values())
    res = s["resume"]
    assert res.returncode == 0, res.stderr[-2000:]
    k = len(s["killed_completed"])
    assert f"runs: {N_RUNS - k} run now, {k} already done, 0 failed" in res.stdout
    rows = store_rows(out)
    assert len(rows) == N_RUNS and len({r["run_id"] for r in rows}) == N_RUNS
    assert all(r["status"] == "completed" for r in rows)
    # the runs finished before the kill were not redone
    for rid, started in s["killed_started_at"].items():
        assert run_json(out, rid)["started_at"] == started
    # the interrupted run was redone from scratch and is complete now
    for rid in s["killed_in_flight"]:
        assert run_json(out, rid)["status"] == "completed"


def test_store_rows_hold_run_json_numbers_and_matching_hashes(compare_study):
    for r in store_rows(compare_study["dir"]):
        rec = run_json(compare_study["dir"], r["run_id"])
        cell = json.loads((compare_study["dir"] / "runs" / r["run_id"] / "compare-cell.json").read_text())
        assert rec["status"] == "completed"
        assert r["config_hash"] == cell["config_hash"] and cell["started_at"] == rec["started_at"]
        assert json.loads(r["metrics_json"]) == rec["metrics"]
        assert r["main_value"] == rec["metrics"][rec["main_metric"]]
        assert r["trainable"] == rec["params"]["trainable"]
        assert r["train_seconds"] == rec["time"]["train_seconds"]
        assert r["peak_rss_mb"] == rec["memory"]["peak_rss_mb"]
        assert (r["task"], r["method"], r["seed"]) == (rec["task"], rec["method"], rec["seed"])


def test_length_grouped_runs_write_predictions_in_dataset_order(compare_study):
    out = compare_study["dir"]
    rec = run_json(out, "sst2--full--minilm--s0")
    assert rec["config"]["group_by_length"] and rec["config"]["fused_adamw"]
    rows = (out / "runs" / "sst2--full--minilm--s0" / "predictions.tsv").read_text().splitlines()[1:]
    lines = [int(r.split("\t")[2]) for r in rows]
    assert len(lines) == 48 and lines == sorted(lines)


def test_lora_variants_are_distinct_runs(compare_study):
    out = compare_study["dir"]
    r4 = run_json(out, "sst2--lora-r4--minilm--s0")
    r16 = run_json(out, "sst2--lora-r16--minilm--s0")
    assert r4["config"]["lora_r"] == 4 and r16["config"]["lora_r"] == 16
    assert r16["params"]["trainable"] > r4["params"]["trainable"]


def test_report_md_mean_std_rows_equal_run_json(compare_study):
    out = compare_study["dir"]
    md = (out / "report.md").read_text()
    rows = {r["method"]: r for r in md_table(md, "### sst2")}
    assert set(LABELS) <= set(rows)
    for label in LABELS:
        recs = [run_json(out, f"sst2--{label}--minilm--s{s}") for s in (0, 1)]
        accs = [r["metrics"]["accuracy"] for r in recs]
        assert rows[label]["seeds"] == "2/2"
        assert rows[label]["accuracy"] == f"{statistics.mean(accs):.4f} ± {statistics.stdev(accs):.4f}"
        times = [r["time"]["train_seconds"] for r in recs]
        assert rows[label]["train time (s)"] == f"{statistics.mean(times):.3f} ± {statistics.stdev(times):.3f}"
        assert rows[label]["trainable params"] == str(recs[0]["params"]["trainable"])
        assert rows[label]["trainable excl. head"] == str(recs[0]["params"]["trainable_without_head"])
        assert rows[label]["trainable %"] == f"{recs[0]['params']['trainable_pct']:.4f}"
        if label != "full":
            # two seeds: the paired t-test over seeds, not the dev-set bootstrap (report/stats.py)
            assert re.fullmatch(r"(< 0\.001|[01]\.\d{3}) \(t-test, n=2\)|n/a \(t-test\)", rows[label]["p vs full"])
    # every single run appears with its own numbers
    runs = {r["run id"]: r for r in md_table(md, "## All runs")}
    assert len(runs) == N_RUNS
    for rid, r in runs.items():
        rec = run_json(out, rid)
        assert r["status"] == "completed"
        assert r["value"] == f"{rec['metrics'][rec['main_metric']]:.4f}"
        assert r["train time (s)"] == f"{rec['time']['train_seconds']:.3f}"


def test_report_has_plots_findings_and_reproduction(compare_study):
    out = compare_study["dir"]
    md = (out / "report.md").read_text()
    for png in ("report_files/pareto-minilm-sst2.png", "report_files/curves-minilm-sst2.png"):
        assert f"]({png})" in md and (out / png).stat().st_size > 5000
    findings = md.split("## Findings", 1)[1].split("## ", 1)[0]
    assert "On sst2 (minilm, dev accuracy)" in findings
    assert "tunelab compare" in md and "--data-dir" in md
    rec = run_json(out, "sst2--full--minilm--s0")
    for sha in rec["data"].values():
        assert sha in md
    assert rec["versions"]["torch"] in md


@pytest.mark.parametrize("missing", ["report.md", "report.html"])
def test_report_command_rewrites_the_report(compare_study, missing, tmp_path):
    from tunelab.cli import main

    out = compare_study["dir"]
    (out / missing).unlink()
    assert main(["report", str(out)]) == 0
    assert (out / missing).stat().st_size > 1000
    assert main(["report", str(tmp_path)]) == 2  # no results.sqlite


def test_report_embeds_layer_activity_and_attention_found_in_run_folders(compare_study, tmp_path):
    import shutil

    from tunelab.report import write_report

    study = tmp_path / "study"
    shutil.copytree(compare_study["dir"], study)  # a moved study still reports from its own folders
    run = study / "runs" / "sst2--lora-r4--minilm--s0"
    png = study / "report_files" / "pareto-minilm-sst2.png"
    shutil.copy(png, run / "layer_activity.png")
    shutil.copy(png, run / "attention.png")
    (run / "attention.json").write_text(json.dumps({
        "samples": 48, "split": "validation", "query_tokens": 900,
        "definitions": {"entropy": "mean attention entropy (nats)"},
        "overall": {"entropy": {"base": 1.5, "finetuned": 1.25, "delta": -0.25}}}))
    md_path, html_path = write_report(str(study))
    md = open(md_path).read()
    assert "## Layer activity of dynamic methods" in md and "](runs/sst2--lora-r4--minilm--s0/layer_activity.png)" in md
    att = md.split("## Attention analysis", 1)[1]
    assert "| entropy | 1.5000 | 1.2500 | -0.2500 | mean attention entropy (nats) |" in att
    assert "](runs/sst2--lora-r4--minilm--s0/attention.png)" in att
    html = open(html_path).read()
    assert html.count("<img ") == 4 and str(compare_study["dir"]) not in md.split("## Reproduce")[0]
