"""Alignment objectives on causal LMs, as tasks: ``sft``, ``sft-alpaca``, ``reward``, ``dpo`` (with
``--dpo-loss``: DPO's loss variants), ``coh``, ``rlhf``, ``grpo``, ``kto``, ``orpo``, ``simpo``. Data: hh-rlhf preference pairs (tasks/preference.py) or Alpaca instructions
(tasks/instruction.py). Training and evaluation live in ``tunelab.align`` (the task's ``fit``);
the runner still does config, model loading, ``method.prepare``, parameter accounting, the run
record, timing and memory, so every adaptation method works with every objective.

Metrics (run.json ``metrics``): ``pref_accuracy``, ``pref_accuracy_per_token`` (the same ranking by
mean log-likelihood per response token), ``chosen_logppl`` (lower is better), ``win_rate`` (vs the
base model, judged by a frozen reward model), and the base model's ``base_*`` values on the same
held-out pairs.
"""

import copy
import os

from ...errors import UserError
from ...metrics import Metric, register
from .. import TASKS
from . import options  # noqa: F401  (declares the family's options)
from ..base import Split, Task
from .instruction import load_instructions
from .preference import load_pairs
from .unpaired import load_unpaired
from .userdata import DATA_OPTIONS, UserPairs, has_user_data

# CPU-friendly defaults for causal LMs (a given option always wins): small batches with gradient
# accumulation (effective batch 8), one epoch, a bounded held-out set.
ALIGN_DEFAULTS = {"batch_size": 2, "grad_accum": 4, "eval_batch_size": 8, "epochs": 1, "max_eval_samples": 64}
# beta per objective: KL strength to the reference (TRL's DPO / KTO default 0.1; RLOO's 0.05; GRPO 0.04, the
# DeepSeekMath value TRL used before its default became 0, i.e. no KL term); ORPO's odds-ratio weight lambda (TRL
# 0.1); SimPO's reward scale (2.0, the SimPO paper's range 2.0-2.5; TRL's CPO default 0.1 is for CPO's sigmoid loss)
BETA = {"dpo": 0.1, "rlhf": 0.05, "grpo": 0.04, "kto": 0.1, "orpo": 0.1, "simpo": 2.0}
ONLINE = ("rlhf", "grpo")  # sample from the policy, rewarded by a frozen reward model


class AlignmentTask(Task):
    data_parallel_why = "trains through TRL / the HF Trainer (tasks/alignment/bridge.py)"
    family = "alignment"
    shared_options = ("eval_fraction",) + DATA_OPTIONS  # common options it reads (own data: userdata.py)
    head = "causal-lm"
    num_labels = 1
    eval_splits = ("validation",)
    defaults = ALIGN_DEFAULTS

    def __init__(self, name, objective, doc, data="hh-rlhf", head="causal-lm", lr_factor=0.2,
                 metric_names=("pref_accuracy", "chosen_logppl", "win_rate")):
        self.name, self.objective, self.doc, self.data = name, objective, doc, data
        self.head, self.lr_factor, self.metric_names = head, lr_factor, metric_names
        self.subset, self.eval_fraction, self.unpaired_file, self.user = None, 0.1, None, None

    def option_defaults(self, method) -> dict:
        """The family's defaults, its learning rate for ``method`` and the objective's beta."""
        out = {**self.defaults, "lr": self.default_lr(method)}
        if self.objective in BETA:
            out["beta"] = BETA[self.objective]
        return out

    def configure(self, cfg) -> "AlignmentTask":
        """A copy configured for this run (data subset, held-out share)."""
        t = copy.copy(self)
        t.subset, t.eval_fraction = cfg.subset, cfg.eval_fraction
        t.unpaired_file = getattr(cfg, "unpaired_file", None) if self.objective == "kto" else None
        if has_user_data(cfg):  # --train-file / --dataset: TRL's formats (formats.py), read and checked now
            t.user = UserPairs(cfg, t)
            t.eval_splits = t.user.eval_splits
            if not t.user.paired:  # SFT data without rejected responses: no preference to rank
                t.metric_names = tuple(m for m in t.metric_names if m not in ("pref_accuracy", "win_rate")) or ("chosen_logppl",)
        return t

    def validate(self, cfg) -> None:
        """Option checks that need no model (called before anything is loaded or written)."""
        if cfg.group_by_length:
            raise UserError(f"--group-by-length: task {self.name} trains with TRL / HF Trainer, whose batches "
                            "tunelab does not build; drop the option")
        if cfg.gradient_checkpointing:
            raise UserError(f"--gradient-checkpointing: not for task {self.name} yet (TRL / HF Trainer switch its "
                            "checkpointing per objective, e.g. for DPO's reference pass); only loop-trained tasks")
        if cfg.judge not in ("auto", "none") and not os.path.isdir(cfg.judge):
            raise UserError(f"--judge {cfg.judge}: no such folder (auto, none, or a reward model / reward run folder)")
        if cfg.reward_model is not None:
            if self.objective not in ONLINE:
                raise UserError(f"--reward-model: only --task rlhf / grpo use it (task {self.name}); see --judge")
            if not os.path.isdir(cfg.reward_model):
                raise UserError(f"--reward-model {cfg.reward_model}: no such folder (a reward model or reward run folder)")
        elif self.objective in ONLINE and cfg.judge == "none":
            raise UserError(f"--task {self.name} needs a reward model: --reward-model PATH (e.g. a reward run's folder) "
                            "or --judge auto|PATH")
        if getattr(cfg, "unpaired_file", None) is not None:  # (only kto reads it: the options' readers)
            if not os.path.isfile(cfg.unpaired_file):
                raise UserError(f"--unpaired-file {cfg.unpaired_file}: no such file")
        if self.objective == "dpo" and cfg.dpo_label_smoothing and cfg.dpo_loss not in ("robust", "exo_pair"):
            raise UserError(f"--dpo-label-smoothing: TRL uses it with --dpo-loss robust / exo_pair only "
                            f"(not {cfg.dpo_loss})")

    def default_lr(self, method) -> float:
        """Anchors of our own (not the methods' classifier-tuned defaults): 1e-3 for LoRA, 5e-5 for
        methods that update weights, the method's default for prompt / prefix tuning; x lr_factor."""
        if method.trains == "adapters":  # method: the Method class; its traits decide
            anchor = 1e-3
        elif method.trains == "virtual_tokens":
            anchor = method.default_lr
        else:
            anchor = 5e-5
        return anchor * self.lr_factor

    def load(self, split: str, data_dir) -> Split:
        if split == "train" and self.unpaired_file:
            examples, files, info = load_unpaired(self.unpaired_file)
        elif self.user is not None:
            return self.user.load(split)
        elif self.data == "alpaca":
            examples, files, info = load_instructions(split, data_dir, self.eval_fraction)
        else:
            examples, files, info = load_pairs(split, data_dir, self.subset, self.eval_fraction)
        return Split(split, examples, files, info)

    def fit(self, ctx):
        from .fit import fit_alignment
        from .userdata import finish, render_context

        how = render_context(self, ctx)  # message lists -> text: the model's chat template, else Human/Assistant
        return finish(self, ctx, fit_alignment(self, ctx), how)

    # tunelab predict (predict.py): generations and the evaluation's scores
    def read_inputs(self, path, cfg) -> list:
        from .predict import read_inputs

        return read_inputs(self, path)

    def text_inputs(self, texts, cfg) -> list:
        from .predict import text_inputs

        return text_inputs(self, texts)

    def predict_inputs(self, model, processor, inputs, cfg, device, batch_size, progress=None):
        from .predict import predict_inputs

        return predict_inputs(self, model, processor, inputs, cfg, device, batch_size, progress)

    def write_predictions(self, path: str, preds: dict) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write("split\tindex\tline\tchosen_score\trejected_score\tchosen_tokens\trejected_tokens\n")
            for split, (rows, pairs) in preds.items():
                for i, (r, p) in enumerate(zip(rows, pairs)):
                    rej = "" if r.get("rejected_score") is None else f"{r['rejected_score']:.6g}"
                    toks = "\t".join("" if r.get(k) is None else str(r[k]) for k in ("chosen_tokens", "rejected_tokens"))
                    f.write(f"{split}\t{i}\t{p.line}\t{r['chosen_score']:.6g}\t{rej}\t{toks}\n")


