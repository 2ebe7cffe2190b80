"""The user's own data (issue 22): AG News (``../shared/data/text-classification/ag_news``, a CSV with
string labels) through ``tunelab run --task text-classification`` and through a ``run_glue.py``-style HF
Trainer (+ PEFT) script at equal settings, side by side in one run.

Equal settings: the same seeded subset of train.csv and test.csv (tunelab's own data loading and
``subsample``, so the same rows and the same label ids), the same model (minilm), epochs, batch size,
learning rate (tunelab's resolved default of each method), warm-up ratio, weight decay, gradient
clipping, max length, seed, fp32 on CPU, length-grouped batches on both sides (Trainer's
``group_by_length``); LoRA: tunelab's r / alpha / dropout, PEFT's default targets, the head in
``modules_to_save``. tunelab keeps its speed defaults (fused AdamW, the activation cache where it
applies); run.json says which were on. Quality: validation accuracy / macro-F1 (scikit-learn);
time: training seconds (Trainer's ``train_runtime``; tunelab's ``time.train_seconds``).

    python benchmarks/bench_user_data.py --train-samples 2000 --eval-samples 500 --epochs 1 --methods full,lora
    python benchmarks/bench_user_data.py ... --append BENCHMARKS.md
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import append_section, command_line, machine_line, run_tunelab  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.join(HERE, "..", "..", "shared", "data", "text-classification", "ag_news")


def data_options(data: str) -> dict:
    return {"task": "text-classification", "train_file": os.path.join(data, "train.csv"),
            "validation_file": os.path.join(data, "test.csv")}


def trainer_run(method: str, ns, rec: dict) -> dict:
    """HF Trainer (+ PEFT) on the rows tunelab trained / evaluated on, with tunelab's resolved settings."""
    import numpy as np
    import torch
    from sklearn.metrics import accuracy_score, f1_score
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments, set_seed)

    from tunelab.models.aliases import resolve_model
    from tunelab.resolve import build_config
    from tunelab.runner import subsample
    from tunelab.tasks import get_task

    if ns.threads:
        torch.set_num_threads(ns.threads)
    cfg = build_config({**data_options(ns.data), "method": method, "epochs": ns.epochs, "seed": ns.seed,
                        "max_train_samples": ns.train_samples, "max_eval_samples": ns.eval_samples})
    task = get_task("text-classification").configure(cfg)
    train = subsample(task.load("train", None).examples, cfg.max_train_samples, cfg.seed)
    val = subsample(task.load("validation", None).examples, cfg.max_eval_samples, cfg.seed)
    source = resolve_model(cfg.model)
    tok = AutoTokenizer.from_pretrained(source)
    set_seed(cfg.seed)
    net = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=task.num_labels, id2label=dict(enumerate(task.id2label)),
        label2id={n: i for i, n in enumerate(task.id2label)})
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        from tunelab.methods.peft_common import head_module_names
        from tunelab.models.layout import find_layout

        net = get_peft_model(net, LoraConfig(task_type="SEQ_CLS", r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                             lora_dropout=cfg.lora_dropout,
                                             modules_to_save=head_module_names(find_layout(net))))

    def encode(examples):
        enc = tok([e.texts[0] for e in examples], truncation=True, max_length=cfg.max_seq_length)
        return [{**{k: enc[k][i] for k in enc.keys()}, "labels": e.label} for i, e in enumerate(examples)]

    import tempfile

    args = TrainingArguments(output_dir=tempfile.mkdtemp(), num_train_epochs=cfg.epochs, use_cpu=True, report_to=[],
                             save_strategy="no", logging_strategy="no", disable_tqdm=True, seed=cfg.seed,
                             per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=cfg.eval_batch_size,
                             learning_rate=cfg.lr, warmup_steps=cfg.warmup_ratio, weight_decay=cfg.weight_decay,
                             max_grad_norm=cfg.max_grad_norm, train_sampling_strategy="group_by_length")
    trainer = Trainer(model=net, args=args, train_dataset=encode(train), data_collator=DataCollatorWithPadding(tok))
    out = trainer.train()
    pred = trainer.predict(encode(val))
    p = np.argmax(pred.predictions, -1)
    return {"accuracy": float(accuracy_score(pred.label_ids, p)),
            "macro_f1": float(f1_score(pred.label_ids, p, average="macro")),
            "train_seconds": out.metrics["train_runtime"], "lr": cfg.lr, "batch": cfg.batch_size, "steps": out.global_step, "group_by_length": True}


