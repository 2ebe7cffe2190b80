"""A new method is its own module and nothing else (issue 21): a method class defined here, with traits
and one option of its own declared here, registered with the methods registry, runs end to end
through the normal CLI path on GLUE (sst2) and on keyphrase (inspec); its option reaches it, only
biases + head change, and giving its option to another method is refused with the one line."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tunelab.cli import build_parser, main
from tunelab.config import FIELDS, declare, opt, undeclare
from tunelab.methods import METHODS, method_names
from tunelab.methods.base import Method, group_params, set_head_trainable

NAME = "bias-only"


class BiasOnly(Method):
    """Bias-only FT (BitFit-like): every bias above the skipped bottom layers, plus the head, trains."""

    name = NAME
    default_lr = 1e-3
    trains = "weights"  # its traits: task families pick learning rates / refusals from these, not its name
    initial = {}  # name -> the weights at prepare time (the test compares the saved model with them)

    def prepare(self, model, ctx):
        skip = ctx.cfg.bias_only_skip_layers
        self.skip = skip
        for p in model.parameters():
            p.requires_grad_(False)
        groups = group_params(model, ctx.layout)
        low = {n for i, ps in groups.layers.items() if i < skip for n, _ in ps}
        for n, p in model.named_parameters():
            if n.endswith(".bias") and n not in low:
                p.requires_grad_(True)
        set_head_trainable(model, ctx.layout)
        type(self).trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        type(self).initial = {n: p.detach().clone() for n, p in model.state_dict().items()}
        type(self).low = low
        return model

    def describe(self):
        return {"bias_only_skip_layers": self.skip}


@pytest.fixture(scope="module")
def plugin():
    """Register the method and its option; unregister both afterwards (no leak into other tests)."""
    options = declare(NAME, reads=(NAME,))(type("BiasOnlyOptions", (), {
        "__annotations__": {"bias_only_skip_layers": int},
        "bias_only_skip_layers": opt(0, "bias-only: keep the biases of the bottom N layers frozen", min=0)}))
    METHODS.add(NAME, BiasOnly)
    yield BiasOnly
    METHODS.remove(NAME)
    undeclare(options)
    assert NAME not in method_names() and "bias_only_skip_layers" not in FIELDS


def check_only_biases_and_head_changed(out: Path, skip: int):
    saved = load_file(str(out / "model.safetensors"))
    initial, trainable, low = BiasOnly.initial, BiasOnly.trainable, BiasOnly.low
    assert set(saved) <= set(initial) and len(saved) > 10
    changed = {n for n in saved if not torch.equal(saved[n], initial[n])}
    frozen = [n for n in saved if n not in trainable]
    assert frozen and not (changed & set(frozen)), sorted(changed & set(frozen))[:5]  # bit-identical
    assert all(n.endswith(".bias") or "classifier" in n or "pooler" in n for n in trainable)
    assert any(n.endswith(".bias") and "classifier" not in n for n in changed)  # biases trained
    assert any("classifier" in n for n in changed)  # the head trained
    if skip:
        assert low and not (changed & low)  # the option reached the method: those biases stayed frozen
        assert all(n not in trainable for n in low)


def test_plugin_method_on_glue(plugin, tmp_path, glue_data_dir, capsys):
    out = tmp_path / "sst2"
    rc = main(["run", "--task", "sst2", "--method", NAME, "--model", "minilm", "--data-dir", glue_data_dir,
               "--output-dir", str(out), "--max-train-samples", "32", "--max-eval-samples", "32", "--epochs", "1",
               "--batch-size", "16", "--seed", "0", "--bias-only-skip-layers", "2"])
    assert rc == 0, capsys.readouterr().err
    rec = json.loads((out / "run.json").read_text())
    assert rec["status"] == "completed" and rec["method"] == NAME
    assert rec["config"]["bias_only_skip_layers"] == 2 and rec["config_sources"]["bias_only_skip_layers"] == "given"
    assert rec["config"]["lr"] == BiasOnly.default_lr and rec["method_details"] == {"bias_only_skip_layers": 2}
    check_only_biases_and_head_changed(out, 2)


def test_plugin_method_on_keyphrase(plugin, tmp_path, kp_root, capsys):
    out = tmp_path / "inspec"
    rc = main(["run", "--task", "inspec", "--method", NAME, "--model", "minilm", "--data-dir", str(kp_root),
               "--output-dir", str(out), "--max-train-samples", "32", "--max-eval-samples", "16", "--epochs", "1",
               "--batch-size", "8", "--max-seq-length", "128", "--doc-stride", "32", "--seed", "0",
               "bias_only_skip_layers=1"])
    assert rc == 0, capsys.readouterr().err
    rec = json.loads((out / "run.json").read_text())
    assert rec["status"] == "completed" and rec["config"]["bias_only_skip_layers"] == 1
    # keyphrase's learning rate comes from the traits (weights, no layer selection): full FT's 3e-4
    assert rec["config"]["lr"] == 3e-4 and rec["config_sources"]["lr"] == "task"
    check_only_biases_and_head_changed(out, 1)


def test_plugin_option_refused_elsewhere_and_in_help(plugin, tmp_path, capsys):
    rc = main(["run", "--task", "sst2", "--method", "full", "--bias-only-skip-layers", "1",
               "--output-dir", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == ("tunelab: error: --bias-only-skip-layers does not apply to --method full on --task "
                               "sst2 (read by --method bias-only)")
    rc = main(["run", "--task", "sst2", "--method", NAME, "--bias-only-skip-layers", "-1",
               "--output-dir", str(tmp_path / "y")])
    assert rc == 2 and "--bias-only-skip-layers -1: must be >= 0" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    run_parser = build_parser()._subparsers._group_actions[0].choices["run"]
    assert f"method {NAME}:" in run_parser.format_help()
    main(["list"])
    assert "Bias-only FT" in capsys.readouterr().out
