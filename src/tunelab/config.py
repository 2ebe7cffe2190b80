"""Options of a run: the declaration machinery, the registry of declared options and ``RunConfig``.

Each option is declared once, by its owner: the common ones (task, method, model, seed, lr, ...)
below; a method's in its module (``methods/lora.py``: ``lora_r`` ...), a task family's in its
package (``tasks/image/``: ``augment`` ...). A declaration is a class of annotated ``opt(...)``
fields under ``@declare(owner, kind, reads=...)``, like a dataclass (or PEFT's ``LoraConfig``): the
type, default, valid range / choices, help and **who reads it** (``reads``: method names,
``family:<task family>``, ``task:<name>``, or traits: ``methods_with("selects_layers")``,
``tasks_with("resumable")``; empty = every run). Each option is one CLI flag (``lora_r`` ->
``--lora-r``, in its owner's ``--help`` group) and one YAML key (``lora_r`` or ``lora-r``). Giving an
option that the chosen method or task does not read is an error (``--lora-r 4 --method full``).

``RunConfig``'s fields are the registered options (common first, then methods', then task
families', each owner in declaration order). This module imports no method or task: the task
registry (``tunelab.tasks``, imported by everything that resolves a run) registers a loader that
imports every method and family, run the first time the complete set is needed (``FIELDS``,
``RunConfig(...)``).

Defaults are merged in one documented order (later wins):

1. the option's declared default;
2. the method's defaults (``Method.option_defaults(given)``: its learning rate; full FT: batch 16 too;
   ALF with ``--adapter lora``: LoRA's learning rate);
3. the task family's defaults (``Task.option_defaults(method)``: e.g. small batches and an lr
   anchor for causal-LM alignment);
4. what the user gave: preset / study / YAML file, then command-line flags and ``key=value``.

``head_lr`` left open means "the same as lr". The resulting ``RunConfig`` is fully resolved:
run.json's ``config`` records it and ``config_sources`` says which level each value came from.
"""

import argparse
import difflib
import os
from collections.abc import Mapping

import yaml

from .errors import UserError

TYPES = {"str": str, "int": int, "float": float, "bool": bool}
KINDS = ("common", "method", "task family")  # owner kinds, in the order of RunConfig's fields and --help groups


class Trait:
    """A reader given by what it is, not its name: every method (``kind`` "method") or every task
    (``kind`` "task") whose attribute ``attr`` is truthy, equals ``value``, or (``contains``) holds it."""

    def __init__(self, kind: str, attr: str, value=True, contains=None):
        self.kind, self.attr, self.value, self.contains = kind, attr, value, contains

    def matches(self, obj) -> bool:
        v = getattr(obj, self.attr, None)
        if self.contains is not None:
            return self.contains in (v or ())
        return bool(v) if self.value is True else v == self.value

    def __repr__(self):
        what = (f"{self.attr} containing {self.contains}" if self.contains is not None
                else self.attr if self.value is True else f"{self.attr}={self.value}")
        return f"{self.kind}s with {what}"

    def __eq__(self, other):
        return isinstance(other, Trait) and repr(self) == repr(other)

    def __hash__(self):
        return hash(repr(self))


def methods_with(attr: str, value=True) -> Trait:
    """``reads``: every method whose trait ``attr`` is set (or equals ``value``): ``methods_with("selects_layers")``,
    ``methods_with("trains", "virtual_tokens")``."""
    return Trait("method", attr, value)


def tasks_with(attr: str, value=True, contains=None) -> Trait:
    """``reads``: every task whose attribute ``attr`` is set / equals ``value`` / ``contains`` an item:
    ``tasks_with("resumable")``, ``tasks_with("shared_options", contains="eval_fraction")``."""
    return Trait("task", attr, value, contains)


class Option:
    """One declared option (what ``FIELDS[name]`` is): ``name``, ``type``, ``default``, ``metadata``
    (help, reads, min, max, above, below, choices, why), ``owner`` and ``kind``."""

    def __init__(self, name, type, default, metadata, owner, kind):
        self.name, self.type, self.default, self.metadata = name, type, default, metadata
        self.owner, self.kind = owner, kind

    @property
    def reads(self) -> tuple:
        return self.metadata["reads"]

    @property
    def py_type(self):
        return self.type if isinstance(self.type, type) else TYPES[self.type]

    def __repr__(self):
        return f"Option({self.name!r}, {getattr(self.type, '__name__', self.type)}, default={self.default!r}, owner={self.owner!r})"


