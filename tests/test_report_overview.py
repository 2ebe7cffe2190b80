"""The overview (report/overview.py) and ``tunelab leaderboard`` (report/leaderboard.py) on stores with
known numbers, no training: the Friedman statistic and p equal scipy's on the same per-task means, the
≈ marks equal scipy's paired t-test against the best, the recommendation names the cheapest method
within noise of the best (and claims nothing from one seed), and the leaderboard ranks each task in its
metric's own direction (a lower CER ranks higher) across two task families."""

import json
import math
import re

import numpy as np
import pytest
from scipy.stats import friedmanchisquare, rankdata, studentized_range, ttest_rel

from tunelab.cli import main

# task -> (run.json task name, main metric, {label: per-seed values})
GLUE = {
    "sst2": ("sst2", "accuracy", {"full": [0.90, 0.91, 0.92], "lora": [0.89, 0.915, 0.91],
                                  "prompt": [0.70, 0.72, 0.71], "selective": [0.85, 0.84, 0.86]}),
    "mrpc": ("mrpc", "f1", {"full": [0.85, 0.86, 0.84], "lora": [0.86, 0.85, 0.845],
                            "prompt": [0.80, 0.81, 0.79], "selective": [0.87, 0.88, 0.89]}),
    "cola": ("cola", "mcc", {"full": [0.40, 0.42, 0.41], "lora": [0.30, 0.31, 0.29],
                             "prompt": [0.10, 0.12, 0.11], "selective": [0.35, 0.36, 0.34]}),
}
SECONDS = {"full": 10.0, "lora": 6.0, "prompt": 5.0, "selective": 4.0}
TRAINABLE = {"full": 1000, "lora": 20, "prompt": 5, "selective": 250}


def write_store(root, name, tasks: dict, seconds=SECONDS, model="minilm"):
    """A compare folder: results.sqlite with one completed row per (task, label, seed), each run folder
    holding a run.json naming its task."""
    from tunelab.results.store import Store

    root.mkdir(parents=True, exist_ok=True)
    store = Store(str(root / "results.sqlite"))
    grid = []
    for task, (task_name, metric, per_label) in tasks.items():
        for label, values in per_label.items():
            for seed, v in enumerate(values):
                rid = f"{task}--{label}--{model}--s{seed}"
                d = root / "runs" / rid
                d.mkdir(parents=True)
                (d / "run.json").write_text(json.dumps({"task": task_name, "status": "completed"}))
                store._upsert({
                    "run_id": rid, "task": task, "label": label, "method": label if label in SECONDS else "full",
                    "model": model, "seed": seed, "status": "completed", "config_hash": "h", "run_dir": str(d),
                    "main_metric": metric, "main_value": v, "metrics_json": json.dumps({metric: v}),
                    "history_json": "[]", "params_json": "{}", "trainable": TRAINABLE.get(label, 1000),
                    "total": 1000, "trainable_pct": 100.0 * TRAINABLE.get(label, 1000) / 1000,
                    "trainable_without_head": TRAINABLE.get(label, 1000), "head": 0,
                    "train_seconds": seconds.get(label, 10.0), "samples_per_second": 1.0, "peak_rss_mb": 500.0})
                grid.append(rid)
    store.set_meta(grid=grid, name=name)
    store.close()
    return root


def means(tasks: dict) -> dict:
    return {t: {lb: float(np.mean(v)) for lb, v in per.items()} for t, (_, _, per) in tasks.items()}


def md_rows(md: str, after: str) -> dict:
    """The first markdown table after ``after``: {first cell: {header: cell}}."""
    lines = md.split(after, 1)[1].strip().split("\n\n")[0].splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return {cells[0]: dict(zip(header, cells)) for cells in
            ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:])}


