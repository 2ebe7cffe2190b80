"""Training throughput: tunelab's own loop vs a plain HF Trainer (+PEFT) run, on the SAME batches.

Same model, same examples (tokenised once by the task), same method preparation, batch size, lr,
schedule and sequence length; evaluation and checkpointing off in both. Both engines consume the
identical batch sequence (one seeded permutation; tunelab's loader and Trainer's sampler both
read it in order), so the comparison measures the engines and not the luck of the shuffle: with
independent shuffles, padding alone differs by several percent (on 1,000 SST-2 examples, seed 0,
batch 32: 39,872 padded tokens in tunelab's order vs 37,488 in Trainer's, +6.4 %), which was
most of the 10 % "loop slower than Trainer" gap this benchmark first reported. Each measurement
runs in its own subprocess; CPU seconds (process time) are reported beside wall seconds because
wall time on a shared machine measures the other tenants too.

    python benchmarks/bench_loop_vs_trainer.py --data-dir ../shared/data/glue --methods full,selective:0-5,lora,selective \
        --samples 1000 [--write BENCHMARKS.md]

``selective:0-5`` trains every layer with the embeddings frozen: on all-MiniLM-L6-v2 the word
embeddings are 52 % of the parameters, and their AdamW update dominates a full-FT step.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time


def worker(engine: str, method: str, a) -> dict:
    import tempfile

    import torch
    from transformers import get_linear_schedule_with_warmup  # noqa: F401  (import cost outside the timing)

    torch.set_num_threads(a.threads)
    from tunelab.resolve import build_config
    from tunelab.methods import get_method
    from tunelab.methods.base import PrepareContext
    from tunelab.models import load_backbone
    from tunelab.runner import subsample
    from tunelab.tasks import get_task
    from tunelab.train.loop import seed_everything

    method, _, layers = method.partition(":")  # e.g. selective:0-5 = every layer, embeddings frozen
    extra = {"layers": layers or "top:2"} if method == "selective" else {}
    cfg = build_config({"task": a.task, "method": method, "epochs": 1, "batch_size": a.batch_size, "seed": 0,
                        "data_dir": a.data_dir, "max_grad_norm": 1.0, "group_by_length": False,
                        "activation_cache": False, **extra})
    m = get_method(method)()
    lr = cfg.lr
    task = get_task(a.task).configure(cfg)
    examples = subsample(task.load("train", a.data_dir).examples, a.samples, 0)
    seed_everything(0)
    model, tok, layout, _ = load_backbone("minilm", task.head, task.num_labels)
    model = m.prepare(model, PrepareContext(cfg=cfg, layout=layout, peft_task_type="SEQ_CLS",
                                            model_type=model.config.model_type))
    rows = task.encode(examples, tok, cfg)
    perm = torch.randperm(len(rows), generator=torch.Generator().manual_seed(0)).tolist()
    rows = [rows[i] for i in perm]  # one order for both engines
    collate = task.collator(tok)
    padded = sum(max(len(r["input_ids"]) for r in rows[i:i + cfg.batch_size]) * len(rows[i:i + cfg.batch_size])
                 for i in range(0, len(rows), cfg.batch_size))
    c0, t0 = time.process_time(), time.perf_counter()
    if engine == "tunelab":
        from tunelab.train.loop import train

        loader = torch.utils.data.DataLoader(rows, batch_size=cfg.batch_size, shuffle=False, collate_fn=collate)
        s = train(model, m, loader, lambda _m: ({"none": 0.0}, {}), cfg, lr, torch.device("cpu")).state
        samples = s.samples_seen
    else:
        from transformers import Trainer, TrainingArguments

        class InOrder(Trainer):
            def _get_train_sampler(self, *args, **kwargs):
                return torch.utils.data.SequentialSampler(self.train_dataset)

        args = TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=cfg.batch_size,
                                 num_train_epochs=1, learning_rate=lr,
                                 warmup_steps=int(cfg.warmup_ratio * -(-len(rows) // cfg.batch_size)),
                                 weight_decay=cfg.weight_decay, max_grad_norm=1.0, logging_strategy="no",
                                 save_strategy="no", eval_strategy="no", report_to=[], seed=0,
                                 dataloader_num_workers=0, use_cpu=True, disable_tqdm=True)
        InOrder(model=model, args=args, train_dataset=rows, data_collator=collate).train()
        samples = len(rows)
    return {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0, "samples": samples,
            "padded_tokens": padded}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.environ.get("TUNELAB_DATA_DIR", "../shared/data/glue"))
    p.add_argument("--task", default="sst2")
    p.add_argument("--methods", default="full,selective:0-5,lora,selective")
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--write", help="append the table to this markdown file")
    p.add_argument("--worker", nargs=2, metavar=("ENGINE", "METHOD"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        print("RESULT " + json.dumps(worker(a.worker[0], a.worker[1], a)))
        return
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    rows = []
    for method in a.methods.split(","):
        res = {}
        for engine in ("tunelab", "trainer"):
            cmd = [sys.executable, __file__, "--worker", engine, method] + sum(
                ([f"--{k.replace('_', '-')}", str(v)] for k, v in vars(a).items() if k in ("data_dir", "task", "samples", "batch_size", "threads")), [])
            out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
            line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
            if not line:
                sys.exit(f"{engine}/{method} failed:\n{out.stderr[-2000:]}")
            res[engine] = json.loads(line[0][7:])
        tl, tr = res["tunelab"], res["trainer"]
        rows.append((method, tl["seconds"], tl["cpu_seconds"], tr["seconds"], tr["cpu_seconds"],
                     tr["cpu_seconds"] / tl["cpu_seconds"], tr["seconds"] / tl["seconds"], tl["padded_tokens"]))
    head = ("| method | tunelab wall s | tunelab CPU s | Trainer wall s | Trainer CPU s | speed ratio CPU (Trainer/tunelab) "
            "| speed ratio wall | padded tokens (both) |\n|---|---|---|---|---|---|---|---|")
    table = head + "\n" + "\n".join(f"| {m} | {a1:.1f} | {b1:.1f} | {c1:.1f} | {d1:.1f} | {r:.2f} | {r2:.2f} | {pt} |"
                                     for m, a1, b1, c1, d1, r, r2, pt in rows)
    print(table)
    if a.write:
        cmd = "python benchmarks/bench_loop_vs_trainer.py " + " ".join(sys.argv[1:])
        with open(a.write, "a", encoding="utf-8") as f:
            f.write(f"\n## Training loop vs HF Trainer on identical batches ({datetime.date.today()})\n\nMachine: "
                    f"{platform.machine()}, {os.cpu_count()} CPU cores, torch threads {a.threads}; load at the start: "
                    f"`{load}`; task {a.task}, {a.samples} train examples, batch {a.batch_size}, 1 epoch, minilm, the same "
                    f"seeded batch order in both engines.\nCommand: `{cmd}`\n\n{table}\n")


if __name__ == "__main__":
    main()
