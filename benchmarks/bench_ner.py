"""CoNLL-2003 NER: ``tunelab run --task token-classification`` vs a ``run_ner.py``-style HF Trainer script at
equal settings, full fine-tuning and LoRA, side by side in one script run.

Both see the same seeded subsets (tunelab's reader and ``runner.subsample``: the same sentences), the same
label ids (O, B-/I- per type), the same resolved hyper-parameters (tunelab's ``build_config`` for the method:
batch, lr, warm-up ratio, weight decay, clipping, max length, epochs; LoRA r / alpha / dropout, PEFT's default
targets, the classifier in ``modules_to_save``) and the same metric (seqeval, default mode). The Trainer side
is ``run_ner.py``'s recipe: ``tokenize_and_align_labels`` (first sub-token labelled, others -100; truncation
at max length, no windows), ``DataCollatorForTokenClassification``, evaluation once at the end. Each run is
its own process; CPU seconds (process time) beside wall seconds, since the machine may be shared.

    python benchmarks/bench_ner.py --data-dir ../shared/data/ner/conll2003 --samples 1000 --eval-samples 500 \
        --epochs 2 --methods full,lora --threads 1 [--write BENCHMARKS.md]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def options(a, method) -> dict:
    return {"task": "token-classification", "method": method, "model": "minilm", "seed": 0, "epochs": a.epochs,
            "train_file": os.path.join(a.data_dir, "train.txt"), "validation_file": os.path.join(a.data_dir, "valid.txt"),
            "test_file": os.path.join(a.data_dir, "test.txt"), "max_train_samples": a.samples,
            "max_eval_samples": a.eval_samples, "threads": a.threads}


def hf_worker(a) -> dict:
    """The run_ner.py-style Trainer run (in this process); prints one JSON line."""
    import resource

    import numpy as np
    import torch
    from seqeval.metrics import f1_score, precision_score, recall_score
    from transformers import (AutoModelForTokenClassification, AutoTokenizer, DataCollatorForTokenClassification,
                              Trainer, TrainingArguments, set_seed)

    from tunelab.models.aliases import resolve_model
    from tunelab.resolve import build_config
    from tunelab.runner import subsample
    from tunelab.tasks import get_task

    torch.set_num_threads(a.threads)
    cfg = build_config(options(a, a.worker))
    task = get_task("token-classification").configure(cfg)
    train = subsample(task.load("train", None).examples, cfg.max_train_samples, cfg.seed)
    evals = {s: subsample(task.load(s, None).examples, cfg.max_eval_samples, cfg.seed) for s in ("validation", "test")}
    labels = task.labels
    l2i = {x: i for i, x in enumerate(labels)}
    source = resolve_model(cfg.model)
    tok = AutoTokenizer.from_pretrained(source)
    set_seed(cfg.seed)
    net = AutoModelForTokenClassification.from_pretrained(source, num_labels=len(labels),
                                                          id2label=dict(enumerate(labels)), label2id=l2i)
    if a.worker == "lora":
        from peft import LoraConfig, get_peft_model

        net = get_peft_model(net, LoraConfig(task_type="TOKEN_CLS", r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                             lora_dropout=cfg.lora_dropout, modules_to_save=["classifier"]))

    def encode(sents):  # run_ner.py's tokenize_and_align_labels (label_all_tokens=False)
        enc = tok([s.tokens for s in sents], is_split_into_words=True, truncation=True, max_length=cfg.max_seq_length)
        rows = []
        for i, s in enumerate(sents):
            prev, lab = None, []
            for w in enc.word_ids(i):
                lab.append(-100 if w is None or w == prev else l2i[s.tags[w]])
                prev = w
            rows.append({"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
                         "token_type_ids": enc["token_type_ids"][i], "labels": lab})
        return rows

    args = TrainingArguments(output_dir=tempfile.mkdtemp(), num_train_epochs=cfg.epochs, use_cpu=True, report_to=[],
                             save_strategy="no", logging_strategy="no", disable_tqdm=True, seed=cfg.seed,
                             per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=cfg.eval_batch_size,
                             learning_rate=cfg.lr, warmup_steps=cfg.warmup_ratio, weight_decay=cfg.weight_decay,
                             max_grad_norm=cfg.max_grad_norm)
    trainer = Trainer(model=net, args=args, train_dataset=encode(train), data_collator=DataCollatorForTokenClassification(tok))
    c0, t0 = time.process_time(), time.time()
    out = trainer.train()
    cpu, wall = time.process_time() - c0, time.time() - t0
    res = {"train_seconds": round(wall, 1), "train_cpu_seconds": round(cpu, 1), "steps": out.global_step,
           "lr": cfg.lr, "batch_size": cfg.batch_size}
    for split, sents in evals.items():
        pred = trainer.predict(encode(sents))
        ids = np.argmax(pred.predictions, -1)
        p, g = [], []
        for row_p, row_l in zip(ids, pred.label_ids):
            keep = row_l != -100
            p.append([labels[i] for i in row_p[keep]])
            g.append([labels[i] for i in row_l[keep]])
        # words cut by truncation are scored as O predictions against their gold tags (as a user of run_ner.py
        # scoring the whole file would see them): gold from the sentences themselves
        for k, s in enumerate(sents):
            g[k] = list(s.tags)
            p[k] = p[k] + ["O"] * (len(s.tags) - len(p[k]))
        prefix = "" if split == "validation" else "test_"
        res[prefix + "f1"] = f1_score(g, p)
        res[prefix + "precision"] = precision_score(g, p)
        res[prefix + "recall"] = recall_score(g, p)
    res["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True, help="the conll2003 folder (train.txt, valid.txt, test.txt)")
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--eval-samples", type=int, default=500)
    p.add_argument("--epochs", type=float, default=2)
    p.add_argument("--methods", default="full,lora")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work-dir", default=None)
    p.add_argument("--write", default=None, help="append the table to this markdown file")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        print("RESULT " + json.dumps(hf_worker(a)))
        return 0
    from bench_common import command_line, machine_line, run_tunelab

    work = a.work_dir or tempfile.mkdtemp(prefix="bench-ner-")
    rows = []
    for method in a.methods.split(","):
        opts = options(a, method)
        args = []
        for k, v in opts.items():
            args += ["--" + k.replace("_", "-"), str(v)]
        rec, wall, err = run_tunelab(args, os.path.join(work, f"tunelab-{method}"), f"tunelab {method}")
        if rec:
            m = rec["metrics"]
            rows.append(("tunelab", method, m["f1"], m["precision"], m["recall"], m["test_f1"], rec["time"]["steps"],
                         rec["config"]["lr"], rec["time"]["train_seconds"], rec["memory"]["peak_rss_mb"]))
        cmd = [sys.executable, os.path.abspath(__file__), "--data-dir", a.data_dir, "--samples", str(a.samples),
               "--eval-samples", str(a.eval_samples), "--epochs", str(a.epochs), "--threads", str(a.threads),
               "--worker", method]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            print(f"  FAILED trainer {method}: {(proc.stderr.strip().splitlines() or ['?'])[-1]}", file=sys.stderr)
            continue
        r = json.loads(line[7:])
        rows.append(("HF Trainer (run_ner.py recipe)", method, r["f1"], r["precision"], r["recall"], r["test_f1"],
                     r["steps"], r["lr"], r["train_seconds"], r["peak_rss_mb"]))
    lines = ["", f"### CoNLL-2003 NER: tunelab vs a run_ner.py-style Trainer ({time.strftime('%Y-%m-%d')})", "",
             f"> Script: `benchmarks/bench_ner.py`. {machine_line(a.threads)}; the machine was shared with other "
             "jobs (wall seconds are noisy; compare within the table).",
             f"> Command: `{command_line('bench_ner.py', argv)}`", "",
             f"{a.samples} train sentences (seeded subset), {a.eval_samples} validation / {a.eval_samples} test "
             f"sentences, {a.epochs:g} epochs, minilm, seed 0, tunelab's resolved settings for both engines; entity-level "
             "F1 by seqeval (validation unless marked test).", "",
             "| engine | method | F1 | precision | recall | test F1 | steps | lr | train s (wall) | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r[0]} | {r[1]} | {r[2]:.4f} | {r[3]:.4f} | {r[4]:.4f} | {r[5]:.4f} | {r[6]} | {r[7]:g} | "
                     f"{r[8]:.1f} | {r[9]} |")
    lines.append("")
    print("\n".join(lines))
    if a.write:
        from bench_common import append_section

        append_section(a.write, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
