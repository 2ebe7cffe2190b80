"""One run: config -> task + method + model -> task.fit (train + evaluate) -> run record.

Family-agnostic: everything a task family does goes through the ``Task`` contract
(tasks/base.py), everything a method does through the ``Method`` protocol (methods/base.py).
"""

import os
import random
import shutil
import time

import torch

from .config import RunConfig
from .errors import OutputError, RunFailed, UserError, output_error
from .methods import get_method
from .methods.base import PrepareContext
from .models.params import count_params
from .models.heads import HEADS
from .results.record import check_output_dir, versions, write_json_atomic
from .tasks import get_task
from .tasks.base import FitContext
from .train import distributed
from .train.grad_checkpointing import apply_gradient_checkpointing
from .train.loop import seed_everything
from .train import reporting
from .train.resources import peak_cuda_mb, peak_rss_mb, resolve_device


def default_output_dir(cfg: RunConfig) -> str:
    model = os.path.basename(os.path.normpath(cfg.model))
    return os.path.join("runs", f"{cfg.task}-{cfg.method}-{model}-s{cfg.seed}")


def subsample(examples: list, n: int | None, seed: int) -> list:
    if n is None or n >= len(examples):
        return examples
    idx = sorted(random.Random(seed).sample(range(len(examples)), n))
    return [examples[i] for i in idx]


def _close_reporting(record: dict) -> None:
    """A failed or interrupted run's trackers end with its status (never masking the run's error)."""
    try:
        reporting.finish(record, None)
    except Exception as e:  # noqa: BLE001
        print(f"tunelab: warning: closing the --report-to trackers failed ({type(e).__name__}: {e})")


