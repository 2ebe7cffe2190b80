"""AdaLoRA (Zhang et al. 2023) via PEFT: LoRA in SVD form whose rank budget is reallocated between the
targets during training, from ``--adalora-init-r`` per target down to ``--adalora-target-r`` on average.

PEFT needs the run's total steps (``total_step``) and a call of ``update_and_allocate(step)`` after every
optimizer step while the gradients are still there: ``on_optimizer_step`` does it (the loop calls it
before zeroing the gradients; in data-parallel runs they are the all-reduced ones, so every rank masks
the same ranks). ``total_step`` is known only when training starts (``on_train_start``); the warm-up
without pruning (``tinit``) and the final phase at fixed ranks (``tfinal``) are shares of it. The
reallocated ranks (``rank_pattern``) are saved in ``adapter_config.json``, so ``PeftModel.from_pretrained``
rebuilds the pruned adapter. A checkpoint (``--save-every``) keeps the allocator's importance averages and
the rank pattern (``state_dict``), so a resumed run reallocates as the uninterrupted one."""

from peft import AdaLoraConfig

from ..config import declare, opt
from ..errors import UserError
from . import METHODS
from .peft_common import TunerMethod


@declare("adalora", reads=("adalora",))
class AdaloraOptions:
    adalora_init_r: int = opt(12, "AdaLoRA initial rank per target", min=1)
    adalora_target_r: int = opt(8, "AdaLoRA average target rank after reallocation", min=1)
    adalora_alpha: float = opt(16, "AdaLoRA alpha", above=0)
    adalora_tinit: float = opt(0.1, "AdaLoRA: share of the steps before pruning starts", min=0, below=1)
    adalora_tfinal: float = opt(0.2, "AdaLoRA: share of the last steps at fixed ranks", min=0, below=1)
    adalora_delta_t: int = opt(1, "AdaLoRA: steps between two budget reallocations", min=1)


@METHODS.register("adalora")
class AdaLoRA(TunerMethod):
    """AdaLoRA (PEFT): SVD-form LoRA whose ranks are reallocated between layers while training; the head trains too."""

    name = "adalora"
    config_cls = AdaLoraConfig
    mapping = "TRANSFORMERS_MODELS_TO_ADALORA_TARGET_MODULES_MAPPING"
    # minilm, SST-2 500 x 2, seed 0, dev subset 300 (majority 0.55), BENCHMARKS.md "PEFT methods":
    # 5e-3 -> 0.667 (one lr measured)
    default_lr = 5e-3
    describe_keys = ("init_r", "target_r", "lora_alpha", "tinit", "tfinal", "deltaT", "total_step")

    def describe(self):
        """The config, and the rank each target kept (from PEFT's ``rank_pattern``; init_r before pruning)."""
        out = super().describe()
        pattern = self.peft_config.rank_pattern
        if pattern:
            out["ranks"] = {k.removesuffix(".lora_E.default").removesuffix(".lora_E"): int(sum(v))
                            for k, v in pattern.items()}
        return out

    def validate(self, cfg):
        if cfg.adalora_target_r > cfg.adalora_init_r:
            raise UserError(f"--adalora-target-r {cfg.adalora_target_r} must not exceed --adalora-init-r "
                            f"{cfg.adalora_init_r}")
        if cfg.adalora_tinit + cfg.adalora_tfinal >= 1:
            raise UserError(f"--adalora-tinit {cfg.adalora_tinit} + --adalora-tfinal {cfg.adalora_tfinal} must be "
                            "below 1 (some steps must reallocate)")

    def config_kwargs(self, cfg):
        self.shares = (cfg.adalora_tinit, cfg.adalora_tfinal)
        # total_step: a placeholder PEFT accepts until on_train_start knows the run's steps
        return {"init_r": cfg.adalora_init_r, "target_r": cfg.adalora_target_r, "lora_alpha": cfg.adalora_alpha,
                "deltaT": cfg.adalora_delta_t, "total_step": 10 ** 9}

    def on_train_start(self, state):
        c, total = self.peft_config, max(1, state.total_steps)
        c.total_step = total
        c.tinit, c.tfinal = int(self.shares[0] * total), int(self.shares[1] * total)
        if c.tinit >= total - c.tfinal:  # too few steps for the shares: reallocate at least at the last one
            c.tinit, c.tfinal = 0, 0

    def on_optimizer_step(self, state):
        self.peft_model.base_model.update_and_allocate(state.step)

    def state_dict(self):
        """The rank allocator's importance averages and the current rank pattern, so that a run resumed
        from a checkpoint reallocates (and masks) exactly as the uninterrupted run."""
        ra = self.peft_model.base_model.rankallocator
        return {"ipt": dict(ra.ipt), "exp_avg_ipt": dict(ra.exp_avg_ipt), "exp_avg_unc": dict(ra.exp_avg_unc),
                "rank_pattern": self.peft_config.rank_pattern}

    def load_state_dict(self, state):
        ra = self.peft_model.base_model.rankallocator
        for key in ("ipt", "exp_avg_ipt", "exp_avg_unc"):
            getattr(ra, key).clear()
            getattr(ra, key).update(state[key])
        self.peft_config.rank_pattern = state["rank_pattern"]
