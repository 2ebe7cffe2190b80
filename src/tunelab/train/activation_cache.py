"""Frozen-prefix activation cache: frozen bottom layers computed once per example, not once per epoch.

When the embeddings and layers 0..k-1 cannot train at any point of the run (selective top layers,
LoRA with ``--layers`` on top layers, head-only), the hidden states entering layer k are the same
for an example every epoch. We compute them once, with the prefix in **eval mode** (no dropout in
the embeddings and layers 0..k-1; without the cache those run in train mode, with dropout), store
them, and every later forward pass runs only layers k.. and the head, for training and evaluation.
Method and anchor: AutoFreeze (Liu et al. 2021) caches the frozen prefix the same way.

Eligibility (``plan``), decided after ``method.prepare`` from the parameters that may *ever* train
(``requires_grad`` now, plus everything ``method.optimizer_params`` hands the optimizer, which is
where dynamic methods list the layers they may activate later):

- off with ``--no-activation-cache``; off when the task family does not declare its batches
  replayable (``SupervisedTask.caches_activations``); off on models with several layer stacks;
- off when any trainable parameter lives outside the layers and the head (embeddings, a prompt
  encoder, a final norm ...); k = the lowest layer that may train (the number of layers when only
  the head trains); off when k = 0 (nothing below the lowest trainable layer). Dynamic methods
  hand every candidate layer to the optimizer, so they are off (ALF, LISA, BAdam: any layer may
  train again later) ...
- ... unless the method promises a **frozen-for-good prefix** (``Method.frozen_for_good()``: the
  embeddings and layers 0..k-1 are frozen now and never train again this run; AutoFreeze, which
  freezes front to back and never unfreezes). Then k follows the method, checked before every
  batch: the cache starts at the first batch where the promise holds (k >= 1), and when k grows
  the stored states of every built split are carried through the newly frozen layers (a cached
  forward of layers k_old..k_new-1 only, in place); were k ever to move down, every split would be
  rebuilt from the embeddings. A checksum of the cached prefix's weights, taken when its states are
  computed and checked before every epoch and every change of k, turns a broken promise into an
  error instead of stale states;
- off when a self-check fails: on 8 rows of the first batch, the cached forward must give the
  model's own logits (eval mode, same rows) to float tolerance.

Mechanics (any HF model whose forward runs embeddings -> one ``ModuleList`` of layers -> head, with
the padding in an ``attention_mask`` keyword): for a cached forward the layer list is temporarily
replaced by its layers k.., the embeddings module by one that returns the cached states (so no
embedding lookup), and a forward pre-hook on layer k hands it exactly the cached states (so any
position embedding a model adds outside its embeddings module is overwritten too). Rows carry an
example index (``IndexedRows``): the loader arms the cache with the indices of each batch just
before yielding it, and the next call of the model consumes them. Shuffling and length grouping
work unchanged (they only choose indices).

Storage: the real (``attention_mask`` = 1) positions of every example, float32, one flat array.
In RAM up to ``--activation-cache-mb``, else a memory-mapped file in the run folder (deleted when
the run ends), else off (not enough disk), with one log line saying which. The train split's cache
is built at the start of the first epoch (its time counts as training time), each eval split's at
its first evaluation (eval time).
"""

import os
import shutil
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

PREFIX_MODE = ("eval: the embeddings and layers 0..k-1 run once per example with dropout off; without the "
               "cache they run every step in train mode (with dropout)")
SELF_CHECK_RTOL, SELF_CHECK_ATOL, SELF_CHECK_ROWS = 1e-4, 1e-5, 8
# bf16 / fp16 autocast: the prefix computed in a batch of another size rounds differently (bf16 keeps 8
# significant bits), e.g. 1.4e-4 on minilm's logits on CPU; a broken feed differs by far more
LOW_PRECISION_RTOL, LOW_PRECISION_ATOL = 2e-2, 1e-3