def _readers(reads) -> tuple:
    return (reads,) if isinstance(reads, (str, Trait)) else tuple(reads)


class _Spec:
    def __init__(self, default, metadata):
        self.default, self.metadata = default, metadata


def opt(default, help, *, reads=None, min=None, max=None, above=None, below=None, choices=None, why=None):
    """One option inside a ``@declare`` class: ``min``/``max`` inclusive, ``above``/``below`` exclusive
    bounds, ``choices`` a tuple; ``why`` replaces the generated range message; ``reads`` (optional)
    replaces the class's readers for this option."""
    return _Spec(default, {"help": help, "reads": None if reads is None else _readers(reads), "min": min, "max": max,
                           "above": above, "below": below, "choices": choices, "why": why})


_OPTIONS: dict = {}  # name -> Option, in field order (see _order)
_OWNER_ORDER: dict = {}  # (kind, owner) -> first registration number (declaration order inside a kind)
_LOADERS: list = []  # callables that import every method and task family (registered by tunelab.tasks)
_loaded = False


def _order() -> None:
    global _OPTIONS
    items = list(_OPTIONS.values())
    seq = {name: i for i, name in enumerate(_OPTIONS)}
    items.sort(key=lambda o: (KINDS.index(o.kind), o.owner if o.kind != "common" else "", seq[o.name]))
    _OPTIONS = {o.name: o for o in items}


def declare(owner: str, kind: str = "method", *, reads=(), title: str | None = None):
    """Class decorator registering the class's annotated ``opt(...)`` fields as options of ``owner``
    (a method name, a task family, or "common"), read by ``reads`` unless an option says otherwise;
    ``title``: its ``--help`` group (default "method OWNER" / "task family OWNER").
    The class gets ``__options__`` (their names; ``undeclare(cls)`` removes them again)."""
    if kind not in KINDS:
        raise ValueError(f"declare: kind must be one of {KINDS}")

    def deco(cls):
        names = []
        for name, typ in cls.__dict__.get("__annotations__", {}).items():
            spec = cls.__dict__.get(name)
            if not isinstance(spec, _Spec):
                raise TypeError(f"{cls.__name__}.{name}: declare it with opt(default, help, ...)")
            if name in _OPTIONS:
                raise ValueError(f"option {name!r} declared twice ({_OPTIONS[name].owner} and {owner})")
            meta = dict(spec.metadata)
            if meta["reads"] is None:
                meta["reads"] = _readers(reads)
            _OPTIONS[name] = Option(name, typ, spec.default, meta, owner, kind)
            _OPTIONS[name].title = title or ("common options" if kind == "common" else f"{kind} {owner}")
            names.append(name)
        _order()
        cls.__options__ = tuple(names)
        return cls

    return deco


def undeclare(cls) -> None:
    """Remove the options ``@declare`` registered from ``cls`` (a test's plugin cleaning up)."""
    for name in getattr(cls, "__options__", ()):
        _OPTIONS.pop(name, None)


def add_loader(fn) -> None:
    """Register a callable that imports every module declaring options (``tunelab.tasks`` does)."""
    if fn not in _LOADERS:
        _LOADERS.append(fn)


def load_options() -> None:
    """Make the registry complete: run the loaders once (later imports still add their options)."""
    global _loaded
    if _loaded:
        return
    if not _LOADERS:
        raise RuntimeError("the options of methods and task families are declared in their modules: import "
                           "tunelab.tasks (or tunelab.resolve) before using the complete option set")
    _loaded = True  # before the loaders: a module reading FIELDS while it is imported sees what is declared so far
    try:
        for fn in _LOADERS:
            fn()
    except BaseException:
        _loaded = False
        raise


class _Fields(Mapping):
    """name -> Option of every declared option (loads every method and family on first use)."""

    def __getitem__(self, name):
        load_options()
        return _OPTIONS[name]

    def __iter__(self):
        load_options()
        return iter(list(_OPTIONS))

    def __len__(self):
        load_options()
        return len(_OPTIONS)

    def __contains__(self, name):
        load_options()
        return name in _OPTIONS


FIELDS = _Fields()


def owners() -> list:
    """[(group title, [option names])] in field order: ``--help``'s groups, one per owner."""
    load_options()
    out = []
    for o in _OPTIONS.values():
        if not out or out[-1][0] != o.title:
            out.append((o.title, []))
        out[-1][1].append(o.name)
    return out


def tasks_reading(name: str) -> Trait:
    """``reads`` of a common option that only some tasks read: those listing it in ``Task.shared_options``."""
    return tasks_with("shared_options", contains=name)


