"""What the benchmark scripts share: the command line that made a table, the machine line,
appending a section to BENCHMARKS.md, running ``tunelab run`` in its own process, and HF Trainer (+ PEFT)
on SST-2 as the rival engine (``trainer_sst2``: bench_speed.py and gpu_check.py)."""

import os
import platform
import shlex
import sys
import time


def command_line(script: str, argv=None) -> str:
    args = argv if argv is not None else sys.argv[1:]
    return f"python benchmarks/{script} " + " ".join(shlex.quote(a) for a in args)


def machine_line(threads) -> str:
    import torch

    return (f"Date {time.strftime('%Y-%m-%d %H:%M')}, {platform.platform()}, {os.cpu_count()} CPUs, "
            f"torch {torch.__version__}, {threads or 'default'} threads")


def parse_plan(text: str) -> list:
    """``task:train_samples:epochs,...`` -> [(task, n, epochs as given, a string for the command line)]."""
    plan = []
    for part in text.split(","):
        bits = part.split(":")
        if len(bits) != 3:
            raise SystemExit(f"--plan {part!r}: expected task:train_samples:epochs")
        plan.append((bits[0], int(bits[1]), bits[2]))
    return plan


def append_section(path: str, lines: list) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write("\n".join(lines))
    print(f"appended to {path}")


def run_or_reuse(args: list, out_dir: str, what: str):
    """``run_tunelab`` unless OUT_DIR holds a completed run of the same ARGS (``bench-args.json``).
    -> run.json dict or None (failed)."""
    import json

    done = os.path.join(out_dir, "bench-args.json")
    if os.path.exists(done) and os.path.exists(os.path.join(out_dir, "run.json")):
        with open(done, encoding="utf-8") as f:
            if json.load(f) == args:
                with open(os.path.join(out_dir, "run.json"), encoding="utf-8") as g:
                    return json.load(g)
    rec, _, _ = run_tunelab(args, out_dir, what)
    if rec is not None:
        with open(done, "w", encoding="utf-8") as f:
            json.dump(args, f)
    return rec


