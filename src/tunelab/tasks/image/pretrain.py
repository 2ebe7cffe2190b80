"""``tunelab pretrain dino``: self-supervised DINO pretraining of a ViT (Caron et al. 2021), sized for
a CPU, producing a Hugging Face model folder that ``tunelab run --model DIR`` accepts.

DINO in short: a student and a teacher network (the same ViT + a projection head); the teacher is
an exponential moving average (EMA) of the student and gets no gradient. Each image is cut into
2 global crops and a few small local crops (multi-crop); the teacher sees the global crops, the
student all of them, and the student learns to predict the teacher's output distribution for every
other crop (cross-entropy). Collapse is avoided by *centering* the teacher outputs (subtracting a
running mean) and *sharpening* them (a low teacher temperature).

Adapted to 28 x 28 images on a CPU: global crops keep 40-100 % of the area at 28 px, local crops
10-40 % at 14 px (2 x 2 patches of 7 px; for other models ~0.43 x the input size, DINO's 96/224),
a small head (512 hidden, 128 bottleneck, 256 prototypes), 1,200 steps of 64 images. Schedules as
in DINO, over the run's steps: linear lr warm-up (10 %) then cosine decay from 2e-4, weight decay
0.04 -> 0.4, teacher momentum 0.99 -> 1 (DINO: 0.996; far fewer steps here), the head's last
layer frozen for the first 5 %, gradients clipped at 3. The teacher temperature stays at 0.04
(DINO warms it up to 0.07): measured on vit-tiny / Fashion-MNIST (k-NN on 3,000 / 1,000 images,
start 0.582), lr 5e-4 + 1,024 prototypes + 0.04 -> 0.07 drifted to a uniform teacher (loss ->
log 1024, k-NN 0.601 -> 0.603 after 300 steps), lr 1e-3 / 256 / 0.04 fell (0.550 at 200), lr 5e-4 /
1,024 / 0.04 / momentum 0.996 stayed flat (0.611 at 600 of 1,200); lr 2e-4 / 256 / 0.04 rose
(0.605, 0.614, 0.634 at steps 200, 400, 600 of 1,200).

The images come from an image task's train (+ validation) split; **labels are never read for
training**. They are read only to measure progress: weighted k-NN accuracy (k = 20, cosine, the
teacher's [CLS] features; scikit-learn) of a labelled train subset as the memory bank against the
test split, at step 0 and a few points during training (``pretrain.json``; it should rise).

Output folder: the teacher backbone (``ViTModel``: config.json + model.safetensors), the image
processor, ``dino_head.safetensors`` (the teacher's projection head; self-training reuses it) and
``pretrain.json`` (options, data, k-NN curve, loss, time).
"""

import math
import os
import sys
import time

import torch

from ...models.aliases import register_alias
from .. import PRETRAINING
from .dino import DINOHead, DINOLoss, cosine, dino_step, knn_accuracy, local_crop_size

KIND = "dino"
HELP = "DINO self-supervised pretraining of a ViT on unlabelled images -> a model folder for --model"


# ------------------------------------------------------------------ training

