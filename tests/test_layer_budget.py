"""Equal budgets and honest significance (issue 15):

- ``--layer-budget``: every layer-selecting method lands within 2 points of the budget on a tiny
  real run (minilm, SST-2), the recorded share equals an independent count (the timeline's active
  layers x steps, layer sizes counted from the original model), LISA with a budget never touches
  the embeddings (bit-identical after training), contradicting options are one-line UserErrors;
- the report puts the achieved share next to the metric and flags a row off budget (markdown and HTML);
- the findings call a difference significant only from the across-seed paired t-test, and the
  verdict equals scipy's p-value decision; one seed is never "significant";
- the quick-seeds preset is the quick grid with 3 seeds.
"""

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from scipy.stats import ttest_rel

from conftest import tiny_run_args
from tunelab.cli import main

BUDGET = 0.25
RUN_EXTRA = {  # decisions every 8 steps of the 48
    "selective": [],
    "alf": ["--alf-interval", "8"],
    "lisa": ["--lisa-interval", "8"],
    "autofreeze": ["--autofreeze-interval", "8"],
    "badam": ["--badam-interval", "8"],
}


def minilm_sizes():
    """Independent count from the original checkpoint: each layer's parameters, and the non-head
    backbone (everything but the pooler, which tunelab's head includes)."""
    from tunelab.models import resolve_model

    with safe_open(f"{resolve_model('minilm')}/model.safetensors", "pt") as f:
        shapes = {k: f.get_slice(k).get_shape() for k in f.keys() if k != "embeddings.position_ids"}
    numel = {k: int(np.prod(s)) for k, s in shapes.items()}
    layers = [sum(v for k, v in numel.items() if k.startswith(f"encoder.layer.{i}.")) for i in range(6)]
    backbone = sum(v for k, v in numel.items() if not k.startswith("pooler."))
    return layers, backbone


@pytest.fixture(scope="module")
def budget_runs(glue_data_dir, tmp_path_factory):
    """One tiny run per layer-selecting method at --layer-budget 0.25: 96 SST-2 examples, batch 2 =
    48 optimizer steps (ALF's first step trains only the head: 47/48 of its cap on average)."""
    root = tmp_path_factory.mktemp("budget")
    recs = {}
    for method, extra in RUN_EXTRA.items():
        out = root / method
        args = tiny_run_args("sst2", method, glue_data_dir, str(out), "--layer-budget", str(BUDGET), "--threads", "1",
                             "--max-seq-length", "32", *extra)
        args[args.index("--max-train-samples") + 1] = "96"
        args[args.index("--max-eval-samples") + 1] = "32"
        args[args.index("--batch-size") + 1] = "2"
        assert main(args) == 0, method
        with open(out / "run.json", encoding="utf-8") as f:
            recs[method] = (out, json.load(f))
    return recs


@pytest.mark.parametrize("method", list(RUN_EXTRA))
def test_budget_lands_within_two_points_and_equals_an_independent_count(budget_runs, method):
    out, rec = budget_runs[method]
    layers, backbone = minilm_sizes()
    p = rec["params"]
    assert p["layer_budget"] == BUDGET
    share = p["trainable_fraction_mean"]
    if method == "autofreeze":  # capped at the budget until its own rule freezes more (then it may end below)
        assert rec["layers"][0]["active"] == [3, 4, 5] and share <= BUDGET, share
    else:
        assert abs(share - BUDGET) <= 0.02, (method, share)
    assert p["trainable_fraction_max"] <= BUDGET
    steps = rec["time"]["steps"]
    assert steps == 48
    if method == "selective":
        assert rec["method_details"]["layers"] == [3, 4, 5]  # the top layers that fit: 3 x 7.9 %
        expected = sum(layers[3:]) / backbone
    else:
        # the timeline: the layers active in (step, until] trained in each of those steps
        tl = rec["layers"]
        trained = sum((e["until"] - e["step"]) * sum(layers[i] for i in e["active"]) for e in tl)
        assert not any(e["embeddings"] for e in tl)
        assert all(sum(layers[i] for i in e["active"]) <= BUDGET * backbone for e in tl)
        expected = trained / (steps * backbone)
        assert rec["method_details"]["denominator_params"] == backbone
    assert share == pytest.approx(expected, abs=1e-6)


