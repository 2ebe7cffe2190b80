"""End-to-end `tunelab run` on minilm with ~64 examples: every method, record contents, determinism, errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import tiny_run_args
from tunelab.cli import main

RECORD_KEYS = ["task", "method", "model", "seed", "status", "metrics", "history", "params", "time", "memory",
               "versions", "data", "config"]


def run_ok(args, capsys=None):
    rc = main(args)
    assert rc == 0
    return json.loads(Path(args[args.index("--output-dir") + 1], "run.json").read_text())


@pytest.mark.parametrize("method,extra,weights", [
    ("full", [], "model.safetensors"),
    ("selective", ["--layers", "top:2"], "model.safetensors"),
    ("lora", [], "adapter_model.safetensors"),
    ("prompt", [], "adapter_model.safetensors"),
    ("prefix", [], "adapter_model.safetensors"),
])
def test_every_method_writes_a_complete_record(tmp_path, glue_data_dir, method, extra, weights):
    out = tmp_path / method
    rec = run_ok(tiny_run_args("sst2", method, glue_data_dir, str(out), *extra))
    for k in RECORD_KEYS:
        assert k in rec, k
    assert rec["status"] == "completed" and rec["method"] == method and rec["task"] == "sst2"
    assert set(rec["metrics"]) == {"accuracy"} and 0 <= rec["metrics"]["accuracy"] <= 1
    for k in ("trainable", "total", "trainable_pct", "trainable_without_head", "trainable_layers"):
        assert k in rec["params"]
    assert rec["time"]["train_seconds"] > 0 and rec["time"]["train_samples_per_second"] > 0
    assert rec["memory"]["peak_rss_mb"] > 100
    assert set(rec["versions"]) >= {"python", "torch", "transformers", "peft", "tunelab", "git_commit"}
    assert len(rec["data"]) == 2 and all(len(h) == 64 for h in rec["data"].values())
    assert rec["config"]["lr"] > 0 and rec["config"]["max_train_samples"] == 64
    assert len(rec["history"]) == 1 and rec["history"][0]["metrics"] == rec["metrics"]
    assert (out / weights).stat().st_size > 0
    preds = (out / "predictions.tsv").read_text().strip().splitlines()
    assert len(preds) == 1 + 64
    if method == "selective":
        assert rec["params"]["trainable_layers"] == [4, 5]


def test_mrpc_cola_stsb_metric_keys(tmp_path, glue_data_dir):
    keys = {}
    for task in ("mrpc", "cola", "stsb"):
        rec = run_ok(tiny_run_args(task, "selective", glue_data_dir, str(tmp_path / task), "--layers", "1,3"))
        keys[task] = set(rec["metrics"])
        assert rec["params"]["trainable_layers"] == [1, 3]
    assert keys == {"mrpc": {"f1", "accuracy"}, "cola": {"mcc", "accuracy"}, "stsb": {"pearson", "spearman"}}


def test_same_seed_same_numbers(tmp_path, glue_data_dir):
    a = run_ok(tiny_run_args("mrpc", "lora", glue_data_dir, str(tmp_path / "a")))
    b = run_ok(tiny_run_args("mrpc", "lora", glue_data_dir, str(tmp_path / "b")))
    c = run_ok(tiny_run_args("mrpc", "lora", glue_data_dir, str(tmp_path / "c"), "--seed", "1"))
    assert a["metrics"] == b["metrics"]
    assert a["history"][0]["train_loss"] == b["history"][0]["train_loss"]
    assert a["history"][0]["train_loss"] != c["history"][0]["train_loss"]
    assert (tmp_path / "a" / "predictions.tsv").read_text() == (tmp_path / "b" / "predictions.tsv").read_text()


def test_yaml_config_with_overrides(tmp_path, glue_data_dir):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"task: sst2\nmethod: selective\nlayers: top:1\nmodel: minilm\ndata_dir: {glue_data_dir}\n"
                   "max_train_samples: 32\nmax_eval_samples: 32\nepochs: 1\nlr: 1e-4\n")
    out = tmp_path / "y"
    rc = main(["run", str(cfg), "lr=3e-4", "max-train-samples=48", "--output-dir", str(out)])
    assert rc == 0
    rec = json.loads((out / "run.json").read_text())
    assert rec["config"]["lr"] == 3e-4 and rec["config"]["max_train_samples"] == 48
    assert rec["config"]["layers"] == "top:1" and rec["params"]["trainable_layers"] == [5]


ERRORS = [
    (["--task", "sst3"], "unknown task 'sst3' (did you mean 'sst2'?)"),
    (["--method", "lorra"], "unknown method 'lorra' (did you mean 'lora'?)"),
    (["--model", "minilmx"], "unknown model alias 'minilmx'"),
    (["--model", "./no/such/model"], "--model ./no/such/model: no such model folder"),
    (["--lora-r", "0", "--method", "lora"], "--lora-r 0: must be >= 1"),
    (["--lora-r", "4"], "--lora-r does not apply to --method full"),
    (["--method", "lora", "--alf-budget", "0.3"], "--alf-budget does not apply to --method lora"),
    (["--beta", "0.2"], "--beta does not apply to --method full on --task sst2"),
    (["--lr", "-1"], "--lr -1.0: must be > 0"),
    (["--method", "selective", "--layers", "7"], "--layers 7: layer(s) [7] out of range"),
    (["--epochs", "two"], "--epochs: epochs = 'two' is not a valid float"),
    (["--bogus", "1"], "unrecognized arguments: --bogus"),
]


@pytest.mark.parametrize("extra,needle", ERRORS)
def test_errors_one_line_exit_2(tmp_path, glue_data_dir, capsys, extra, needle):
    out = tmp_path / "o"
    args = ["run", "--task", "sst2", "--data-dir", glue_data_dir, "--output-dir", str(out),
            "--max-train-samples", "8", "--max-eval-samples", "8"]
    rc = main(args + extra)
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert needle in err and len(err.splitlines()) == 1, err
    assert not (out / "run.json").exists()


def test_yaml_unknown_key_names_line(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("task: sst2\nmethod: full\nlrr: 0.1\n")
    assert main(["run", str(cfg)]) == 2
    assert f"{cfg}:3: unknown option 'lrr' (did you mean 'lr'?)" in capsys.readouterr().err


def test_bad_data_file_names_file_and_line(tmp_path, capsys):
    (tmp_path / "SST-2").mkdir()
    (tmp_path / "SST-2" / "train.tsv").write_text("sentence\tlabel\nfine\t1\nbroken\trow\t1\n")
    (tmp_path / "SST-2" / "dev.tsv").write_text("sentence\tlabel\nfine\t1\n")
    assert main(["run", "--task", "sst2", "--data-dir", str(tmp_path), "--output-dir", str(tmp_path / "o")]) == 2
    assert "SST-2/train.tsv:3: expected 2 tab-separated columns, found 3" in capsys.readouterr().err


def test_existing_output_dir_is_not_overwritten(tmp_path, glue_data_dir, capsys):
    out = tmp_path / "keep"
    out.mkdir()
    (out / "run.json").write_text('{"status": "completed", "mine": true}')
    args = tiny_run_args("sst2", "selective", glue_data_dir, str(out), "--layers", "top:1")
    assert main(args) == 2
    assert "exists and is not empty (pass --overwrite" in capsys.readouterr().err
    assert json.loads((out / "run.json").read_text())["mine"] is True
    assert main(args + ["--overwrite"]) == 0
    assert json.loads((out / "run.json").read_text())["status"] == "completed"


def test_subprocess_error_has_no_traceback(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    p = subprocess.run([sys.executable, "-m", "tunelab.cli", "run", "--task", "nope"], capture_output=True, text=True, env=env)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr and p.stderr.strip().splitlines() == [p.stderr.strip()]


def test_list_shows_registries(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("sst2", "stsb", "mnli", "full", "lora", "prompt", "prefix", "selective", "minilm"):
        assert name in out
    task_lines = out.split("methods:")[0].splitlines()[1:]
    assert len({line.index("metrics:") for line in task_lines}) == 1  # one column, however long a task's name


def test_task_folder_we_were_not_given_runs(tmp_path, glue_data_dir):
    """RTE in the standard layout (built here from real QNLI dev rows) runs with no code change."""
    rows = Path(glue_data_dir, "QNLI", "dev.tsv").read_text(encoding="utf-8").splitlines()[1:61]
    head = "index\tsentence1\tsentence2\tlabel\n"
    body = [f"{i}\t{r.split(chr(9))[1]}\t{r.split(chr(9))[2]}\t{r.split(chr(9))[3]}\n" for i, r in enumerate(rows)]
    (tmp_path / "RTE").mkdir()
    (tmp_path / "RTE" / "train.tsv").write_text(head + "".join(body[:40]), encoding="utf-8")
    (tmp_path / "RTE" / "dev.tsv").write_text(head + "".join(body[40:]), encoding="utf-8")
    rec = run_ok(tiny_run_args("rte", "selective", str(tmp_path), str(tmp_path / "out"), "--layers", "top:1"))
    assert rec["status"] == "completed" and rec["data_sizes"] == {"train": 40, "validation": 20}
    assert set(rec["metrics"]) == {"accuracy"}


@pytest.mark.parametrize("command", ["run", "compare", "report", "analyze", "list"])
def test_help_of_every_command_prints(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0 and "usage: tunelab " + command in capsys.readouterr().out


def test_boolean_options_switch_both_ways(tmp_path, glue_data_dir):
    """fused AdamW is on by default (as in HF Trainer); --no-fused-adamw records and uses foreach AdamW."""
    recs = []
    for flag in ([], ["--no-fused-adamw"]):
        out = tmp_path / ("off" if flag else "on")
        assert main(tiny_run_args("sst2", "lora", glue_data_dir, str(out)) + flag) == 0
        recs.append(json.loads((out / "run.json").read_text()))
    assert recs[0]["config"]["fused_adamw"] is True and recs[1]["config"]["fused_adamw"] is False
    # the same algorithm: fused and foreach AdamW end at (nearly) the same dev accuracy
    assert abs(recs[0]["metrics"]["accuracy"] - recs[1]["metrics"]["accuracy"]) <= 0.05