@declare("common", "common")
class CommonOptions:
    """The options every run has (or that several task families share: ``Task.shared_options``)."""

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
                                   "sliding window's size (default 512)", min=8, reads=tasks_reading("max_seq_length"))
    max_train_samples: int = opt(None, "seeded random subset of the train split", min=1)
    max_eval_samples: int = opt(None, "seeded random subset of each eval split", min=1)
    selection_split: float = opt(None, "hold out this share of the train split (stratified by label, seeded by a fixed "
                                       "seed, the same for every method and seed) and evaluate on it instead of the "
                                       "dev/test split: model selection that never sees the reported split (compare's "
                                       "search: uses it; tasks whose family supports it: glue)", above=0, below=1,
                                 reads=tasks_with("holds_out_selection"))
    early_stopping_patience: int = opt(None, "stop after N epochs without main-metric improvement", min=1)
    divergence_factor: float = opt(10.0, "flag the run as diverged when a 5-step mean loss exceeds this x the first "
                                         "5-step mean (a non-finite loss or gradient norm always stops the run)", above=1)
    grad_accum: int = opt(1, "accumulate gradients over N batches per optimizer step (effective batch = batch_size x N)",
                          min=1)
    threads: int = opt(None, "torch CPU threads (default: torch's)", min=1)
    device: str = opt("auto", "auto | cpu | cuda", choices=("auto", "cpu", "cuda"))
    save_every: int = opt(None, "write a checkpoint into OUTPUT_DIR/checkpoint every N optimizer steps (the last one "
                                "kept; deleted when the run completes): tunelab run --resume OUTPUT_DIR continues a "
                                "killed run from it (train/checkpoint.py)", min=1, reads=tasks_with("resumable"))
    group_by_length: bool = opt(False, "train on batches of similar length (shuffled 8-batch chunks sorted by length, "
                                       "as HF group_by_length) and evaluate in length order: less padding. Default on "
                                       "for tasks trained by tunelab's loop (--no-group-by-length turns it off)")
    fused_adamw: bool = opt(True, "AdamW's fused kernel (also on CPU; HF Trainer's default too): same algorithm, a ~10x "
                                  "faster optimizer step; --no-fused-adamw for torch's foreach AdamW")
    precision: str = opt("auto", "arithmetic of the training loop: auto (bf16 autocast + TF32 on a CUDA GPU with bf16, "
                                 "fp32 on CPU) | fp32 | bf16 | fp16 (CUDA, with a gradient scaler); weights stay fp32",
                         choices=("auto", "fp32", "bf16", "fp16"))
    gradient_checkpointing: bool = opt(False, "recompute the layers' activations in the backward pass instead of keeping "
                                              "them (less memory, ~30% more compute; HF's option, non-reentrant): "
                                              "models that support it (train/grad_checkpointing.py)")
    activation_cache: bool = opt(True, "compute the frozen embeddings + bottom layers once per example (in eval mode: no "
                                       "dropout there) when they never train (selective / LoRA on top layers, head "
                                       "only); --no-activation-cache to run them every step")
    activation_cache_mb: int = opt(2048, "activation cache in RAM up to this many MB, else a memory-mapped file in the "
                                         "run folder", min=0)
    eval_fraction: float = opt(0.1, "share held out as the validation split (seeded, fixed) when the data has no separate "
                                    "one: alignment pairs; asr: utterances of an audiofolder without split folders; "
                                    "images: stratified (image tasks default to 1/12: 5,000 of 60,000)",
                               above=0, below=1, reads=tasks_reading("eval_fraction"))
    dataset: str = opt(None, "asr / docrep: Hugging Face hub dataset id, instead of --data-dir (asr: an audiofolder; "
                             "docrep: a corpus folder or file; bbc-docrep without either: a local "
                             "shared/data/news/bbc, else SetFit/bbc-news); tasks reading --train-file (text-"
                             "classification ...): a hub id, a save_to_disk folder or a folder of data files", reads=tasks_reading("dataset"))
    dataset_config: str = opt(None, "asr / docrep: the hub dataset's configuration name (e.g. clean, en)", reads=tasks_reading("dataset_config"))
    text_column: str = opt(None, "text column: asr: the transcript column of a hub dataset or an audiofolder's "
                                 "metadata.csv (default transcription); docrep: of a CSV / JSONL file or hub dataset "
                                 "(default text); text-classification: the (first) text (default: text, sentence, "
                                 "sentence1, question, ... whichever the data has)", reads=tasks_reading("text_column"))
    label_column: str = opt(None, "label column: docrep: of a CSV / JSONL file or hub dataset (default label; "
                                  "bbc-docrep from the hub: label_text); text-classification: default label (or labels)",
                            reads=tasks_reading("label_column"))
    # The user's own data (tasks/datafiles.py), as HF's run_glue.py / run_ner.py: files, or --dataset + split names.
    train_file: str = opt(None, "training data file: CSV, TSV, JSON / JSONL or Parquet (by extension)",
                          reads=tasks_reading("train_file"))
    validation_file: str = opt(None, "validation data file (decides the best epoch and early stopping); none: a seeded "
                                     "--eval-fraction of train (stratified when the labels allow), recorded in run.json",
                               reads=tasks_reading("validation_file"))
    test_file: str = opt(None, "test data file: evaluated alongside as test_* metrics, never decides anything",
                         reads=tasks_reading("test_file"))
    train_split: str = opt(None, "--dataset's training split (default train)", reads=tasks_reading("train_split"))
    validation_split: str = opt(None, "--dataset's validation split (default: validation, valid, dev or eval, the one it "
                                      "has; none: held out from train)", reads=tasks_reading("validation_split"))
    test_split: str = opt(None, "--dataset's test split (default test, when it has one)", reads=tasks_reading("test_split"))
    report_to: str = opt("none", "experiment trackers, comma-separated: tensorboard, mlflow, wandb (offline) or none: per-"
                                 "step loss / lr / grad norm, per-epoch and final metrics, the config, run.json and the "
                                 "plots (train/reporting.py; pip install 'tunelab[trackers]')")
    logging_dir: str = opt(None, "--report-to tensorboard: the event files' folder (default OUTPUT_DIR/tensorboard); "
                                 "wandb: its offline folder (default OUTPUT_DIR)")
    experiment_name: str = opt(None, "--report-to: the MLflow experiment / W&B project (default $MLFLOW_EXPERIMENT_NAME "
                                     "or $WANDB_PROJECT, else tunelab; a compare: the study's name)")