def test_report_friedman_and_marks_equal_scipy(tmp_path):
    from tunelab.report import write_report

    out = write_store(tmp_path / "study", "glue-3seeds", GLUE)
    md_path, html_path = write_report(str(out))
    md = open(md_path, encoding="utf-8").read()
    assert md.index("## Overview") < md.index("Recommendation:") < md.index("## Study")

    # Friedman over the per-task means, independently: scipy on the same numbers
    mu = means(GLUE)
    labels = ["full", "lora", "prompt", "selective"]
    stat, p = friedmanchisquare(*[[mu[t][lb] for t in GLUE] for lb in labels])
    m = re.search(r"χ² = ([0-9]+\.[0-9]+), p = ([0-9]+\.[0-9]+)", md)
    assert m and float(m.group(1)) == pytest.approx(stat, abs=5e-4) and float(m.group(2)) == pytest.approx(p, abs=5e-4)
    from tunelab.report.overview import aggregate, columns
    from tunelab.report.tables import summarize
    from tunelab.results.store import Store

    store = Store(str(out / "results.sqlite"))
    rows = store.rows(store.meta()["grid"])
    store.close()
    agg = aggregate(columns(summarize(rows)))
    assert agg.statistic == pytest.approx(stat, rel=1e-12) and agg.p == pytest.approx(p, rel=1e-12)
    # mean ranks (1 = best, all metrics higher-is-better here) and Nemenyi's CD (Demšar's q_0.05 for k=4: 2.569)
    ranks = np.vstack([rankdata([-mu[t][lb] for lb in labels]) for t in GLUE]).mean(0)
    assert [agg.mean_rank[lb] for lb in labels] == pytest.approx(list(ranks))
    q = studentized_range.ppf(0.95, 4, np.inf) / math.sqrt(2)
    assert q == pytest.approx(2.569, abs=1e-3) and agg.cd == pytest.approx(q * math.sqrt(4 * 5 / (6 * 3)))

    matrix = md_rows(md, "## Overview")
    for t, (_, metric, per) in GLUE.items():
        best = max(per, key=lambda lb: mu[t][lb])
        col = f"{t}: {metric} ↑"
        assert matrix[best][col].startswith("**")
        for lb, vals in per.items():
            if lb == best:
                continue
            tie = ttest_rel(vals, per[best]).pvalue >= 0.05
            assert matrix[lb][col].endswith("≈") == tie, (t, lb, matrix[lb][col])
    assert matrix["lora"]["train time × full FT"] == "0.60" and matrix["full"]["trainable %"] == "100"
    # full is the best on sst2 and cola and within noise of selective on mrpc (p = 0.096): the only tie everywhere
    rec = md.split("Recommendation:", 1)[1].split("\n", 1)[0]
    assert "sst2 (accuracy ↑): best mean full 0.9100; cheapest not distinguishable from it" in rec
    assert "mrpc (f1 ↑): best mean selective" in rec
    assert ttest_rel(GLUE["mrpc"][2]["full"], GLUE["mrpc"][2]["selective"]).pvalue >= 0.05
    assert "Overall: 1 method (full) is not distinguishable from the best on every task; the cheapest is full" in rec
    html = open(html_path, encoding="utf-8").read()
    assert '<p class="rec">Recommendation:' in html and 'src="data:image/png;base64,' in html  # the CD diagram
    findings = md.split("## Findings", 1)[1].split("## ", 1)[0]
    assert findings.count("\n- On ") == 3  # one bullet per task


def test_recommendation_picks_the_cheapest_tie_and_one_seed_claims_nothing(tmp_path):
    from tunelab.report.overview import aggregate, columns, recommendation
    from tunelab.report.tables import summarize

    from tunelab.report import write_report

    tasks = {"sst2": ("sst2", "accuracy", {"full": [0.90, 0.91, 0.92], "lora": [0.905, 0.90, 0.915],
                                           "prompt": [0.70, 0.72, 0.71]}),
             "mrpc": ("mrpc", "f1", {"full": [0.85, 0.86, 0.84], "lora": [0.86, 0.85, 0.845],
                                     "prompt": [0.80, 0.81, 0.79]})}
    out = write_store(tmp_path / "a", "tie", tasks)
    md = open(write_report(str(out))[0], encoding="utf-8").read()
    rec = md.split("Recommendation:", 1)[1].split("\n", 1)[0]
    assert "Overall: 2 methods (full, lora) are not distinguishable from the best on every task; the cheapest is lora (0.60×" in rec
    one = {t: (n, mt, {lb: v[:1] for lb, v in per.items()}) for t, (n, mt, per) in tasks.items()}
    out1 = write_store(tmp_path / "b", "one-seed", one)
    md1 = open(write_report(str(out1))[0], encoding="utf-8").read()
    rec1 = md1.split("Recommendation:", 1)[1].split("\n", 1)[0]
    assert "one seed per method on every task: too few to test" in rec1 and "claims no recommendation" in rec1
    assert "≈" not in md_rows(md1, "## Overview")["lora"]["sst2: accuracy ↑"]
    assert "Friedman test over tasks: not applicable (needs >= 3 methods" not in md1  # 3 methods, 2 tasks: it applies
    two = {"sst2": (tasks["sst2"][0], "accuracy", {lb: v for lb, v in tasks["sst2"][2].items() if lb != "prompt"})}
    out2 = write_store(tmp_path / "c", "one-task", two)
    md2 = open(write_report(str(out2))[0], encoding="utf-8").read()
    assert "Aggregate over tasks (mean rank, Friedman test): not applicable (needs >= 3 methods" in md2
    noref = {"cola": ("cola", "mcc", {"lora": [0.3, 0.31, 0.29], "selective": [0.31, 0.3, 0.3], "prompt": [0.1, 0.2, 0.1]})}
    md3 = open(write_report(str(write_store(tmp_path / "d", "no-full", noref)))[0], encoding="utf-8").read()
    rec3 = md3.split("Recommendation:", 1)[1].split("\n", 1)[0]
    # selective is best and cheapest (4 s); lora is within noise of it, prompt is not
    assert "best mean selective 0.3033; selective is also the cheapest of the 2 methods" in rec3
    assert "no full fine-tuning run on this task to compare with" in rec3
    del summarize, aggregate, columns, recommendation