def _finished(out: str, ns):
    """A completed tunelab run.json in ``out`` made with this invocation's sizes, epochs and seed (--reuse)."""
    import json

    try:
        with open(os.path.join(out, "run.json"), encoding="utf-8") as f:
            rec = json.load(f)
    except (OSError, ValueError):
        return None
    c = rec.get("config", {})
    same = (c.get("max_train_samples"), c.get("max_eval_samples"), c.get("epochs"), c.get("seed")) == (
        ns.train_samples, ns.eval_samples, ns.epochs, ns.seed)
    return rec if rec.get("status") == "completed" and same else None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=DEFAULT_DATA, help="folder with train.csv and test.csv (text,label)")
    ap.add_argument("--methods", default="full,lora")
    ap.add_argument("--train-samples", type=int, default=2000)
    ap.add_argument("--eval-samples", type=int, default=500)
    ap.add_argument("--epochs", type=float, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--out", default="/tmp/bench_user_data")
    ap.add_argument("--append", help="append the table to this markdown file (BENCHMARKS.md)")
    ap.add_argument("--reuse", action="store_true", help="keep a completed tunelab run of the same sizes in --out")
    ns = ap.parse_args(argv)
    rows = []
    for method in ns.methods.split(","):
        args = ["--task", "text-classification", "--train-file", os.path.join(ns.data, "train.csv"),
                "--validation-file", os.path.join(ns.data, "test.csv"), "--method", method, "--model", "minilm",
                "--max-train-samples", str(ns.train_samples), "--max-eval-samples", str(ns.eval_samples),
                "--epochs", str(ns.epochs), "--seed", str(ns.seed)] + (["--threads", str(ns.threads)] if ns.threads else [])
        rec = _finished(os.path.join(ns.out, method), ns) if ns.reuse else None
        if rec is None:
            rec, wall, err = run_tunelab(args, os.path.join(ns.out, method), f"tunelab {method}")
        if rec is None:
            rows.append((method, "tunelab", None))
            continue
        rows.append((method, "tunelab", {**rec["metrics"], "train_seconds": rec["time"]["train_seconds"],
                                         "lr": rec["config"]["lr"], "batch": rec["config"]["batch_size"],
                                         "steps": rec["time"]["steps"],
                                         "cache": (rec.get("activation_cache") or {}).get("on")}))
        print(f"tunelab {method}: {rows[-1][2]}", flush=True)
        rows.append((method, "HF Trainer", trainer_run(method, ns, rec)))
        print(f"Trainer {method}: {rows[-1][2]}", flush=True)
    majority = None
    try:
        import csv
        from collections import Counter

        from tunelab.runner import subsample

        with open(os.path.join(ns.data, "test.csv"), encoding="utf-8", newline="") as f:
            labels = [r["label"] for r in csv.DictReader(f)]
        labels = subsample(labels, ns.eval_samples, ns.seed)
        majority = Counter(labels).most_common(1)[0][1] / len(labels)
    except (OSError, KeyError):
        pass
    lines = ["| method | engine | accuracy | macro-F1 | train s | steps | lr | batch |", "|---|---|---|---|---|---|---|---|"]
    for method, engine, r in rows:
        if r is None:
            lines.append(f"| {method} | {engine} | failed | | | | | |")
            continue
        lines.append(f"| {method} | {engine} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | {r['train_seconds']:.1f} | "
                     f"{r['steps']} | {r['lr']:g} | {r['batch']} |")
    table = "\n".join(lines)
    print(table)
    print(f"majority class (validation subset): {majority}")
    if ns.append:
        append_section(ns.append, [
            "", "### AG News, text-classification: tunelab vs an HF Trainer script (benchmarks/bench_user_data.py)", "",
            f"`{command_line('bench_user_data.py', argv)}`", "",
            machine_line(ns.threads) + ". The machine was shared with other jobs: times are noisy, compare within a "
            "row pair only.", "",
            f"{ns.train_samples} train rows of AG News train.csv, {ns.eval_samples} of test.csv (seeded subsets, the "
            f"same rows on both sides), minilm, {ns.epochs:g} epoch(s), seed {ns.seed}; majority class "
            f"{majority:.4f}." if majority is not None else "", "", table, ""])


if __name__ == "__main__":
    main()
