"""RunConfig: every option of a run, from CLI flags or YAML (+ ``key=value`` overrides), validated once.

Each field is one CLI flag (``lora_r`` -> ``--lora-r``) and one YAML key (``lora_r`` or ``lora-r``).
``None`` means "resolved at run time" (e.g. ``lr`` takes the method's default); run.json records the
resolved values.
"""

import dataclasses
import difflib
import os
from dataclasses import dataclass, field

import yaml

from .errors import UserError


def opt(default, help, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class RunConfig:
    task: str = opt(None, "task name (tunelab list)")
    method: str = opt("full", "adaptation method (tunelab list)")
    model: str = opt("minilm", "model alias, local HF folder or hub id")
    data_dir: str = opt(None, "local data folder (default: $TUNELAB_DATA_DIR, else the Hugging Face hub)")
    output_dir: str = opt(None, "run folder (default: runs/<task>-<method>-<model>-s<seed>)")
    overwrite: bool = opt(False, "replace an existing non-empty output dir")
    seed: int = opt(0, "random seed (set before the head and any adapter are initialised)")
    epochs: float = opt(3, "training epochs")
    batch_size: int = opt(32, "training batch size")
    eval_batch_size: int = opt(128, "evaluation batch size")
    lr: float = opt(None, "peak learning rate (default: the method's, see tunelab list)")
    head_lr: float = opt(None, "learning rate of the head (classifier + pooler); default: the method's, else --lr")
    weight_decay: float = opt(0.01, "AdamW weight decay (not on biases / LayerNorm)")
    warmup_ratio: float = opt(0.06, "share of steps with linear warm-up")
    max_grad_norm: float = opt(1.0, "gradient clipping norm (0 = off)")
    max_seq_length: int = opt(128, "truncate inputs to this many tokens (dynamic padding below it)")
    max_train_samples: int = opt(None, "seeded random subset of the train split")
    max_eval_samples: int = opt(None, "seeded random subset of each eval split")
    early_stopping_patience: int = opt(None, "stop after N epochs without main-metric improvement")
    lora_r: int = opt(8, "LoRA rank")
    lora_alpha: float = opt(16, "LoRA alpha")
    lora_dropout: float = opt(0.1, "LoRA dropout")
    lora_targets: str = opt(None, "comma-separated module names (default: PEFT's mapping for the architecture)")
    num_virtual_tokens: int = opt(20, "virtual tokens for prompt / prefix tuning")
    prefix_projection: bool = opt(False, "prefix tuning: reparameterise prefixes with an MLP")
    layers: str = opt(None, "layers to train: 9-11 | 0,5,9 | top:3 | bottom:2 | top:25%")
    train_embeddings: bool = opt(False, "selective: also train the embeddings")
    threads: int = opt(None, "torch CPU threads (default: torch's)")
    device: str = opt("auto", "auto | cpu | cuda")
    # --- CPU efficiency: length grouping is opt-in (quick preset; train/batching.py), fused AdamW the default ---
    group_by_length: bool = opt(False, "train on batches of similar length (shuffled 8-batch chunks sorted by length, "
                                       "as HF group_by_length) and evaluate in length order: less padding")
    fused_adamw: bool = opt(True, "AdamW's fused kernel (also on CPU; HF Trainer's default too): same algorithm, a ~10x "
                                      "faster optimizer step; --no-fused-adamw for torch's foreach AdamW")
    # --- dynamic layer methods: alf, lisa, autofreeze, badam (methods/dynamic.py) ---
    alf_budget: float = opt(0.25, "alf: max share of the backbone's non-head params (embeddings + layers) trainable at any step")
    alf_interval: int = opt(20, "alf: re-score layers and re-choose the active set every N optimizer steps")
    alf_score: str = opt("change", "alf: layer importance score: change | grad-norm")
    alf_hysteresis: float = opt(0.1, "alf: a frozen layer replaces an active one only if its score is > (1+h) x higher")
    adapter: str = opt(None, "alf: adapt LoRA matrices instead of weights (lora); the LoRA options apply")
    lisa_layers: int = opt(2, "lisa: layers sampled (gamma) every --lisa-interval steps")
    lisa_interval: int = opt(20, "lisa: steps between re-sampling the active layers (K)")
    lisa_freeze_embeddings: bool = opt(False, "lisa: keep the embeddings frozen (published LISA trains them)")
    autofreeze_interval: int = opt(50, "autofreeze: steps between freezing decisions")
    autofreeze_percentile: float = opt(50, "autofreeze: freeze front layers whose gradient-norm change is below this percentile")
    badam_interval: int = opt(50, "badam: steps between switching the active block")
    badam_order: str = opt("descending", "badam: block order: descending | ascending | random")
    badam_block_layers: int = opt(1, "badam: consecutive layers per block")
    # --- alignment tasks: sft, sft-alpaca, reward, dpo, coh, rlhf (tasks/alignment.py, align/) ---
    grad_accum: int = opt(1, "accumulate gradients over N batches per optimizer step (effective batch = batch_size x N)")
    subset: str = opt(None, "hh-rlhf subset (folder under --data-dir, or hub data_dir of Anthropic/hh-rlhf; default helpful-base)")
    eval_fraction: float = opt(0.1, "share of pairs held out (seeded, fixed split) when the data has no separate test file")
    max_prompt_length: int = opt(128, "alignment: keep the last N prompt tokens (dialogue cut at a turn boundary when possible)")
    max_response_length: int = opt(64, "alignment: keep the first N tokens of each response; also the generation length")
    beta: float = opt(None, "dpo / rlhf: KL strength to the reference (default: dpo 0.1, rlhf 0.05)")
    judge: str = opt("auto", "win-rate judge: auto (reward model trained once on the train split, cached) | none | PATH")
    judge_train_samples: int = opt(None, "pairs the auto judge trains on (default: the run's train pairs)")
    reward_model: str = opt(None, "rlhf: reward model folder or reward run dir (default: the judge)")
    win_rate_prompts: int = opt(16, "held-out prompts generated by model and base for the win rate")
    rl_generations: int = opt(2, "rlhf: completions sampled per prompt (RLOO group size)")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}