def test_budget_sets_the_methods_own_options(budget_runs):
    assert budget_runs["alf"][1]["config"]["alf_budget"] == BUDGET
    assert budget_runs["lisa"][1]["config"]["lisa_freeze_embeddings"] is True
    assert budget_runs["lisa"][1]["method_details"]["gamma"] == 3
    assert budget_runs["badam"][1]["method_details"]["blocks"] == [[0, 1, 2], [3, 4, 5]]
    tl = budget_runs["badam"][1]["layers"]
    assert [e["active"] for e in tl] == [[3, 4, 5], [0, 1, 2]] * 3  # descending blocks of 3, every 8 steps
    af = budget_runs["autofreeze"][1]["layers"]
    assert af[0]["active"] == [3, 4, 5] and not af[0]["embeddings"]  # capped from the start
    for a, b in zip(af, af[1:]):
        assert set(b["active"]) <= set(a["active"])  # then it only ever freezes more


def test_lisa_with_a_budget_never_trains_the_embeddings(budget_runs):
    from tunelab.models import resolve_model

    out, rec = budget_runs["lisa"]
    with safe_open(f"{resolve_model('minilm')}/model.safetensors", "pt") as f0, \
            safe_open(str(out / "model.safetensors"), "pt") as f1:
        emb = [k for k in f0.keys() if k.startswith("embeddings.") and k != "embeddings.position_ids"]
        assert len(emb) == 5
        for k in emb:
            assert torch.equal(f0.get_tensor(k), f1.get_tensor("bert." + k)), k  # bit-identical
        moved = [i for i in range(6) if not torch.equal(f0.get_tensor(f"encoder.layer.{i}.output.dense.weight"),
                                                        f1.get_tensor(f"bert.encoder.layer.{i}.output.dense.weight"))]
    drawn = sorted({i for e in rec["layers"] for i in e["active"]})
    assert moved == drawn and moved  # the drawn layers trained, nothing else


def test_budget_blocks_and_conflicts(glue_data_dir, tmp_path, capsys):
    from tunelab.methods.budget import blocks_of

    assert blocks_of(6, 3) == [[0, 1, 2], [3, 4, 5]]
    assert blocks_of(6, 4) == [[0, 1, 2, 3], [2, 3, 4, 5]]  # the last block moved down: every block has 4
    assert blocks_of(12, 5) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [7, 8, 9, 10, 11]]
    bad = [
        (["--method", "selective", "--layers", "top:2"], "--layers top:2 and --layer-budget 0.25"),
        (["--method", "selective", "--train-embeddings"], "--train-embeddings and --layer-budget 0.25: give one"),
        (["--method", "lisa", "--lisa-layers", "4"], "--lisa-layers 4 and --layer-budget 0.25"),
        (["--method", "badam", "--badam-block-layers", "2"], "--badam-block-layers 2 and --layer-budget 0.25"),
        (["--method", "alf", "--alf-budget", "0.3"], "--alf-budget 0.3 and --layer-budget 0.25 disagree"),
        (["--method", "full"], "--layer-budget does not apply to --method full"),
    ]
    for extra, msg in bad:
        args = ["run", "--task", "sst2", "--data-dir", glue_data_dir, "--output-dir", str(tmp_path / "x"),
                "--layer-budget", "0.25", *extra]
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and msg in err[0], err
    assert main(tiny_run_args("sst2", "lisa", glue_data_dir, str(tmp_path / "y"), "--layer-budget", "0.05")) == 2
    assert "--layer-budget 0.05: smaller than one layer" in capsys.readouterr().err


