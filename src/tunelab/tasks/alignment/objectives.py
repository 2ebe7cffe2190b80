"""One training function per objective. Each builds its trainer on our optimizer and the
``MethodBridge`` (see bridge.py) and returns ``run_trainer``'s summary.

- sft, coh: ``transformers.Trainer`` with our completion-only collators (collate.py). Not TRL's
  SFTTrainer: Chain-of-Hindsight needs its own collator anyway, and with one code path for both the
  two objectives share exactly the same loss and normalisation, which keeps their comparison fair.
- reward: TRL ``RewardTrainer`` (Bradley-Terry, sequence-classification head with one output).
- dpo: TRL ``DPOTrainer``, ``--dpo-loss`` its ``loss_type`` (sigmoid = DPO, ipo, hinge, robust, ...). Reference = the adapter-free base for PEFT methods (TRL
  keeps a frozen copy of the initial adapter), a frozen copy of the base model otherwise.
- rlhf: TRL ``RLOOTrainer``. RLOO (REINFORCE Leave-One-Out, Ahmadian et al. 2024) rather than PPO:
  it is one of TRL's maintained online trainers (PPO lives in trl.experimental), needs no value
  model (PPO's critic would double memory and compute on a CPU), and puts the KL penalty to the
  reference (``beta``) into the reward, i.e. the classic RLHF objective, where GRPO's default has
  no KL term. Rewards come from a frozen reward model (``--reward-model`` or the judge).
- grpo: TRL ``GRPOTrainer`` with the same rewards, group size ``--rl-generations`` and its KL term
  to the reference on (``beta``, default 0.04); TRL's default loss (``dapo``) and reward scaling.
- kto: TRL ``KTOTrainer`` on unpaired rows (each pair gives a desirable and an undesirable one, or
  ``--unpaired-file``); reference as for DPO.
- orpo: TRL ``ORPOTrainer`` (trl.experimental in TRL 1.16): NLL on the chosen response + ``beta``
  (lambda) x the odds-ratio term; no reference model.
- simpo: TRL ``CPOTrainer`` (trl.experimental) with ``loss_type="simpo"`` and ``cpo_alpha=0`` (pure
  SimPO: length-normalised log-likelihood margin, reward scale ``beta``, target margin
  ``--simpo-gamma``); no reference model.
"""

import os
import warnings

from ...errors import UserError
from .bridge import make_optimizer, run_trainer, trainer_args


def is_peft(model) -> bool:
    return hasattr(model, "peft_config")


def train_lm(model, tok, pairs, collator, method, lr, cfg, device, workdir, bridge):
    """sft / coh: completion-only causal-LM loss (``collator`` builds the labels)."""
    from transformers import Trainer, TrainingArguments

    args = trainer_args(TrainingArguments, cfg, lr, device, workdir)
    trainer = Trainer(model=model, args=args, train_dataset=pairs, data_collator=collator,
                      optimizers=(make_optimizer(model, method, lr, cfg, bridge.head_names), None), callbacks=[bridge])
    return run_trainer(trainer, bridge)


def train_reward(model, tok, pairs, method, lr, cfg, device, workdir, bridge):
    """Bradley-Terry reward model on (prompt + chosen, prompt + rejected) token sequences."""
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    ds = Dataset.from_list([{"chosen_ids": p.prompt_ids + p.chosen_ids, "rejected_ids": p.prompt_ids + p.rejected_ids}
                            for p in pairs])
    args = trainer_args(RewardConfig, cfg, lr, device, workdir, max_length=None)
    trainer = RewardTrainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                            optimizers=(make_optimizer(model, method, lr, cfg, bridge.head_names), None), callbacks=[bridge])
    return run_trainer(trainer, bridge)


def train_dpo(model, tok, pairs, method, lr, cfg, device, workdir, bridge, ref_model):
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    ds = Dataset.from_list(paired_rows(pairs))
    beta = cfg.beta  # resolved: the dpo task's default (tasks/alignment.py) unless given
    args = trainer_args(DPOConfig, cfg, lr, device, workdir, beta=beta, max_length=None, loss_type=[cfg.dpo_loss],
                        label_smoothing=cfg.dpo_label_smoothing)
    trainer = DPOTrainer(model=model, ref_model=None if is_peft(model) else ref_model, args=args, train_dataset=ds,
                         processing_class=tok, optimizers=(make_optimizer(model, method, lr, cfg, bridge.head_names), None),
                         callbacks=[bridge])
    summary = run_trainer(trainer, bridge)
    drop_ref_adapter(model)
    return {**summary, "beta": beta, "loss_type": cfg.dpo_loss}


def paired_rows(pairs) -> list:
    return [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs]