def _key(k: str) -> str:
    return k.replace("-", "_")


def _coerce(name: str, value, where: str):
    f = FIELDS[name]
    if value is None:
        return None
    typ = f.type if isinstance(f.type, type) else {"str": str, "int": int, "float": float, "bool": bool}[f.type]
    try:
        if typ is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if typ is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        if typ is float:
            return float(value)
        return str(value) if not isinstance(value, list) else ",".join(str(v) for v in value)
    except (TypeError, ValueError):
        raise UserError(f"{where}: {name} = {value!r} is not a valid {typ.__name__}") from None


def _unknown(key: str, where: str):
    close = difflib.get_close_matches(key, list(FIELDS), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return UserError(f"{where}: unknown option '{key}'{hint}")


def load_yaml(path: str) -> dict:
    """YAML mapping -> {field: value}; errors name the file and line."""
    from .textio import read_text

    text = read_text(path, what="YAML config")
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise UserError(f"{path}{line}: invalid YAML ({getattr(e, 'problem', None) or e})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}:1: expected a mapping of option: value")
    lines = {}
    if node is not None and hasattr(node, "value"):
        for k, _ in node.value:
            lines[str(k.value)] = k.start_mark.line + 1
    out = {}
    for k, v in data.items():
        key = _key(str(k))
        where = f"{path}:{lines.get(str(k), 1)}"
        if key not in FIELDS:
            raise _unknown(str(k), where)
        out[key] = _coerce(key, v, where)
    return out


def parse_overrides(items) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise UserError(f"override {item!r}: expected key=value")
        k, v = item.split("=", 1)
        key = _key(k.strip())
        if key not in FIELDS:
            raise _unknown(k.strip(), "override")
        out[key] = _coerce(key, yaml.safe_load(v) if v.strip() else None, f"override {item}")
    return out


def _task_defaults(task) -> dict:
    """A task may change defaults it needs (e.g. small batches for causal LMs); given values win."""
    if not task:
        return {}
    from .tasks import get_task

    return dict(getattr(get_task(task), "defaults", None) or {})


def build_config(values: dict) -> RunConfig:
    values = {**_task_defaults(values.get("task")), **values}
    cfg = RunConfig(**{k: v for k, v in values.items() if k in FIELDS})
    if cfg.data_dir is None and os.environ.get("TUNELAB_DATA_DIR"):
        cfg.data_dir = os.environ["TUNELAB_DATA_DIR"]
    validate(cfg)
    return cfg


def validate(cfg: RunConfig) -> None:
    """Generic checks; method-specific ones live in each method's ``validate``."""
    if not cfg.task:
        raise UserError("--task is required (tunelab list shows the tasks)")
    checks = [
        ("epochs", cfg.epochs > 0, "must be > 0"),
        ("batch_size", cfg.batch_size >= 1, "must be >= 1"),
        ("eval_batch_size", cfg.eval_batch_size >= 1, "must be >= 1"),
        ("lr", cfg.lr is None or cfg.lr > 0, "must be > 0"),
        ("head_lr", cfg.head_lr is None or cfg.head_lr > 0, "must be > 0"),
        ("weight_decay", cfg.weight_decay >= 0, "must be >= 0"),
        ("warmup_ratio", 0 <= cfg.warmup_ratio < 1, "must be in [0, 1)"),
        ("max_grad_norm", cfg.max_grad_norm >= 0, "must be >= 0"),
        ("max_seq_length", cfg.max_seq_length >= 8, "must be >= 8"),
        ("max_train_samples", cfg.max_train_samples is None or cfg.max_train_samples >= 1, "must be >= 1"),
        ("max_eval_samples", cfg.max_eval_samples is None or cfg.max_eval_samples >= 1, "must be >= 1"),
        ("early_stopping_patience", cfg.early_stopping_patience is None or cfg.early_stopping_patience >= 1, "must be >= 1"),
        ("device", cfg.device in ("auto", "cpu", "cuda"), "must be auto, cpu or cuda"),
        ("grad_accum", cfg.grad_accum >= 1, "must be >= 1"),
        ("eval_fraction", 0 < cfg.eval_fraction < 1, "must be in (0, 1)"),
        ("max_prompt_length", cfg.max_prompt_length >= 1, "must be >= 1"),
        ("max_response_length", cfg.max_response_length >= 1, "must be >= 1"),
        ("beta", cfg.beta is None or cfg.beta >= 0, "must be >= 0"),
        ("judge_train_samples", cfg.judge_train_samples is None or cfg.judge_train_samples >= 2, "must be >= 2"),
        ("win_rate_prompts", cfg.win_rate_prompts >= 0, "must be >= 0"),
        ("rl_generations", cfg.rl_generations >= 2, "must be >= 2 (RLOO's baseline needs the other samples)"),
    ]
    for name, ok, why in checks:
        if not ok:
            raise UserError(f"--{name.replace('_', '-')} {getattr(cfg, name)}: {why}")
    if cfg.data_dir is not None and not os.path.isdir(cfg.data_dir):
        raise UserError(f"--data-dir {cfg.data_dir}: no such folder")