def run_tunelab(args: list, out_dir: str, what: str):
    """``python -m tunelab.cli run ARGS --output-dir OUT_DIR --overwrite`` in its own process.
    -> (run.json dict or None, wall seconds, the last error line or None)."""
    import json
    import subprocess

    cmd = [sys.executable, "-m", "tunelab.cli", "run", *args, "--output-dir", out_dir, "--overwrite"]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - t0
    if proc.returncode != 0:
        err = ((proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"])[0]
        print(f"  FAILED {what}: {err}", file=sys.stderr)
        return None, wall, err
    with open(os.path.join(out_dir, "run.json"), encoding="utf-8") as f:
        return json.load(f), wall, None


def trainer_sst2(label: str, *, data_dir: str, samples, epochs: float, seed: int, model: str = "minilm",
                 threads=None, options=None, dev_samples=None) -> dict:
    """HF Trainer (+ PEFT) on SST-2: train on tunelab's seeded subset of ``samples`` train examples (None:
    all), then predict the full dev set. Runs in this process.

    ``label``: ``full`` / ``lora`` = ``TrainingArguments`` defaults (batch 8, lr 5e-5, no warm-up; LoRA with
    PEFT's ``LoraConfig`` defaults); ``selective top-25%`` = the usual recipe (freeze everything but the top
    25 % of layers, the pooler and the classifier); ``full at tunelab's hyper-params`` / ``lora at tunelab's
    hyper-params`` = tunelab's resolved settings for that method (``build_config`` with ``options``, e.g.
    ``{"batch_size": 64, "precision": "auto"}``): batch, lr, warm-up ratio, weight decay, gradient clipping,
    max length, and its precision on this device (bf16 autocast + TF32 on a CUDA GPU, as
    ``train/precision.py`` resolves it); LoRA: r, alpha, dropout, PEFT's default targets and the head in
    ``modules_to_save``. Trainer keeps its own unsorted batches. ``epochs`` is always given.
    -> train wall / CPU seconds, samples/s, peak RSS and CUDA memory, dev accuracy, batch, lr, precision."""
    import resource
    import tempfile

    import numpy as np
    import torch
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments, set_seed)

    from tunelab.models.aliases import resolve_model
    from tunelab.runner import resolve_device, subsample
    from tunelab.tasks import get_task

    if threads:
        torch.set_num_threads(threads)
    task = get_task("sst2")
    train = subsample(task.load("train", data_dir).examples, samples, seed)
    dev = subsample(task.load("validation", data_dir).examples, dev_samples, seed)  # None: the full dev set
    source = resolve_model(model)
    tok = AutoTokenizer.from_pretrained(source)
    set_seed(seed)  # as HF's run_glue.py: the new head's init is seeded too (Trainer seeds only after the model exists)
    net = AutoModelForSequenceClassification.from_pretrained(source, num_labels=2)
    device = resolve_device("auto")
    hyper, max_length, precision = {}, None, None
    at_tunelab = " at tunelab's" in label
    if at_tunelab:
        from tunelab.resolve import build_config
        from tunelab.train.precision import resolve_precision

        method = label.split()[0]
        cfg = build_config({"task": "sst2", "method": method, **(options or {})})
        prec = resolve_precision(cfg.precision, device)
        precision = prec.name
        if prec.name == "fp16":
            raise ValueError("trainer_sst2: fp16 is not wired up here; use auto, bf16 or fp32")
        max_length = cfg.max_seq_length
        hyper = {"per_device_train_batch_size": cfg.batch_size, "per_device_eval_batch_size": cfg.eval_batch_size,
                 "learning_rate": cfg.lr, "warmup_steps": cfg.warmup_ratio, "weight_decay": cfg.weight_decay,
                 "max_grad_norm": cfg.max_grad_norm, "bf16": prec.name == "bf16"}
        if device.type == "cuda":
            hyper["tf32"] = prec.tf32
    if label == "lora":
        from peft import LoraConfig, get_peft_model

        net = get_peft_model(net, LoraConfig(task_type="SEQ_CLS"))
    elif label.startswith("lora at"):  # tunelab's resolved LoRA defaults, given to Trainer + PEFT
        from peft import LoraConfig, get_peft_model

        from tunelab.methods.peft_common import head_module_names
        from tunelab.models.layout import find_layout

        assert not cfg.lora_targets  # PEFT's default targets (query, value), as in tunelab
        net = get_peft_model(net, LoraConfig(task_type="SEQ_CLS", r=cfg.lora_r, lora_alpha=cfg.lora_alpha,
                                             lora_dropout=cfg.lora_dropout,
                                             modules_to_save=head_module_names(find_layout(net))))
    elif label.startswith("selective"):
        n = net.config.num_hidden_layers
        keep = [f"encoder.layer.{i}." for i in range(n - max(1, round(0.25 * n)), n)] + ["pooler.", "classifier."]
        for name, p in net.named_parameters():
            p.requires_grad_(any(k in name for k in keep))

    def encode(examples):
        enc = tok([e.texts[0] for e in examples], truncation=True, max_length=max_length)
        return [{"input_ids": enc["input_ids"][i], "token_type_ids": enc["token_type_ids"][i],
                 "attention_mask": enc["attention_mask"][i], "labels": e.label} for i, e in enumerate(examples)]

    args = TrainingArguments(output_dir=tempfile.mkdtemp(), num_train_epochs=epochs, use_cpu=device.type == "cpu",
                             report_to=[], save_strategy="no", logging_strategy="no", disable_tqdm=True, seed=seed,
                             **hyper)
    trainer = Trainer(model=net, args=args, train_dataset=encode(train), data_collator=DataCollatorWithPadding(tok))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    c0 = time.process_time()
    out = trainer.train()
    cpu = time.process_time() - c0
    peak_cuda = round(torch.cuda.max_memory_allocated() / 2**20, 1) if device.type == "cuda" else None
    pred = trainer.predict(encode(dev))
    acc = float((np.argmax(pred.predictions, -1) == pred.label_ids).mean())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"train_seconds": out.metrics["train_runtime"], "train_cpu_seconds": cpu,
            "samples_per_second": len(train) * epochs / out.metrics["train_runtime"], "peak_rss_mb": rss,
            "peak_cuda_mb": peak_cuda, "accuracy": acc, "batch_size": args.per_device_train_batch_size,
            "lr": args.learning_rate, "steps": out.global_step, "train_samples": len(train),
            "precision": precision or ("bf16" if args.bf16 else "fp32"), "device": device.type}
