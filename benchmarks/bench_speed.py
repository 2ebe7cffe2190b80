"""Speed at each engine's defaults: tunelab vs HF Trainer (+PEFT), same model, data and epochs.

Every configuration runs in its own process, one after the other:

- tunelab: ``tunelab run --task sst2 --model minilm --max-train-samples N --epochs E --seed 0`` with
  the method's defaults (length-grouped batches, activation cache when eligible, the method's
  batch size and lr: full 16 / 1e-4, the others 32 / their lr); ``selective`` = ``--layers top:25%`` with and without ``--no-activation-cache``.
- HF Trainer: ``TrainingArguments`` defaults (batch 8, lr 5e-5, no warm-up, AdamW fused, no length
  grouping) on the same N examples (tunelab's seeded subset) and epochs; LoRA = PEFT ``LoraConfig``
  defaults for sequence classification; selective = the usual recipe (freeze everything but the
  top 25 % of layers, the pooler and the classifier). ``lora at tunelab's hyper-params``: Trainer + PEFT
  with tunelab's LoRA settings (r 8, alpha 16, dropout 0.1, pooler + classifier trained; batch 32,
  lr 2e-3, warm-up 6 %, weight decay 0.01) and Trainer's own unsorted batches: the accuracy of
  LoRA's settings without tunelab's engine. Trainer has no ALF or AutoFreeze
  (``autofreeze`` = ``--layer-budget 0.25`` with and without the cache of its frozen prefix).

Reported per configuration: training wall seconds (tunelab: ``time.train_seconds``, the cache
build included; Trainer: ``train_runtime``), training CPU seconds (process time; robust to other
tenants of a shared machine), train samples/s (wall), peak RSS of the process, dev accuracy (the
full SST-2 dev set, after the last epoch). Evaluation time is not training time in either engine.

    python benchmarks/bench_speed.py --data-dir ../shared/data/glue --samples 2000 --epochs 3 --threads 1 \
        [--only tunelab:full,trainer:full] [--write BENCHMARKS.md]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import append_section, command_line, machine_line  # noqa: E402

CONFIGS = [  # (engine, label, tunelab args)
    ("tunelab", "full", ["--method", "full"]),
    ("trainer", "full", None),
    ("tunelab", "lora", ["--method", "lora"]),
    ("trainer", "lora", None),
    ("trainer", "lora at tunelab's hyper-params", None),
    ("tunelab", "selective top-25% + cache", ["--method", "selective", "--layers", "top:25%"]),
    ("tunelab", "selective top-25% no cache", ["--method", "selective", "--layers", "top:25%", "--no-activation-cache"]),
    ("trainer", "selective top-25%", None),
    ("tunelab", "alf", ["--method", "alf"]),
    ("tunelab", "autofreeze 25% + cache", ["--method", "autofreeze", "--layer-budget", "0.25"]),
    ("tunelab", "autofreeze 25% no cache", ["--method", "autofreeze", "--layer-budget", "0.25", "--no-activation-cache"]),
]


def trainer_worker(label: str, a) -> dict:
    """HF Trainer at its defaults on tunelab's train subset; accuracy on the full dev set."""
    import resource

    import numpy as np
    import torch
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments, set_seed)

    from tunelab.models.aliases import resolve_model
    from tunelab.runner import subsample
    from tunelab.tasks import get_task

    torch.set_num_threads(a.threads)
    task = get_task("sst2")
    train = subsample(task.load("train", a.data_dir).examples, a.samples, a.seed)
    dev = task.load("validation", a.data_dir).examples
    source = resolve_model("minilm")
    tok = AutoTokenizer.from_pretrained(source)
    set_seed(a.seed)  # as HF's run_glue.py: the new head's init is seeded too (Trainer seeds only after the model exists)
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=2)

    def encode(examples):
        enc = tok([e.texts[0] for e in examples], truncation=True)
        return [{"input_ids": enc["input_ids"][i], "token_type_ids": enc["token_type_ids"][i],
                 "attention_mask": enc["attention_mask"][i], "labels": e.label} for i, e in enumerate(examples)]

    hyper = {}
    if label == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS"))
    elif label.startswith("lora at"):  # tunelab's resolved LoRA defaults, given to Trainer + PEFT
        from peft import LoraConfig, get_peft_model

        from tunelab.resolve import build_config
        from tunelab.methods.peft_common import head_module_names
        from tunelab.models.layout import find_layout

        cfg = build_config({"task": "sst2", "method": "lora"})
        assert not cfg.lora_targets  # PEFT's default targets (query, value), as in tunelab
        model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                                 lora_dropout=cfg.lora_dropout,
                                                 modules_to_save=head_module_names(find_layout(model))))
        hyper = {"per_device_train_batch_size": cfg.batch_size, "learning_rate": cfg.lr,
                 "warmup_steps": cfg.warmup_ratio, "weight_decay": cfg.weight_decay}
    elif label.startswith("selective"):
        n = model.config.num_hidden_layers
        keep = [f"encoder.layer.{i}." for i in range(n - max(1, round(0.25 * n)), n)] + ["pooler.", "classifier."]
        for name, p in model.named_parameters():
            p.requires_grad_(any(k in name for k in keep))
    args = TrainingArguments(output_dir=tempfile.mkdtemp(), num_train_epochs=a.epochs, use_cpu=True, report_to=[],
                             save_strategy="no", logging_strategy="no", disable_tqdm=True, seed=a.seed, **hyper)
    trainer = Trainer(model=model, args=args, train_dataset=encode(train),
                      data_collator=DataCollatorWithPadding(tok))
    c0 = time.process_time()
    out = trainer.train()
    cpu = time.process_time() - c0
    pred = trainer.predict(encode(dev))
    acc = float((np.argmax(pred.predictions, -1) == pred.label_ids).mean())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"train_seconds": out.metrics["train_runtime"], "train_cpu_seconds": cpu,
            "samples_per_second": a.samples * a.epochs / out.metrics["train_runtime"], "peak_rss_mb": rss,
            "accuracy": acc, "batch_size": args.per_device_train_batch_size, "lr": args.learning_rate}


