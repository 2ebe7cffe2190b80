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
from dataclasses import dataclass, field

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
    log: list = field(default_factory=list)


def build_optimizer(params_named, lr: float, weight_decay: float, head_lr: float | None = None, head_names=(),
                    fused: bool = False):
    """AdamW; no decay on biases / norms; the head's parameters may get their own lr."""
    groups = {}
    for n, p in params_named:
        no_decay = p.ndim < 2 or "norm" in n.lower() or n.endswith(".bias")
        group_lr = head_lr if head_lr is not None and n in head_names else lr
        groups.setdefault((no_decay, group_lr), []).append(p)
    return torch.optim.AdamW([{"params": ps, "weight_decay": 0.0 if nd else weight_decay, "lr": glr}
                              for (nd, glr), ps in groups.items()], lr=lr, fused=fused)


def train(model, method, train_loader, evaluate, cfg, lr: float, device, on_epoch=None,
          head_lr: float | None = None, head_names=()) -> dict:
    """Train ``model`` in place. ``evaluate(model) -> (metrics, predictions)`` runs after each epoch;
    ``on_epoch(epoch_record)`` is told each epoch's result. Returns the loop summary."""
    from transformers import get_linear_schedule_with_warmup

    named = method.optimizer_params(model)
    optimizer = build_optimizer(named, lr, cfg.weight_decay, head_lr, set(head_names),
                                fused=cfg.fused_adamw)
    steps_per_epoch = len(train_loader)
    total_steps = max(1, math.ceil(steps_per_epoch * cfg.epochs))
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total_steps), total_steps)
    state = TrainState(model=model, optimizer=optimizer, total_steps=total_steps)
    method.on_train_start(state)
    history, best, best_epoch, bad_epochs = [], None, None, 0
    main = None
    bar = tqdm(total=total_steps, desc=f"train {cfg.task}/{cfg.method}", unit="step", dynamic_ncols=True, mininterval=1.0)
    n_epochs = math.ceil(cfg.epochs)
    stopped_early = False
    for epoch in range(n_epochs):
        state.epoch = epoch
        model.train()
        losses = []
        t0 = time.perf_counter()
        for batch in train_loader:
            if state.step >= total_steps:
                break
            batch = {k: v.to(device) for k, v in batch.items()}
            loss = model(**batch).loss
            loss.backward()
            trainable = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            if cfg.max_grad_norm and trainable:
                torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            state.samples_seen += batch["input_ids"].shape[0]
            state.loss = loss.item()
            losses.append(state.loss)
            method.on_step(state)
            bar.update(1)
            bar.set_postfix(loss=f"{state.loss:.4f}", refresh=False)
        state.train_seconds += time.perf_counter() - t0
        t1 = time.perf_counter()
        metrics, predictions = evaluate(model)
        eval_seconds = time.perf_counter() - t1
        main = next(iter(metrics))
        rec = {"epoch": epoch + 1, "step": state.step, "train_loss": float(np.mean(losses)) if losses else None,
               "metrics": metrics, "eval_seconds": round(eval_seconds, 3)}
        history.append(rec)
        bar.write(f"epoch {epoch + 1}: loss {rec['train_loss']:.4f} " + " ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        if on_epoch:
            on_epoch(rec, predictions)
        score = metrics[main]
        if best is None or score > best:
            best, best_epoch, bad_epochs = score, epoch + 1, 0
        else:
            bad_epochs += 1
            if cfg.early_stopping_patience and bad_epochs >= cfg.early_stopping_patience:
                stopped_early = True
                break
    bar.close()
    method.on_train_end(state)
    return {"history": history, "state": state, "best_epoch": best_epoch, "best": best, "main_metric": main,
            "stopped_early": stopped_early, "final_predictions": predictions, "final_metrics": metrics}
