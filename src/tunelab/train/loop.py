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


def train(model, method, train_loader, evaluate, cfg, lr: float, device, on_epoch=None,
          head_lr: float | None = None, head_names=(), main_metric: str | None = None, loss_fn=model_loss) -> dict:
    """Train ``model`` in place. ``evaluate(model) -> (metrics, predictions)`` runs after each epoch;
    ``on_epoch(epoch_record, predictions)`` is told each epoch's result; ``loss_fn(model, batch)``
    gives the training loss. ``cfg.grad_accum`` batches make one optimizer step. Returns the loop
    summary (``EpochTracker.summary()`` + ``state``)."""
    from transformers import get_linear_schedule_with_warmup

    from .health import LossWatch
    from .tracker import EpochTracker

    named = method.optimizer_params(model)
    optimizer = build_optimizer(named, lr, cfg.weight_decay, head_lr, set(head_names), fused=cfg.fused_adamw)
    accum = cfg.grad_accum
    steps_per_epoch = math.ceil(len(train_loader) / accum)
    total_steps = max(1, math.ceil(steps_per_epoch * cfg.epochs))
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)
    state = TrainState(model=model, optimizer=optimizer, total_steps=total_steps)
    method.on_train_start(state)
    bar = tqdm(total=total_steps, desc=f"train {cfg.task}/{cfg.method}", unit="step", dynamic_ncols=True, mininterval=1.0)
    tracker = EpochTracker(main_metric, cfg.early_stopping_patience, on_epoch, write=bar.write)
    watch = LossWatch(cfg.divergence_factor)
    for epoch in range(math.ceil(cfg.epochs)):
        state.epoch = epoch
        model.train()
        losses, micro = [], []
        t0 = time.perf_counter()
        n_batches = len(train_loader)
        for i, batch in enumerate(train_loader):
            if state.step >= total_steps:
                break
            batch = {k: v.to(device) for k, v in batch.items()}
            loss = loss_fn(model, batch)
            (loss / accum if accum > 1 else loss).backward()
            state.samples_seen += batch_len(batch)
            micro.append(loss.item())
            if len(micro) < accum and i + 1 < n_batches:
                continue
            trainable = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            if cfg.max_grad_norm and trainable:
                norm = torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm)
                watch.check_finite(float(norm), "gradient norm", state.step + 1)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            state.loss = micro[0] if accum == 1 else float(np.mean(micro))
            micro = []
            watch.step(state.loss, state.step)
            losses.append(state.loss)
            method.on_step(state)
            bar.update(1)
            bar.set_postfix(loss=f"{state.loss:.4f}", refresh=False)
        state.train_seconds += time.perf_counter() - t0
        t1 = time.perf_counter()
        metrics, predictions = evaluate(model)
        rec = {"epoch": epoch + 1, "step": state.step, "train_loss": float(np.mean(losses)) if losses else None,
               "metrics": metrics, "eval_seconds": round(time.perf_counter() - t1, 3)}
        if tracker.end_epoch(rec, predictions):
            break
    bar.close()
    method.on_train_end(state)
    return {**tracker.summary(), "state": state, "record": {"training_health": watch.summary()}}