def tunelab_run(label: str, extra: list, a) -> dict:
    out = os.path.join(a.work_dir, label.replace(" ", "_").replace("%", "pct").replace("+", "plus") + f"-s{a.seed}")
    cmd = [sys.executable, "-m", "tunelab.cli", "run", "--task", "sst2", "--model", "minilm", "--data-dir", a.data_dir,
           "--max-train-samples", str(a.samples), "--epochs", str(a.epochs), "--seed", str(a.seed), "--threads",
           str(a.threads), "--output-dir", out, "--overwrite", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"tunelab {label} failed: {proc.stderr.strip().splitlines()[-1:]}")
    with open(os.path.join(out, "run.json"), encoding="utf-8") as f:
        rec = json.load(f)
    cache = rec.get("activation_cache", {})
    return {"train_seconds": rec["time"]["train_seconds"], "train_cpu_seconds": rec["cpu_time"]["train_cpu_seconds"],
            "samples_per_second": rec["time"]["train_samples_per_second"], "peak_rss_mb": rec["memory"]["peak_rss_mb"],
            "accuracy": rec["metrics"]["accuracy"], "batch_size": rec["config"]["batch_size"], "lr": rec["config"]["lr"],
            "cache": f"on, k={cache['k']}, {cache['storage']} {cache['mb']} MB" if cache.get("on") else "off",
            "group_by_length": rec["config"]["group_by_length"], "cmd": " ".join(cmd[1:])}


