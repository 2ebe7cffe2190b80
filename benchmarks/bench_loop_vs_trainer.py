"""Training throughput: tunelab's own loop vs a plain HF Trainer (+PEFT) run.

Same model, same examples (tokenised once by the task), same method preparation, batch size, lr,
schedule and sequence length; evaluation and checkpointing off in both. Each measurement runs in
its own subprocess (fresh process, same thread count). Prints a table and the ratio
tunelab/Trainer of train samples per second (> 1 means tunelab is faster).

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
    import torch

    torch.set_num_threads(a.threads)
    from tunelab.config import RunConfig
    from tunelab.methods import get_method
    from tunelab.methods.base import PrepareContext
    from tunelab.models import load_backbone
    from tunelab.runner import subsample
    from tunelab.tasks import get_task
    from tunelab.train.loop import seed_everything

    method, _, layers = method.partition(":")  # e.g. selective:0-5 = every layer, embeddings frozen
    extra = {"layers": layers or "top:2"} if method == "selective" else {}
    cfg = RunConfig(task=a.task, method=method, epochs=1, batch_size=a.batch_size, seed=0, data_dir=a.data_dir,
                    max_grad_norm=1.0, **extra)
    m = get_method(method)()
    lr = m.default_lr
    task = get_task(a.task)
    examples = subsample(task.load("train", a.data_dir).examples, a.samples, 0)
    seed_everything(0)
    model, tok, layout, _ = load_backbone("minilm", task.head, task.num_labels)
    model = m.prepare(model, PrepareContext(cfg=cfg, layout=layout, peft_task_type="SEQ_CLS"))
    rows = task.encode(examples, tok, cfg.max_seq_length)
    collate = task.collator(tok)
    if engine == "tunelab":
        from tunelab.train.loop import train

        gen = torch.Generator().manual_seed(0)
        loader = torch.utils.data.DataLoader(rows, batch_size=cfg.batch_size, shuffle=True, generator=gen, collate_fn=collate)
        s = train(model, m, loader, lambda _m: ({"none": 0.0}, {}), cfg, lr, torch.device("cpu"))["state"]
        return {"seconds": s.train_seconds, "samples": s.samples_seen}
    from transformers import Trainer, TrainingArguments

    import tempfile

    args = TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=cfg.batch_size, num_train_epochs=1,
                             learning_rate=lr, warmup_steps=int(cfg.warmup_ratio * -(-len(rows) // cfg.batch_size)), weight_decay=cfg.weight_decay,
                             max_grad_norm=1.0, logging_strategy="no", save_strategy="no", eval_strategy="no",
                             report_to=[], seed=0, dataloader_num_workers=0, use_cpu=True, disable_tqdm=True)
    t = Trainer(model=model, args=args, train_dataset=rows, data_collator=collate)
    t0 = time.perf_counter()
    out = t.train()
    return {"seconds": time.perf_counter() - t0, "samples": len(rows), "trainer_runtime": out.metrics["train_runtime"]}


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
        sps = {e: r["samples"] / r["seconds"] for e, r in res.items()}
        rows.append((method, res["tunelab"]["seconds"], sps["tunelab"], res["trainer"]["seconds"], sps["trainer"],
                     sps["tunelab"] / sps["trainer"]))
    head = "| method | tunelab s | tunelab samples/s | Trainer s | Trainer samples/s | ratio (tunelab/Trainer) |\n|---|---|---|---|---|---|"
    table = head + "\n" + "\n".join(f"| {m} | {a1:.1f} | {b1:.1f} | {c1:.1f} | {d1:.1f} | {r:.2f} |" for m, a1, b1, c1, d1, r in rows)
    print(table)
    if a.write:
        cmd = "python benchmarks/bench_loop_vs_trainer.py " + " ".join(sys.argv[1:])
        with open(a.write, "a", encoding="utf-8") as f:
            f.write(f"\n## Training loop vs HF Trainer ({datetime.date.today()})\n\nMachine: {platform.machine()}, "
                    f"{os.cpu_count()} CPU cores, torch threads {a.threads}; task {a.task}, {a.samples} train examples, "
                    f"batch {a.batch_size}, 1 epoch, minilm.\nCommand: `{cmd}`\n\n{table}\n")


if __name__ == "__main__":
    main()