class RunConfig:
    """Every option of a run: one attribute per declared option (``FIELDS``), the declared default
    unless given. ``RunConfig(task=..., lora_r=4)`` loads every method and family first (``FIELDS``)."""

    # Run state, not options (never in run.json's config):
    resume_checkpoint = None  # the checkpoint folder a `tunelab run --resume` continues from (resume.py)
    run_started_at = None  # the run's started_at, which its checkpoints carry (train/checkpoint.py)

    def __init__(self, **values):
        for k in values:
            if k not in FIELDS:
                raise TypeError(f"RunConfig() got an unexpected keyword argument {k!r}")
        for name, f in FIELDS.items():
            setattr(self, name, values.get(name, f.default))
        self.sources = {}  # option -> the level its value came from (set by build_config)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in FIELDS}  # options only (not ``sources`` or run state)

    def __eq__(self, other):
        return isinstance(other, RunConfig) and self.as_dict() == other.as_dict()

    def __repr__(self):
        return "RunConfig(" + ", ".join(f"{k}={v!r}" for k, v in self.as_dict().items()) + ")"


def _key(k: str) -> str:
    return k.replace("-", "_")


def _coerce(name: str, value, where: str):
    if value is None:
        return None
    typ = FIELDS[name].py_type
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


def check_option(name: str, value, where: str | None = None):
    """``value`` (text or a value) as option ``name``'s type, within its declared range / choices; else
    the UserError a run gives (``--seed -1: must be >= 0``)."""
    shown = where or flag(name)
    v = _coerce(name, value, shown)
    why = _range_error(name, v, FIELDS[name].metadata)
    if why:
        raise UserError(f"{shown} {v}: {why}")
    return v


def add_option(parser, name: str, *, help: str | None = None, **kwargs):
    """Add declared option ``name`` to an argparse parser (or group) as ``tunelab run`` has it: its flag,
    type, range / choices check (``check_option``) and help; ``kwargs`` (``default``, ``required``...)
    as argparse's (default: the declared default). Other commands (``tunelab pretrain``) share
    ``tunelab run``'s options this way."""
    f = FIELDS[name]
    text = (help if help is not None else f.metadata["help"]).replace("%", "%%")  # argparse %-formats help
    kwargs.setdefault("default", f.default)
    if f.py_type is bool:
        return parser.add_argument(flag(name), action=argparse.BooleanOptionalAction, help=text, **kwargs)
    return parser.add_argument(flag(name), type=lambda text: check_option(name, text), metavar=name.upper(),
                               help=text, **kwargs)
