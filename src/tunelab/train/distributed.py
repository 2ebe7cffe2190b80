"""Data-parallel runs: ``torchrun --nproc_per_node N -m tunelab run …`` and ``accelerate launch
--multi_gpu --num_processes N -m tunelab run …`` (both set WORLD_SIZE / RANK / LOCAL_RANK /
MASTER_ADDR; without GPUs, accelerate needs ``--multi_gpu`` to pick its torchrun launcher, else it
starts one process, which ``check_launch`` refuses).

What a data-parallel run means here (docs/architecture.md, "Data-parallel runs"):

- ``process_group``: the CLI opens the process group when a launcher started it (gloo on CPU, NCCL
  on CUDA, one GPU per LOCAL_RANK) and destroys it at the end.
- Every rank loads the same seeded subsample and builds the same list of global batches (the same
  seeded generator, length grouping included); ``--batch-size`` is the **global** batch: rank r
  takes examples r, r+W, r+2W ... of each one (``ShardedBatches``). A global batch with fewer
  examples than ranks (only the epoch's last, short one can be) is skipped, so the step count is
  the 1-process count (minus that batch, then). So a run with N processes sees the same batches
  as a 1-process run with the same --batch-size.
- ``GradSync``: each rank's loss is weighted by its share of the global batch (one all-reduce of
  [loss x n, n] per micro-batch), so averaging the ranks' gradients gives exactly the global
  batch's mean-loss gradient, and the logged loss is the global batch's. Static methods train in
  ``DistributedDataParallel`` (bucketed all-reduce overlapping the backward pass; ``no_sync`` on
  the micro-batches of ``--grad-accum``). Dynamic methods (``changes_trainable_set``: ALF, LISA,
  AutoFreeze, BAdam) change ``requires_grad`` between steps, which DDP's reducer (built once over
  the parameters that required grad at wrap time) does not follow: their gradients are all-reduced
  after the backward pass instead, over exactly the parameters that have a gradient at that step
  (the same set on every rank), and the method's gradient hooks then run on the reduced
  gradients (``after_grad_sync``), so probe statistics are the global batch's.
- Evaluation is sharded the same way (rank r predicts rows r, r+W, ...); ``gather_shards`` puts
  every prediction back in order on every rank, once; every rank computes the same metrics from
  them, so early stopping decides the same everywhere.
- Rank 0 alone writes the output folder (``on_main`` for its checks, a barrier after it is made).
"""

import hashlib
import json
import math
import os
from contextlib import contextmanager, nullcontext

import torch
import torch.distributed as dist

from ..errors import UserError


# ------------------------------------------------------------------ who am I
def launched() -> bool:
    """Started by torchrun / accelerate launch with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Rank 0 (or not distributed): the only process that writes the output folder and prints."""
    return rank() == 0


def launcher_rank() -> int:
    """RANK from the launcher's environment (usable before the process group exists)."""
    return int(os.environ.get("RANK", "0"))


# ------------------------------------------------------------------ process group
def backend_for(device_name: str) -> str:
    cuda = device_name == "cuda" or (device_name == "auto" and torch.cuda.is_available())
    return "nccl" if cuda else "gloo"


def check_launch() -> None:
    """Refuse launches that would silently run one process, or ranks we would not see."""
    env = os.environ
    mpi = int(env.get("OMPI_COMM_WORLD_SIZE") or env.get("PMI_SIZE") or 1)
    if mpi > 1 and not launched():
        raise UserError("mpirun launches are not supported: use torchrun --nproc_per_node N or "
                        "accelerate launch --multi_gpu --num_processes N (gloo on CPU)")
    if "ACCELERATE_MIXED_PRECISION" in env and "MASTER_ADDR" in env and "WORLD_SIZE" not in env:
        raise UserError("accelerate launch started one process although several were asked for (its simple launcher: "
                        "no GPU, no --multi_gpu): on CPU use accelerate launch --multi_gpu --num_processes N "
                        "(accelerate's torchrun launcher; gloo on CPU) or torchrun --nproc_per_node N")


@contextmanager
def process_group(device_name: str):
    """Open the process group when a launcher started this process (else do nothing)."""
    check_launch()
    if not launched() or (dist.is_available() and dist.is_initialized()):
        yield
        return
    backend = backend_for(device_name)
    if backend == "nccl":
        per_node = int(os.environ.get("LOCAL_WORLD_SIZE", local_rank() + 1))
        if per_node > torch.cuda.device_count():
            raise UserError(f"--device {device_name}: {per_node} processes on this node but "
                            f"{torch.cuda.device_count()} CUDA device(s): start at most one process per GPU")
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend, device_id=torch.device("cuda", local_rank()) if backend == "nccl" else None)
    try:
        yield
    finally:
        dist.destroy_process_group()


def local_device(device: torch.device) -> torch.device:
    """A CUDA device becomes this process's GPU (LOCAL_RANK) in a distributed run."""
    if is_distributed() and device.type == "cuda":
        return torch.device("cuda", local_rank())
    return device


