"""The training loop: AdamW, linear schedule with warm-up, gradient clipping, eval every epoch,
optional early stopping, a progress bar.

Our own loop rather than HF ``Trainer``: dynamic layer methods (ALF, LISA, AutoFreeze, BAdam)
change which parameters train between steps and release optimizer state of frozen layers, which
is plain code here and callback gymnastics there; every second of time and byte of memory we
report is measured around exactly this code. ``benchmarks/bench_loop_vs_trainer.py`` checks that
it is not slower than Trainer on the same model, data and method.
"""

import math
import random
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


@dataclass
class TrainState:
    """What dynamic methods see after each optimizer step."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    step: int = 0  # optimizer steps done
    total_steps: int = 0
    epoch: int = 0
    loss: float = float("nan")
    samples_seen: int = 0
    train_seconds: float = 0.0
    train_cpu_seconds: float = 0.0  # process CPU time in the training epochs (all threads)


def build_optimizer(params_named, lr: float, weight_decay: float, head_lr: float | None = None, head_names=(),
                    fused: bool = False):
    """AdamW; no decay on biases / norms; the head's parameters may get their own lr. Both training
    paths (this loop and the TRL bridge) build their optimizer here."""
    groups = {}
    for n, p in params_named:
        no_decay = p.ndim < 2 or "norm" in n.lower() or n.endswith(".bias")
        group_lr = head_lr if head_lr is not None and n in head_names else lr
        groups.setdefault((no_decay, group_lr), []).append(p)
    return torch.optim.AdamW([{"params": ps, "weight_decay": 0.0 if nd else weight_decay, "lr": glr}
                              for (nd, glr), ps in groups.items()], lr=lr, fused=fused)


def batch_len(batch: dict) -> int:
    """Examples in a batch (any family: input_ids, input_features, pixel_values ...)."""
    return next(v for v in batch.values() if torch.is_tensor(v)).shape[0]


def model_loss(model, batch):
    """The model's own loss (HF models compute it from ``labels``)."""
    return model(**batch).loss


CUDA_SYNC_EVERY = 25  # optimizer steps between host syncs on CUDA (losses / gradient norms read back)


def sync_interval(device_type: str) -> int:
    """Optimizer steps between reading losses and gradient norms back to the host."""
    return CUDA_SYNC_EVERY if device_type == "cuda" else 1


def _preempted(stopper, ckpt, state, flush, losses, epoch: int, batches: int, t0: float, c0: float):
    """Stop at this step boundary: a checkpoint (--save-every on, unless one was just written at this
    step), then raise ``Preempted`` (the runner records "interrupted")."""
    flush(losses)
    wrote = just_saved = getattr(ckpt, "saved_step", None) == state.step
    if ckpt.every and not just_saved:
        ckpt.save(epoch, batches, losses, time.perf_counter() - t0, time.process_time() - c0)
        wrote = True
    raise stopper.stop(state.step, checkpoint=bool(ckpt.every) and wrote)


