"""RunConfig: every option of a run, declared once, from CLI flags or YAML (+ ``key=value`` overrides).

Each field is one CLI flag (``lora_r`` -> ``--lora-r``) and one YAML key (``lora_r`` or ``lora-r``),
declared with its type, default, valid range / choices, help and **who reads it** (``reads``: method
names, ``family:<task family>`` or ``task:<name>``; empty = every run). Giving an option that the
chosen method or task does not read is an error (``--lora-r 4 --method full``).

Defaults are merged in one documented order (later wins):

1. the field default below;
2. the method's defaults (``Method.option_defaults(given)``: its learning rate; full FT: batch 16 too;
   ALF with ``--adapter lora``: LoRA's learning rate);
3. the task family's defaults (``Task.option_defaults(method)``: e.g. small batches and an lr
   anchor for causal-LM alignment);
4. what the user gave: preset / study / YAML file, then command-line flags and ``key=value``.

``head_lr`` left open means "the same as lr". The resulting ``RunConfig`` is fully resolved:
run.json's ``config`` records it and ``config_sources`` says which level each value came from.
"""

import dataclasses
import difflib
import os
from dataclasses import dataclass, field

import yaml

from .errors import UserError

ALIGN = ("family:alignment",)
HH = ("task:sft", "task:reward", "task:dpo", "task:coh", "task:rlhf")  # the hh-rlhf tasks
LORA_READERS = ("lora", "alf")  # ALF reads the LoRA options with --adapter lora
ASR = ("family:asr",)
IMAGE = ("family:image",)
DOCREP = ("family:docrep",)
# the families trained by tunelab's loop (train/loop.py), which checkpoints and resumes; alignment trains through TRL
RESUMABLE = ("family:glue", "family:keyphrase", "family:asr", "family:image", "family:docrep")
LAYER_SELECTING = ("selective", "alf", "lisa", "autofreeze", "badam")  # read --layer-budget (methods/budget.py)
DOCREP_BASELINES = ("tfidf", "doc2vec", "encoder-trunc-128", "encoder-trunc-512", "encoder-chunks")


def opt(default, help, *, reads=(), min=None, max=None, above=None, below=None, choices=None, why=None):
    """One option: ``min``/``max`` inclusive, ``above``/``below`` exclusive bounds, ``choices`` a tuple;
    ``why`` replaces the generated range message."""
    return field(default=default, metadata={"help": help, "reads": tuple(reads), "min": min, "max": max,
                                            "above": above, "below": below, "choices": choices, "why": why})