def train_kto(model, tok, pairs, method, lr, cfg, device, workdir, bridge, ref_model, labels=None):
    """KTO on unpaired rows: pairs give (chosen, True) and (rejected, False); unpaired items their label."""
    from datasets import Dataset
    from trl import KTOConfig, KTOTrainer

    from .unpaired import unpair

    if cfg.batch_size < 2:
        raise UserError("--batch-size: KTO needs at least 2 (its KL baseline pairs each completion with another "
                        "prompt of the same batch)")
    rows = unpair(pairs, labels)
    n_pos = sum(r["label"] for r in rows)
    ds = Dataset.from_list(rows)
    beta = cfg.beta
    args = trainer_args(KTOConfig, cfg, lr, device, workdir, beta=beta, max_length=None)
    trainer = KTOTrainer(model=model, ref_model=None if is_peft(model) else ref_model, args=args, train_dataset=ds,
                         processing_class=tok, optimizers=(make_optimizer(model, method, lr, cfg, bridge.head_names), None),
                         callbacks=[bridge])
    summary = run_trainer(trainer, bridge)
    drop_ref_adapter(model)
    return {**summary, "beta": beta, "kto_examples": {"desirable": n_pos, "undesirable": len(rows) - n_pos}}


def _experimental(name):
    """trl.experimental.<name> (ORPO / CPO live there in TRL 1.16) without its stability warning."""
    import importlib

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module(f"trl.experimental.{name}")


def _lengths(cfg) -> dict:
    # the texts are already truncated (data.py); these bounds only leave room for special tokens and EOS
    return {"max_length": cfg.max_prompt_length + cfg.max_response_length + 8,
            "max_completion_length": cfg.max_response_length + 8}


def train_orpo(model, tok, pairs, method, lr, cfg, device, workdir, bridge):
    from datasets import Dataset

    orpo = _experimental("orpo")
    beta = cfg.beta
    args = trainer_args(orpo.ORPOConfig, cfg, lr, device, workdir, beta=beta, **_lengths(cfg))
    trainer = orpo.ORPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(paired_rows(pairs)),
                               processing_class=tok, callbacks=[bridge],
                               optimizers=(make_optimizer(model, method, lr, cfg, bridge.head_names), None))
    return {**run_trainer(trainer, bridge), "beta": beta}


def train_simpo(model, tok, pairs, method, lr, cfg, device, workdir, bridge):
    from datasets import Dataset

    cpo = _experimental("cpo")
    beta = cfg.beta
    args = trainer_args(cpo.CPOConfig, cfg, lr, device, workdir, beta=beta, loss_type="simpo", cpo_alpha=0.0,
                        simpo_gamma=cfg.simpo_gamma, **_lengths(cfg))
    trainer = cpo.CPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(paired_rows(pairs)),
                             processing_class=tok, callbacks=[bridge],
                             optimizers=(make_optimizer(model, method, lr, cfg, bridge.head_names), None))
    return {**run_trainer(trainer, bridge), "beta": beta, "simpo_gamma": cfg.simpo_gamma}


def train_grpo(model, tok, pairs, method, lr, cfg, device, workdir, bridge, reward_fn):
    from trl import GRPOConfig, GRPOTrainer

    summary = _train_online(GRPOConfig, GRPOTrainer, model, tok, pairs, method, lr, cfg, device, workdir, bridge,
                            reward_fn)
    return {**summary, "group_size": _group_size(cfg)}


def _group_size(cfg) -> int:
    g = cfg.rl_generations
    if (cfg.batch_size * cfg.grad_accum) % g:
        raise UserError(f"--rl-generations {g}: batch_size x grad_accum ({cfg.batch_size} x {cfg.grad_accum}) "
                        f"must be a multiple of it (each optimizer step sees whole groups of completions)")
    return g


def train_rlhf(model, tok, pairs, method, lr, cfg, device, workdir, bridge, reward_fn):
    from trl import RLOOConfig, RLOOTrainer

    return _train_online(RLOOConfig, RLOOTrainer, model, tok, pairs, method, lr, cfg, device, workdir, bridge,
                         reward_fn)


def _train_online(config_cls, trainer_cls, model, tok, pairs, method, lr, cfg, device, workdir, bridge, reward_fn):
    """TRL's online RL trainers (RLOO for rlhf, GRPO): groups of ``--rl-generations`` sampled completions
    per prompt scored by ``reward_fn``, KL coefficient ``--beta`` (resolved: the task's default unless given)."""
    from datasets import Dataset

    g = _group_size(cfg)
    beta = cfg.beta
    ds = Dataset.from_list([{"prompt": p.prompt} for p in pairs])
    args = trainer_args(config_cls, cfg, lr, device, workdir, beta=beta, num_generations=g,
                        max_completion_length=cfg.max_response_length, temperature=1.0, log_completions=False)
    trainer = trainer_cls(model=model, reward_funcs=[reward_fn], args=args, train_dataset=ds, processing_class=tok,
                          optimizers=(make_optimizer(model, method, lr, cfg, bridge.head_names), None), callbacks=[bridge])
    summary = run_trainer(trainer, bridge)
    drop_ref_adapter(model)
    return {**summary, "beta": beta}


def drop_ref_adapter(model):
    """TRL adds a frozen "ref" copy of the adapter to PEFT models; it is not part of the result."""
    if is_peft(model) and "ref" in model.peft_config:
        model.set_adapter("default")
        model.delete_adapter("ref")