def pretrain_dino(task, model_name: str, data_dir, out_dir: str, steps: int = 1200, batch_size: int = 64,
                  lr: float = 2e-4, local_crops: int = 4, out_dim: int = 256, momentum: float = 0.99,
                  knn_points: int = 4, knn_bank: int = 5000, knn_queries: int = 2000, seed: int = 0,
                  teacher_temp: float = 0.04,
                  max_images: int | None = None, device: str = "cpu", log=print) -> dict:
    """Pretrain ``model_name`` on the images of ``task`` (a configured image task) and save the
    teacher to ``out_dir``. Returns the pretrain.json record."""
    import copy
    import random

    from safetensors.torch import save_file
    from transformers import AutoModel

    from ...models.loading import _quiet_transformers, resolve_model
    from ...results.record import versions, write_json_atomic
    from .task import load_image_processor, processor_size
    from ...train.loop import build_optimizer, seed_everything

    _quiet_transformers()
    seed_everything(seed)
    dev = torch.device(device)
    train = task.load("train", data_dir)
    pool = list(train.examples) + list(task.load("validation", data_dir).examples)  # labels unused
    if max_images and max_images < len(pool):
        pool = [pool[i] for i in sorted(random.Random(seed).sample(range(len(pool)), max_images))]
    query_split = task.load(task.eval_splits[-1], data_dir)  # test when there is one

    source = resolve_model(model_name)
    processor = load_image_processor(source)
    student = AutoModel.from_pretrained(source).to(dev)
    cfg = student.config
    size, patch = processor_size(processor), cfg.patch_size
    if getattr(cfg, "image_size", size) != size:
        raise ValueError(f"processor size {size} != model image_size {cfg.image_size}")
    lsize = local_crop_size(size, patch)
    head = DINOHead(cfg.hidden_size, out_dim).to(dev)
    teacher, teacher_head = copy.deepcopy(student).eval(), copy.deepcopy(head).eval()
    for p in list(teacher.parameters()) + list(teacher_head.parameters()):
        p.requires_grad_(False)
    loss_fn = DINOLoss(out_dim).to(dev)
    aug = task.augmenter(processor)

    loader = task.loader(pool, processor, batch_size, shuffle=True, seed=seed)
    bank_ex = [train.examples[i] for i in sorted(random.Random(seed + 1).sample(range(len(train.examples)),
                                                                                  min(knn_bank, len(train.examples))))]
    q_ex = query_split.examples
    if knn_queries < len(q_ex):
        q_ex = [q_ex[i] for i in sorted(random.Random(seed + 2).sample(range(len(q_ex)), knn_queries))]
    bank_loader, query_loader = task.loader(bank_ex, processor, 256), task.loader(q_ex, processor, 256)

    named = [("backbone." + n, p) for n, p in student.named_parameters()] + \
            [("head." + n, p) for n, p in head.named_parameters()]
    opt = build_optimizer(named, lr, 0.04)
    warmup = max(1, steps // 10)
    freeze_last = max(1, steps // 20)
    knn_at = sorted({0, steps} | {round(steps * i / knn_points) for i in range(1, knn_points)})
    history, losses = [], []
    t_start = time.perf_counter()
    train_seconds = 0.0

    def monitor(step):
        t0 = time.perf_counter()
        acc = knn_accuracy(teacher, bank_loader, query_loader, dev)
        rec = {"step": step, "images_seen": step * batch_size, "knn_accuracy": round(acc, 4),
               "loss": round(sum(losses) / len(losses), 4) if losses else None,
               "train_seconds": round(train_seconds, 1), "knn_seconds": round(time.perf_counter() - t0, 1)}
        history.append(rec)
        losses.clear()
        log(f"step {step}/{steps}: k-NN accuracy {acc:.4f}" + (f", loss {rec['loss']:.4f}" if rec["loss"] else ""))

    monitor(0)
    from tqdm.auto import tqdm

    bar = tqdm(total=steps, desc="pretrain dino", unit="step", dynamic_ncols=True, mininterval=1.0)
    if log is print:  # keep the progress bar intact
        log = bar.write
    step = 0
    while step < steps:
        for batch in loader:
            if step >= steps:
                break
            t0 = time.perf_counter()
            x = batch["pixel_values"].to(dev)
            lr_now = lr * (step + 1) / warmup if step < warmup else cosine(step - warmup, steps - warmup, lr, 1e-6)
            for g in opt.param_groups:
                g["lr"] = lr_now
                if g["weight_decay"] > 0:
                    g["weight_decay"] = cosine(step, steps, 0.04, 0.4)
            t_temp = 0.04 + (teacher_temp - 0.04) * min(1.0, step / max(1, 0.3 * steps))
            loss = dino_step(student, head, teacher, teacher_head, loss_fn, opt, x, aug, local_crops, lsize, t_temp,
                             cosine(step, steps, momentum, 1.0), freeze_last=step < freeze_last)
            if not math.isfinite(loss):
                raise FloatingPointError(f"DINO loss is {loss} at step {step}")
            losses.append(loss)
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            train_seconds += time.perf_counter() - t0
            if step in knn_at:
                monitor(step)

    bar.close()
    os.makedirs(out_dir, exist_ok=True)
    teacher.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    save_file({k: v.contiguous() for k, v in teacher_head.state_dict().items()},
              os.path.join(out_dir, "dino_head.safetensors"))
    record = {
        "kind": "dino", "model": model_name, "model_source": source, "task": task.name,
        "options": {"steps": steps, "batch_size": batch_size, "lr": lr, "local_crops": local_crops,
                    "global_crop": [size, [0.4, 1.0]], "local_crop": [lsize, [0.1, 0.4]], "out_dim": out_dim,
                    "teacher_momentum": [momentum, 1.0], "teacher_temp": [0.04, teacher_temp], "student_temp": 0.1,
                    "weight_decay": [0.04, 0.4], "seed": seed, "device": str(dev)},
        "data": {"images": len(pool), "labels_used_for_training": False, "files": {**train.files},
                 "knn_bank": len(bank_ex), "knn_queries": len(q_ex), "knn_query_split": query_split.name},
        "knn": {"k": 20, "metric": "cosine, 1/distance weights", "features": "teacher [CLS], L2-normalised",
                "history": history},
        "time": {"train_seconds": round(train_seconds, 1), "wall_seconds": round(time.perf_counter() - t_start, 1)},
        "versions": versions(),
    }
    write_json_atomic(os.path.join(out_dir, "pretrain.json"), record)
    return record


# ------------------------------------------------------------------ the vit-tiny-dino alias

CACHED_STEPS = 1200  # what the cached ``vit-tiny-dino`` alias is pretrained with (the CLI defaults otherwise)


def cached_dino_path(log=None) -> str:
    """Folder of ``vit-tiny`` pretrained with DINO (default options, ``CACHED_STEPS`` steps, seed 0)
    on the Fashion-MNIST train images found locally (tasks/image.py ``IdxTask.find_folder``; labels
    unused); built once into ``$TUNELAB_CACHE/vit-tiny-dino/<key>/`` (minutes on a CPU)."""
    import hashlib
    import sys

    from ...cache import atomic_dir, cache_dir
    from ...config import RunConfig
    from ...errors import UserError
    from .vit import vit_tiny_path
    from .. import get_task
    from ..base import sha256_file
    from .task import IDX_FILES, IDX_VALIDATION_FRACTION

    task = get_task("fashion-mnist").configure(RunConfig(task="fashion-mnist", lr=5e-4,
                                                         eval_fraction=IDX_VALIDATION_FRACTION))
    folder = os.environ.get("TUNELAB_DATA_DIR") or None
    folder = task.find_folder(folder) if folder else task.find_folder(None)
    if folder is None:
        raise UserError("model alias 'vit-tiny-dino' pretrains on the Fashion-MNIST IDX files: none found in "
                        "./fashion-mnist, data/fashion-mnist, ../shared/data/images/fashion-mnist or $TUNELAB_DATA_DIR")
    images = task._file(folder, IDX_FILES["train"][0])
    key = hashlib.sha256(f"{os.path.basename(vit_tiny_path())}|{sha256_file(images)}|{CACHED_STEPS}|seed0".encode())
    final = cache_dir("vit-tiny-dino", key.hexdigest()[:12])
    if os.path.isfile(os.path.join(final, "config.json")):
        return final
    say = log or (lambda m: print(f"vit-tiny-dino: {m}", file=sys.stderr, flush=True))
    say(f"pretraining vit-tiny with DINO ({CACHED_STEPS} steps) on {folder}, once; cached in {final}")
    with atomic_dir(final) as tmp:
        pretrain_dino(task, "vit-tiny", folder, tmp, steps=CACHED_STEPS, log=say)
    return final


# ------------------------------------------------------------------ command line

def add_arguments(p) -> None:
    from ...config import add_option  # tunelab run's options: same flags, types and range checks

    add_option(p, "model", default="vit-tiny", help="ViT to pretrain: alias or folder (default vit-tiny)")
    add_option(p, "task", default=None, help="image task whose train images to use (default: fashion-mnist if "
                                             "--data-dir holds IDX files, else image-folder)")
    add_option(p, "data_dir", default=None, help="image data folder (IDX files or ImageFolder)")
    add_option(p, "output_dir", required=True, help="where the pretrained model folder goes")
    add_option(p, "overwrite", help="replace a non-empty output folder")
    p.add_argument("--steps", type=int, default=1200, help="optimizer steps (default 1200: ~5-10 min on a free CPU core)")
    add_option(p, "batch_size", default=64, help="images per step (default 64)")
    add_option(p, "lr", default=2e-4, help="peak learning rate (default 2e-4; DINO: 5e-4 x batch/256)")
    p.add_argument("--local-crops", type=int, default=4, help="local crops per image (default 4)")
    p.add_argument("--out-dim", type=int, default=256, help="prototypes of the projection head (default 256)")
    p.add_argument("--momentum", type=float, default=0.99, help="initial teacher EMA momentum (cosine to 1)")
    p.add_argument("--teacher-temp", type=float, default=0.04, help="teacher temperature after a linear warm-up from "
                                                                     "0.04 over the first 30 %% of steps (default 0.04: "
                                                                     "no warm-up; DINO: 0.07)")
    p.add_argument("--knn-points", type=int, default=4, help="k-NN evaluations during training besides step 0")
    p.add_argument("--knn-bank", type=int, default=5000, help="labelled train images in the k-NN memory bank")
    p.add_argument("--knn-queries", type=int, default=2000, help="test images scored by k-NN")
    p.add_argument("--max-images", type=int, default=None, help="seeded subset of the unlabelled images")
    add_option(p, "seed")
    add_option(p, "threads")
    add_option(p, "device")


def main(ns) -> int:
    from ...config import RunConfig
    from ...errors import UserError
    from ...results.record import check_output_dir
    from ...train.resources import resolve_device
    from .. import get_task
    from .task import IDX_VALIDATION_FRACTION, ImageTask

    for name in ("steps", "knn_bank", "knn_queries", "knn_points"):  # the shared options are checked by argparse
        if getattr(ns, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} {getattr(ns, name)}: must be >= 1")
    if not 0 <= ns.momentum < 1:
        raise UserError(f"--momentum {ns.momentum}: must be in [0, 1)")
    if ns.data_dir is not None and not os.path.isdir(ns.data_dir):
        raise UserError(f"--data-dir {ns.data_dir}: no such folder")
    name = ns.task or _guess_task(ns.data_dir)
    task = get_task(name)
    if not isinstance(task, ImageTask):
        raise UserError(f"--task {name}: DINO pretraining needs an image task (fashion-mnist, mnist, image-folder)")
    check_output_dir(ns.output_dir, ns.overwrite)
    if ns.threads:
        torch.set_num_threads(ns.threads)
    # the task reads its data as in a run (same validation carve); DINO uses train + validation images
    task = task.configure(RunConfig(task=name, data_dir=ns.data_dir, seed=ns.seed, lr=ns.lr,
                                    eval_fraction=IDX_VALIDATION_FRACTION))
    if name == "image-folder" and not ns.data_dir:
        raise UserError("--task image-folder needs --data-dir")
    rec = pretrain_dino(task, ns.model, ns.data_dir, ns.output_dir, steps=ns.steps, batch_size=ns.batch_size,
                        lr=ns.lr, local_crops=ns.local_crops, out_dim=ns.out_dim, momentum=ns.momentum,
                        knn_points=ns.knn_points, knn_bank=ns.knn_bank, knn_queries=ns.knn_queries, seed=ns.seed,
                        max_images=ns.max_images, teacher_temp=ns.teacher_temp, device=str(resolve_device(ns.device)))
    curve = " -> ".join(f"{h['knn_accuracy']:.4f}" for h in rec["knn"]["history"])
    print(f"pretrained {ns.model} with DINO on {rec['data']['images']} images in {rec['time']['train_seconds']:.0f} s; "
          f"k-NN accuracy {curve} -> {ns.output_dir} (use --model {ns.output_dir})")
    return 0


def _guess_task(data_dir) -> str:
    from .task import IDX_FILES

    if data_dir:
        for folder in (data_dir, os.path.join(data_dir, "fashion-mnist")):
            if any(os.path.isfile(os.path.join(folder, IDX_FILES["train"][0] + e)) for e in ("", ".gz")):
                return "fashion-mnist"
        return "image-folder"
    return "fashion-mnist"


register_alias("vit-tiny-dino", "vit-tiny after tunelab pretrain dino (default options) on the Fashion-MNIST train "
               "images (labels unused), built once (minutes on a CPU) and cached", cached_dino_path)
PRETRAINING.add(KIND, sys.modules[__name__])