def check_task(task) -> None:
    """Data-parallel runs support the tasks that say so (``Task.data_parallel``: trained by tunelab's loop
    with SupervisedTask's batching and evaluation); the others are refused with one line (before
    anything is loaded)."""
    if not is_distributed() or task.data_parallel:
        return
    raise UserError(f"--task {task.name}: data-parallel runs (torchrun / accelerate launch) support only tasks "
                    f"trained by tunelab's loop with SupervisedTask's batching; {task.name} ({task.family}) "
                    f"{task.data_parallel_why}: run it in one process")


# ------------------------------------------------------------------ collectives (no-ops in one process)
def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_sum(x):
    """Sum of a number (returned) or a tensor (in place) over the ranks."""
    if not is_distributed():
        return x
    if torch.is_tensor(x):
        dist.all_reduce(x)
        return x
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    t = torch.tensor([float(x)], dtype=torch.float64, device=device)  # NCCL reduces only CUDA tensors
    dist.all_reduce(t)
    return type(x)(t.item()) if isinstance(x, int) else t.item()


def all_reduce_mean(x):
    """Mean of a number (returned) or a tensor (in place) over the ranks (gloo has no AVG: sum / W)."""
    if not is_distributed():
        return x
    if torch.is_tensor(x):
        dist.all_reduce(x)
        return x.div_(world_size())
    return all_reduce_sum(float(x)) / world_size()


def all_reduce_mean_(tensors: list, bucket_mb: int = 64) -> None:
    """Average a list of tensors over the ranks in place, a few flat buckets at a time (same list,
    same order, same shapes on every rank)."""
    if not is_distributed() or not tensors:
        return
    limit = bucket_mb * 2**20
    bucket, size = [], 0

    def flush():
        flat = torch.cat([t.reshape(-1) for t in bucket])
        dist.all_reduce(flat)
        flat.div_(world_size())
        offset = 0
        for t in bucket:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()

    for t in tensors:
        if bucket and (t.dtype != bucket[0].dtype or t.device != bucket[0].device or size >= limit):
            flush()
            bucket, size = [], 0
        bucket.append(t)
        size += t.numel() * t.element_size()
    if bucket:
        flush()


def gather_objects(obj) -> list:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    if not is_distributed():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, src: int = 0):
    """Rank ``src``'s ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def on_main(fn, *args) -> None:
    """Run ``fn`` on rank 0 only (the output-folder checks); a UserError it raises is raised on
    every rank with the same line; doubles as a barrier."""
    if not is_distributed():
        fn(*args)
        return
    err = None
    if is_main():
        try:
            fn(*args)
        except UserError as e:
            err = str(e)
    err = broadcast_object(err)
    if err is not None:
        raise UserError(err)


# ------------------------------------------------------------------ data
class ShardedBatches:
    """This rank's share of every global batch of ``batches`` (a batch sampler yielding index lists:
    ``LengthGroupedBatches`` or torch's ``BatchSampler``): examples rank, rank + W, ... of each.
    Every rank iterates the same seeded sampler, so all see the same global batches. A global batch
    with fewer than W examples is skipped (only the last, short batch of an epoch can be: with
    ``n % batch_size`` examples). The inner sampler is ``batch_sampler``, where
    ``batching.set_epoch`` finds its generator to set each epoch's order."""

    def __init__(self, batches, n: int, batch_size: int, rank_: int, world: int):
        self.batch_sampler, self.n, self.batch_size, self.rank, self.world = batches, n, batch_size, rank_, world

    @property
    def dropped_per_epoch(self) -> int:
        rest = self.n % self.batch_size
        return rest if 0 < rest < self.world else 0

    def __len__(self) -> int:
        return len(self.batch_sampler) - (1 if self.dropped_per_epoch else 0)

    def __iter__(self):
        for b in self.batch_sampler:
            if len(b) >= self.world:
                yield list(b)[self.rank::self.world]


def shard_train_loader(loader, n: int, batch_size: int):
    """The train DataLoader for this rank (the loader itself in one process)."""
    if not is_distributed():
        return loader
    sampler = ShardedBatches(loader.batch_sampler, n, batch_size, rank(), world_size())
    if sampler.dropped_per_epoch and is_main():
        from tqdm.auto import tqdm

        tqdm.write(f"data-parallel: the last global batch of each epoch has {sampler.dropped_per_epoch} example(s), "
                   f"fewer than the {world_size()} processes: it is skipped")
    # the loader's own generator too: iterating a DataLoader draws its base seed from it before the
    # sampler draws the order (shuffle=True, generator=g), so the shards see the 1-process order
    return torch.utils.data.DataLoader(loader.dataset, batch_sampler=sampler, collate_fn=loader.collate_fn,
                                       pin_memory=loader.pin_memory, generator=loader.generator)


def shard(rows: list) -> list:
    """This rank's evaluation rows: rows rank, rank + W, ..."""
    return rows[rank()::world_size()] if is_distributed() else rows


def shard_rows(t):
    """This rank's rows of a global batch tensor: rows rank, rank + W, ... (all of it in one process)."""
    return t[rank()::world_size()] if is_distributed() else t


