"""Checkpoints of tunelab's training loop (``--save-every N``) and resuming from one (``--resume``).

A checkpoint is the folder ``OUTPUT_DIR/checkpoint/``, written every N optimizer steps, only the
last one kept:

- ``model.pt``: every parameter that may train (what requires grad now, plus everything the method
  hands the optimizer: a dynamic method's candidate layers, a PEFT adapter and the head) and every
  buffer. Frozen weights are not saved: a resumed run loads the same base model with the same seed,
  so they are bit-identical;
- ``training.pt``: optimizer, LR scheduler and GradScaler state, which parameters require grad, the
  method's state (``Method.state_dict``: a dynamic method's active set, statistics and timeline),
  the ``EpochTracker`` (history, best epoch, early-stopping counter), the ``LossWatch``, the loop
  position (epoch, batches done in it, the epoch's step losses so far, step, samples, seconds) and
  the RNG states (python, numpy, torch CPU, CUDA) at the checkpoint and at the start of its epoch;
- ``checkpoint.json``: the same position in readable form, the history, and the run's
  ``started_at`` (a checkpoint belongs to one run.json).

Atomic: written into ``checkpoint.tmp-<pid>/`` (each file fsynced), then the old ``checkpoint/``
is renamed ``checkpoint.old/``, the new one renamed into place and the old one deleted (renamed to
a ``checkpoint.tmp-*`` name first). A kill at any moment leaves a complete ``checkpoint/`` or, only
between the two renames, a complete ``checkpoint.old/`` (``find_checkpoint`` takes either); a
leftover ``checkpoint.tmp-*`` is never read and is deleted by the next save.

Exact resume: the batch order of epoch e is a function of (seed, e) (``batching.set_epoch``). On
resume the loop rebuilds the epoch's order with the global RNG set to its epoch-start state
(loaders that draw from it), skips the batches already done, then restores the RNG states of the
checkpoint, so every later random draw (dropout, augmentation, ALF's probe, LISA's draw) is the
one the uninterrupted run makes. ``tests/test_checkpoint_resume.py`` checks equal losses and metrics.
The frozen-prefix activation cache (train/activation_cache.py) holds no state of its own: a
resumed run rebuilds it on its first batch.
"""

import json
import io
import os
import random
import shutil
import time

import numpy as np
import torch

DIR = "checkpoint"
OLD = DIR + ".old"
TMP = DIR + ".tmp-"
META = "checkpoint.json"


# ------------------------------------------------------------------ finding and writing


def find_checkpoint(out_dir: str) -> str | None:
    """The run folder's complete checkpoint (``checkpoint/``, else ``checkpoint.old/`` left by a kill
    between the two renames), or None."""
    for name in (DIR, OLD):
        path = os.path.join(out_dir, name)
        if os.path.isfile(os.path.join(path, META)):
            return path
    return None


def read_meta(path: str) -> dict:
    with open(os.path.join(path, META), encoding="utf-8") as f:
        return json.load(f)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _save(obj, path: str) -> None:
    with open(path, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())


def remove_stale(out_dir: str) -> None:
    """Delete temp folders of an interrupted save."""
    for name in os.listdir(out_dir):
        if name.startswith(TMP):
            shutil.rmtree(os.path.join(out_dir, name), ignore_errors=True)


