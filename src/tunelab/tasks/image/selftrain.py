"""DISTL-style self-training for image tasks (``--semi-supervised``; Park et al. 2022, "Self-evolving
vision transformer for chest X-ray diagnosis through knowledge distillation").

1. **Supervised phase**: the model is fine-tuned on the labelled subset (``--labelled-per-class``)
   exactly as without ``--semi-supervised`` (the same loop, seed and batches: its result *is* the
   supervised-only model; run.json records it as round 0).
2. **Rounds** (``--self-train-rounds``): the teacher starts as a copy of that model and follows the
   student by EMA after every step (``--ema-momentum``). Round r uses the first
   r x ``--unlabelled-per-round`` images of a seeded shuffle of the unlabelled pool (each round adds
   more unlabelled data). Every step takes a batch of unlabelled and a batch of labelled images:

   - the teacher sees two *weak* views (crop + flip) of each unlabelled image; its softmax at
     temperature 0.5 (sharpened), averaged over the two views, is the soft pseudo-label;
   - the student sees two *strong* views (crop, flip, jitter, blur, solarize, erasing) and is
     trained towards the pseudo-label (soft cross-entropy: the **distillation** loss,
     ``--distill-weight``; with ``--pseudo-threshold`` only images whose pseudo-label is that
     confident, FixMatch-style; the share distilled is recorded per round);
   - **self-supervised agreement** (``--ssl-weight``): a DINO projection head on the [CLS]
     features (the classifier's input); the student's outputs on its strong views and on two small
     local crops must match the teacher's centred, sharpened outputs on the weak views (DINO loss,
     pretrain/dino.py). The head starts from ``dino_head.safetensors`` when the model folder came
     from ``tunelab pretrain dino``, else at random;
   - the labelled batch keeps the usual supervised loss (``--augment`` views), so the labels keep
     correcting the pseudo-labels.

   The pool's true labels are never used for training; they measure the teacher's pseudo-label
   accuracy at the start of every round (argmax on the un-augmented image).

After each round the student (the model that is saved) is evaluated on the validation and the test
split, the teacher on the validation split (and on test after the last round): run.json
``semi_supervised.rounds``.
Training: both phases run in tunelab's one loop (``train.loop.train`` through ``Task.train_loop``),
so the rounds get ``--precision``, ``--grad-accum``, the health checks and the epoch tracker (the
best epoch over both phases). The rounds are one loop epoch each (``RoundBatches``), the combined
loss above is the loop's ``loss_fn``, the EMA teacher update its per-step ``on_step`` callback.
Optimizer: the shared AdamW builder at ``--self-train-lr`` (default ``--lr``; the head's lr scaled
alike) over the method's parameters and the projection head, a linear warm-up / decay over all
rounds' steps; the method's hooks (``on_step``...) run as in the supervised loop, so every method
(full, lora, selective, alf...) self-trains the same parameters it fine-tunes. The round's steps
count from 0 for the method's hooks (a new loop run); run.json ``time`` adds both phases.
"""

import copy
import math
import os
import random
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..base import FitSummary

# Rounds at the supervised lr by default. vit-tiny, 100 labels / class, lr 1e-3, 2 rounds x 2,000
# (seed 0, test accuracy after round 2; round 0: 0.7234): rounds at 1e-3 0.7314, 3e-4 0.7173,
# 1e-4 0.6990. Round 1 dips on validation at every lr (0.749 -> 0.668 / 0.726 / 0.700): the student
# adapts to the strong views and the new losses; more steps at a higher lr recover and pass it.
SELF_TRAIN_LR_FACTOR = 1.0
PSEUDO_TEMPERATURE = 0.5  # sharpening of the teacher's soft pseudo-labels
LOCAL_CROPS = 2  # small crops per unlabelled image for the agreement loss
SSL_TEACHER_TEMP = 0.04  # DINO's teacher temperature (its starting value)
OUT_DIM = 1024  # prototypes of a new (random) projection head