def gather_shards(values: list) -> list:
    """Inverse of ``shard`` over all ranks: every value once, in the original order, on every rank."""
    if not is_distributed():
        return values
    parts = gather_objects(list(values))
    out = [None] * sum(len(p) for p in parts)
    for r, part in enumerate(parts):
        out[r::len(parts)] = part
    return out


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        parts = [torch.empty_like(x) for _ in range(world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.rank = rank()
        return torch.stack(parts)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad)  # every rank's loss reaches this rank's rows (gloo has no reduce_scatter)
        return grad[ctx.rank]


def all_gather_with_grad(x):
    """[W, *x.shape]: every rank's ``x`` (same shape on every rank), differentiable: the gradient that
    reaches this rank's ``x`` is the sum over the ranks' losses. With ``GradSync`` (each rank's loss
    weighed by its share, gradients averaged) a loss computed identically on every rank from the gathered
    rows gets exactly its 1-process gradient (docrep's in-batch negatives over the global batch)."""
    if not is_distributed():
        return x.unsqueeze(0)
    return _GatherWithGrad.apply(x)


# ------------------------------------------------------------------ training
class GradSync:
    """How the training loop's gradients become the global batch's on every rank (module doc).
    In one process every method is a pass-through."""

    def __init__(self, model, method, device, extra=()):
        self.on = is_distributed()
        self.model = model  # what the loop calls for training (the DDP wrapper when there is one)
        self.main = is_main()
        self.manual = False
        self.method = method
        self.extra = list(extra)  # parameters outside the model (a projection head): averaged by hand
        if not self.on:
            return
        self.world = world_size()
        with torch.no_grad():
            for t in self.extra:
                dist.broadcast(t.data, 0)
        if getattr(method, "changes_trainable_set", False):
            self.manual = True
            with torch.no_grad():  # identical already (same seed, same files); made certain
                for t in list(model.parameters()) + list(model.buffers()):
                    dist.broadcast(t.data, 0)
        else:
            from torch.nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def accumulating(self, skip_sync: bool):
        """DDP: no all-reduce in the backward passes of the micro-batches before a step's last."""
        if self.on and not self.manual and skip_sync:
            return self.model.no_sync()
        return nullcontext()

    def weigh(self, loss, n: int):
        """(loss to backpropagate, the global batch's mean loss, detached)."""
        if not self.on:
            return loss, loss.detach()
        stats = torch.stack([loss.detach().float() * n, torch.full((), float(n), device=loss.device)])
        dist.all_reduce(stats)
        return loss * (n * self.world / stats[1]), stats[0] / stats[1]

    def reduce_grads(self, optimizer) -> None:
        """Average by hand what DDP does not: the parameters outside the model (``extra``), and for a
        dynamic method every gradient, then let the method see them."""
        if not self.manual:
            if self.on and self.extra:
                all_reduce_mean_([p.grad for p in self.extra if p.grad is not None])
            return
        all_reduce_mean_([p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None])
        hook = getattr(self.method, "after_grad_sync", None)
        if hook:
            hook()

    def total(self, n: int) -> int:
        return all_reduce_sum(int(n)) if self.on else n


def sync_mode(method) -> str:
    if getattr(method, "changes_trainable_set", False):
        return ("all-reduce of the gradients after the backward pass "
                "(dynamic method: requires_grad changes between steps)")
    return "DistributedDataParallel"


def describe(cfg, state, method, n_train: int) -> dict:
    """run.json ``distributed`` (collective: every rank calls it): world size, backend, how batches
    and gradients are shared, and each rank's time, memory and a hash of its method record
    (a dynamic method's ``layers`` timeline, the method's details: AdaLoRA's reallocated ranks), so a
    divergence between ranks shows."""
    if not is_distributed():
        return {}
    from .resources import peak_cuda_mb, peak_rss_mb

    extras = json.dumps({**method.record_extras(), "method_details": method.describe()}, sort_keys=True, default=str)
    mine = {"rank": rank(), "host": os.uname().nodename, "train_seconds": round(state.train_seconds, 3),
            "train_cpu_seconds": round(state.train_cpu_seconds, 3), "peak_rss_mb": peak_rss_mb(),
            "peak_cuda_mb": peak_cuda_mb(), "method_record_sha256": hashlib.sha256(extras.encode()).hexdigest()}
    ranks = gather_objects(mine)
    w = world_size()
    return {"distributed": {
        "world_size": w, "backend": dist.get_backend(),
        "global_batch_size": cfg.batch_size, "per_rank_batch_size": math.ceil(cfg.batch_size / w),
        "batch": f"--batch-size is the global batch: rank r takes examples r, r+{w}, ... of each; losses are weighted "
                 f"by each rank's share, so the averaged gradient is the global batch's",
        "skipped_examples_per_epoch": ShardedBatches(None, n_train, cfg.batch_size, 0, w).dropped_per_epoch,
        "gradient_sync": sync_mode(method),
        "evaluation": "sharded across ranks, predictions gathered in order; metrics from all of them",
        "activation_cache": "off (per-process replay of a sharded loader is not supported)",
        "method_record_identical": len({r["method_record_sha256"] for r in ranks}) == 1,
        "per_rank": ranks,
    }}
