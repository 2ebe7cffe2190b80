"""The alignment objectives beyond DPO (grpo, kto, orpo, simpo) and DPO's loss variants, end to end
on a tiny randomly initialised Llama (2 layers, hidden 32, SmolLM2's tokenizer) and real hh-rlhf
pairs: each completes with the same metric keys as dpo, uses the TRL trainer and settings it
records, and the options are checked before anything is loaded."""

import dataclasses
import json
import os

import pytest

from tunelab.cli import main

# optimizer steps of one epoch at batch 2 x accumulation 2: 6 pairs -> 2 (kto: 12 unpaired rows -> 3;
# grpo: 6 prompts x 2 completions, 4 completions a step -> 3)
STEPS = {"dpo": 2, "orpo": 2, "simpo": 2, "kto": 3, "grpo": 3}


def _args(task, method, model, data, out, *extra):
    return ["run", "--task", task, "--method", method, "--model", model, "--data-dir", data, "--output-dir", out,
            "--max-train-samples", "6", "--max-eval-samples", "4", "--max-prompt-length", "24",
            "--max-response-length", "6", "--batch-size", "2", "--grad-accum", "2", "--win-rate-prompts", "2",
            "--threads", "1", "--seed", "0", *extra]


def _run(tmp_path, name, task, method, model, data, *extra):
    out = str(tmp_path / name)
    assert main(_args(task, method, model, data, out, *extra)) == 0
    with open(os.path.join(out, "run.json"), encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def dpo_record(tmp_path_factory, tiny_llama_dir, hh_data_dir, alignment_cache):
    return _run(tmp_path_factory.mktemp("dpo"), "dpo", "dpo", "lora", tiny_llama_dir, hh_data_dir)


@pytest.mark.parametrize("task,method,extra,trainer,settings", [
    ("dpo", "lora", ("--dpo-loss", "ipo"), "trl.DPOTrainer", {"loss_type": "ipo", "beta": 0.1}),
    pytest.param("kto", "lora", (), "trl.KTOTrainer", {"beta": 0.1, "kto_examples": {"desirable": 6, "undesirable": 6}},
                 marks=pytest.mark.slow),  # the unpaired-file test below runs kto fast
    ("orpo", "full", (), "trl.experimental.orpo.ORPOTrainer", {"beta": 0.1}),
    ("simpo", "lora", ("--simpo-gamma", "0.3"), "trl.experimental.cpo.CPOTrainer (loss_type simpo, cpo_alpha 0)",
     {"beta": 2.0, "simpo_gamma": 0.3}),
    pytest.param("grpo", "lora", ("--beta", "0.02"), "trl.GRPOTrainer", {"beta": 0.02, "group_size": 2},
                 marks=pytest.mark.slow),  # generation + judge scoring
])
def test_objective_same_metric_keys_as_dpo(tmp_path, tiny_llama_dir, hh_data_dir, alignment_cache, dpo_record,
                                           task, method, extra, trainer, settings):
    rec = _run(tmp_path, task, task, method, tiny_llama_dir, hh_data_dir, *extra)
    al = rec["alignment"]
    assert rec["status"] == "completed" and al["objective"] == task and al["trainer"] == trainer
    assert set(rec["metrics"]) == set(dpo_record["metrics"])
    for k, v in settings.items():
        assert al[k] == v, k
    assert rec["time"]["steps"] == STEPS[task]
    assert rec["params"]["trainable"] > 0 and rec["memory"]["peak_rss_mb"] > 0
    assert 0 < al["train_memory"]["peak_rss_mb"] <= rec["memory"]["peak_rss_mb"] + 1
    ref = al["reference_model"]
    if task in ("orpo", "simpo"):
        assert ref == "none (reference-free objective)"
    else:
        assert ref == "the adapter-free base (adapter disabled)"
    assert not os.path.exists(os.path.join(tmp_path, task, "ref"))


def test_dpo_records_its_loss_and_reference(dpo_record):
    al = dpo_record["alignment"]
    assert al["loss_type"] == "sigmoid" and al["reference_model"] == "the adapter-free base (adapter disabled)"
    for k in ("pref_accuracy", "pref_accuracy_per_token", "chosen_logppl", "win_rate", "base_pref_accuracy"):
        assert k in dpo_record["metrics"]


def test_kto_from_unpaired_jsonl(tmp_path, tiny_llama_dir, hh_data_dir, alignment_cache):
    from tunelab.tasks.alignment.preference import load_pairs

    pairs = load_pairs("train", hh_data_dir, None, 0.1)[0][:3]
    f = tmp_path / "kto.jsonl"
    rows = [{"prompt": p.prompt, "completion": p.chosen, "label": True} for p in pairs] + \
           [{"prompt": p.prompt, "completion": p.rejected, "label": False} for p in pairs[:2]]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    rec = _run(tmp_path, "kto", "kto", "lora", tiny_llama_dir, hh_data_dir, "--unpaired-file", str(f))
    al = rec["alignment"]
    assert rec["status"] == "completed" and al["kto_examples"] == {"desirable": 3, "undesirable": 2}
    assert al["train_pairs"] == 5 and str(f) in rec["data"]  # the unpaired file's hash is recorded
    assert any(k.endswith("test.jsonl") or "hh-rlhf" in k for k in rec["data"] if k != str(f))  # held out: hh-rlhf
    assert "pref_accuracy_per_token" in rec["metrics"] and "win_rate" in rec["metrics"]


@pytest.mark.parametrize("extra,needle", [
    (("--task", "kto", "--unpaired-file", "/nonexistent.jsonl"), "--unpaired-file /nonexistent.jsonl: no such file"),
    (("--task", "dpo", "--unpaired-file", __file__), "--unpaired-file does not apply to --method lora on --task dpo"),
    (("--task", "dpo", "--dpo-loss", "nope"), "--dpo-loss"),
    (("--task", "dpo", "--dpo-label-smoothing", "0.1"), "--dpo-label-smoothing"),
    (("--task", "orpo", "--reward-model", "/tmp"), "--reward-model does not apply"),
    (("--task", "grpo", "--judge", "none"), "--task grpo needs a reward model"),
])
def test_bad_options_one_line_exit_2(tmp_path, capsys, hh_data_dir, extra, needle):
    out = tmp_path / "out"
    rc = main(["run", "--method", "lora", "--model", "smollm2", "--data-dir", hh_data_dir, "--output-dir", str(out),
               *extra])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and "Traceback" not in err
    assert not (out / "run.json").exists()


def test_bad_unpaired_rows_name_the_line(tmp_path):
    from tunelab.errors import UserError
    from tunelab.tasks.alignment.unpaired import load_unpaired

    f = tmp_path / "u.jsonl"
    f.write_text('{"prompt": "a", "completion": "b", "label": true}\n{"prompt": "a", "completion": "c", "label": 1}\n')
    with pytest.raises(UserError, match=r"u\.jsonl:2: field 'label' must be true or false"):
        load_unpaired(str(f))
    f.write_text('{"prompt": "a", "completion": "b", "label": true}\n')
    with pytest.raises(UserError, match="both desirable"):
        load_unpaired(str(f))


def test_dpo_loss_choices_are_trls():
    """--dpo-loss offers exactly the loss types TRL's DPOConfig documents."""
    import re

    from trl import DPOConfig

    from tunelab.tasks.alignment.options import DPO_LOSSES

    field = {f.name: f for f in dataclasses.fields(DPOConfig)}["loss_type"]
    documented = re.findall(r"`'([a-z_]+)'`", field.metadata["help"])
    assert set(DPO_LOSSES) == set(documented) and DPO_LOSSES[0] == "sigmoid"


def test_unpair_gives_trls_rows():
    """Pairs -> TRL's unpaired rows, the same as trl.data_utils.unpair_preference_dataset."""
    from datasets import Dataset
    from trl.data_utils import unpair_preference_dataset

    from tunelab.tasks.alignment.data import TokPair
    from tunelab.tasks.alignment.unpaired import unpair

    pairs = [TokPair("P1", "c1", "r1", [], [], []), TokPair("P2", "c2", "r2", [], [], [])]
    ours = unpair(pairs)
    theirs = list(unpair_preference_dataset(Dataset.from_list(
        [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs])))
    key = lambda r: (r["prompt"], r["completion"], r["label"])  # noqa: E731
    assert sorted(map(key, ours)) == sorted(map(key, theirs))


def test_report_ranks_all_objectives(tmp_path):
    """The report's alignment section: one row per objective x method, mean over seeds, ranked by
    held-out pref_accuracy_per_token then pref_accuracy; equal accuracies share a rank; each seed's
    pairs gained / lost against the base with the sign test's p."""
    from tunelab.tasks.alignment.report import alignment_blocks

    runs = {("dpo", 0): (0.5, 0.6), ("dpo", 1): (0.7, 0.6), ("orpo", 0): (0.55, 0.9), ("dpo-ipo", 0): (0.6, 0.1),
            ("simpo", 0): (0.6, 0.2), ("coh", 0): (0.6, 0.2)}
    done = []
    for (task, seed), (per_tok, acc) in runs.items():
        d = tmp_path / f"{task}-{seed}"
        d.mkdir()
        rec = {"metrics": {"pref_accuracy_per_token": per_tok, "pref_accuracy": acc, "chosen_logppl": 2.0,
                           "win_rate": 0.5, "base_pref_accuracy_per_token": 0.48, "base_pref_accuracy": 0.48,
                           "base_chosen_logppl": 2.1},
               "time": {"train_seconds": 10.0 + seed},
               "alignment": {"objective": task.split("-")[0], "train_memory": {"peak_rss_mb": 100.0},
                             "change_vs_base": {"pref_accuracy_per_token": {"gained": 5 + seed, "lost": 1,
                                                                            "sign_test_p": 0.2 - 0.1 * seed}}}}
        (d / "run.json").write_text(json.dumps(rec))
        done.append({"run_dir": str(d), "task": task, "label": "lora", "model": "smollm2", "seed": seed})
    done.append({"run_dir": str(tmp_path / "missing"), "task": "kto", "label": "lora", "model": "smollm2", "seed": 0})
    heading, blocks = alignment_blocks(done)
    table = blocks[-1]
    order = [row[1] for row in table[2]]
    # dpo: mean per-token 0.6, acc 0.6 -> ties simpo / dpo-ipo on per-token, wins on pref_accuracy
    assert order == ["dpo", "simpo", "coh", "dpo-ipo (dpo)", "orpo"]
    assert [row[0] for row in table[2]] == ["1", "2", "2", "4", "5"]  # simpo and coh tie on both accuracies
    dpo = table[2][0]
    assert dpo[4] == "2" and dpo[5] == "0.600 (0.480)" and dpo[10] == "10.5"
    assert dpo[8] == "5-1 (p 0.20) / 6-1 (p 0.10)"
