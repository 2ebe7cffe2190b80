"""A cell's cache key: every resolved option the cell's method and task read (defaults included)
plus fingerprints of the method's and the task family's source, so that a re-run recomputes exactly
the cells whose meaning changed (compare/grid.py)."""

import json
import textwrap

from tunelab.cli import main
from tunelab.compare import grid
from tunelab.compare.config import parse_compare_yaml
from tunelab.compare.grid import _source_files, code_fingerprint, expand
from tunelab.config import FIELDS
from tunelab.methods import get_method
from tunelab.tasks import get_task

STUDY = "tasks: [sst2, mrpc]\nmethods: [full, lora, prompt]\n"


def _keys(tmp_path) -> dict:
    return {(c.task, c.label): c.config_hash for c in expand(parse_compare_yaml(STUDY, "s.yaml"), str(tmp_path))}


def test_a_changed_default_changes_exactly_the_keys_of_the_cells_that_read_it(tmp_path, monkeypatch):
    before = _keys(tmp_path)
    assert len(set(before.values())) == 6
    monkeypatch.setattr(FIELDS["lora_r"], "default", FIELDS["lora_r"].default * 2)  # lora's own option
    after = _keys(tmp_path)
    assert {k for k in before if before[k] != after[k]} == {("sst2", "lora"), ("mrpc", "lora")}
    monkeypatch.setattr(FIELDS["warmup_ratio"], "default", 0.1)  # read by every run
    assert all(v != before[k] for k, v in _keys(tmp_path).items())


def test_a_code_change_changes_exactly_the_keys_of_its_cells(tmp_path, monkeypatch):
    before = _keys(tmp_path)
    real = grid.code_fingerprint
    lora_cls = get_method("lora")
    monkeypatch.setattr(grid, "code_fingerprint", lambda obj: real(obj) + ("x" if obj is lora_cls else ""))
    after = _keys(tmp_path)
    assert {k for k in before if before[k] != after[k]} == {("sst2", "lora"), ("mrpc", "lora")}
    glue = type(get_task("sst2"))
    monkeypatch.setattr(grid, "code_fingerprint", lambda obj: real(obj) + ("y" if isinstance(obj, glue) else ""))
    assert all(v != before[k] for k, v in _keys(tmp_path).items())  # the glue family's code: every cell here


def test_fingerprints_cover_the_method_with_its_bases_and_the_task_family_package(tmp_path, monkeypatch):
    names = lambda files: sorted(p.rsplit("/", 2)[-2] + "/" + p.rsplit("/", 1)[-1] for p in files)  # noqa: E731
    assert names(_source_files(get_method("lora"))) == ["methods/base.py", "methods/lora.py", "methods/peft_common.py"]
    assert names(_source_files(get_task("mrpc"))) == ["glue/__init__.py", "glue/task.py"]
    # an edit to a source file changes the fingerprint
    pkg = tmp_path / "fpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "m.py").write_text("class M:\n    x = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from fpkg.m import M

    a = code_fingerprint(M)
    (pkg / "m.py").write_text("class M:\n    x = 2\n")
    b = code_fingerprint(M)
    assert a and b and a != b and len(a) == 16


def test_a_rerun_recomputes_only_the_cells_whose_code_changed(tmp_path, glue_data_dir, monkeypatch, capsys):
    study = tmp_path / "s.yaml"
    study.write_text(textwrap.dedent("""\
        tasks: [sst2]
        methods: [full, lora]
        max_train_samples: 16
        max_eval_samples: 16
        epochs: 1
        batch_size: 16
        threads: 1
        """))
    out = tmp_path / "out"
    args = ["compare", str(study), "--data-dir", glue_data_dir, "--output-dir", str(out), "--no-report"]
    assert main(args) == 0, capsys.readouterr().err
    started = lambda label: json.loads((out / "runs" / f"sst2--{label}--minilm--s0" / "run.json").read_text())["started_at"]  # noqa: E731
    first = {m: started(m) for m in ("full", "lora")}
    cell = json.loads((out / "runs" / "sst2--lora--minilm--s0" / "compare-cell.json").read_text())
    assert set(cell["code"]) == {"method_code", "task_code"}
    capsys.readouterr()
    assert main(args) == 0 and "runs: 0 run now, 2 already done" in capsys.readouterr().out
    real = grid.code_fingerprint
    lora_cls = get_method("lora")
    monkeypatch.setattr(grid, "code_fingerprint", lambda obj: real(obj) + ("x" if obj is lora_cls else ""))
    assert main(args) == 0 and "runs: 1 run now, 1 already done" in capsys.readouterr().out
    assert started("full") == first["full"] and started("lora") != first["lora"]