def _classifier_input(model) -> dict:
    """Capture the classifier's input (the [CLS] feature) of every forward pass in ``store["x"]``."""
    store = {}
    mod = next(m for n, m in model.named_modules() if n.split(".")[-1] == "classifier")
    store["hook"] = mod.register_forward_pre_hook(lambda _m, args: store.__setitem__("x", args[0]))
    return store


def _projection_head(model, source: str, device):
    from safetensors.torch import load_file

    from .dino import DINOHead

    path = os.path.join(source, "dino_head.safetensors") if os.path.isdir(source) else ""
    if path and os.path.isfile(path):  # the pretraining's head, with its sizes
        state = load_file(path)
        out_dim, bottleneck = state["last"].shape
        head = DINOHead(model.config.hidden_size, out_dim, state["mlp.0.weight"].shape[0], bottleneck)
        head.load_state_dict(state)
        return head.to(device), "dino_head.safetensors of the model folder"
    return DINOHead(model.config.hidden_size, OUT_DIM).to(device), "random"


@torch.no_grad()
def _teacher_predictions(teacher, loader, device) -> tuple:
    teacher.eval()
    preds, conf, refs = [], [], []
    for batch in loader:
        logits = teacher(pixel_values=batch["pixel_values"].to(device)).logits.float()
        probs = F.softmax(logits / PSEUDO_TEMPERATURE, -1)
        c, p = probs.max(-1)
        preds.append(p.cpu())
        conf.append(c.cpu())
        refs.append(batch["labels"])
    return torch.cat(preds).numpy(), torch.cat(conf).numpy(), torch.cat(refs).numpy()


def _cycle(loader):
    while True:
        yield from loader


class RoundBatches:
    """The rounds' training data for ``train.loop.train``: one loop epoch per round (``epoch_lengths``:
    the rounds' steps). Each step's batch is an unlabelled batch (``unlabelled_pixel_values``; its
    labels never reach training) beside a labelled one (``pixel_values``, ``labels``). Iterating a
    round first scores the teacher's pseudo-labels on the round's unlabelled images (``pseudo``).
    The batch orders come from their own seeded generators (labelled: ``seed + 1``, continuing over
    the rounds; unlabelled: ``seed + 100 + r``), not from the loop's per-epoch reseeding (no
    ``generator`` attribute here)."""

    def __init__(self, task, ctx, pool, sizes, steps, teacher):
        self.task, self.ctx, self.pool, self.sizes, self.teacher = task, ctx, pool, sizes, teacher
        self.epoch_lengths = list(steps)
        cfg = ctx.cfg
        self.labelled = _cycle(task.loader(ctx.train_examples, ctx.processor, cfg.batch_size, True, cfg.seed + 1))
        self.round = 0  # the round being (or last) trained, 1-based
        self.started = 0.0  # perf_counter at the round's start
        self.pseudo = {}
        self.examples = 0  # unlabelled + labelled images trained on (the loop counts the first tensor's rows)

    def __len__(self):
        return self.epoch_lengths[min(self.round, len(self.epoch_lengths) - 1)]

    def __iter__(self):
        ctx, cfg = self.ctx, self.ctx.cfg
        self.round += 1
        r = self.round
        subset = self.pool[:self.sizes[r - 1]]
        self.started = time.perf_counter()
        pred, conf, true = _teacher_predictions(
            self.teacher, self.task.loader(subset, ctx.processor, cfg.eval_batch_size), ctx.device)
        self.pseudo = {"pseudo_label_accuracy": float((pred == true).mean()),
                       "pseudo_label_confidence": float(conf.mean())}
        unlabelled = _cycle(self.task.loader(subset, ctx.processor, cfg.batch_size, True, cfg.seed + 100 + r))
        for _ in range(self.epoch_lengths[r - 1]):
            ub, lb = next(unlabelled), next(self.labelled)
            self.examples += ub["pixel_values"].shape[0] + lb["labels"].shape[0]
            yield {"unlabelled_pixel_values": ub["pixel_values"], "pixel_values": lb["pixel_values"],
                   "labels": lb["labels"]}


