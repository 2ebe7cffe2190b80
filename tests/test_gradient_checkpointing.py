"""--gradient-checkpointing (train/grad_checkpointing.py) and --precision bf16 on CPU (train/precision.py)."""

import json

import pytest
import torch

from conftest import tiny_run_args
from tunelab.cli import main
from tunelab.config import RunConfig
from tunelab.errors import UserError
from tunelab.methods import get_method
from tunelab.methods.base import PrepareContext
from tunelab.models import load_backbone
from tunelab.train.grad_checkpointing import apply_gradient_checkpointing
from tunelab.train.loop import seed_everything, train

TEXTS = ["a gripping, beautifully shot film with a heart", "dull", "the plot goes nowhere and the actors know it",
         "fine", "one of the best performances of the year , without a doubt", "awful , simply awful",
         "a slow start but a rewarding finish", "i laughed , i cried , i want my money back"]


def _losses(method, ckpt, steps=20, **opts):
    """Per-step losses of ``steps`` steps (batch 4, max length 32, dropout on) and the trained model."""
    from transformers import DataCollatorWithPadding

    cfg = RunConfig(task="sst2", method=method, batch_size=4, epochs=1, max_seq_length=32, gradient_checkpointing=ckpt,
                    **opts)
    m = get_method(method)()
    seed_everything(0)
    model, tok, layout, _ = load_backbone("minilm", "classification", 2)
    rec = apply_gradient_checkpointing(model, cfg)
    model = m.prepare(model, PrepareContext(cfg=cfg, layout=layout, peft_task_type="SEQ_CLS"))
    rows = [dict(tok(TEXTS[i % len(TEXTS)], truncation=True, max_length=32), labels=i % 2) for i in range(4 * steps)]
    loader = torch.utils.data.DataLoader(rows, batch_size=4, collate_fn=DataCollatorWithPadding(tok))
    losses = []
    out = train(model, m, loader, lambda _m: ({"accuracy": 0.5}, {}), cfg, 5e-5 if method == "full" else 1e-3,
                torch.device("cpu"), on_step=lambda s: losses.append(s.loss))
    assert out.state.step == steps
    return losses, model, rec


def test_full_ft_losses_equal_with_and_without_checkpointing():
    """Non-reentrant checkpointing restores the RNG state before recomputing (preserve_rng_state), so
    dropout draws the same masks and the gradients are the same: 20 steps give the same losses."""
    plain, _, rec0 = _losses("full", False)
    ckpt, model, rec1 = _losses("full", True)
    assert rec0 == {"requested": False, "applied": False} and rec1["applied"] is True
    assert getattr(model, "is_activation_checkpointing", None) or model.is_gradient_checkpointing
    # same arithmetic, replayed: differences are float rounding at most (measured: 0 on CPU)
    assert plain == pytest.approx(ckpt, rel=1e-5, abs=1e-6)
    assert len(set(plain)) > 1  # training moved: not one repeated value


def test_lora_with_checkpointing_trains():
    """A PEFT-wrapped model under non-reentrant checkpointing (no enable_input_require_grads): the
    LoRA weights change."""
    # LoRA's B starts at zero: nonzero after training means gradients reached the adapters
    losses, trained, _ = _losses("lora", True, steps=5)
    changed = [n for n, p in trained.named_parameters() if "lora_B" in n and float(p.detach().abs().sum()) > 0]
    assert changed and all(l == l for l in losses)
    base = trained.base_model.model
    assert getattr(base, "is_activation_checkpointing", None) or base.is_gradient_checkpointing


def test_run_records_it(glue_data_dir, tmp_path):
    out = tmp_path / "run"
    assert main(tiny_run_args("sst2", "lora", glue_data_dir, str(out), "--gradient-checkpointing",
                              "--max-train-samples", "16", "--max-eval-samples", "16", "--threads", "1")) == 0
    rec = json.loads((out / "run.json").read_text())
    assert rec["status"] == "completed"
    assert rec["config"]["gradient_checkpointing"] is True
    assert rec["gradient_checkpointing"]["applied"] is True


def test_unsupported_model_and_alignment_refuse_in_one_line():
    cfg = RunConfig(task="sst2", gradient_checkpointing=True)
    with pytest.raises(UserError, match="does not support gradient checkpointing"):
        apply_gradient_checkpointing(torch.nn.Linear(2, 2), cfg)
    from tunelab.tasks import get_task

    acfg = RunConfig(task="dpo", gradient_checkpointing=True, group_by_length=False)
    with pytest.raises(UserError, match="--gradient-checkpointing"):
        get_task("dpo").configure(acfg).validate(acfg)


# ---------------------------------------------------------------- --precision bf16 on CPU
def _run(glue_data_dir, out, method, *extra):
    assert main(tiny_run_args("sst2", method, glue_data_dir, str(out), "--device", "cpu", "--threads", "1",
                              "--max-eval-samples", "16", *extra)) == 0
    return json.loads((out / "run.json").read_text())


def test_bf16_on_cpu_runs_close_to_fp32(glue_data_dir, tmp_path):
    """bf16 autocast on CPU: the run completes and records bf16. Its losses stay close to fp32's:
    bf16 keeps 8 significant bits (relative rounding 2^-8 = 0.4% per op), so the logits of the
    first step (same weights) differ by ~1%, and over the 4 steps of the epoch the updates
    (lr-scaled) barely separate the runs: 5% relative on the epoch's mean loss (~0.69 for a
    2-class head) is tight enough to catch a broken path (a wrong dtype or loss gives >> 5%)."""
    fp32 = _run(glue_data_dir, tmp_path / "fp32", "full", "--precision", "fp32")
    bf16 = _run(glue_data_dir, tmp_path / "bf16", "full", "--precision", "bf16")
    assert bf16["status"] == "completed" and bf16["precision"]["used"] == "bf16"
    assert bf16["precision"]["device"] == "cpu" and fp32["precision"]["used"] == "fp32"
    a, b = fp32["history"][0]["train_loss"], bf16["history"][0]["train_loss"]
    assert b == pytest.approx(a, rel=0.05)


def test_bf16_on_cpu_keeps_the_activation_cache(glue_data_dir, tmp_path):
    rec = _run(glue_data_dir, tmp_path / "sel", "selective", "--precision", "bf16", "--layers", "top:1")
    assert rec["precision"]["used"] == "bf16"
    assert rec["activation_cache"]["on"] is True, rec["activation_cache"]
    assert rec["activation_cache"]["self_check"]


def test_auto_stays_fp32_on_cpu():
    from tunelab.train.precision import resolve_precision

    assert resolve_precision("auto", "cpu").name == "fp32"
    assert resolve_precision("bf16", "cpu").name == "bf16"


def test_checkpointing_with_the_activation_cache_trains_the_same(glue_data_dir, tmp_path):
    """Selective top:1 with the cache on: the cached prefix feeds layer k through a pre-hook that stays
    outside the checkpointed forward, so the recomputation sees the same input: same losses."""
    plain = _run(glue_data_dir, tmp_path / "a", "selective", "--layers", "top:1")
    ckpt = _run(glue_data_dir, tmp_path / "b", "selective", "--layers", "top:1", "--gradient-checkpointing")
    assert plain["activation_cache"]["on"] and ckpt["activation_cache"]["on"]
    assert ckpt["gradient_checkpointing"]["applied"]
    assert ckpt["history"][0]["train_loss"] == pytest.approx(plain["history"][0]["train_loss"], rel=1e-5)
    assert ckpt["metrics"] == pytest.approx(plain["metrics"], rel=1e-5)