# ---------------------------------------------------------------- the report
def _store_row(tmp_path, label, method, seed, acc, share=None, preds=None):
    """A completed store row with its own predictions.tsv (100 dev examples)."""
    d = tmp_path / "runs" / f"sst2--{label}--m--s{seed}"
    d.mkdir(parents=True)
    labels = [0, 1] * 50
    preds = labels if preds is None else preds
    (d / "predictions.tsv").write_text("split\tindex\tline\tlabel\tprediction\n" + "".join(
        f"validation\t{i}\t{i + 2}\t{y}\t{p}\n" for i, (y, p) in enumerate(zip(labels, preds))))
    params = {} if share is None else {"trainable_fraction_mean": share, "layer_budget": None}
    return {"run_id": d.name, "model": "m", "task": "sst2", "label": label, "method": method, "seed": seed,
            "status": "completed", "metrics": {"accuracy": acc}, "main_metric": "accuracy", "run_dir": str(d),
            "trainable": 1000, "total": 2000, "trainable_pct": 50.0, "trainable_without_head": 990, "head": 10,
            "train_seconds": 1.0, "samples_per_second": 10.0, "peak_rss_mb": 500.0, "peak_cuda_mb": None,
            "history": [], "params": params, "config_hash": "h"}


def _write_store(tmp_path, rows, shared: dict):
    from tunelab.results.store import Store

    store = Store(str(tmp_path / "results.sqlite"))
    for r in rows:
        store._upsert({**r, "main_value": r["metrics"]["accuracy"], "metrics_json": json.dumps(r["metrics"]),
                       "history_json": "[]", "params_json": json.dumps(r["params"])})
    store.set_meta(grid=[r["run_id"] for r in rows], name="budget-test",
                   config={"shared": shared, "overrides": {}, "tasks": [], "models": [], "methods": []})
    store.close()


def test_report_shows_shares_and_flags_rows_off_budget(tmp_path):
    from tunelab.report import write_report

    rows = [_store_row(tmp_path, "full", "full", 0, 0.80),
            _store_row(tmp_path, "lisa", "lisa", 0, 0.79, share=0.6912),  # published LISA: embeddings train
            _store_row(tmp_path, "badam", "badam", 0, 0.78, share=0.2359),
            _store_row(tmp_path, "autofreeze", "autofreeze", 0, 0.77, share=0.2312),
            _store_row(tmp_path, "selective", "selective", 0, 0.76, share=0.0786)]  # one layer
    _write_store(tmp_path, rows, {"layer_budget": BUDGET})
    md_path, html_path = write_report(str(tmp_path))
    md = open(md_path, encoding="utf-8").read()
    table = md.split("### sst2", 1)[1].split("\n\n")[1].splitlines()
    header = [c.strip() for c in table[0].strip("|").split("|")]
    col = header.index("backbone share % (budget 25)")
    assert col == header.index("accuracy") + 1  # next to the metric
    cells = {r.strip("|").split("|")[0].strip(): r.strip("|").split("|")[col].strip() for r in table[2:]}
    assert cells["lisa"] == "69.1 ⚠ off budget" and cells["selective"] == "7.9 ⚠ off budget"
    assert cells["badam"] == "23.6" and cells["autofreeze"] == "23.1" and cells["full"] == "—"
    assert "⚠ off budget: the achieved time-averaged share is more than 2 points" in md
    findings = md.split("## Findings", 1)[1].split("## ", 1)[0]
    assert "so not an equal-budget comparison: lisa (above), selective (below)." in findings
    html = open(html_path, encoding="utf-8").read()
    assert html.count('<td class="flag">') == 2 and '<td class="flag">69.1 ⚠ off budget</td>' in html


# ---------------------------------------------------------------- findings: significant only across seeds
def _findings_for(tmp_path, per_method: dict):
    from tunelab.report.findings import task_findings
    from tunelab.report.tables import summarize

    rows = []
    for label, accs in per_method.items():
        for seed, acc in enumerate(accs):
            rows.append(_store_row(tmp_path, label, "full" if label == "full" else "lora", seed, acc))
    (ts,) = summarize(rows)
    return ts, task_findings(ts)


def _clause_group(text: str, label: str) -> str:
    """The findings sentence naming ``label`` (its verdict is the sentence's opening words)."""
    return next(s for s in text.split(". ") if f"{label} (Δ" in s)


