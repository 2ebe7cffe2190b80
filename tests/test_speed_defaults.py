"""Fast defaults: length-grouped batches are on for loop-trained tasks (off with --no-group-by-length),
untouched for TRL-trained ones, and rows without a length keep plain shuffled batches."""

import pytest
import torch

from tunelab.cli import build_parser, config_from_args
from tunelab.resolve import build_config
from tunelab.tasks import get_task
from tunelab.tasks.base import FitContext
from tunelab.train.batching import LengthGroupedBatches


def _cfg(*argv):
    return config_from_args(build_parser().parse_args(["run", *argv]))


def test_group_by_length_is_on_by_default_for_loop_trained_tasks_only():
    cfg = _cfg("--task", "sst2")
    assert cfg.group_by_length is True and cfg.sources["group_by_length"] == "task"
    assert _cfg("--task", "sst2", "--no-group-by-length").group_by_length is False
    dpo = build_config({"task": "dpo"})  # TRL builds those batches: not turned on, so not rejected
    assert dpo.group_by_length is False and dpo.sources["group_by_length"] == "default"


class NoLength(type(get_task("sst2"))):
    def length(self, row):
        return None


def _loader(task, tok, glue_data_dir, tmp_path, group):
    cfg = build_config({"task": "sst2", "method": "full", "data_dir": glue_data_dir, "group_by_length": group,
                        "batch_size": 8, "output_dir": str(tmp_path), "activation_cache": False})
    rows = task.load("train", glue_data_dir).examples[:40]
    ctx = FitContext(model=torch.nn.Linear(1, 1), processor=tok, method=None, cfg=cfg, device=torch.device("cpu"),
                     train_examples=rows, eval_splits=[], model_source="", out_dir=str(tmp_path))
    return task.build_data(ctx)[0].base


def test_rows_without_a_length_keep_plain_batches(glue_data_dir, tmp_path):
    from tunelab.models.heads import HEADS
    from tunelab.models.aliases import resolve_model

    task = get_task("sst2")
    tok = HEADS.get("classification").load_processor(resolve_model("minilm"))
    grouped = _loader(task, tok, glue_data_dir, tmp_path, True)
    assert isinstance(grouped.batch_sampler, LengthGroupedBatches)
    no_length = NoLength(task.spec)
    plain = _loader(no_length, tok, glue_data_dir, tmp_path, True)
    assert not isinstance(plain.batch_sampler, LengthGroupedBatches)
    assert isinstance(plain.sampler, torch.utils.data.RandomSampler) and plain.batch_size == 8
    assert sum(len(b["input_ids"]) for b in plain) == 40  # every example once


