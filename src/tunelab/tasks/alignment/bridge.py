"""Run a Hugging Face / TRL trainer under tunelab's rules.

- The optimizer is ours (``train.loop.build_optimizer`` over ``method.optimizer_params``, with the
  head's own lr), so every adaptation method, dynamic ones included, trains the parameters it
  chose; the trainer only adds the linear warm-up schedule, clipping and gradient accumulation.
- ``MethodBridge`` forwards trainer events to the method hooks (``on_train_start``, ``on_step``
  after every optimizer step, ``on_train_end``) with a ``TrainState``, evaluates after every epoch
  through the same ``EpochTracker`` as tunelab's loop (history, best epoch and early stopping in
  the registered direction of the main metric, run.json update through the runner's
  ``on_epoch``), keeps the trainer's per-step logs (e.g. DPO's implicit-reward accuracy) and
  measures training time without evaluation time.
"""

import math
import os
import time

from tqdm.auto import tqdm
from transformers import TrainerCallback

from ...train.health import LossWatch
from ...train.loop import TrainState, build_optimizer
from ...train.tracker import EpochTracker


def trainer_args(config_cls, cfg, lr, device, workdir, **kw):
    """A (TRL) TrainingArguments subclass filled from the RunConfig; no checkpoints, no reporting."""
    base = dict(
        output_dir=workdir, per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=cfg.eval_batch_size,
        gradient_accumulation_steps=cfg.grad_accum, num_train_epochs=cfg.epochs, learning_rate=lr,
        weight_decay=cfg.weight_decay, warmup_steps=cfg.warmup_ratio, max_grad_norm=cfg.max_grad_norm,
        lr_scheduler_type="linear", logging_steps=1, save_strategy="no", eval_strategy="no", report_to="none",
        seed=cfg.seed, data_seed=cfg.seed, use_cpu=(device.type == "cpu"), dataloader_num_workers=0,
        disable_tqdm=True, remove_unused_columns=False, bf16=False, activation_checkpointing=False,
    )
    base.update(kw)
    return config_cls(**base)


def make_optimizer(model, method, lr, cfg, head_names=()):
    return build_optimizer(method.optimizer_params(model), lr, cfg.weight_decay, cfg.head_lr, set(head_names),
                           fused=cfg.fused_adamw)


class MethodBridge(TrainerCallback):
    def __init__(self, method, evaluate, main_metric: str, on_epoch=None, n_train: int = 0, patience=None,
                 desc="train", head_names=(), divergence_factor: float = 10.0):
        self.method, self.evaluate, self.head_names = method, evaluate, tuple(head_names)
        self.watch = LossWatch(divergence_factor)
        self.tracker = EpochTracker(main_metric, patience, on_epoch, write=self._write)
        self.n_train, self.desc = n_train, desc
        self.state = None
        self.curve = []
        self.eval_seconds = 0.0
        self._epoch_losses, self._last_eval_step, self._bar = [], -1, None

    def _write(self, text):
        self._bar.write(text)

    @property
    def history(self):
        return self.tracker.history

    @property
    def last_metrics(self):
        return self.tracker.last_metrics

    @property
    def last_predictions(self):
        return self.tracker.last_predictions

    # ---- trainer events
    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kw):
        self.state = TrainState(model=model, optimizer=optimizer, total_steps=state.max_steps)
        self._bar = tqdm(total=state.max_steps, desc=self.desc, unit="step", dynamic_ncols=True, mininterval=1.0)
        self.method.on_train_start(self.state)

    def on_optimizer_step(self, args, state, control, **kw):
        self.state.step = state.global_step  # Trainer: steps before this one (gradients not yet zeroed)
        self.method.on_optimizer_step(self.state)

    def on_step_end(self, args, state, control, **kw):
        s = self.state
        s.step = state.global_step
        s.epoch = int(state.epoch or 0)
        s.samples_seen = int(round((state.epoch or 0) * self.n_train))
        self.method.on_step(s)
        self._bar.update(1)

    def on_log(self, args, state, control, logs=None, **kw):
        logs = logs or {}
        if "grad_norm" in logs and logs["grad_norm"] is not None:
            self.watch.check_finite(float(logs["grad_norm"]), "gradient norm", state.global_step)
        if "loss" in logs:
            self.state.loss = float(logs["loss"])
            self.watch.step(self.state.loss, state.global_step)
            self._epoch_losses.append(float(logs["loss"]))
            self._bar.set_postfix(loss=f"{self.state.loss:.4f}", refresh=False)
        if "train_runtime" not in logs:  # the final summary line is not a step
            self.curve.append({"step": state.global_step, **{k: _num(v) for k, v in logs.items()}})
            from ...train.reporting import active

            if active() is not None and "loss" in logs:  # --report-to: TRL's per-step values (logging_steps=1)
                active().step(state.global_step, logs.get("loss"), logs.get("learning_rate"), logs.get("grad_norm"))

    def on_epoch_end(self, args, state, control, model=None, **kw):
        if self._eval(state, model):
            control.should_training_stop = True

    def on_train_end(self, args, state, control, model=None, **kw):
        if self._last_eval_step != state.global_step:  # fractional last epoch
            self._eval(state, model)
        self._bar.close()
        self.method.on_train_end(self.state)

    # ---- helpers
    def _eval(self, state, model) -> bool:
        """Evaluate and record one epoch; True when early stopping says stop."""
        if self.evaluate is None:
            return False
        t0 = time.perf_counter()
        metrics, predictions = self.evaluate(model)
        dt = time.perf_counter() - t0
        self.eval_seconds += dt
        self._last_eval_step = state.global_step
        rec = {"epoch": max(1, math.ceil(state.epoch or 0)), "step": state.global_step,
               "train_loss": sum(self._epoch_losses) / len(self._epoch_losses) if self._epoch_losses else None,
               "metrics": metrics, "eval_seconds": round(dt, 3)}
        self._epoch_losses = []
        return self.tracker.end_epoch(rec, predictions)


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


def run_trainer(trainer, bridge) -> dict:
    """trainer.train() with the bridge attached; -> loop-style summary (without final metrics)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    t0 = time.perf_counter()
    trainer.train()
    total = time.perf_counter() - t0
    bridge.state.train_seconds = max(0.0, total - bridge.eval_seconds)
    workdir = trainer.args.output_dir
    if os.path.isdir(workdir) and not os.listdir(workdir):
        os.rmdir(workdir)
    return {**vars(bridge.tracker.summary(bridge.state)), "curve": bridge.curve,
            "training_health": bridge.watch.summary()}