@pytest.mark.parametrize("seeds", [2, 3])
def test_findings_verdict_equals_scipy_paired_ttest_over_seeds(tmp_path, seeds):
    rng = np.random.default_rng(seeds)
    full = [0.80, 0.82, 0.81][:seeds]
    methods = {"full": full,
               "worse": [a - 0.05 + d for a, d in zip(full, [0.001, -0.002, 0.0015])],  # consistently lower
               "noisy": [a + d for a, d in zip(full, [0.03, -0.035, 0.004])],  # up and down
               "better": [a + 0.04 + d for a, d in zip(full, [0.002, -0.001, 0.001])]}
    methods["random"] = [float(a + rng.normal(0, 0.02)) for a in full]
    ts, text = _findings_for(tmp_path, methods)
    for label, accs in methods.items():
        if label == "full":
            continue
        p = ttest_rel(accs, full).pvalue  # scipy, computed here independently
        sig = ts.get(label).significance
        assert sig.test == "t-test" and sig.n == seeds and sig.p == pytest.approx(p)
        sentence = _clause_group(text, label)
        if p < 0.05:
            word = "better" if np.mean(accs) > np.mean(full) else "worse"
            assert sentence.lstrip().startswith(f"Significantly {word} than full FT across seeds"), sentence
        else:
            assert sentence.lstrip().startswith("Within noise across seeds"), sentence
    if seeds == 3:  # these numbers are designed so that both verdicts occur
        assert "Significantly worse" in text and "Within noise across seeds" in text


def test_one_seed_is_never_called_significant(tmp_path):
    labels = [0, 1] * 50
    bad = [1 - y if i < 30 else y for i, y in enumerate(labels)]  # 30 errors: bootstrap p < 0.05
    close = [1 - y if i < 1 else y for i, y in enumerate(labels)]  # 1 error: within dev-set noise
    rows = [_store_row(tmp_path, "full", "full", 0, 1.0),
            _store_row(tmp_path, "bad", "lora", 0, 0.70, preds=bad),
            _store_row(tmp_path, "close", "lora", 0, 0.99, preds=close)]
    from tunelab.report.findings import overall_findings, task_findings
    from tunelab.report.tables import summarize

    (ts,) = summarize(rows)
    assert ts.get("bad").significance.test == "bootstrap" and ts.get("bad").significance.p < 0.05
    assert ts.get("close").significance.p >= 0.05
    text = task_findings(ts)
    assert "ignificant" not in text
    assert _clause_group(text, "bad").lstrip().startswith("One seed: not tested across seeds")
    assert _clause_group(text, "close").lstrip().startswith("Within noise (one seed")
    assert not any(s.startswith("Not significantly worse") for s in overall_findings([ts, ts]))


def test_quick_seeds_is_the_quick_grid_with_three_seeds():
    from tunelab.compare.config import load_compare_config

    quick, seeds = load_compare_config(preset="quick"), load_compare_config(preset="quick-seeds")
    assert quick.seeds == [0] and seeds.seeds == [0, 1, 2] and seeds.name == "quick-seeds"
    a, b = quick.as_dict(), seeds.as_dict()
    for k in ("tasks", "methods", "models", "shared", "jobs"):
        assert a[k] == b[k], k
    assert a["shared"]["layer_budget"] == BUDGET


def test_study_budget_comes_from_the_study_then_alf_then_the_runs():
    from tunelab.report.budget import study_budget

    alf = {"label": "alf", "name": "alf", "options": {"alf_budget": 0.25}}
    cfg = {"shared": {}, "overrides": {}, "tasks": [], "models": [], "methods": [alf]}
    assert study_budget({"config": cfg}, []) == 0.25  # the old quick preset: rivals meant to match ALF
    assert study_budget({"config": {**cfg, "shared": {"layer_budget": 0.3}}}, []) == 0.3
    assert study_budget({"config": {**cfg, "shared": {"layer_budget": 0.3}, "overrides": {"layer_budget": 0.4}}}, []) == 0.4
    two = {**cfg, "methods": [alf, {"label": "lisa", "name": "lisa", "options": {"layer_budget": 0.5}}]}
    assert study_budget({"config": two}, []) == 0.5  # a layer_budget given anywhere beats alf_budget
    runs = [{"status": "completed", "params": {"layer_budget": 0.2}}]
    assert study_budget({}, runs) == 0.2
    assert study_budget({}, runs + [{"status": "completed", "params": {"layer_budget": 0.3}}]) is None  # no single one