def write_checkpoint(out_dir: str, model_state: dict, training: dict, meta: dict) -> str:
    """Write one checkpoint atomically (see the module docstring); returns its folder."""
    remove_stale(out_dir)
    tmp = os.path.join(out_dir, f"{TMP}{os.getpid()}")
    os.makedirs(tmp)
    _save(model_state, os.path.join(tmp, "model.pt"))
    _save(training, os.path.join(tmp, "training.pt"))
    with open(os.path.join(tmp, META), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(tmp)
    final, old = os.path.join(out_dir, DIR), os.path.join(out_dir, OLD)
    if os.path.isdir(final):
        _discard(old)
        os.rename(final, old)
    os.rename(tmp, final)
    _fsync_dir(out_dir)
    _discard(old)
    return final


def _discard(path: str) -> None:
    """Delete a folder so that a kill midway leaves only a ``checkpoint.tmp-*`` name behind (never read)."""
    if os.path.isdir(path):
        gone = os.path.join(os.path.dirname(path), f"{TMP}gone-{os.getpid()}")
        os.rename(path, gone)
        shutil.rmtree(gone, ignore_errors=True)


def remove_checkpoints(out_dir: str) -> None:
    """After a completed run: the checkpoint is of no further use."""
    for name in (OLD, DIR):
        _discard(os.path.join(out_dir, name))
    if os.path.isdir(out_dir):
        remove_stale(out_dir)


# ------------------------------------------------------------------ RNG


def rng_state() -> dict:
    np_state = np.random.get_state()
    return {"python": random.getstate(),
            "numpy": (np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(s: dict) -> None:
    random.setstate(s["python"])
    name, keys, *rest = s["numpy"]
    np.random.set_state((name, keys.numpy(), *rest))
    torch.set_rng_state(s["torch"])
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


# ------------------------------------------------------------------ the loop's side


class Checkpointer:
    """What the loop calls: ``restore`` once (resume), ``begin_epoch`` / ``skip`` / ``end_batches``
    every epoch, ``due`` + ``save`` after each optimizer step. Inert without --save-every and
    without a checkpoint to resume from (it still sets each epoch's data order)."""

    def __init__(self, cfg, model, method, optimizer, scheduler, scaler, state, tracker, watch, loader):
        self.cfg, self.model, self.method = cfg, model, method
        self.optimizer, self.scheduler, self.scaler = optimizer, scheduler, scaler
        self.state, self.tracker, self.watch, self.loader = state, tracker, watch, loader
        self.every = getattr(cfg, "save_every", None)
        self.resume_from = cfg.resume_checkpoint
        self.epoch_rng = None  # RNG states at the start of the current epoch
        self.position = None  # (epoch, batches done, losses) being resumed, until skipped
        self.pending_rng = None  # the checkpoint's RNG states, set after the skip
        self.trainable = {n for n, _ in method.optimizer_params(model)} | {
            n for n, p in model.named_parameters() if p.requires_grad}

    # -------------------------------------------------------------- resume
    def restore(self) -> int:
        """Load a checkpoint into the model, optimizer, method, tracker ...; returns the epoch to
        start from (0 when not resuming). Call after ``method.on_train_start``."""
        if not self.resume_from:
            return 0
        from ..errors import RunFailed

        path = self.resume_from
        try:
            weights = torch.load(os.path.join(path, "model.pt"), map_location="cpu", weights_only=True)
            t = torch.load(os.path.join(path, "training.pt"), map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, ValueError, EOFError) as e:
            raise RunFailed(f"checkpoint {path} is unreadable ({type(e).__name__}: {str(e).splitlines()[0]}); "
                            "start the run again without --resume") from e
        missing = set(weights) - set(self.model.state_dict())
        if missing:
            raise RuntimeError(f"checkpoint {path}: parameters not in the model: {sorted(missing)[:3]}")
        self.model.load_state_dict(weights, strict=False)
        self.method.load_state_dict(t["method"])
        grads = set(t["requires_grad"])
        for n, p in self.model.named_parameters():
            p.requires_grad_(n in grads)
        self.optimizer.load_state_dict(t["optimizer"])
        self.scheduler.load_state_dict(t["scheduler"])
        if self.scaler is not None and t["scaler"]:
            self.scaler.load_state_dict(t["scaler"])
        tr = t["tracker"]
        self.tracker.history = list(tr["history"])
        self.tracker.best, self.tracker.best_epoch = tr["best"], tr["best_epoch"]
        self.tracker.bad_epochs, self.tracker.stopped_early, self.tracker.main = (
            tr["bad_epochs"], tr["stopped_early"], tr["main"])
        self.watch.__dict__.update(t["watch"])
        for k, v in t["state"].items():
            setattr(self.state, k, v)
        pos = t["position"]
        self.position = (pos["epoch"], pos["batches"], list(pos["losses"]))
        self.epoch_rng, self.pending_rng = t["epoch_rng"], t["rng"]
        from . import distributed

        per_rank = t.get("rank_rng") or []  # data-parallel: each rank's own (dropout draws differ per rank)
        if len(per_rank) == distributed.world_size() > 1:
            self.epoch_rng, self.pending_rng = per_rank[distributed.rank()]
        return pos["epoch"]

    def begin_epoch(self, epoch: int) -> list:
        """Set the epoch's data order; returns the epoch's step losses so far (resume) or []."""
        from .batching import set_epoch

        if self.position and self.position[0] == epoch:
            set_rng_state(self.epoch_rng)  # as the epoch began: loaders drawing from the global RNG
        else:
            self.position = None
            self.epoch_rng = rng_state() if self.every else None
        set_epoch(self.loader, self.cfg.seed, epoch)
        return list(self.position[2]) if self.position else []

    def skip(self, epoch: int, i: int) -> bool:
        """Whether batch ``i`` of ``epoch`` was trained before the checkpoint (then skip it); after
        the last such batch the checkpoint's RNG states come back."""
        if not self.position or self.position[0] != epoch:
            return False
        if i < self.position[1]:
            if i == self.position[1] - 1:
                self.end_batches()
            return True
        return False

    def end_batches(self) -> None:
        """The skip is over (also when the epoch had no batch left): the checkpoint's RNG states."""
        if self.pending_rng is not None:
            set_rng_state(self.pending_rng)
            self.pending_rng = None
        self.position = None

    # -------------------------------------------------------------- save
    def due(self, step: int) -> bool:
        return bool(self.every) and step % self.every == 0 and step < self.state.total_steps

    def save(self, epoch: int, batches: int, losses: list, epoch_seconds: float, epoch_cpu: float) -> str | None:
        """Checkpoint after ``batches`` batches of ``epoch`` (call right after an optimizer step,
        with every pending loss read back). Data-parallel runs: every rank calls it (its RNG states
        are gathered), rank 0 alone writes (the weights are the same on every rank)."""
        from . import distributed

        t0 = time.perf_counter()
        rank_rng = None
        if distributed.is_distributed():  # as bytes: all_gather_object does not unpickle these tensors
            buf = io.BytesIO()
            torch.save((self.epoch_rng, rng_state()), buf)
            rank_rng = [torch.load(io.BytesIO(b), weights_only=True)
                        for b in distributed.gather_objects(buf.getvalue())]
        if not distributed.is_main():
            return None
        st = self.state
        grads = [n for n, p in self.model.named_parameters() if p.requires_grad]
        keep = self.trainable | set(grads) | {n for n, _ in self.model.named_buffers()}
        weights = {k: v.detach() for k, v in self.model.state_dict().items() if k in keep}
        tracker = {"history": self.tracker.history, "best": self.tracker.best, "best_epoch": self.tracker.best_epoch,
                   "bad_epochs": self.tracker.bad_epochs, "stopped_early": self.tracker.stopped_early,
                   "main": self.tracker.main}
        state = {"step": st.step, "epoch": epoch, "loss": st.loss, "samples_seen": st.samples_seen,
                 "train_seconds": st.train_seconds + epoch_seconds,
                 "train_cpu_seconds": st.train_cpu_seconds + epoch_cpu}
        training = {
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "requires_grad": grads, "method": self.method.state_dict(), "tracker": tracker,
            "watch": dict(self.watch.__dict__), "state": state,
            "position": {"epoch": epoch, "batches": batches, "losses": list(losses)},
            "rng": rng_state(), "epoch_rng": self.epoch_rng, "rank_rng": rank_rng,
        }
        meta = {"step": st.step, "total_steps": st.total_steps, "epoch": epoch, "batches_done_in_epoch": batches,
                "samples_seen": st.samples_seen, "train_seconds": round(state["train_seconds"], 3),
                "started_at": self.cfg.run_started_at, "history": self.tracker.history,
                "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        path = write_checkpoint(self.cfg.output_dir, weights, training, meta)
        self.save_seconds = getattr(self, "save_seconds", 0.0) + time.perf_counter() - t0
        self.saves = getattr(self, "saves", 0) + 1
        self.saved_step = st.step
        self.mb = round(sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path)) / 2**20, 1)
        return path

    def record(self) -> dict:
        """run.json ``checkpoints`` (only when checkpointing or resumed)."""
        if not self.every and not self.resume_from:
            return {}
        return {"checkpoints": {"save_every": self.every, "saved": getattr(self, "saves", 0),
                                "mb": getattr(self, "mb", None), "resumed_from": self.resume_from,
                                "seconds": round(getattr(self, "save_seconds", 0.0), 3),
                                "note": "writing checkpoints is not counted in time.train_seconds"}}
