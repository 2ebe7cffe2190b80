"""One run: config -> model + task + method -> train -> evaluate -> run record.

The only module that knows tasks, methods and models together; each of those knows none of the
others (methods see a ``PrepareContext``, tasks see a tokenizer).
"""

import os
import random
import shutil
import time

import torch

from .config import RunConfig
from .errors import UserError
from .methods import get_method
from .methods.base import PrepareContext, count_params
from .models import load_backbone
from .results.record import versions, write_json_atomic
from .tasks import get_task
from .tasks.base import FitContext
from .train.loop import seed_everything, train
from .train.resources import peak_cuda_mb, peak_rss_mb

PEFT_TASK_TYPE = {"classification": "SEQ_CLS", "regression": "SEQ_CLS", "reward": "SEQ_CLS", "causal-lm": "CAUSAL_LM"}


def default_output_dir(cfg: RunConfig) -> str:
    model = os.path.basename(os.path.normpath(cfg.model))
    return os.path.join("runs", f"{cfg.task}-{cfg.method}-{model}-s{cfg.seed}")


def check_output_dir(path: str, overwrite: bool) -> None:
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"--output-dir {path}: exists and is not a folder")
    if os.path.isdir(path) and os.listdir(path) and not overwrite:
        raise UserError(f"--output-dir {path}: exists and is not empty (pass --overwrite to replace it)")


def subsample(examples: list, n: int | None, seed: int) -> list:
    if n is None or n >= len(examples):
        return examples
    idx = sorted(random.Random(seed).sample(range(len(examples)), n))
    return [examples[i] for i in idx]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device available")
    return torch.device(name)


@torch.no_grad()
def predict(model, task, loader, device):
    model.eval()
    preds, refs = [], []
    for batch in loader:
        labels = batch.pop("labels")
        out = model(**{k: v.to(device) for k, v in batch.items()})
        preds.extend(task.predictions_from_logits(out.logits.float().cpu()))
        refs.extend(labels.tolist())
    return preds, refs


def classifier_io(task, tokenizer, cfg, train_examples, eval_splits, device):
    """(train loader, evaluate(model) -> (metrics, predictions)) for TextClassificationTask-style tasks."""
    collate = task.collator(tokenizer)
    gen = torch.Generator().manual_seed(cfg.seed)
    train_rows = task.encode(train_examples, tokenizer, cfg.max_seq_length)
    by_length = cfg.group_by_length
    if by_length:  # opt-in (train/batching.py): same examples, less padding
        from .train.batching import LengthGroupedBatches, length_order, unsort

        sampler = LengthGroupedBatches([len(r["input_ids"]) for r in train_rows], cfg.batch_size, gen)
        train_loader = torch.utils.data.DataLoader(train_rows, batch_sampler=sampler, collate_fn=collate)
    else:
        train_loader = torch.utils.data.DataLoader(train_rows, batch_size=cfg.batch_size, shuffle=True,
                                                   generator=gen, collate_fn=collate)
    eval_loaders = []
    for s in eval_splits:
        rows = task.encode(s.examples, tokenizer, cfg.max_seq_length)
        order = length_order(rows) if by_length else None
        rows = [rows[i] for i in order] if order else rows
        eval_loaders.append((s, torch.utils.data.DataLoader(rows, batch_size=cfg.eval_batch_size, collate_fn=collate),
                             order))

    def evaluate(m):
        metrics, preds = {}, {}
        for i, (split, loader, order) in enumerate(eval_loaders):
            p, r = predict(m, task, loader, device)
            if order:
                p, r = unsort(p, order), unsort(r, order)
            res = task.metrics(p, r)
            prefix = "" if i == 0 else split.name.replace("validation_", "") + "_"
            metrics.update({prefix + k: v for k, v in res.items()})
            preds[split.name] = (p, r, split.examples)
        return metrics, preds

    return train_loader, evaluate