@dataclass
class RunConfig:
    # Run state, not options (no annotation, so not dataclass fields, never in run.json's config):
    resume_checkpoint = None  # the checkpoint folder a `tunelab run --resume` continues from (resume.py)
    run_started_at = None  # the run's started_at, which its checkpoints carry (train/checkpoint.py)

    task: str = opt(None, "task name (tunelab list)")
    method: str = opt("full", "adaptation method (tunelab list)")
    model: str = opt("minilm", "model alias, local HF folder or hub id")
    allow_pickle: bool = opt(False, "load model weights from pickle files (.bin/.pt) when a folder has no safetensors: "
                                    "pickle can run code, so only for folders you trust")
    data_dir: str = opt(None, "local data folder (default: $TUNELAB_DATA_DIR unless --dataset names a hub "
                              "dataset, else the Hugging Face hub)")
    output_dir: str = opt(None, "run folder (default: runs/<task>-<method>-<model>-s<seed>)")
    overwrite: bool = opt(False, "replace an existing non-empty output dir")
    seed: int = opt(0, "random seed (set before the head and any adapter are initialised)", min=0)
    epochs: float = opt(3, "training epochs", above=0)
    batch_size: int = opt(32, "training batch size", min=1)
    eval_batch_size: int = opt(128, "evaluation batch size", min=1)
    lr: float = opt(None, "peak learning rate (default: the method's, see tunelab list; some task families set their own)",
                    above=0)
    head_lr: float = opt(None, "learning rate of the head (classifier + pooler); default: the same as --lr", above=0)
    weight_decay: float = opt(0.01, "AdamW weight decay (not on biases / LayerNorm)", min=0)
    warmup_ratio: float = opt(0.06, "share of steps with linear warm-up", min=0, below=1)
    max_grad_norm: float = opt(1.0, "gradient clipping norm (0 = off)", min=0)
    max_seq_length: int = opt(128, "truncate inputs to this many tokens (dynamic padding below it); keyphrase: the "
                                   "sliding window's size (default 512)", min=8,
                              reads=("family:glue", "family:keyphrase"))
    max_train_samples: int = opt(None, "seeded random subset of the train split", min=1)
    max_eval_samples: int = opt(None, "seeded random subset of each eval split", min=1)
    early_stopping_patience: int = opt(None, "stop after N epochs without main-metric improvement", min=1)
    divergence_factor: float = opt(10.0, "flag the run as diverged when a 5-step mean loss exceeds this x the first "
                                         "5-step mean (a non-finite loss or gradient norm always stops the run)", above=1)
    grad_accum: int = opt(1, "accumulate gradients over N batches per optimizer step (effective batch = batch_size x N)",
                          min=1)
    lora_r: int = opt(8, "LoRA rank", min=1, reads=LORA_READERS)
    lora_alpha: float = opt(16, "LoRA alpha", above=0, reads=LORA_READERS)
    lora_dropout: float = opt(0.1, "LoRA dropout", min=0, below=1, reads=LORA_READERS)
    lora_targets: str = opt(None, "comma-separated module names (default: PEFT's mapping for the architecture)",
                            reads=LORA_READERS)
    num_virtual_tokens: int = opt(20, "virtual tokens for prompt / prefix tuning", min=1, reads=("prompt", "prefix"))
    prefix_projection: bool = opt(False, "prefix tuning: reparameterise prefixes with an MLP", reads=("prefix",))
    # the field default is PEFT's (what runs before this option used); the prompt method's default is vocab
    # (methods/prompt.py option_defaults), so cached runs made with random init never pass for vocab ones
    prompt_init: str = opt("random", "prompt: initialise the virtual tokens with the embeddings of sampled vocabulary "
                                     "tokens (vocab, the method's default), of --prompt-init-text's tokens (text) or "
                                     "with PEFT's N(0, 1) vectors (random: stays at the majority class on minilm)",
                           choices=("random", "vocab", "text"), reads=("prompt",))
    prompt_init_text: str = opt(None, "prompt: the text whose token embeddings (with [CLS]/[SEP], repeated or cut to "
                                      "--num-virtual-tokens) initialise the virtual tokens with --prompt-init text",
                                reads=("prompt",))
    layers: str = opt(None, "layers to train: 9-11 | 0,5,9 | top:3 | bottom:2 | top:25% ; per stack on encoder-decoder "
                            "models: encoder:top:2,decoder:0-1 (docs/architecture.md)", reads=("selective", "lora"))
    train_embeddings: bool = opt(False, "selective: also train the embeddings", reads=("selective",))
    threads: int = opt(None, "torch CPU threads (default: torch's)", min=1)
    device: str = opt("auto", "auto | cpu | cuda", choices=("auto", "cpu", "cuda"))
    save_every: int = opt(None, "write a checkpoint into OUTPUT_DIR/checkpoint every N optimizer steps (the last one "
                                "kept; deleted when the run completes): tunelab run --resume OUTPUT_DIR continues a "
                                "killed run from it (train/checkpoint.py)", min=1, reads=RESUMABLE)
    # --- speed: length grouping (train/batching.py; on by default for loop-trained tasks: SupervisedTask), fused AdamW ---
    group_by_length: bool = opt(False, "train on batches of similar length (shuffled 8-batch chunks sorted by length, "
                                       "as HF group_by_length) and evaluate in length order: less padding. Default on "
                                       "for tasks trained by tunelab's loop (--no-group-by-length turns it off)")
    fused_adamw: bool = opt(True, "AdamW's fused kernel (also on CPU; HF Trainer's default too): same algorithm, a ~10x "
                                  "faster optimizer step; --no-fused-adamw for torch's foreach AdamW")
    precision: str = opt("auto", "arithmetic of the training loop: auto (bf16 autocast + TF32 on a CUDA GPU with bf16, "
                                 "fp32 on CPU) | fp32 | bf16 | fp16 (CUDA, with a gradient scaler); weights stay fp32",
                         choices=("auto", "fp32", "bf16", "fp16"))
    # --- speed: frozen-prefix activation cache (train/activation_cache.py) ---
    activation_cache: bool = opt(True, "compute the frozen embeddings + bottom layers once per example (in eval mode: no "
                                       "dropout there) when they never train (selective / LoRA on top layers, head "
                                       "only); --no-activation-cache to run them every step")
    activation_cache_mb: int = opt(2048, "activation cache in RAM up to this many MB, else a memory-mapped file in the "
                                         "run folder", min=0)
    # --- dynamic layer methods: alf, lisa, autofreeze, badam (methods/dynamic.py) ---
    layer_budget: float = opt(None, "share of the backbone's non-head params (embeddings + layers) trainable, "
                                    "time-averaged, for every layer-selecting method (selective top layers, alf "
                                    "budget, lisa layers with frozen embeddings, autofreeze cap, badam block size; "
                                    "methods/budget.py)", above=0, max=1, reads=LAYER_SELECTING)
    alf_budget: float = opt(0.25, "alf: max share of the backbone's non-head params (embeddings + layers) trainable at "
                                  "any step", above=0, max=1, reads=("alf",))
    alf_interval: int = opt(20, "alf: re-score layers and re-choose the active set every N optimizer steps", min=1,
                            reads=("alf",))
    alf_score: str = opt("change", "alf: layer importance score: change (measured weight change rate of every layer, "
                                   "shadow AdamW probe) | calibrated (c * probe gradient for frozen layers) | grad-norm | "
                                   "random (seeded control) | static (top layers, never moves)",
                         choices=("change", "calibrated", "grad-norm", "random", "static"), reads=("alf",))
    alf_probe_steps: int = opt(3, "alf --alf-score change: steps of the probe window before each decision (every layer's "
                                  "change rate is measured over them)", min=1, reads=("alf",))
    alf_hysteresis: float = opt(0.1, "alf: a frozen layer replaces an active one only if its score is > (1+h) x higher",
                                min=0, reads=("alf",))
    adapter: str = opt(None, "alf: adapt LoRA matrices instead of weights (lora); the LoRA options apply",
                       choices=(None, "lora"), reads=("alf",))
    lisa_layers: int = opt(2, "lisa: layers sampled (gamma) every --lisa-interval steps", min=1, reads=("lisa",))
    lisa_interval: int = opt(20, "lisa: steps between re-sampling the active layers (K)", min=1, reads=("lisa",))
    lisa_freeze_embeddings: bool = opt(False, "lisa: keep the embeddings frozen (published LISA trains them)",
                                       reads=("lisa",))
    autofreeze_interval: int = opt(50, "autofreeze: steps between freezing decisions", min=1, reads=("autofreeze",))
    autofreeze_percentile: float = opt(50, "autofreeze: freeze front layers whose gradient-norm change is below this "
                                           "percentile", min=0, max=100, reads=("autofreeze",))
    badam_interval: int = opt(50, "badam: steps between switching the active block", min=1, reads=("badam",))
    badam_order: str = opt("descending", "badam: block order: descending | ascending | random",
                           choices=("descending", "ascending", "random"), reads=("badam",))
    badam_block_layers: int = opt(1, "badam: consecutive layers per block", min=1, reads=("badam",))
    # --- alignment tasks: sft, sft-alpaca, reward, dpo, coh, rlhf (tasks/alignment.py, align/) ---
    subset: str = opt(None, "hh-rlhf subset (folder under --data-dir, or hub data_dir of Anthropic/hh-rlhf; default "
                            "helpful-base)", reads=HH)
    eval_fraction: float = opt(0.1, "share held out as the validation split (seeded, fixed) when the data has no separate "
                                    "one: alignment pairs; asr: utterances of an audiofolder without split folders; "
                                    "images: stratified (image tasks default to 1/12: 5,000 of 60,000)",
                               above=0, below=1, reads=ALIGN + ("task:asr",) + IMAGE)
    max_prompt_length: int = opt(128, "alignment: keep the last N prompt tokens (dialogue cut at a turn boundary when "
                                      "possible)", min=1, reads=ALIGN)
    max_response_length: int = opt(64, "alignment: keep the first N tokens of each response; also the generation length",
                                   min=1, reads=ALIGN)
    beta: float = opt(None, "dpo / rlhf: KL strength to the reference (default: dpo 0.1, rlhf 0.05)", min=0,
                      reads=("task:dpo", "task:rlhf"))
    judge: str = opt("auto", "win-rate judge: auto (reward model trained once on the train split, cached) | none | PATH",
                     reads=ALIGN)
    judge_train_samples: int = opt(None, "pairs the auto judge trains on (default: the run's train pairs)", min=2,
                                   reads=ALIGN)
    reward_model: str = opt(None, "rlhf: reward model folder or reward run dir (default: the judge)", reads=("task:rlhf",))
    win_rate_prompts: int = opt(16, "held-out prompts generated by model and base for the win rate", min=0, reads=ALIGN)
    rl_generations: int = opt(2, "rlhf: completions sampled per prompt (RLOO group size)", min=2,
                              why="must be >= 2 (RLOO's baseline needs the other samples)", reads=("task:rlhf",))
    # --- keyphrase extraction: inspec, kdd, www, keyphrase (tasks/keyphrase.py) ---
    doc_stride: int = opt(128, "keyphrase: tokens shared by consecutive sliding windows of a long document (their "
                               "words' predictions are averaged); must be < --max-seq-length minus special tokens",
                          min=0, reads=("family:keyphrase",))

    # --- speech recognition: speech-accents, asr (tasks/asr.py) ---
    max_new_tokens: int = opt(128, "asr: most tokens generated per utterance (greedy decoding, no timestamps)", min=1,
                              reads=ASR)
    language: str = opt(None, "asr: spoken language of a multilingual Whisper (e.g. en); sets the prompt of training "
                              "labels and of generate (default: the model's generation config)", reads=ASR)
    dataset: str = opt(None, "asr / docrep: Hugging Face hub dataset id, instead of --data-dir (asr: an audiofolder; "
                             "docrep: a corpus folder or file; bbc-docrep without either: a local "
                             "shared/data/news/bbc, else SetFit/bbc-news)", reads=("task:asr",) + DOCREP)
    dataset_config: str = opt(None, "asr / docrep: the hub dataset's configuration name (e.g. clean, en)",
                              reads=("task:asr",) + DOCREP)
    audio_column: str = opt("audio", "asr: audio column of a hub dataset", reads=("task:asr",))
    text_column: str = opt(None, "text column: asr: the transcript column of a hub dataset or an audiofolder's "
                                 "metadata.csv (default transcription); docrep: of a CSV / JSONL file or hub dataset "
                                 "(default text)", reads=("task:asr",) + DOCREP)

    # --- image tasks: fashion-mnist, mnist, image-folder (tasks/image.py; DISTL self-training: tasks/image_selftrain.py) ---
    augment: str = opt("weak", "image: augmentation of labelled training images: none | weak (crop + flip) | strong "
                               "(+ jitter, blur, solarize, erasing)", choices=("none", "weak", "strong"), reads=IMAGE)
    labelled_per_class: int = opt(None, "image: train on exactly N labelled images per class (seeded); with "
                                        "--semi-supervised the rest of the train split is the unlabelled pool",
                                  min=1, reads=IMAGE)
    semi_supervised: bool = opt(False, "image: DISTL-style self-training after the supervised epochs: EMA teacher, soft "
                                       "pseudo-labels on weak views, student on strong views + DINO agreement loss",
                                reads=IMAGE)
    self_train_rounds: int = opt(3, "semi-supervised: rounds; round r uses r x --unlabelled-per-round unlabelled images",
                                 min=1, reads=IMAGE)
    self_train_epochs: float = opt(1, "semi-supervised: epochs over the round's unlabelled images per round", above=0,
                                   reads=IMAGE)
    unlabelled_per_round: int = opt(None, "semi-supervised: unlabelled images added each round (default: the pool / "
                                          "rounds, so the last round uses all of it)", min=1, reads=IMAGE)
    self_train_lr: float = opt(None, "semi-supervised: peak learning rate of the rounds (default: --lr; warm-up and "
                                     "linear decay over all rounds)", above=0, reads=IMAGE)
    pseudo_threshold: float = opt(0.0, "semi-supervised: distil only unlabelled images whose (sharpened) pseudo-label "
                                       "has max probability >= this (FixMatch-style; 0 = every image, DISTL's soft "
                                       "labels)", min=0, below=1, reads=IMAGE)
    ema_momentum: float = opt(0.99, "semi-supervised: teacher = momentum x teacher + (1 - momentum) x student, every step",
                              min=0, below=1, reads=IMAGE)
    distill_weight: float = opt(1.0, "semi-supervised: weight of the distillation loss (student vs the teacher's soft "
                                     "pseudo-labels)", min=0, reads=IMAGE)
    ssl_weight: float = opt(0.1, "semi-supervised: weight of the DINO-style agreement loss across crops", min=0,
                            reads=IMAGE)
    # --- docrep: self-supervised document representation (tasks/docrep.py, docrep/) ---
    docrep_objective: str = opt("declutr", "docrep: positives = two different chunks of one document (declutr) or one "
                                           "chunk seen twice with dropout (simcse); negatives = the batch's other "
                                           "documents", choices=("declutr", "simcse"), reads=DOCREP)
    docrep_temperature: float = opt(0.05, "docrep: InfoNCE temperature on cosine similarities", above=0,
                                    reads=DOCREP)
    docrep_chunk_length: int = opt(128, "docrep: tokens per chunk, special tokens included (capped at the model's "
                                        "input length): the training views and the document vectors (mean over all "
                                        "chunks)",
                                   min=8, reads=DOCREP)
    docrep_pooling: str = opt("mean", "docrep: chunk vector = mean of its token states (mean) or its first token's "
                                      "(cls); a document vector is always the mean of its chunk vectors",
                              choices=("mean", "cls"), reads=DOCREP)
    docrep_baseline: str = opt(None, "docrep: train nothing, evaluate this representation on the same split with the "
                                     "same classifier: " + " | ".join(DOCREP_BASELINES) + " (with --method full)",
                               choices=(None,) + DOCREP_BASELINES, reads=DOCREP)
    docrep_split_seed: int = opt(0, "docrep: seed of the stratified train/test document split (and of "
                                    "--docrep-max-docs)", min=0, reads=DOCREP)
    docrep_test_fraction: float = opt(0.2, "docrep: share of documents in the test split", above=0, below=1,
                                      reads=DOCREP)
    docrep_max_docs: int = opt(None, "docrep: a stratified seeded subset of the corpus, taken before the split (bounds "
                                     "training and the evaluation's embedding on CPU)", min=4, reads=DOCREP)
    label_column: str = opt(None, "docrep: label column of a CSV / JSONL file or hub dataset (default label; "
                                  "bbc-docrep from the hub: label_text)", reads=DOCREP)

    sources = {}  # not a field: option -> the level its value came from (set by build_config)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)  # fields only (not ``sources``)


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


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _range_error(name: str, value, meta) -> str | None:
    if value is None:
        return None
    if meta["choices"] is not None and value not in meta["choices"]:
        return f"must be one of {', '.join(str(c) for c in meta['choices'] if c is not None)}"
    bounds = [("min", lambda b: value >= b, ">="), ("max", lambda b: value <= b, "<="),
              ("above", lambda b: value > b, ">"), ("below", lambda b: value < b, "<")]
    bad = [(k, sym) for k, ok, sym in bounds if meta[k] is not None and not ok(meta[k])]
    if not bad:
        return None
    if meta["why"]:
        return meta["why"]
    lo = [(k, s) for k, s in (("min", ">="), ("above", ">")) if meta[k] is not None]
    hi = [(k, s) for k, s in (("max", "<="), ("below", "<")) if meta[k] is not None]
    if lo and hi:
        lb = "[" if lo[0][0] == "min" else "("
        rb = "]" if hi[0][0] == "max" else ")"
        return f"must be in {lb}{meta[lo[0][0]]:g}, {meta[hi[0][0]]:g}{rb}"
    k, sym = (lo or hi)[0]
    return f"must be {sym} {meta[k]:g}"


def validate(cfg: RunConfig) -> None:
    """Declared ranges and choices of every option; method- and task-specific cross-option checks
    live in ``Method.validate`` / ``Task.validate``."""
    if not cfg.task:
        raise UserError("--task is required (tunelab list shows the tasks)")
    if cfg.lr is None:
        raise ValueError(f"no learning rate resolved for --method {cfg.method} (its option_defaults must set lr)")
    for name, f in FIELDS.items():
        why = _range_error(name, getattr(cfg, name), f.metadata)
        if why:
            raise UserError(f"{flag(name)} {getattr(cfg, name)}: {why}")
    if cfg.data_dir is not None and not os.path.isdir(cfg.data_dir):
        raise UserError(f"--data-dir {cfg.data_dir}: no such folder")
