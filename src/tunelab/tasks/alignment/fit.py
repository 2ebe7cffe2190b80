"""What an alignment task's ``fit`` does, in order:

1. tokenise + truncate train / held-out pairs (data.py);
2. load the frozen base model only when needed (base metrics and generations not cached yet; the
   DPO / KTO reference for non-PEFT methods), and drop it before training when no reference needs it
   (reference-free objectives, PEFT methods), so that training memory shows what the objective holds;
3. get the judge (trained once and cached, judge.py) when a win rate or an RLHF reward is needed;
4. evaluate the base model on the held-out pairs (cached);
5. train with the objective's trainer (objectives.py), evaluating after every epoch; the peak RSS of
   the training phase alone is recorded (``alignment.train_memory``);
6. final metrics: the last epoch's evaluation + win rate vs the base + base metrics + samples.
"""

import gc
import os
import random
import warnings

from ...errors import UserError
from ..base import FitSummary
from .bridge import MethodBridge
from .collate import COH_TEMPLATES, CoHCollator, SFTCollator, coh_inference_ids
from .data import tokenize_pairs
from .evaluate import (N_SAMPLES, base_evaluation, change_vs_base, lm_preference_metrics,
                       reward_preference_metrics, win_rate_and_samples)
from .judge import get_judge
from .objectives import (is_peft, train_dpo, train_grpo, train_kto, train_lm, train_orpo, train_reward, train_rlhf,
                         train_simpo)
from .scoring import clean_generation

CURVE_KEY = {"dpo": "rewards/accuracies", "reward": "accuracy", "rlhf": "reward", "sft": "loss", "coh": "loss",
             "grpo": "reward", "kto": "rewards/margins", "orpo": "rewards/accuracies", "simpo": "rewards/accuracies"}
TRAINER = {"sft": "transformers.Trainer + tunelab SFTCollator", "coh": "transformers.Trainer + tunelab CoHCollator",
           "reward": "trl.RewardTrainer", "dpo": "trl.DPOTrainer", "rlhf": "trl.RLOOTrainer",
           "grpo": "trl.GRPOTrainer", "kto": "trl.KTOTrainer", "orpo": "trl.experimental.orpo.ORPOTrainer",
           "simpo": "trl.experimental.cpo.CPOTrainer (loss_type simpo, cpo_alpha 0)"}
REFERENCED = ("dpo", "kto")  # offline objectives with a frozen reference (rlhf / grpo: TRL loads its own)
ONLINE = ("rlhf", "grpo")


def reference_of(obj, model) -> str:
    if obj in ("orpo", "simpo"):
        return "none (reference-free objective)"
    if obj in REFERENCED or obj in ONLINE:
        return "the adapter-free base (adapter disabled)" if is_peft(model) else "a frozen copy of the base model"
    return "none"


class RSSSampler:
    """Peak resident memory of a phase: /proc/self/statm read every ``interval`` seconds by a thread
    (the kernel's own peak mark covers the whole process, and resetting it would lose the run's
    ``memory.peak_rss_mb``). A sampled peak can miss a spike shorter than the interval."""

    def __init__(self, interval=0.02):
        import threading

        self.interval, self.peak, self.ok = interval, 0, os.path.isfile("/proc/self/statm")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            self._stop.wait(self.interval)

    def __enter__(self):
        if self.ok:
            self.peak = self._rss()
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.ok:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self._rss())

    @property
    def peak_mb(self):
        return round(self.peak / 2**20, 1) if self.ok else None


def train_objective(obj, common, ref, rl_reward, unpaired_examples):
    """The objective's training function (objectives.py) -> run_trainer's summary."""
    tok, cfg = common["tok"], common["cfg"]
    if obj == "sft":
        return train_lm(collator=SFTCollator(tok), **common)
    if obj == "coh":
        return train_lm(collator=CoHCollator(tok, seed=cfg.seed), **common)
    if obj == "reward":
        return train_reward(**common)
    if obj == "dpo":
        return train_dpo(ref_model=ref, **common)
    if obj == "kto":
        labels = [e.label for e in unpaired_examples] if unpaired_examples else None
        return train_kto(ref_model=ref, labels=labels, **common)
    if obj == "orpo":
        return train_orpo(**common)
    if obj == "simpo":
        return train_simpo(**common)
    if obj == "rlhf":
        return train_rlhf(reward_fn=reward_fn_from(rl_reward), **common)
    if obj == "grpo":
        return train_grpo(reward_fn=reward_fn_from(rl_reward), **common)
    raise ValueError(f"unknown objective {obj!r}")


