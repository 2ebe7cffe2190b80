"""--gradient-checkpointing: peak memory and step time of full fine-tuning on minilm with 512-token
batches, with and without it, each setting in its own process (peak RSS is a process high-water mark).

A worker (``--worker on|off``) loads minilm with a classification head, applies
``train.grad_checkpointing.apply_gradient_checkpointing`` as a run does, and takes N AdamW steps
(tunelab's ``build_optimizer``, fused) in train mode (dropout on) on synthetic batches of
``--batch-size`` x 512 real tokens (SST-2 sentences are short). It prints one JSON line: RSS after
loading, peak RSS, the training's share of it, median step time.

    python benchmarks/bench_grad_ckpt.py [--steps 4] [--batch-size 8] [--threads 2] [--write]
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "src"))


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def worker(args) -> None:
    import torch

    import tunelab.tasks  # noqa: F401  (declares every option)
    from tunelab.config import RunConfig
    from tunelab.models import load_backbone
    from tunelab.train.grad_checkpointing import apply_gradient_checkpointing
    from tunelab.train.loop import build_optimizer, seed_everything

    torch.set_num_threads(args.threads)
    seed_everything(0)
    cfg = RunConfig(task="sst2", method="full", gradient_checkpointing=args.worker == "on", max_seq_length=512)
    model, tok, _, _ = load_backbone("minilm", "classification", 2)
    rec = apply_gradient_checkpointing(model, cfg)
    model.train()
    text = "a slow start , but the film rewards patience with a moving and beautifully acted finish . " * 60
    enc = tok([text] * args.batch_size, truncation=True, max_length=512, padding="max_length", return_tensors="pt")
    batch = {**enc, "labels": torch.tensor([i % 2 for i in range(args.batch_size)])}
    opt = build_optimizer(list(model.named_parameters()), 5e-5, 0.01, fused=True)
    loaded = rss_mb()
    times = []
    for _ in range(args.steps + 1):  # the first step (allocator warm-up, lazy init) is not timed
        t = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t)
    peak = peak_mb()
    print(json.dumps({"setting": args.worker, "applied": rec["applied"], "tokens": int(enc["input_ids"].shape[1]),
                      "loaded_mb": round(loaded), "peak_mb": round(peak), "training_mb": round(peak - loaded),
                      "step_s": round(statistics.median(times[1:]), 2), "loss": round(float(loss), 4)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--worker", choices=("on", "off"))
    ap.add_argument("--write", action="store_true", help="append the table to BENCHMARKS.md")
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    rows = {}
    for setting in ("off", "on"):
        cmd = [sys.executable, __file__, "--worker", setting, "--steps", str(args.steps),
               "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        rows[setting] = json.loads(out)
        print(out, flush=True)
    off, on = rows["off"], rows["on"]
    lines = ["| --gradient-checkpointing | peak RSS (MB) | of which training (peak - after load, MB) | "
             "median step (s) |", "|---|---:|---:|---:|"]
    for name, r in (("off", off), ("on", on)):
        lines.append(f"| {name} | {r['peak_mb']} | {r['training_mb']} | {r['step_s']} |")
    lines.append(f"| on / off | {on['peak_mb'] / off['peak_mb']:.2f} | {on['training_mb'] / max(off['training_mb'], 1):.2f} "
                 f"| {on['step_s'] / off['step_s']:.2f} |")
    print("\n".join(lines))
    if args.write:
        from bench_common import append_section, command_line, machine_line

        append_section(os.path.join(HERE, "..", "BENCHMARKS.md"), [
            "", "## Gradient checkpointing (benchmarks/bench_grad_ckpt.py)", "",
            machine_line(args.threads) + " (2-core CPU, shared with other jobs)", "",
            f"Command: `{command_line('bench_grad_ckpt.py')}`", "",
            f"Full fine-tuning of minilm, batch {args.batch_size} x {off['tokens']} tokens, {args.steps} timed AdamW "
            "steps after one warm-up step, train mode; each setting in its own process.", "", *lines, ""])


if __name__ == "__main__":
    main()