def log(msg: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(f"activation cache: {msg}")


@dataclass
class Plan:
    on: bool
    why: str
    k: int | None = None  # first layer that runs (layers 0..k-1 and the embeddings are cached)
    follows_method: bool = False  # k = method.frozen_for_good(), checked before every batch (None: not yet)


def plan(model: nn.Module, method, layout, cfg, replayable: bool) -> Plan:
    """Whether the frozen prefix can be cached for this run, and below which layer (see module doc)."""
    if not cfg.activation_cache:
        return Plan(False, "--no-activation-cache")
    if not replayable:
        return Plan(False, "the task family does not declare its batches replayable (SupervisedTask.caches_activations)")
    if len(layout.stacks) != 1:
        return Plan(False, f"the model has {len(layout.stacks)} layer stacks (only single-stack models are cached)")
    if method.promises_frozen_prefix:
        return Plan(True, f"{method.name}: the embeddings and the layers it has frozen never train again: cached "
                          f"from the first step they are frozen, grown as it freezes more", None, True)
    may_train = {id(p) for p in model.parameters() if p.requires_grad}
    may_train |= {id(p) for _, p in method.optimizer_params(model)}
    k = layout.num_layers
    for name, p in model.named_parameters():
        if id(p) not in may_train:
            continue
        kind = layout.classify(name)
        if kind == "head":
            continue
        if not isinstance(kind, tuple):
            return Plan(False, f"a parameter outside the layers and the head may train ({kind}: {name})")
        k = min(k, kind[1])
    if k == 0:
        return Plan(False, "layer 0 may train (now, or at a later step for a dynamic method): no frozen layer "
                           "below the trainable ones", 0)
    return Plan(True, f"embeddings and layers 0-{k - 1} never train", k)


class IndexedRows(torch.utils.data.Dataset):
    """Rows that carry their position: item i is (i, rows[i])."""

    def __init__(self, rows: list):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return i, self.rows[i]


class IndexedCollate:
    """(batch, example indices) from the family's collator."""

    def __init__(self, collate):
        self.collate = collate

    def __call__(self, items):
        return self.collate([r for _, r in items]), [i for i, _ in items]


class Emit(nn.Module):
    """Stands in for the embeddings module during a cached forward: returns the cached states."""

    def __init__(self, hidden: torch.Tensor):
        super().__init__()
        self.hidden = hidden

    def forward(self, *args, **kwargs):
        return self.hidden


class _Stop(Exception):
    """Raised by the capture hook: the rest of the model is not needed."""


def _find(model: nn.Module, path: str) -> str:
    """Full module name of ``path`` (a layout path) inside ``model`` (maybe PEFT-wrapped)."""
    names = [n for n, _ in model.named_modules() if n == path or n.endswith("." + path)]
    if len(names) != 1:
        raise LookupError(f"{path}: {len(names)} matches")
    return names[0]


def _parent(model: nn.Module, name: str):
    head, _, attr = name.rpartition(".")
    return (model.get_submodule(head) if head else model), attr


def _first_tensor(out):
    """The logits (or first output tensor) of a model call without labels."""
    if torch.is_tensor(out):
        return out
    values = out.values() if isinstance(out, dict) else out
    return next(v for v in values if torch.is_tensor(v))


class ActivationCache:
    """One run's cache: the plan, the hooks on the model and the stored states of every split."""

    def __init__(self, model, layout, plan_: Plan, cfg, device, out_dir: str):
        from .precision import resolve_precision

        self.model, self.plan, self.device, self.out_dir = model, plan_, device, out_dir
        self.on, self.k = plan_.on, plan_.k
        self.limit_mb = cfg.activation_cache_mb
        precision = resolve_precision(cfg.precision, device)
        self.autocast = precision.autocast  # the prefix as training computes it
        self.tol = ((SELF_CHECK_RTOL, SELF_CHECK_ATOL) if precision.name == "fp32"
                    else (LOW_PRECISION_RTOL, LOW_PRECISION_ATOL))
        self.splits = {}  # name -> {"rows", "collate", "counts", "offset", "built"}
        self.data = None  # (tokens, hidden) float32: RAM tensor or memmap-backed
        self.storage, self.file, self.mb = None, None, 0.0
        self.build_seconds, self.self_check = {}, None
        self.armed = None  # (split, indices) for the next model call
        self.prefix_fn = None  # plan.follows_method: () -> k or None (follow)
        self.k_changes, self.batches_seen, self._signature = [], 0, None
        self.current = None  # padded cached states during a cached forward
        self._handles, self._saved = [], []
        if self.on:
            try:
                self.stack_name = _find(model, layout.stacks[0].path)
                self.emb_name = _find(model, layout.embeddings_path) if layout.embeddings_path else None
            except LookupError as e:
                self._off(f"cannot locate the layers / embeddings in the prepared model ({e})")

    # ------------------------------------------------------------ setup
    def add_split(self, name: str, rows: list, collate, counts: list, batch_size: int) -> None:
        """Register one split's rows (in the order its loader indexes them); ``counts``: real positions per row."""
        self.splits[name] = {"rows": rows, "collate": collate, "counts": counts, "batch_size": batch_size,
                             "built": False}

    def follow(self, prefix_fn) -> None:
        """k comes from ``prefix_fn()`` (the method's frozen-for-good prefix), checked before every batch."""
        self.prefix_fn = prefix_fn

    def sync(self) -> None:
        """Follow the method's frozen prefix: start, grow (carry the built splits' states up) or rebuild."""
        if not self.on or self.prefix_fn is None:
            return
        k = self.prefix_fn()
        if k is None or k < 1 or k == self.k:
            return
        t0, old = time.perf_counter(), self.k
        if old is not None:
            self.verify()
        if old is not None and k > old and any(s["built"] for s in self.splits.values()):
            self._carry_up(k)
        else:
            for s in self.splits.values():
                s["built"] = False  # built on their next use at the new k
            self._set_k(k)
        self.k_changes.append({"k": k, "from": old, "at_train_batch": self.batches_seen,
                               "seconds": round(time.perf_counter() - t0, 3)})
        log(f"k {old} -> {k} (the method froze layers 0-{k - 1} for good) after {self.batches_seen} train batches")

    def _set_k(self, k: int) -> None:
        self.k = k
        self.plan = Plan(True, self.plan.why, k, self.plan.follows_method)
        if self._handles:
            self._feed_handle.remove()
            self._handles.remove(self._feed_handle)
            self._hook_feed()
        self._signature = None

    def _prefix_params(self) -> list:
        emb = [self.model.get_submodule(self.emb_name)] if self.emb_name else []
        return [p for m in [*emb, *self.layers[:self.k]] for p in m.parameters()]

    def _prefix_sums(self) -> list:
        return [float(p.detach().double().sum()) for p in self._prefix_params()]

    def verify(self) -> None:
        """The cached prefix's weights are the ones its states were computed with (dynamic methods)."""
        if self.prefix_fn is None or self._signature is None:
            return
        if self._prefix_sums() != self._signature:
            raise RuntimeError(f"activation cache: the weights of the cached prefix (embeddings, layers "
                               f"0-{self.k - 1}) changed although the method declared them frozen for good")

    def _sign(self) -> None:
        if self.prefix_fn is not None:
            self._signature = self._prefix_sums()

    @torch.no_grad()
    def _carry_up(self, k: int) -> None:
        """Every built split's stored states -> the states entering layer k (a cached forward through
        layers self.k..k-1, prefix in eval mode, the same length-ordered batches as ``build``)."""
        was_training = self.model.training
        self.model.eval()
        try:
            for name, s in self.splits.items():
                if not s["built"]:
                    continue
                for idx, batch in self._length_batches(s):
                    self.armed = (name, idx)
                    hidden = self._capture(batch, k)
                    self._store(s, idx, hidden[batch["attention_mask"].bool()].float().cpu())
        finally:
            self.armed = None
            self.model.train(was_training)
        self._set_k(k)
        self._sign()

    def _off(self, why: str) -> None:
        self.on = False
        self.plan = Plan(False, why, self.k)
        log(f"off ({why})")

    # ------------------------------------------------------------ hooks
    def _install(self) -> None:
        layers = self.model.get_submodule(self.stack_name)
        self.layers = list(layers)
        self._handles.append(self.model.register_forward_pre_hook(self._enter, with_kwargs=True))
        self._handles.append(self.model.register_forward_hook(self._exit, always_call=True))
        self._hook_feed()

    def _hook_feed(self) -> None:
        target = self.layers[min(self.k, len(self.layers) - 1)]  # k = all layers: nothing to feed (hook idles)
        self._feed_handle = target.register_forward_pre_hook(self._feed_layer, with_kwargs=True)
        self._handles.append(self._feed_handle)

    def _enter(self, module, args, kwargs):
        if self.armed is None:
            return None
        split, indices = self.armed
        self.armed = None  # one model call per armed batch; a second call runs the full model
        mask = kwargs.get("attention_mask")
        if mask is None or args:
            raise RuntimeError("activation cache: the model must be called with keyword arguments incl. attention_mask")
        sel = mask.bool()
        flat = self._gather(split, indices)
        if mask.shape[0] != len(indices) or int(sel.sum()) != flat.shape[0]:
            raise RuntimeError(f"activation cache: batch of {tuple(mask.shape)} with {int(sel.sum())} real positions "
                               f"does not match the {flat.shape[0]} cached ones of examples {indices[:4]}...")
        hidden = torch.zeros(*mask.shape, flat.shape[1], dtype=flat.dtype, device=mask.device)
        hidden[sel] = flat.to(mask.device, non_blocking=True)
        self.current = hidden
        parent, attr = _parent(self.model, self.stack_name)
        self._saved = [(parent, attr, getattr(parent, attr))]
        setattr(parent, attr, nn.ModuleList(self.layers[self.k:]))
        if self.emb_name:
            parent, attr = _parent(self.model, self.emb_name)
            self._saved.append((parent, attr, getattr(parent, attr)))
            setattr(parent, attr, Emit(hidden))
        return None

    def _exit(self, module, args, output):
        for parent, attr, mod in reversed(self._saved):
            setattr(parent, attr, mod)
        self._saved, self.current = [], None
        return None

    def _feed_layer(self, module, args, kwargs):
        if self.current is None or self.k >= len(self.layers):
            return None
        x = args[0] if args else kwargs.get("hidden_states")
        if x is None or x.shape != self.current.shape:
            raise RuntimeError(f"activation cache: layer {self.k} got {None if x is None else tuple(x.shape)}, "
                               f"cached {tuple(self.current.shape)}")
        if args:
            return (self.current,) + tuple(args[1:]), kwargs
        return args, {**kwargs, "hidden_states": self.current}

    def _gather(self, split: str, indices) -> torch.Tensor:
        s = self.splits[split]
        off, counts = s["offset"], s["counts"]
        return torch.cat([self.data[off[i]:off[i] + counts[i]] for i in indices])

    # ------------------------------------------------------------ building
    @torch.no_grad()
    def _capture(self, batch: dict, k: int | None = None) -> torch.Tensor:
        """Hidden states entering layer k (default self.k; the last layer's output when k = number of
        layers). With the cache armed, the forward starts from the stored states."""
        k = self.k if k is None else k
        got = []

        def pre(module, args, kwargs):
            got.append(args[0] if args else kwargs["hidden_states"])
            raise _Stop

        def post(module, args, output):
            got.append(output if torch.is_tensor(output) else output[0])
            raise _Stop

        h = (self.layers[k].register_forward_pre_hook(pre, with_kwargs=True) if k < len(self.layers)
             else self.layers[-1].register_forward_hook(post))
        try:
            with self.autocast():
                self.model(**batch)
        except _Stop:
            pass
        finally:
            h.remove()
        return got[0]

    def _allocate(self, hidden: int) -> None:
        tokens = 0
        for s in self.splits.values():
            s["offset"] = [tokens + int(o) for o in np.cumsum([0] + list(s["counts"][:-1]))]
            tokens += int(sum(s["counts"]))
        nbytes = tokens * hidden * 4
        self.mb = round(nbytes / 2**20, 1)
        if nbytes <= self.limit_mb * 2**20:
            self.data, self.storage = torch.empty(tokens, hidden), "ram"
            log(f"layers 0-{self.k - 1} + embeddings cached in RAM ({self.mb} MB, {tokens} positions x {hidden})")
            return
        free = shutil.disk_usage(self.out_dir).free
        if free < nbytes + 512 * 2**20:
            self._off(f"{self.mb} MB exceeds --activation-cache-mb {self.limit_mb} and the run folder's disk "
                      f"has {free / 2**20:.0f} MB free")
            return
        self.file = os.path.join(self.out_dir, "activation_cache.f32")
        mm = np.memmap(self.file, dtype=np.float32, mode="w+", shape=(tokens, hidden))
        self.data, self.storage = torch.from_numpy(mm), "memmap"
        log(f"layers 0-{self.k - 1} + embeddings cached in a memory-mapped file ({self.mb} MB > "
            f"--activation-cache-mb {self.limit_mb}): {self.file}")

    def _check(self, batch: dict, hidden: torch.Tensor, mask: torch.Tensor) -> bool:
        """The cached forward gives the model's own outputs on this batch (eval mode)."""
        with torch.no_grad(), self.autocast():
            ref = _first_tensor(self.model(**batch)).float()
            flat = hidden[mask.bool()].float().cpu()
            data, self.data = self.data, flat
            counts = mask.sum(1).tolist()
            s = self.splits["__check__"] = {"counts": counts, "offset": [int(o) for o in np.cumsum([0] + counts[:-1])]}
            self.armed = ("__check__", list(range(len(counts))))
            try:
                got = _first_tensor(self.model(**batch)).float()
            finally:
                self.armed, self.data = None, data
                del self.splits["__check__"], s
        if got.shape != ref.shape:
            self.self_check = {"passed": False, "shapes": [list(ref.shape), list(got.shape)]}
            return False
        if got.dim() >= 2 and got.shape[:2] == mask.shape:  # per-position outputs: real positions only
            ref, got = ref[mask.bool()], got[mask.bool()]
        diff = float((got - ref).abs().max()) if ref.numel() else 0.0
        ok = bool(torch.allclose(got, ref, rtol=self.tol[0], atol=self.tol[1]))
        self.self_check = {"passed": ok, "max_abs_diff": diff, "rtol": self.tol[0], "atol": self.tol[1]}
        return ok

    def _length_batches(self, s: dict):
        """(row indices, model inputs on the device) of split ``s``, longest rows first."""
        order = sorted(range(len(s["rows"])), key=lambda i: -s["counts"][i])
        for start in range(0, len(order), s["batch_size"]):
            idx = order[start:start + s["batch_size"]]
            batch = s["collate"]([s["rows"][i] for i in idx])
            yield idx, {k: v.to(self.device, non_blocking=True) for k, v in batch.items() if k != "labels"}

    def _store(self, s: dict, idx: list, flat: torch.Tensor) -> None:
        """Write the real positions ``flat`` of rows ``idx`` (in that order) at their offsets."""
        pos = 0
        for i in idx:
            c, o = s["counts"][i], s["offset"][i]
            self.data[o:o + c] = flat[pos:pos + c]
            pos += c

    def build(self, name: str) -> None:
        """Compute and store one split's prefix states (once), in length order, prefix in eval mode."""
        s = self.splits[name]
        if not self.on or s["built"] or self.k is None:
            return
        if not self._handles:
            self._install()
        t0 = time.perf_counter()
        was_training = self.model.training
        self.model.eval()
        try:
            for idx, batch in self._length_batches(s):
                hidden = self._capture(batch)
                mask = batch.get("attention_mask")
                if mask is None:
                    self._off("the batches have no attention_mask")
                    return
                if self.data is None:  # first batch of the run: check the mechanism (on 8 rows), size the store
                    few = {k: v[:SELF_CHECK_ROWS] for k, v in batch.items()}
                    if not self._check(few, hidden[:SELF_CHECK_ROWS], mask[:SELF_CHECK_ROWS]):
                        self._off(f"self-check failed: cached forward differs from the model's ({self.self_check})")
                        return
                    self._allocate(hidden.shape[-1])
                    if not self.on:
                        return
                counts = mask.sum(1).tolist()
                if [s["counts"][i] for i in idx] != counts:
                    raise RuntimeError(f"activation cache: split {name}: real positions per row {counts[:4]}... differ "
                                       f"from the task's lengths {[s['counts'][i] for i in idx][:4]}...")
                self._store(s, idx, hidden[mask.bool()].float().cpu())
            s["built"] = True
        finally:
            self.model.train(was_training)
        if self._signature is None:
            self._sign()
        self.build_seconds[name] = round(self.build_seconds.get(name, 0.0) + time.perf_counter() - t0, 3)

    # ------------------------------------------------------------ the run
    def arm(self, name: str, indices: list) -> None:
        self.armed = (name, indices) if self.on and self.k is not None and self.splits[name]["built"] else None

    def close(self) -> None:
        """Remove the hooks and the memory-mapped file."""
        for h in self._handles:
            h.remove()
        self._handles = []
        self.data = None
        if self.file and os.path.exists(self.file):
            os.remove(self.file)

    def record(self) -> dict:
        """run.json ``activation_cache``."""
        rec = {"on": self.on, "why": self.plan.why, "k": self.k}
        if self.prefix_fn is not None:
            rec["k_changes"] = self.k_changes  # k over the run: {k, from, at_train_batch, seconds}
            if self.on and self.k is None:
                rec.update(on=False, why=self.plan.why + " (it froze no layer for good: never used)")
        if self.on and self.k is not None:
            rec.update({"storage": self.storage, "mb": self.mb, "prefix_mode": PREFIX_MODE,
                        "build_seconds": self.build_seconds, "self_check": self.self_check})
            if self.file:
                rec["file"] = f"{self.file} (deleted at the end of the run)"
        return rec


class CachedLoader:
    """Iterates a DataLoader of (batch, indices); arms the cache with each batch's indices.
    Builds the split's cache on first use. Off: yields the batches untouched."""

    def __init__(self, cache: ActivationCache, name: str, base, indexed: bool = True):
        self.cache, self.name, self.base, self.indexed = cache, name, base, indexed

    def __len__(self):
        return len(self.base)

    def __iter__(self):
        if not self.indexed:  # the cache is off for this run: the plain loader
            yield from self.base
            return
        self.cache.sync()
        self.cache.verify()
        self.cache.build(self.name)
        train = self.name == "train"
        for batch, indices in self.base:
            if train:
                self.cache.sync()  # a dynamic method may have frozen more layers at the last step
                self.cache.build(self.name)
                self.cache.batches_seen += 1
            self.cache.arm(self.name, indices)
            yield batch
        self.cache.armed = None
