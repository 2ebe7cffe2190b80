"""One training function per objective. Each builds its trainer on our optimizer and the
``MethodBridge`` (see bridge.py) and returns ``run_trainer``'s summary.

- sft, coh: ``transformers.Trainer`` with our completion-only collators (collate.py). Not TRL's
  SFTTrainer: Chain-of-Hindsight needs its own collator anyway, and with one code path for both the
  two objectives share exactly the same loss and normalisation, which keeps their comparison fair.
- reward: TRL ``RewardTrainer`` (Bradley-Terry, sequence-classification head with one output).
- dpo: TRL ``DPOTrainer`` (sigmoid loss). Reference = the adapter-free base for PEFT methods (TRL
  keeps a frozen copy of the initial adapter), a frozen copy of the base model otherwise.
- rlhf: TRL ``RLOOTrainer``. RLOO (REINFORCE Leave-One-Out, Ahmadian et al. 2024) rather than PPO:
  it is one of TRL's maintained online trainers (PPO lives in trl.experimental), needs no value
  model (PPO's critic would double memory and compute on a CPU), and puts the KL penalty to the
  reference (``beta``) into the reward, i.e. the classic RLHF objective, where GRPO's default has
  no KL term. Rewards come from a frozen reward model (``--reward-model`` or the judge).
"""

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

    ds = Dataset.from_list([{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs])
    beta = cfg.beta  # resolved: the dpo task's default (tasks/alignment.py) unless given
    args = trainer_args(DPOConfig, cfg, lr, device, workdir, beta=beta, max_length=None)
    trainer = DPOTrainer(model=model, ref_model=None if is_peft(model) else ref_model, args=args, train_dataset=ds,
                         processing_class=tok, optimizers=(make_optimizer(model, method, lr, cfg, bridge.head_names), None),
                         callbacks=[bridge])
    summary = run_trainer(trainer, bridge)
    drop_ref_adapter(model)
    return {**summary, "beta": beta}


def train_rlhf(model, tok, pairs, method, lr, cfg, device, workdir, bridge, reward_fn):
    from datasets import Dataset
    from trl import RLOOConfig, RLOOTrainer

    g = cfg.rl_generations
    if (cfg.batch_size * cfg.grad_accum) % g:
        raise UserError(f"--rl-generations {g}: batch_size x grad_accum ({cfg.batch_size} x {cfg.grad_accum}) "
                        f"must be a multiple of it (each optimizer step sees whole groups of completions)")
    beta = cfg.beta  # resolved: the rlhf task's default (tasks/alignment.py) unless given
    ds = Dataset.from_list([{"prompt": p.prompt} for p in pairs])
    args = trainer_args(RLOOConfig, cfg, lr, device, workdir, beta=beta, num_generations=g,
                        max_completion_length=cfg.max_response_length, temperature=1.0, log_completions=False)
    trainer = RLOOTrainer(model=model, reward_funcs=[reward_fn], args=args, train_dataset=ds, processing_class=tok,
                          optimizers=(make_optimizer(model, method, lr, cfg, bridge.head_names), None), callbacks=[bridge])
    summary = run_trainer(trainer, bridge)
    drop_ref_adapter(model)
    return {**summary, "beta": beta}


def drop_ref_adapter(model):
    """TRL adds a frozen "ref" copy of the adapter to PEFT models; it is not part of the result."""
    if is_peft(model) and "ref" in model.peft_config:
        model.set_adapter("default")
        model.delete_adapter("ref")