def run(cfg: RunConfig) -> dict:
    """Execute one run and return its record (also written to OUTPUT_DIR/run.json)."""
    task = get_task(cfg.task).configure(cfg)
    task.validate(cfg)
    distributed.check_task(task)  # data-parallel runs: only tasks trained by tunelab's loop
    method = get_method(cfg.method)()
    method.validate(cfg)
    reporting.check(cfg.report_to)  # --report-to: known trackers whose libraries are installed
    cfg.output_dir = cfg.output_dir or default_output_dir(cfg)
    resuming = cfg.resume_checkpoint  # tunelab run --resume (resume.py)
    if not resuming:
        distributed.on_main(check_output_dir, cfg.output_dir, cfg.overwrite)  # rank 0 alone owns the output dir
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = distributed.local_device(resolve_device(cfg.device))

    train_split = task.load("train", cfg.data_dir)
    if cfg.selection_split:  # a validation split carved from train; the dev/test split is never read
        from .tasks.base import Split
        from .tasks.splits import selection_split

        rest, held, how = selection_split(train_split.examples, cfg.selection_split,
                                          stratify=task.head == "classification")
        train_split.examples = rest
        eval_splits = [Split("selection", held, dict(train_split.files), how)]
    else:
        eval_splits = [task.load(s, cfg.data_dir) for s in task.eval_splits]
    train_examples = subsample(train_split.examples, cfg.max_train_samples, cfg.seed)
    for s in eval_splits:
        s.examples = subsample(s.examples, cfg.max_eval_samples, cfg.seed)

    seed_everything(cfg.seed)  # before the head and any adapter are initialised
    model, processor, layout, source = task.load_model(cfg.model, allow_pickle=cfg.allow_pickle)
    ctx = PrepareContext(cfg=cfg, layout=layout, peft_task_type=HEADS.get(task.head).peft_task_type,
                         model_type=model.config.model_type)
    grad_ckpt = apply_gradient_checkpointing(model, cfg)  # --gradient-checkpointing, before a PEFT wrapper
    model = method.prepare(model, ctx).to(device)
    params = count_params(model, layout)
    head_names = tuple(n for n, _ in model.named_parameters() if layout.classify(n) == "head")

    # Only now touch the output dir: every input has been validated.
    out = cfg.output_dir
    main = distributed.is_main()  # data-parallel runs: rank 0 alone writes the output dir
    try:
        if main and not resuming and os.path.isdir(out) and os.listdir(out):
            shutil.rmtree(out)  # --overwrite was given (checked above)
        if main:
            os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise output_error(out, e) from e
    distributed.barrier()
    record = {
        "task": cfg.task, "method": cfg.method, "model": cfg.model, "seed": cfg.seed, "status": "running",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model_source": source, "head": {"type": task.head, "modules": layout.head_paths},
        "layout": layout.as_dict(), "metrics": {}, "history": [], "params": params,
        "method_details": method.describe(),
        "config": {**cfg.as_dict(), "device": str(device)},
        "config_sources": dict(cfg.sources),
        "gradient_checkpointing": grad_ckpt,
        "data": {**train_split.files, **{k: v for s in eval_splits for k, v in s.files.items()}},
        "data_sizes": {"train": len(train_examples), **{s.name: len(s.examples) for s in eval_splits}},
        "data_notes": {s.name: s.info for s in [train_split, *eval_splits] if s.info},
        "versions": versions(),
    }
    if resuming:
        from .resume import resume_record

        resume_record(cfg, record)
    cfg.run_started_at = record["started_at"]  # a checkpoint names the run it belongs to
    run_json = os.path.join(out, "run.json")
    write_record = write_json_atomic if main else (lambda _path, _rec: None)
    write_record(run_json, record)
    try:
        if main:
            reporting.start(cfg, record)  # --report-to: the trackers' run opens (train/reporting.py)

        def on_epoch(rec, _preds):
            record["history"].append(rec)
            write_record(run_json, record)

        summary = task.fit(FitContext(model=model, processor=processor, method=method, cfg=cfg, device=device,
                                      train_examples=train_examples, eval_splits=eval_splits, model_source=source,
                                      out_dir=out, layout=layout, head_names=head_names, on_epoch=on_epoch,
                                      train_all=train_split.examples))
        state = summary.state
        record.update(distributed.describe(cfg, state, method, len(train_examples)))  # world size, per-rank time/memory
        record["method_details"] = method.describe()
        record.update(method.record_extras())
        record["params"].update(method.params_extras())
        try:
            files = method.save(model, out) if main else []
            if main:
                processor.save_pretrained(out)
                task.write_predictions(os.path.join(out, "predictions.tsv"), summary.final_predictions)
        except OSError as e:
            raise output_error(e.filename or out, e) from e
        record.update(summary.record)
        record.update({
            "metrics": summary.final_metrics, "main_metric": summary.main_metric,
            "best_epoch": summary.best_epoch, "stopped_early": summary.stopped_early,
            "time": {"train_seconds": round(state.train_seconds, 3),
                     "train_samples_per_second": round(state.samples_seen / state.train_seconds, 3) if state.train_seconds else None,
                     "steps": state.step, "samples_seen": state.samples_seen},
            "memory": {"peak_rss_mb": peak_rss_mb(), "peak_cuda_mb": peak_cuda_mb()},
            "weights": files + ["predictions.tsv"],
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        })
        from .results.figures import plot_record

        record["figures"] = plot_record(record, out) if main else []
        record["status"] = "completed"
        write_record(run_json, record)
        reporting.finish(record, out)
        from .train.checkpoint import remove_checkpoints

        if main:
            remove_checkpoints(out)  # of no further use
    except KeyboardInterrupt as e:  # Ctrl-C, SIGTERM (train/preempt.py: at a step boundary, checkpointed)
        from .train.checkpoint import find_checkpoint, read_meta
        from .train.preempt import Preempted, describe

        record["status"] = "interrupted"
        info = describe(e) if isinstance(e, Preempted) else {"signal": "SIGINT", "step": None,
                                                             "checkpoint_written": False}
        path = find_checkpoint(out) if main else None
        try:
            info["resumable_from_step"] = read_meta(path)["step"] if path else None
        except (OSError, ValueError, KeyError):
            info["resumable_from_step"] = None
        record["interrupted"] = info
        write_record(run_json, record)
        _close_reporting(record)
        raise
    except BaseException as e:
        record["status"] = "failed"
        record["error"] = str(e) if isinstance(e, (RunFailed, UserError)) else f"{type(e).__name__}: {e}"
        try:
            write_record(run_json, record)
        except OutputError:
            pass  # the disk is what failed: the previous run.json ("running") stays, never "completed"
        _close_reporting(record)
        raise
    return record