def test_precision_auto_is_plain_fp32_on_cpu_and_fp16_needs_cuda(tmp_path, capsys):
    from contextlib import nullcontext

    from tunelab.cli import main
    from tunelab.train.precision import resolve_precision

    p = resolve_precision("auto", torch.device("cpu"))
    assert (p.name, p.tf32) == ("fp32", False) and isinstance(p.autocast(), nullcontext) and p.grad_scaler() is None
    rc = main(["run", "--task", "sst2", "--precision", "fp16", "--device", "cpu", "--output-dir", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("tunelab: error: --precision fp16: needs a CUDA device") and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()  # rejected before anything is written


def test_bf16_autocast_on_cpu_trains_close_to_fp32():
    """The autocast path itself (what CUDA runs by default) on CPU: same losses to bf16 precision."""
    from transformers import DataCollatorWithPadding

    from tunelab.config import RunConfig
    from tunelab.methods import get_method
    from tunelab.methods.base import PrepareContext
    from tunelab.models import load_backbone
    from tunelab.train.loop import seed_everything, train

    torch.set_num_threads(1)
    out = {}
    for precision in ("fp32", "bf16"):
        cfg = RunConfig(task="sst2", method="selective", layers="top:1", epochs=1, batch_size=4, lr=1e-3,
                        precision=precision)
        m = get_method("selective")()
        seed_everything(0)
        model, tok, layout, _ = load_backbone("minilm", "classification", 2)
        model = m.prepare(model, PrepareContext(cfg=cfg, layout=layout, peft_task_type="SEQ_CLS"))
        for mod in model.modules():
            if isinstance(mod, torch.nn.Dropout):
                mod.p = 0.0
        rows = [dict(tok(t), labels=i % 2) for i, t in enumerate(["good", "bad", "fine film", "awful plot"] * 2)]
        loader = torch.utils.data.DataLoader(rows, batch_size=4, collate_fn=DataCollatorWithPadding(tok))
        res = train(model, m, loader, lambda _m: ({"accuracy": 0.5}, {}), cfg, 1e-3, torch.device("cpu"))
        out[precision] = (res.history[0]["train_loss"], res.record["precision"])
    assert out["fp32"][1]["used"] == "fp32" and out["bf16"][1] == {
        "requested": "bf16", "used": "bf16", "device": "cpu", "tf32": False, "weights": "fp32 (autocast for forward/loss)"}
    assert out["bf16"][0] != out["fp32"][0] and abs(out["bf16"][0] - out["fp32"][0]) < 0.02


def test_deferred_host_syncs_change_no_number_and_still_stop_a_diverged_run(monkeypatch):
    """CUDA reads losses back every CUDA_SYNC_EVERY steps; forced here on CPU (every 3 steps): the same
    weights and losses as reading every step, and a nan loss still fails the run naming its step."""
    from transformers import DataCollatorWithPadding

    import tunelab.train.loop as loop
    from tunelab.config import RunConfig
    from tunelab.methods import get_method
    from tunelab.methods.base import PrepareContext
    from tunelab.models import load_backbone
    from tunelab.train.health import RunDiverged

    torch.set_num_threads(1)

    def run(every, loss_fn=loop.model_loss):
        monkeypatch.setattr(loop, "sync_interval", lambda device_type: every)
        cfg = RunConfig(task="sst2", method="selective", layers="top:1", epochs=2, batch_size=2, lr=1e-3)
        m = get_method("selective")()
        loop.seed_everything(0)
        model, tok, layout, _ = load_backbone("minilm", "classification", 2)
        model = m.prepare(model, PrepareContext(cfg=cfg, layout=layout, peft_task_type="SEQ_CLS"))
        rows = [dict(tok(t), labels=i % 2) for i, t in enumerate(["good", "bad", "fine film", "awful plot"] * 2)]
        loader = torch.utils.data.DataLoader(rows, batch_size=2, collate_fn=DataCollatorWithPadding(tok))
        res = loop.train(model, m, loader, lambda _m: ({"accuracy": 0.5}, {}), cfg, 1e-3, torch.device("cpu"),
                         loss_fn=loss_fn)
        return res, {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    (a, wa), (b, wb) = run(1), run(3)
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]
    assert a.state.step == b.state.step == 8
    assert all(torch.equal(wa[n], wb[n]) for n in wa)

    calls = []

    def nan_at_5(model, batch):
        calls.append(1)
        out = loop.model_loss(model, batch)
        return out * float("nan") if len(calls) == 5 else out

    with pytest.raises(RunDiverged, match="at step 5"):
        run(3, nan_at_5)


def test_full_fine_tuning_defaults_to_batch_16_under_the_family_and_the_user():
    full = _cfg("--task", "sst2", "--method", "full")
    assert (full.batch_size, full.lr, full.sources["batch_size"]) == (16, 1e-4, "method")
    lora = _cfg("--task", "sst2", "--method", "lora")
    assert lora.batch_size == 32 and lora.sources["batch_size"] == "default"
    assert _cfg("--task", "sst2", "--method", "full", "--batch-size", "32").batch_size == 32
    kp = build_config({"task": "inspec", "method": "full"})  # the keyphrase family's batch wins
    assert kp.sources["batch_size"] == "task"


def test_alf_with_the_lora_adapter_defaults_to_loras_learning_rate():
    """ALF trains weights at its own rate; with --adapter lora it trains LoRA matrices at LoRA's, unless
    the user gives one (a YAML/preset value counts as given)."""
    from tunelab.methods.lora import LoRA

    plain, lora = _cfg("--task", "sst2", "--method", "alf"), _cfg("--task", "sst2", "--method", "lora")
    adapted = _cfg("--task", "sst2", "--method", "alf", "--adapter", "lora")
    assert adapted.lr == lora.lr == LoRA.default_lr and adapted.sources["lr"] == "method"
    assert plain.lr != lora.lr and adapted.head_lr == adapted.lr
    given = build_config({"task": "sst2", "method": "alf", "adapter": "lora", "lr": 5e-4})
    assert (given.lr, given.sources["lr"]) == (5e-4, "given")