OBJECTIVES = [
    AlignmentTask("sft", "sft", "supervised fine-tuning on the chosen responses (loss on response tokens only)"),
    AlignmentTask("sft-alpaca", "sft", "supervised fine-tuning on Alpaca instructions (loss on response tokens only)",
                  data="alpaca", metric_names=("chosen_logppl",)),
    AlignmentTask("reward", "reward", "Bradley-Terry reward model (sequence-classification head) on pairs",
                  head="reward", lr_factor=0.5, metric_names=("pref_accuracy",)),
    AlignmentTask("dpo", "dpo", "direct preference optimisation (TRL DPOTrainer)", lr_factor=1.0),
    AlignmentTask("coh", "coh", "Chain-of-Hindsight: both responses with feedback phrases, loss on responses"),
    AlignmentTask("rlhf", "rlhf", "online RL (TRL RLOO) against a frozen reward model, KL to the reference",
                  lr_factor=0.1),  # 1e-4 with LoRA
    AlignmentTask("grpo", "grpo", "online RL (TRL GRPOTrainer: group-relative advantages) against a frozen reward "
                  "model, KL to the reference", lr_factor=0.1),
    AlignmentTask("kto", "kto", "Kahneman-Tversky optimisation (TRL KTOTrainer) on desirable / undesirable "
                  "examples (pairs unpaired, or --unpaired-file)", lr_factor=1.0),
    AlignmentTask("orpo", "orpo", "odds-ratio preference optimisation (TRL ORPOTrainer): SFT + odds-ratio term, no "
                  "reference model", lr_factor=1.0),
    AlignmentTask("simpo", "simpo", "SimPO (TRL CPOTrainer, loss_type simpo, cpo_alpha 0): length-normalised "
                  "margin loss, no reference model", lr_factor=1.0),
]

for _t in OBJECTIVES:
    TASKS.add(_t.name, _t)

register(Metric("pref_accuracy", None, True, False, "share of held-out pairs ranked chosen > rejected"))
register(Metric("pref_accuracy_per_token", None, True, False, "the same ranking by mean log-likelihood per token"))
register(Metric("chosen_logppl", None, False, False, "log-perplexity of the chosen responses (lower is better)"))
register(Metric("win_rate", None, True, False, "share of prompts where the judge prefers the model to the base"))
register(Metric("judge_accuracy", None, True, False, "the judge's held-out pair accuracy"))