ASR = {"speech-accents": ("speech-accents", "cer", {"full": [0.20], "lora": [0.10], "selective": [0.30]})}
GLUE1 = {"sst2": ("sst2", "accuracy", {"full": [0.90], "lora": [0.85], "selective": [0.80]}),
         "mrpc": ("mrpc", "f1", {"full": [0.80], "lora": [0.82], "selective": [0.70]})}


def test_leaderboard_ranks_each_task_in_its_own_direction(tmp_path, capsys):
    glue = write_store(tmp_path / "glue", "glue-quick", GLUE1)
    asr = write_store(tmp_path / "asr", "asr-quick", ASR, model="whisper-tiny")
    out = tmp_path / "board"
    assert main(["leaderboard", str(glue), str(asr), "--output-dir", str(out)]) == 0
    md = (out / "leaderboard.md").read_text(encoding="utf-8")
    raw = md_rows(md, "## Main metric per task")
    col = "speech-accents (whisper-tiny): cer ↓"
    assert raw["lora"][col] == "**0.1000**" and not raw["selective"][col].startswith("**")  # lower CER is best
    assert raw["full"]["sst2 (minilm): accuracy ↑"] == "**0.9000**"
    # mean rank over the 3 tasks: lora 2,1,1; full 1,2,2; selective 3,3,3 (a higher-is-better CER would put selective first)
    assert raw["lora"]["mean rank"] == "**1.33**" and raw["full"]["mean rank"] == "1.67" and raw["selective"]["mean rank"] == "3.00"
    rel = md_rows(md, "## Relative to full fine-tuning")
    assert rel["lora"]["speech-accents (whisper-tiny): % of full FT (rank)"] == "**200.0 % (#1/3)**"  # 0.20 / 0.10
    assert rel["selective"]["speech-accents (whisper-tiny): % of full FT (rank)"] == "66.7 % (#3/3)"
    assert rel["lora"]["sst2 (minilm): % of full FT (rank)"] == f"{100 * 0.85 / 0.90:.1f} % (#2/3)"
    stat, p = friedmanchisquare([0.9, 0.8, -0.2], [0.85, 0.82, -0.1], [0.8, 0.7, -0.3])
    assert f"χ² = {stat:.3f}, p = {p:.3f}" in md
    tasks = md_rows(md, "## Tasks")
    assert tasks["speech-accents (whisper-tiny)"]["family"] == "asr" and tasks["sst2 (minilm)"]["family"] == "glue"
    assert tasks["speech-accents (whisper-tiny)"]["direction"] == "lower is better"
    html = (out / "leaderboard.html").read_text(encoding="utf-8")
    assert html.count('src="data:image/png;base64,') == 2  # relative-score heatmap + CD diagram
    assert (out / "leaderboard_files" / "leaderboard-cd.png").stat().st_size > 5000


def test_leaderboard_task_without_full_ft_is_shown_not_normalised(tmp_path, capsys):
    a = write_store(tmp_path / "a", "a", GLUE1)
    b = write_store(tmp_path / "b", "b", {"cola": ("cola", "mcc", {"lora": [0.3], "selective": [0.2]})})
    out = tmp_path / "o"
    assert main(["leaderboard", str(a), str(b), "--output-dir", str(out)]) == 0
    rel = md_rows((out / "leaderboard.md").read_text(encoding="utf-8"), "## Relative to full fine-tuning")
    assert rel["lora"]["cola: % of full FT (rank)"] == "no full FT (#1/2)" and rel["full"]["cola: % of full FT (rank)"] == "—"
    # the same folder twice: one column per compare, named after it
    assert main(["leaderboard", str(a), str(a), "--output-dir", str(tmp_path / "twice")]) == 0
    assert "sst2 [a (a)]" in (tmp_path / "twice" / "leaderboard.md").read_text(encoding="utf-8")
    # bad input: one line, exit 2, nothing written
    capsys.readouterr()
    assert main(["leaderboard", str(a), str(tmp_path / "nope"), "--output-dir", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope: no such folder" in err[0]
    assert not (tmp_path / "bad").exists()