def train(model, method, train_loader, evaluate, cfg, lr: float, device, on_epoch=None,
          head_lr: float | None = None, head_names=(), main_metric: str | None = None, loss_fn=model_loss,
          extra_params=(), on_step=None, epoch_fields=None, early_stopping: bool = True):
    """Train ``model`` in place. ``evaluate(model) -> (metrics, predictions)`` runs after each epoch;
    ``on_epoch(epoch_record, predictions)`` is told each epoch's result; ``loss_fn(model, batch)``
    gives the training loss. ``cfg.grad_accum`` batches make one optimizer step. Returns the loop's
    ``FitSummary`` (train/tracker.py: history, best epoch, final metrics, ``state``, ``record``).

    For training schemes beyond one model and its own loss (image self-training rounds):
    ``extra_params`` (named parameters outside the model, e.g. a projection head) train with it;
    ``on_step(state)`` runs after every optimizer step (before the method's ``on_step``: e.g. an EMA
    teacher following the student); ``epoch_fields(epoch_index, record) -> dict`` adds or replaces
    keys of each epoch record before it is tracked (a phase name, an epoch number that continues an
    earlier phase); ``early_stopping=False`` ignores ``cfg.early_stopping_patience``. A loader with
    ``epoch_lengths`` (batches of each epoch) sets the number of epochs and their lengths itself
    (epochs of different lengths), instead of ``cfg.epochs`` x ``len(train_loader)``.

    ``cfg.precision`` (train/precision.py) chooses autocast for the forward passes. Host syncs:
    on CPU every step's loss and gradient norm are read at once (a sync costs nothing there); on
    CUDA they stay on the device and are read every ``CUDA_SYNC_EVERY`` steps, so the GPU never
    waits for Python per step; the health checks then run on the block (a non-finite value stops
    the run at the end of its block, naming its step). ``cfg.save_every`` writes checkpoints and a
    ``--resume`` config continues from one (train/checkpoint.py: ``Checkpointer``)."""
    from transformers import get_linear_schedule_with_warmup

    from .checkpoint import Checkpointer
    from .distributed import GradSync
    from .health import LossWatch
    from .precision import resolve_precision
    from .preempt import Stopper, deferring
    from . import reporting
    from .tracker import EpochTracker

    precision = resolve_precision(cfg.precision, device)
    precision.apply()
    scaler = precision.grad_scaler()
    sync_every = sync_interval(precision.device_type)
    non_blocking = precision.device_type == "cuda"
    extra_params = list(extra_params)
    named = method.optimizer_params(model) + extra_params
    optimizer = build_optimizer(named, lr, cfg.weight_decay, head_lr, set(head_names), fused=cfg.fused_adamw)
    accum = cfg.grad_accum
    lengths = getattr(train_loader, "epoch_lengths", None)  # epochs of their own lengths (self-training rounds)
    if lengths:
        n_epochs, total_steps = len(lengths), max(1, sum(math.ceil(n / accum) for n in lengths))
    else:
        n_epochs, steps_per_epoch = math.ceil(cfg.epochs), math.ceil(len(train_loader) / accum)
        total_steps = max(1, math.ceil(steps_per_epoch * cfg.epochs))
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)
    state = TrainState(model=model, optimizer=optimizer, total_steps=total_steps)
    # train/distributed.py: DDP / gradient all-reduce in data-parallel runs (extra parameters averaged by hand)
    sync = GradSync(model, method, device, [p for _, p in extra_params])
    method.on_train_start(state)
    bar = tqdm(total=total_steps, desc=f"train {cfg.task}/{cfg.method}", unit="step", dynamic_ncols=True,
               mininterval=1.0, disable=not sync.main)
    tracker = EpochTracker(main_metric, cfg.early_stopping_patience if early_stopping else None, on_epoch,
                           write=bar.write if sync.main else lambda _line: None)
    watch = LossWatch(cfg.divergence_factor)
    ckpt = Checkpointer(cfg, model, method, optimizer, scheduler, scaler, state, tracker, watch, train_loader)
    first_epoch = ckpt.restore()  # --resume: weights, optimizer, method, tracker ... from the checkpoint
    bar.update(state.step)
    stopper = Stopper(sync_every)  # SIGTERM / SIGINT: stop at the next step boundary (train/preempt.py)
    pending = []  # (step, [micro-batch loss tensors], gradient norm tensor or None, lr, norm read), not yet read back
    reporter = reporting.active() if sync.main else None

    def flush(losses):
        """Read back the pending steps' losses (and norms): health checks, progress bar, state.loss."""
        for step, micro, norm, step_lr, norm_value in pending:
            if norm is not None:
                norm_value = float(norm)
                watch.check_finite(norm_value, "gradient norm", step)
            values = [m.item() for m in micro]
            state.loss = values[0] if accum == 1 else float(np.mean(values))
            watch.step(state.loss, step)
            losses.append(state.loss)
            if reporter is not None:  # --report-to (train/reporting.py)
                reporter.step(step, state.loss, step_lr, norm_value)
        if pending:
            bar.update(len(pending))
            bar.set_postfix(loss=f"{state.loss:.4f}", refresh=False)
        pending.clear()

    for epoch in range(first_epoch, n_epochs):
        state.epoch = epoch
        losses, micro = ckpt.begin_epoch(epoch), []  # the epoch's batch order: a function of (seed, epoch)
        sync.model.train()
        t0, c0 = time.perf_counter(), time.process_time()
        n_batches = len(train_loader)
        done = ckpt.position[1] if ckpt.position and ckpt.position[0] == epoch else 0  # batches of the epoch done
        with deferring():  # a signal waits for the step boundary (train/preempt.py)
            for i, batch in enumerate(train_loader):
                if state.step >= total_steps:
                    break
                if ckpt.skip(epoch, i):  # resumed: trained before the checkpoint
                    continue
                batch = {k: v.to(device, non_blocking=non_blocking) for k, v in batch.items()}
                with sync.accumulating(len(micro) + 1 < accum and i + 1 < n_batches):
                    with precision.autocast():
                        loss = loss_fn(sync.model, batch)
                    loss, reported = sync.weigh(loss, batch_len(batch))  # data-parallel: the global batch's loss
                    scaled = loss / accum if accum > 1 else loss
                    (scaler.scale(scaled) if scaler else scaled).backward()
                state.samples_seen += batch_len(batch)
                micro.append(reported)
                if len(micro) < accum and i + 1 < n_batches:
                    continue
                sync.reduce_grads(optimizer)
                trainable = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
                norm = norm_value = None
                if cfg.max_grad_norm and trainable:
                    if scaler:
                        scaler.unscale_(optimizer)
                    norm = torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm)
                    if scaler:
                        norm = None  # fp16: the scaler skips steps with inf/nan gradients by design
                    elif sync_every == 1:  # CPU: check before the step, as the weights must not take it
                        norm_value = float(norm)
                        watch.check_finite(norm_value, "gradient norm", state.step + 1)
                        norm = None
                step_lr = optimizer.param_groups[0]["lr"]  # the rate this step used
                if scaler:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                scheduler.step()
                method.on_optimizer_step(state)  # the step's gradients still there (AdaLoRA)
                optimizer.zero_grad(set_to_none=True)
                state.step += 1
                done = i + 1
                pending.append((state.step, micro, norm, step_lr, norm_value))
                micro = []
                if len(pending) >= sync_every:
                    flush(losses)
                if on_step is not None:
                    on_step(state)
                method.on_step(state)
                if ckpt.due(state.step):  # --save-every: its time is not training time
                    flush(losses)
                    ts, cs = time.perf_counter(), time.process_time()
                    ckpt.save(epoch, i + 1, losses, ts - t0, cs - c0)  # data-parallel: rank 0 writes
                    t0, c0 = t0 + time.perf_counter() - ts, c0 + time.process_time() - cs
                if stopper.check(state.step):
                    bar.close()
                    _preempted(stopper, ckpt, state, flush, losses, epoch, done, t0, c0)
            if stopper.check(state.step, force=True):  # told between the last step and the evaluation
                bar.close()
                _preempted(stopper, ckpt, state, flush, losses, epoch, done, t0, c0)
        ckpt.end_batches()
        flush(losses)
        state.train_seconds += time.perf_counter() - t0
        state.train_cpu_seconds += time.process_time() - c0
        t1 = time.perf_counter()
        with precision.autocast():
            metrics, predictions = evaluate(model)
        rec = {"epoch": epoch + 1, "step": state.step, "train_loss": float(np.mean(losses)) if losses else None,
               "metrics": metrics, "eval_seconds": round(time.perf_counter() - t1, 3)}
        if epoch_fields is not None:
            rec.update(epoch_fields(epoch, rec))
        if tracker.end_epoch(rec, predictions):
            break
    bar.close()
    state.samples_seen = sync.total(state.samples_seen)  # every rank's examples
    method.on_train_end(state)
    return tracker.summary(state, {
        **ckpt.record(), "training_health": watch.summary(), "precision": precision.record(),
        "cpu_time": {"train_cpu_seconds": round(state.train_cpu_seconds, 3), "threads": torch.get_num_threads(),
                     "note": "process CPU seconds in the training epochs (all threads): unlike "
                             "time.train_seconds, not inflated by other load on the machine"}})