def fit_self_training(task, ctx, train_loader, evaluate, aug):
    """The supervised phase, then the rounds: both through ``task.train_loop`` (train.loop.train:
    precision, gradient accumulation, the epoch tracker, the health checks), the rounds with the
    self-training loss, the EMA teacher updated after every optimizer step (``on_step``) and one loop
    epoch per round. Returns the FitSummary of both phases (best epoch over both)."""
    from .dino import DINOLoss, ema_update
    from .dino import local_crop_size
    from ...train import distributed
    from ...train.tracker import EpochTracker

    cfg, model, dev = ctx.cfg, ctx.model, ctx.device
    val_eval = evaluate
    test_eval = task.evaluator(ctx, ctx.eval_splits[1:], first_index=1)
    labelled = ctx.train_examples

    # ---- 1. the supervised phase (identical to a run without --semi-supervised)
    sup = task.train_loop(ctx, train_loader, val_eval, loss_fn=task.loss)
    test0, _ = test_eval(model)
    rounds = [{"round": 0, "phase": "supervised", "labelled": len(labelled), "unlabelled": 0,
               "validation": sup.final_metrics, "test": test0, "steps": sup.state.step}]

    # ---- 2. self-training rounds
    pool = list(task.unlabelled)
    random.Random(cfg.seed).shuffle(pool)
    per_round = min(len(pool), cfg.unlabelled_per_round or math.ceil(len(pool) / cfg.self_train_rounds))
    sizes = [min(len(pool), r * per_round) for r in range(1, cfg.self_train_rounds + 1)]
    steps_per_round = [max(1, math.ceil(cfg.self_train_epochs * math.ceil(n / cfg.batch_size))) for n in sizes]

    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    s_feat, t_feat = _classifier_input(model), _classifier_input(teacher)
    proj, proj_init = _projection_head(model, ctx.model_source, dev)
    t_proj = copy.deepcopy(proj).eval()
    for p in t_proj.parameters():
        p.requires_grad_(False)
    dino = DINOLoss(proj.last.shape[0]).to(dev)
    size = aug.size
    lsize = local_crop_size(size, getattr(model.config, "patch_size", max(1, size // 4)))
    lr = cfg.self_train_lr or SELF_TRAIN_LR_FACTOR * cfg.lr
    head_lr = None if cfg.head_lr is None else cfg.head_lr * lr / cfg.lr
    batches = RoundBatches(task, ctx, pool, sizes, steps_per_round, teacher)
    parts = {"supervised": [], "distill": [], "agreement": [], "total": [], "distilled_share": []}

    mine = distributed.shard_rows  # data-parallel: this rank's rows of a global batch (all rows in one process)

    def loss_fn(model, batch):
        """Supervised + distillation towards the teacher's soft pseudo-labels + DINO agreement.
        Every view is drawn from the whole global batch (the same torch RNG draws on every rank as in
        one process), then each rank trains on its rows of it."""
        x = batch["unlabelled_pixel_values"]
        weak = torch.cat([mine(aug.weak(x)), mine(aug.weak(x))])
        strong = torch.cat([mine(aug.strong(x)), mine(aug.strong(x))])
        local = torch.cat([mine(aug.local(x, lsize)) for _ in range(LOCAL_CROPS)])
        labelled = batch["pixel_values"] if task._augment is None else task._augment(batch["pixel_values"])
        b = weak.shape[0] // 2
        with torch.no_grad():
            t_logits = teacher(pixel_values=weak).logits.float()
            target = F.softmax(t_logits / PSEUDO_TEMPERATURE, -1).view(2, b, -1).mean(0)
            t_out = list(t_proj(t_feat["x"]).chunk(2))
        s_logits = model(pixel_values=strong).logits.float()
        s_global = proj(s_feat["x"])
        keep = (target.max(-1).values >= cfg.pseudo_threshold).float().repeat(2)  # all when threshold 0
        ce = -(target.repeat(2, 1) * F.log_softmax(s_logits, -1)).sum(-1)
        distill = (ce * keep).sum() / keep.sum().clamp(min=1)
        model(pixel_values=local, interpolate_pos_encoding=True)
        s_out = list(s_global.chunk(2)) + list(proj(s_feat["x"]).chunk(LOCAL_CROPS))
        agreement = dino(s_out, t_out, SSL_TEACHER_TEMP)
        supervised = model(pixel_values=mine(labelled), labels=mine(batch["labels"])).loss
        loss = supervised + cfg.distill_weight * distill + cfg.ssl_weight * agreement
        for k, v in (("supervised", supervised), ("distill", distill), ("agreement", agreement), ("total", loss),
                     ("distilled_share", keep.mean())):
            parts[k].append(v.detach())
        return loss

    def follow(_state):  # the teacher follows the student after every optimizer step
        ema_update(teacher, model, cfg.ema_momentum)
        ema_update(t_proj, proj, cfg.ema_momentum)

    def evaluate_round(model):
        r = batches.round
        val, preds = val_eval(model)
        t_val, _ = val_eval(teacher)
        test, _ = test_eval(model)
        last = r == len(sizes)
        t_test = test_eval(teacher)[0] if last else None  # the teacher's test score: last round only (time)
        rounds.append({"round": r, "phase": "self-training", "labelled": len(labelled), "unlabelled": sizes[r - 1],
                       **{k: round(v, 4) for k, v in batches.pseudo.items()}, "steps": steps_per_round[r - 1],
                       "losses": {k: round(distributed.all_reduce_mean(float(np.mean([t.item() for t in v]))), 4)
                                  for k, v in parts.items()},  # data-parallel: over every rank's rows
                       "validation": val, "test": test, "teacher_validation": t_val,
                       **({"teacher_test": t_test} if last else {}),
                       "seconds": round(time.perf_counter() - batches.started, 1)})
        for v in parts.values():
            v.clear()
        return val, preds

    first_epoch, sup_steps = len(sup.history), sup.state.step
    st = task.train_loop(
        ctx, batches, evaluate_round, loss_fn=loss_fn, lr=lr, head_lr=head_lr, early_stopping=False,
        extra_params=[("selftrain_projection." + n, p) for n, p in proj.named_parameters()], on_step=follow,
        epoch_fields=lambda e, rec: {"epoch": first_epoch + e + 1, "step": sup_steps + rec["step"],
                                     "phase": f"self-training round {e + 1}"})
    s_feat["hook"].remove()

    state = st.state  # both phases' steps, examples and seconds
    state.samples_seen = batches.examples  # global batches: the same count on every rank
    for k in ("step", "samples_seen", "train_seconds", "train_cpu_seconds"):
        setattr(state, k, getattr(sup.state, k) + getattr(state, k))
    history = sup.history + st.history
    best = EpochTracker.best_of(task.main_metric, history)
    record = {**sup.record, "self_training_health": st.record["training_health"],
              "self_training_precision": st.record["precision"],
              "semi_supervised": {
                  "labelled_per_class": cfg.labelled_per_class, "labelled": len(labelled),
                  "unlabelled_pool": len(pool), "unlabelled_per_round": per_round,
                  "rounds_requested": cfg.self_train_rounds, "epochs_per_round": cfg.self_train_epochs,
                  "lr": lr,
                  "pseudo_temperature": PSEUDO_TEMPERATURE, "pseudo_threshold": cfg.pseudo_threshold,
                  "ema_momentum": cfg.ema_momentum,
                  "distill_weight": cfg.distill_weight, "ssl_weight": cfg.ssl_weight,
                  "local_crops": [LOCAL_CROPS, lsize], "projection_head_init": proj_init,
                  "projection_head_params": sum(p.numel() for p in proj.parameters()),
                  "reported_model": "the student (saved); the teacher's metrics are in each round",
                  "rounds": rounds}}
    record["cpu_time"] = {**record["cpu_time"], "train_cpu_seconds": round(state.train_cpu_seconds, 3)}
    return FitSummary(history=history, state=state, best_epoch=best.best_epoch, best=best.best,
                      main_metric=task.main_metric, stopped_early=sup.stopped_early,
                      final_metrics=st.final_metrics, final_predictions=st.final_predictions, record=record)
