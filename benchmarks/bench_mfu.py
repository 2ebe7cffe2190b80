"""Achieved FLOP/s of a training step against this machine's measured matmul peak (the physical limit).

1. Peak: the best of several fp32 square matmuls (``torch.mm``, n = 2048) on the same thread count,
   2 n^3 FLOPs each. No training step can beat this on this machine. On CPU every time here is process
   (CPU) time of one thread: robust to other load on a shared machine; on CUDA, synchronised wall time.
2. Training step: one optimizer step exactly as tunelab's loop takes it (the method's ``prepare``, AdamW
   from ``train.loop.build_optimizer``, forward + backward + gradient clipping + step) on a fixed
   batch of B x S token ids; FLOPs of the step counted by ``torch.utils.flop_counter.FlopCounterMode``
   (matmuls and attention; elementwise work is not counted, as in the usual MFU convention); time =
   median of timed steps after warm-up. MFU = achieved / peak.

Weights do not change speed, so ``--config bert-base`` times a randomly initialised BERT-base-sized
encoder (12 layers, hidden 768) for throughput on bigger matrices.

    python benchmarks/bench_mfu.py --methods full,lora,selective --threads 1 [--config bert-base] [--write BENCHMARKS.md]
"""

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import append_section, command_line, machine_line  # noqa: E402


def clock(device) -> float:
    """CPU: process time (with one thread, the time the work takes on a core of its own, even when other
    processes share the machine); CUDA: wall time around synchronised work."""
    return time.perf_counter() if device.type == "cuda" else time.process_time()


def matmul_peak(device, n: int = 2048, reps: int = 8) -> float:
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    best = float("inf")
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = clock(device)
        torch.mm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, clock(device) - t0)
    return 2 * n ** 3 / best


def build(method_name: str, config: str, device):
    """The model as tunelab's runner prepares it for ``--method M`` on sst2."""
    from tunelab.resolve import build_config
    from tunelab.methods import get_method
    from tunelab.methods.base import PrepareContext, count_params
    from tunelab.models.heads import HEADS
    from tunelab.tasks import get_task

    extra = {"layers": "top:25%"} if method_name == "selective" else {}
    cfg = build_config({"task": "sst2", "method": method_name, "model": "minilm", **extra})
    task = get_task("sst2").configure(cfg)
    model, _proc, layout, _src = task.load_model("minilm", allow_pickle=False)
    if config == "bert-base":
        from transformers import AutoModelForSequenceClassification, BertConfig

        from tunelab.models.layout import find_layout

        model = AutoModelForSequenceClassification.from_config(BertConfig(num_labels=2))  # random init, 110M
        layout = find_layout(model)
    method = get_method(method_name)()
    ctx = PrepareContext(cfg=cfg, layout=layout, peft_task_type=HEADS.get(task.head).peft_task_type,
                         model_type=model.config.model_type)
    model = method.prepare(model, ctx).to(device)
    return model, method, cfg, count_params(model, layout)


def time_step(model, method, cfg, device, batch: int, seq: int, steps: int):
    from torch.utils.flop_counter import FlopCounterMode

    from tunelab.train.loop import build_optimizer

    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    inputs = {"input_ids": torch.randint(1000, vocab, (batch, seq), generator=g).to(device),
              "attention_mask": torch.ones(batch, seq, dtype=torch.long, device=device),
              "labels": torch.randint(0, 2, (batch,), generator=g).to(device)}
    opt = build_optimizer(method.optimizer_params(model), cfg.lr, cfg.weight_decay, fused=True)
    params = [p for grp in opt.param_groups for p in grp["params"]]
    model.train()

    def step():
        loss = model(**inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    with FlopCounterMode(display=False) as fc:
        step()
    flops = fc.get_total_flops()
    step()  # warm-up
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = clock(device)
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(clock(device) - t0)
    return flops, statistics.median(times)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", default="full,lora,selective")
    p.add_argument("--config", default="minilm", choices=("minilm", "bert-base"))
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--write", help="append the table to this markdown file")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    peak = matmul_peak(device)
    print(f"matmul peak: {peak / 1e9:.1f} GFLOP/s ({a.threads} thread(s), fp32, n=2048)")
    rows = []
    for m in a.methods.split(","):
        model, method, cfg, params = build(m, a.config, device)
        flops, sec = time_step(model, method, cfg, device, a.batch, a.seq, a.steps)
        achieved = flops / sec
        rows.append(f"| {a.config} | {m} | {params['trainable']:,} | {a.batch} x {a.seq} | {flops / 1e9:.1f} | "
                    f"{sec:.3f} | {a.batch / sec:.1f} | {achieved / 1e9:.1f} | {peak / 1e9:.1f} | {100 * achieved / peak:.0f} % |")
        print(rows[-1], flush=True)
        del model
    table = ("| model | method | trainable params | batch | GFLOP / step (counted) | CPU s / step (median) | samples / CPU s "
             "| achieved GFLOP/s | matmul peak GFLOP/s | MFU |\n|---|---|---|---|---|---|---|---|---|---|\n"
             + "\n".join(rows))
    print(table)
    if a.write:
        append_section(a.write, [
            "", f"## Achieved FLOP/s vs the measured matmul peak ({time.strftime('%Y-%m-%d')})", "",
            f"{machine_line(a.threads)}, device {a.device}. Command: `{command_line('bench_mfu.py')}`", "",
            table, ""])


if __name__ == "__main__":
    main()
