"""Compare configs: presets expand to the documented grids, YAML errors name file:line, overrides
select and override, config hashes are stable and tell variants apart. No training here."""

import json

import pytest

from tunelab.cli import main
from tunelab.compare.config import load_compare_config, preset_names
from tunelab.compare.execute import run_args
from tunelab.compare.grid import expand
from tunelab.errors import UserError

DYNAMIC = ["alf", "lisa", "autofreeze", "badam"]


def write(tmp_path, text, name="study.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_presets_are_shipped():
    assert {"quick", "paper"} <= set(preset_names())


def test_quick_preset_expands_to_nine_methods_on_three_tasks(tmp_path, glue_data_dir):
    cc = load_compare_config(preset="quick")
    cells = expand(cc, str(tmp_path), glue_data_dir)
    assert len(cells) == 27
    assert {c.task for c in cells} == {"sst2", "mrpc", "cola"}
    labels = [m.label for m in cc.methods]
    assert labels[:5] == ["full", "lora", "prompt", "prefix", "selective"]
    assert set(DYNAMIC) <= set(labels)
    assert {c.config.model for c in cells} == {"minilm"} and {c.seed for c in cells} == {0}
    sel = next(c for c in cells if c.label == "selective")
    assert sel.config.layers is None and sel.config.layer_budget == 0.25  # equal budgets (methods/budget.py)
    alf = next(c for c in cells if c.label == "alf")
    assert alf.config.alf_budget == 0.25 and alf.config.layer_budget == 0.25
    assert all(c.config.layer_budget == 0.25 for c in cells if c.method in ["selective"] + DYNAMIC)
    assert all(c.config.layer_budget is None for c in cells if c.method not in ["selective"] + DYNAMIC)
    assert all(c.run_dir.startswith(str(tmp_path / "runs")) for c in cells)
    assert len({c.run_id for c in cells}) == 27 and len({c.config_hash for c in cells}) == 27


def test_paper_preset_expands_for_bert_base_three_seeds(tmp_path):
    cells = expand(load_compare_config(preset="paper"), str(tmp_path))
    assert len(cells) == 3 * 3 * 9
    assert {c.config.model for c in cells} == {"bert-base"}
    assert {c.seed for c in cells} == {0, 1, 2}
    full = [c for c in cells if c.label == "full"]
    assert all(c.config.lr == 2e-5 and c.config.batch_size == 32 and c.config.epochs == 3
               and c.config.max_seq_length == 128 and c.config.max_train_samples is None for c in full)


def test_unknown_key_names_file_and_line(tmp_path, capsys):
    path = write(tmp_path, "tasks: [sst2]\nmethods: [full]\nepochs: 1\nbatch_sise: 8\n")
    assert main(["compare", path, "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert f"{path}:4: unknown key 'batch_sise' (did you mean 'batch_size'?)" in err[0]


def test_unknown_option_inside_a_method_names_its_line(tmp_path, capsys):
    path = write(tmp_path, "tasks: [sst2]\nmethods:\n  - full\n  - lora:\n      lora_rank: 4\n")
    assert main(["compare", path, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"{path}:5: unknown key 'lora_rank'" in err and "lora_r" in err


def test_unknown_method_is_one_line_exit_2(tmp_path, capsys):
    path = write(tmp_path, "tasks: [sst2]\nmethods:\n  - full\n  - lorra\n")
    assert main(["compare", path, "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{path}:4: unknown method 'lorra' (did you mean 'lora'?)" in err[0]


def test_unknown_task_and_preset(tmp_path, capsys):
    path = write(tmp_path, "tasks: [sst3]\nmethods: [full]\n")
    assert main(["compare", path, "--dry-run"]) == 2
    assert f"{path}:1: unknown task 'sst3'" in capsys.readouterr().err
    assert main(["compare", "--preset", "quik", "--dry-run"]) == 2
    assert "unknown preset 'quik' (did you mean 'quick'?)" in capsys.readouterr().err


@pytest.mark.parametrize("text,needle", [
    ("tasks: [sst2]\nmethods: [full]\ntask: sst2\n", ":3: 'task' is set per run by the grid; list it under 'tasks:'"),
    ("tasks: [sst2]\nmethods: [full, full]\n", "label 'full' already used"),
    ("tasks: [sst2]\nmethods: [full]\nseeds: [0, x]\n", ":3: seeds: 'x' is not a non-negative integer"),
    ("tasks: [sst2]\nmethods: [full]\nepochs: lots\n", ":3: epochs = 'lots' is not a valid float"),
    ("tasks: [sst2]\nmethods: [selective]\n", ":2: selective on sst2: --method selective needs --layers"),
    ("tasks: [sst2]\nmethods: [full\n", "invalid YAML"),
    ("methods: [full]\n", "'tasks:' is required"),
])
def test_config_errors(tmp_path, text, needle):
    path = write(tmp_path, text)
    with pytest.raises(UserError) as e:
        expand(load_compare_config(path), str(tmp_path))
    assert needle in str(e.value)
    assert str(e.value).startswith(path)


def test_labelled_variants_and_override_precedence(tmp_path):
    path = write(tmp_path, """
tasks: [sst2, {mrpc: {epochs: 3}}]
seeds: [0, 1]
epochs: 2
methods:
  - {label: lora-r4, method: lora, lora_r: 4}
  - lora-r16: {method: lora, lora_r: 16, epochs: 5}
""")
    cc = load_compare_config(path, overrides=["batch_size=8"])
    cells = expand(cc, str(tmp_path))
    assert len(cells) == 2 * 2 * 2
    by = {(c.task, c.label, c.seed): c for c in cells}
    assert by[("sst2", "lora-r4", 0)].config.lora_r == 4 and by[("sst2", "lora-r16", 0)].config.lora_r == 16
    assert by[("sst2", "lora-r4", 0)].config.epochs == 2  # shared
    assert by[("mrpc", "lora-r4", 0)].config.epochs == 3  # task beats shared
    assert by[("mrpc", "lora-r16", 1)].config.epochs == 5  # method beats task
    assert all(c.config.batch_size == 8 for c in cells)  # command line beats everything
    assert by[("sst2", "lora-r4", 0)].config_hash != by[("sst2", "lora-r16", 0)].config_hash
    assert by[("sst2", "lora-r4", 0)].config_hash != by[("sst2", "lora-r4", 1)].config_hash
    # overrides select entries and keep their options
    cc2 = load_compare_config(path, overrides=["tasks=mrpc", "methods=lora-r16", "seeds=1", "epochs=1"])
    (only,) = expand(cc2, str(tmp_path))
    assert (only.task, only.label, only.seed, only.config.lora_r, only.config.epochs) == ("mrpc", "lora-r16", 1, 16, 1)
    with pytest.raises(UserError, match="unknown key 'epoch'"):
        load_compare_config(path, overrides=["epoch=1"])


def test_hash_is_stable_and_run_json_values_resolved_by_the_run_still_match(tmp_path):
    from tunelab.compare.grid import config_matches

    path = write(tmp_path, "tasks: [sst2]\nmethods: [lora]\nepochs: 1\nlora_r: 4\n")
    a = expand(load_compare_config(path), str(tmp_path / "a"), threads=1)[0]
    b = expand(load_compare_config(path), str(tmp_path / "b"), threads=2)[0]
    assert a.config_hash == b.config_hash  # where / how many threads does not define the run
    c = expand(load_compare_config(path, overrides=["lora_r=8"]), str(tmp_path / "a"))[0]
    assert c.config_hash != a.config_hash
    # run.json records every field, with what the run resolved itself (lr, head lr, device)
    recorded = json.loads(json.dumps({**a.config.as_dict(), "lr": 2e-3, "head_lr": 2e-3, "device": "cpu"}))
    assert config_matches(a.config.as_dict(), recorded)
    assert not config_matches(a.config.as_dict(), {**recorded, "lora_r": 8})
    assert not config_matches(a.config.as_dict(), {**recorded, "epochs": 2.0})


def test_run_args_round_trip_through_tunelab_run_parsing(tmp_path):
    from tunelab.cli import build_parser, config_from_args

    path = write(tmp_path, "tasks: [sst2]\nmethods: [{selective: {layers: 'top:25%', lr: 3.0e-4}}]\nepochs: 1.5\n")
    cell = expand(load_compare_config(path), str(tmp_path))[0]
    cfg = config_from_args(build_parser().parse_args(run_args(cell)))
    assert cfg.as_dict() == cell.config.as_dict()


def test_alignment_study_cells_carry_every_resolved_option_to_the_child(tmp_path):
    """epochs 2 / grad_accum 1 differ from the alignment family's defaults (1 / 4); the child must
    run exactly the study's values, and options a cell's method does not read stay out."""
    from tunelab.cli import build_parser, config_from_args

    path = write(tmp_path, "tasks: [dpo]\nmethods: [lora, full]\nepochs: 2\ngrad_accum: 1\nlora_r: 4\n")
    cells = expand(load_compare_config(path), str(tmp_path))
    for cell in cells:
        assert cell.config.epochs == 2 and cell.config.grad_accum == 1
        assert cell.config.batch_size == 2 and cell.config.beta == 0.1  # the task family's defaults
        args = run_args(cell)
        cfg = config_from_args(build_parser().parse_args(args))
        assert cfg.as_dict() == cell.config.as_dict()
        assert ("lora_r=4" in args) == (cell.method == "lora")  # shared lora_r reaches only the lora cell
    by = {c.method: c for c in cells}
    assert by["lora"].config.lr == 1e-3 and by["full"].config.lr == 5e-5  # dpo: the family lr anchors x 1.0


def test_extends_replaces_only_the_keys_given(tmp_path, capsys):
    base = write(tmp_path, "name: base\ntasks: [sst2, mrpc]\nmethods: [full, lora]\nseeds: [0]\nepochs: 2\n"
                 "max_train_samples: 100\n", "base.yaml")
    sub = tmp_path / "sub"
    sub.mkdir()
    child = write(sub, "extends: ../base.yaml\nseeds: [0, 1]\nepochs: 3\n", "child.yaml")
    b, c = load_compare_config(base), load_compare_config(child)
    assert c.name == "child" and c.seeds == [0, 1]  # the name is never inherited
    assert c.shared == {**b.shared, "epochs": 3} and b.shared["epochs"] == 2
    assert [e.label for e in c.tasks] == ["sst2", "mrpc"] and [m.label for m in c.methods] == ["full", "lora"]
    assert "extends" in c.text and "# max_train_samples: 100" in c.text  # the base's text is recorded too
    q = load_compare_config(write(tmp_path, "extends: quick\nseeds: [3]\n"))
    assert q.as_dict()["methods"] == load_compare_config(preset="quick").as_dict()["methods"] and q.seeds == [3]
    for text, needle in [("extends: nope.yaml\n", "study.yaml:1: extends: nope.yaml: neither a preset"),
                         ("extends: study.yaml\n", "study.yaml:1: extends: study.yaml: a cycle")]:
        with pytest.raises(UserError, match=needle):
            load_compare_config(write(tmp_path, text))