def load_base_lm(source, tok, device):
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(source)
    base.config.pad_token_id = tok.pad_token_id
    for p in base.parameters():
        p.requires_grad_(False)
    return base.to(device).eval()


def seeded_subset(items, n, seed=0):
    if n is None or n >= len(items):
        return list(items)
    return [items[i] for i in sorted(random.Random(seed).sample(range(len(items)), n))]


def curve_summary(curve, key):
    vals = [c[key] for c in curve if isinstance(c.get(key), (int, float))]
    if not vals:
        return None
    q = max(1, len(vals) // 4)
    return {"metric": key, "steps": len(vals), "first_quarter_mean": sum(vals[:q]) / q,
            "last_quarter_mean": sum(vals[-q:]) / q, "first": vals[0], "last": vals[-1]}


def reward_fn_from(judge):
    def reward_model(prompts, completions, **_):
        return judge.score(prompts, [clean_generation(c) for c in completions])

    return reward_model


def fit_alignment(task, ctx) -> FitSummary:
    cfg, tok, device, model = ctx.cfg, ctx.tokenizer, ctx.device, ctx.model
    obj = task.objective
    # transformers' own deprecation chatter from inside Trainer / TRL (not actionable for a user)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")
    if tok.eos_token_id is None:
        raise UserError(f"--model {cfg.model}: the tokenizer has no EOS token (needed to end responses)")
    lens = (cfg.max_prompt_length, cfg.max_response_length)
    train = tokenize_pairs(ctx.train_examples, tok, *lens)
    split = ctx.eval_splits[0]
    evalp = tokenize_pairs(split.examples, tok, *lens)
    paired = evalp[0].rejected_ids is not None
    generative = obj != "reward"
    context = (lambda ids: coh_inference_ids(tok, ids)) if obj == "coh" else list

    loaded = {}

    def get_base():
        if "base" not in loaded:
            loaded["base"] = load_base_lm(ctx.model_source, tok, device)
        return loaded["base"]

    unpaired = train and train[0].rejected is None
    n_win = cfg.win_rate_prompts if (generative and paired and cfg.judge != "none") else 0
    judge = rl_reward = None
    if n_win or (obj in ONLINE and not cfg.reward_model):
        judge_src = ctx.train_all or ctx.train_examples
        if unpaired:  # kto --unpaired-file: the judge still learns from the hh-rlhf train pairs
            from .preference import load_pairs

            judge_src = load_pairs("train", cfg.data_dir, cfg.subset, cfg.eval_fraction)[0]
        judge_train = tokenize_pairs(seeded_subset(judge_src, cfg.judge_train_samples or len(ctx.train_examples)),
                                     tok, *lens)
        judge = get_judge(cfg.judge, ctx.model_source, tok, judge_train, evalp, cfg, device)
    if obj in ONLINE:
        rl_reward = get_judge(cfg.reward_model, ctx.model_source, tok, [], evalp, cfg, device,
                              option="--reward-model") if cfg.reward_model else judge
    base_eval = base_evaluation(get_base, tok, evalp, max(n_win, N_SAMPLES) if generative else 0, cfg, device,
                                ctx.model_source)

    def evaluate(m):
        if obj == "reward":
            metrics, rows = reward_preference_metrics(m, evalp, tok.pad_token_id, cfg.eval_batch_size, device)
        else:
            metrics, rows = lm_preference_metrics(m, evalp, tok.pad_token_id, cfg.eval_batch_size, device, context)
        return metrics, {split.name: (rows, evalp)}

    bridge = MethodBridge(ctx.method, evaluate, task.main_metric, ctx.on_epoch, n_train=len(train),
                          patience=cfg.early_stopping_patience, desc=f"train {obj}/{cfg.method}",
                          head_names=ctx.head_names, divergence_factor=cfg.divergence_factor)
    common = dict(model=model, tok=tok, pairs=train, method=ctx.method, lr=cfg.lr, cfg=cfg, device=device,
                  workdir=os.path.join(ctx.out_dir, "trainer"), bridge=bridge)
    ref = get_base() if obj in REFERENCED and not is_peft(model) else None
    if ref is None and loaded:
        loaded.clear()  # no reference needs the base model: free it before training
        gc.collect()
    if device.type == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats(device)
    with RSSSampler() as rss:
        summary = train_objective(obj, common, ref, rl_reward, ctx.train_examples if unpaired else None)
    train_memory = {"peak_rss_mb": rss.peak_mb,
                    "what": "peak RSS of the training phase (epoch evaluations included; sampled every 20 ms); the "
                            "base model is freed before it unless it is the reference"}
    if device.type == "cuda":
        train_memory["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)

    if getattr(model, "config", None) is not None:
        model.config.use_cache = True  # Trainer switched it off; generation and the saved config want it on
    metrics = dict(bridge.last_metrics)
    win_details, samples = {}, []
    if generative:
        wr, win_details, samples = win_rate_and_samples(model, tok, evalp, base_eval["generations"],
                                                        judge if n_win else None, cfg, device, context, n_win)
        metrics.update(wr)
    else:
        rows = bridge.last_predictions[split.name][0]
        samples = [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected,
                    "reward_chosen": round(r["chosen_score"], 4), "reward_rejected": round(r["rejected_score"], 4)}
                   for p, r in zip(evalp[:N_SAMPLES], rows)]
    for k, v in base_eval["metrics"].items():
        metrics["base_" + k] = v
    if judge is not None:
        metrics["judge_accuracy"] = judge.info.get("heldout_accuracy")

    import trl

    details = {
        "objective": obj, "trainer": TRAINER[obj], "trl_version": trl.__version__,
        "train_pairs": len(train), "eval_pairs": len(evalp), "split": split.info,
        "max_prompt_length": cfg.max_prompt_length, "max_response_length": cfg.max_response_length,
        "mean_prompt_tokens": round(sum(len(p.prompt_ids) for p in train) / len(train), 1),
        "mean_chosen_tokens": round(sum(len(p.chosen_ids) for p in train) / len(train), 1),
        "inference_prompt": f"prompt + ' {COH_TEMPLATES[0][0]}'" if obj == "coh" else "prompt",
        "pref_accuracy_by": "reward model score" if obj == "reward" else "summed response log-likelihood",
        "base_eval_cached": base_eval["cached"],
        "train_curve_summary": curve_summary(summary["curve"], CURVE_KEY[obj]),
        "reference_model": reference_of(obj, model), "train_memory": train_memory,
    }
    if generative and paired:
        details["change_vs_base"] = change_vs_base(base_eval["rows"], bridge.last_predictions[split.name][0])
    for k in ("beta", "loss_type", "simpo_gamma", "group_size", "kto_examples"):
        if k in summary:
            details[k] = summary[k]
    if judge is not None:
        details["judge"] = {**judge.info, "used_for": ["win_rate"] * bool(n_win) + ["rlhf_reward"] * (rl_reward is judge)}
    if rl_reward is not None and rl_reward is not judge:
        details["rl_reward_model"] = rl_reward.info
    if win_details:
        details["win_rate"] = {**win_details, "judge_is_rl_reward": rl_reward is judge and judge is not None,
                               "decoding": f"greedy, {cfg.max_response_length} new tokens, cut at the next dialogue turn"}
    return FitSummary(history=summary["history"], state=summary["state"], best_epoch=summary["best_epoch"],
                      best=summary["best"], main_metric=task.main_metric, stopped_early=summary["stopped_early"],
                      final_metrics=metrics, final_predictions=bridge.last_predictions,
                      record={"alignment": details, "train_curve": summary["curve"], "samples": samples,
                              "training_health": summary["training_health"]})