def run(cfg: RunConfig) -> dict:
    """Execute one run and return its record (also written to OUTPUT_DIR/run.json)."""
    task = get_task(cfg.task)
    task = task.bind(cfg) if hasattr(task, "bind") else task  # configured for this run (e.g. data subset)
    owns_training = hasattr(task, "fit")  # e.g. alignment objectives: TRL trainers + their own evaluation
    if cfg.grad_accum > 1 and not owns_training:
        raise UserError(f"--grad-accum {cfg.grad_accum}: task {cfg.task} trains with tunelab's loop, which does "
                        "not accumulate gradients; use --batch-size")
    task.validate(cfg)
    method = get_method(cfg.method)()
    if cfg.adapter is not None and "adapter" not in method.options:
        raise UserError(f"--adapter {cfg.adapter}: only --method alf takes an adapter (for LoRA use --method lora)")
    method.validate(cfg)
    cfg.output_dir = cfg.output_dir or default_output_dir(cfg)
    check_output_dir(cfg.output_dir, cfg.overwrite)
    lr = cfg.lr if cfg.lr is not None else (task.default_lr(method) if hasattr(task, "default_lr") else method.default_lr)
    head_lr = cfg.head_lr if cfg.head_lr is not None else method.default_head_lr  # None: same as lr
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)

    train_split = task.load("train", cfg.data_dir)
    eval_splits = [task.load(s, cfg.data_dir) for s in task.eval_splits]
    train_examples = subsample(train_split.examples, cfg.max_train_samples, cfg.seed)
    for s in eval_splits:
        s.examples = subsample(s.examples, cfg.max_eval_samples, cfg.seed)

    seed_everything(cfg.seed)  # before the head and any adapter are initialised
    model, tokenizer, layout, source = load_backbone(cfg.model, task.head, task.num_labels)
    ctx = PrepareContext(cfg=cfg, layout=layout, peft_task_type=PEFT_TASK_TYPE[task.head])
    model = method.prepare(model, ctx).to(device)
    params = count_params(model, layout)

    if not owns_training:
        train_loader, evaluate = classifier_io(task, tokenizer, cfg, train_examples, eval_splits, device)

    # Only now touch the output dir: every input has been validated.
    out = cfg.output_dir
    if os.path.isdir(out) and os.listdir(out):
        shutil.rmtree(out)  # --overwrite was given (checked above)
    os.makedirs(out, exist_ok=True)
    record = {
        "task": cfg.task, "method": cfg.method, "model": cfg.model, "seed": cfg.seed, "status": "running",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model_source": source, "head": {"type": task.head, "modules": layout.head_paths},
        "layout": layout.as_dict(), "metrics": {}, "history": [], "params": params,
        "method_details": method.describe(),
        "config": {**cfg.as_dict(), "lr": lr, "head_lr": head_lr if head_lr is not None else lr, "device": str(device)},
        "data": {**train_split.files, **{k: v for s in eval_splits for k, v in s.files.items()}},
        "data_sizes": {"train": len(train_examples), **{s.name: len(s.examples) for s in eval_splits}},
        "data_notes": {s.name: s.info for s in [train_split, *eval_splits] if getattr(s, "info", None)},
        "versions": versions(),
    }
    run_json = os.path.join(out, "run.json")
    write_json_atomic(run_json, record)
    try:
        def on_epoch(rec, _preds):
            record["history"].append(rec)
            write_json_atomic(run_json, record)

        if owns_training:
            summary = task.fit(FitContext(model=model, tokenizer=tokenizer, method=method, cfg=cfg, lr=lr, device=device,
                                          train_examples=train_examples, eval_splits=eval_splits, model_source=source,
                                          out_dir=out, on_epoch=on_epoch, train_all=train_split.examples))
        else:
            head_names = [n for n, _ in model.named_parameters() if layout.classify(n) == "head"]
            summary = train(model, method, train_loader, evaluate, cfg, lr, device, on_epoch=on_epoch,
                            head_lr=head_lr, head_names=head_names)
        state = summary["state"]
        record["method_details"] = method.describe()
        record.update(method.record_extras())
        record["params"].update(method.params_extras())
        files = method.save(model, out)
        tokenizer.save_pretrained(out)
        (task.write_predictions if owns_training else write_predictions)(
            os.path.join(out, "predictions.tsv"), summary["final_predictions"])
        record.update(summary.get("record", {}))
        record.update({
            "metrics": summary["final_metrics"], "main_metric": summary["main_metric"],
            "best_epoch": summary["best_epoch"], "stopped_early": summary["stopped_early"],
            "time": {"train_seconds": round(state.train_seconds, 3),
                     "train_samples_per_second": round(state.samples_seen / state.train_seconds, 3) if state.train_seconds else None,
                     "steps": state.step, "samples_seen": state.samples_seen},
            "memory": {"peak_rss_mb": peak_rss_mb(), "peak_cuda_mb": peak_cuda_mb()},
            "weights": files + ["predictions.tsv"],
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        })
        record["status"] = "completed"
        write_json_atomic(run_json, record)
    except KeyboardInterrupt:
        record["status"] = "interrupted"
        write_json_atomic(run_json, record)
        raise
    except BaseException as e:
        record["status"] = "failed"
        record["error"] = f"{type(e).__name__}: {e}"
        write_json_atomic(run_json, record)
        raise
    return record


def write_predictions(path: str, preds: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("split\tindex\tline\tlabel\tprediction\n")
        for split, (p, r, examples) in preds.items():
            for i, (pi, ri, ex) in enumerate(zip(p, r, examples)):
                f.write(f"{split}\t{i}\t{ex.line}\t{ri}\t{pi}\n")