def summary_table(rows: list) -> str:
    """Mean +- std over seeds per configuration, CPU time relative to tunelab full FT on the same
    seeds, and tunelab vs Trainer on the methods both ran (paired by seed)."""
    import statistics

    from scipy.stats import ttest_rel

    def ms(xs, fmt):
        return f"{statistics.mean(xs):{fmt}} ± {statistics.stdev(xs):{fmt}}" if len(xs) > 1 else f"{xs[0]:{fmt}}"

    by = {(r["engine"], r["label"], r["seed"]): r for r in rows}
    full = {s: r["train_cpu_seconds"] for (e, lab, s), r in by.items() if (e, lab) == ("tunelab", "full")}
    out = ["| engine | method | seeds | dev acc (mean ± std) | train CPU s (mean ± std) | train wall s (mean) "
           "| CPU s / tunelab full (same seeds) |", "|---|---|---|---|---|---|---|"]
    for engine, label, _ in CONFIGS:
        rs = sorted((r for r in rows if (r["engine"], r["label"]) == (engine, label)), key=lambda r: r["seed"])
        if not rs:
            continue
        cpu = [r["train_cpu_seconds"] for r in rs]
        ratio = f"{sum(cpu) / sum(full[r['seed']] for r in rs):.2f}" if all(r["seed"] in full for r in rs) else ""
        out.append(f"| {engine} | {label} | {','.join(str(r['seed']) for r in rs)} | "
                   f"{ms([r['accuracy'] for r in rs], '.4f')} | {ms(cpu, '.1f')} | "
                   f"{sum(r['train_seconds'] for r in rs) / len(rs):.1f} | {ratio} |")
    pairs = ["", "| method | seeds (paired) | dev acc tunelab − Trainer, points (mean ± std) | paired t-test p "
             "| CPU s tunelab / Trainer |", "|---|---|---|---|---|"]
    for label, rival in (("full", "full"), ("lora", "lora"), ("lora", "lora at tunelab's hyper-params")):
        seeds = sorted(s for (e, lab, s) in by if (e, lab) == ("tunelab", label) and ("trainer", rival, s) in by)
        if not seeds:
            continue
        a = [by[("tunelab", label, s)] for s in seeds]
        b = [by[("trainer", rival, s)] for s in seeds]
        d = [100 * (x["accuracy"] - y["accuracy"]) for x, y in zip(a, b)]
        p = f"{ttest_rel([x['accuracy'] for x in a], [y['accuracy'] for y in b]).pvalue:.2f}" if len(seeds) > 2 else ""
        spread = f" ± {statistics.stdev(d):.2f}" if len(d) > 1 else ""
        name = label if rival == label else f"{label} vs Trainer {rival}"
        pairs.append(f"| {name} | {','.join(map(str, seeds))} | {statistics.mean(d):+.2f}{spread} | {p} | "
                     f"{sum(x['train_cpu_seconds'] for x in a) / sum(y['train_cpu_seconds'] for y in b):.2f} |")
    return "\n".join(out + (pairs if len(pairs) > 3 else []))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.environ.get("TUNELAB_DATA_DIR", "../shared/data/glue"))
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seeds", default="0", help="comma list; seed s = training seed and train-subset seed of both engines")
    p.add_argument("--only", help="comma list of engine:label prefixes to run (default: all)")
    p.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "tunelab-bench-speed"))
    p.add_argument("--results", default=None, help="JSON lines file to append each result to (and resume from)")
    p.add_argument("--write", help="append the table to this markdown file")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)  # the worker's seed
    a = p.parse_args()
    if a.worker:
        print("RESULT " + json.dumps(trainer_worker(a.worker, a)))
        return
    os.makedirs(a.work_dir, exist_ok=True)
    results_path = a.results or os.path.join(a.work_dir, "results.jsonl")
    seeds = [int(x) for x in a.seeds.split(",")]
    done = {}
    if os.path.exists(results_path):
        with open(results_path, encoding="utf-8") as f:
            for line in f:
                r = json.loads(line)
                if (r["samples"], r["epochs"], r["threads"]) == (a.samples, a.epochs, a.threads):
                    done[(r["engine"], r["label"], r.get("seed", 0))] = r
    load_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    wanted = [c for c in CONFIGS if not a.only or any(f"{c[0]}:{c[1]}".startswith(o) for o in a.only.split(","))]
    for seed in seeds:
        a.seed = seed
        for engine, label, extra in wanted:
            if (engine, label, seed) in done:
                continue
            t0 = time.time()
            if engine == "tunelab":
                r = tunelab_run(label, extra, a)
            else:
                cmd = [sys.executable, __file__, "--worker", label, "--data-dir", a.data_dir, "--samples",
                       str(a.samples), "--epochs", str(a.epochs), "--threads", str(a.threads), "--seed", str(seed)]
                proc = subprocess.run(cmd, capture_output=True, text=True,
                                      env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
                line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
                if not line:
                    raise SystemExit(f"trainer {label} failed:\n{proc.stderr[-2000:]}")
                r = json.loads(line[0][7:])
            r.update({"engine": engine, "label": label, "seed": seed, "samples": a.samples, "epochs": a.epochs,
                      "threads": a.threads, "process_wall_seconds": round(time.time() - t0, 1),
                      "load": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()})
            done[(engine, label, seed)] = r
            with open(results_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(r) + "\n")
            print(f"{engine:8} {label:28} seed {seed} train {r['train_seconds']:.1f} s "
                  f"(CPU {r['train_cpu_seconds']:.1f} s) acc {r['accuracy']:.4f}", flush=True)
    rows = [done[(e, lab, s)] for s in seeds for e, lab, _ in CONFIGS if (e, lab, s) in done]
    head = ("| engine | method | seed | batch | lr | train wall s | train CPU s | samples/s (wall) | peak RSS MB "
            "| dev acc | CPU s / tunelab full | notes |\n|---|---|---|---|---|---|---|---|---|---|---|---|")
    lines = []
    for r in rows:
        full = done.get(("tunelab", "full", r["seed"]))
        ratio = f"{r['train_cpu_seconds'] / full['train_cpu_seconds']:.2f}" if full else ""
        notes = (f"cache {r['cache']}" + ("" if r["group_by_length"] else ", no length grouping")) if r["engine"] == "tunelab" \
            else ("tunelab's LoRA settings, Trainer's batches" if r["label"].startswith("lora at")
                  else "TrainingArguments defaults" + (" + PEFT LoraConfig defaults" if r["label"] == "lora" else ""))
        lines.append(f"| {r['engine']} | {r['label']} | {r['seed']} | {r['batch_size']} | {r['lr']:g} | "
                     f"{r['train_seconds']:.1f} | {r['train_cpu_seconds']:.1f} | {r['samples_per_second']:.1f} | "
                     f"{r['peak_rss_mb']:.0f} | {r['accuracy']:.4f} | {ratio} | {notes} |")
    table = head + "\n" + "\n".join(lines)
    summary = summary_table(rows)
    print(table + "\n\n" + summary)
    if a.write:
        loads = sorted({r["load"].split("load average:")[-1].strip() for r in rows})
        append_section(a.write, [
            "", f"## Speed at each engine's defaults: tunelab vs HF Trainer ({time.strftime('%Y-%m-%d')})", "",
            f"{machine_line(a.threads)}. SST-2, {a.samples} train examples (tunelab's seeded subset, the same for "
            f"both engines), {a.epochs} epochs, minilm, full dev set (872) after the last epoch.",
            f"Command: `{command_line('bench_speed.py')}`",
            f"Machine load (`uptime`) when the benchmark started: `{load_before}`; load averages after each "
            f"configuration: {'; '.join(loads)}.", "", table, "", summary, ""])


if __name__ == "__main__":
    main()
