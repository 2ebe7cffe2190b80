"""The task contract: what a task family provides, so that the runner needs to know none of them.

A ``Task`` (one registered name; a family is a module of them) provides:

- ``head``: the registered model head (``models/heads.py``: auto class, PEFT task type, processor);
- its data: ``load(split, data_dir) -> Split`` for ``"train"`` and every name in ``eval_splits``
  (the first is the one reported and used for early stopping);
- its metrics: ``metric_names`` (registered in ``tunelab.metrics``; the first is the main metric);
- its default options: ``option_defaults(method)`` (level 3 of config.py's merge order) and the
  option checks it needs (``validate``); ``configure(cfg)`` returns a copy bound to one run;
- training and evaluation: ``fit(ctx) -> FitSummary`` (train/tracker.py: history, best epoch, final
  metrics and predictions, the loop's state, extra run.json keys in ``record``). ``SupervisedTask``
  (tasks/supervised.py) implements it for every family trained with tunelab's loop from four small
  hooks (encode rows, collate, turn model outputs into predictions, compute metrics). A family that
  only adds evaluations or run.json keys around training implements ``before_fit`` (e.g. the base
  model's scores) and ``after_fit`` (e.g. a held-out test split, a confusion matrix), not ``fit``;
  ``train_loop`` is the one call of ``train.loop.train``. A family that needs another trainer (the
  alignment objectives: TRL) overrides ``fit`` and still uses the shared optimizer builder and
  epoch tracker;
- ``write_predictions(path, predictions)``: its ``predictions.tsv``.
"""

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from ..train.tracker import FitSummary  # noqa: F401  (the contract's return type, defined beside the tracker)


def sha256_file(path: str) -> str:
    """Hex sha256 of a data file (recorded in run.json ``data``)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def progress_bar(total: int, desc: str, progress=None):
    """``tunelab predict``'s bar (tqdm, stderr): shown when ``progress`` is True, hidden when False,
    by default when there are more than 256 inputs and stderr is a terminal."""
    import sys

    from tqdm import tqdm

    show = progress if progress is not None else (total > 256 and sys.stderr.isatty())
    return tqdm(total=total, desc=desc, unit="input", file=sys.stderr, dynamic_ncols=True, mininterval=1.0,
                disable=not show)


@dataclass
class Example:
    texts: tuple  # one or two strings
    label: object  # int class id or float score
    line: int = 0  # 1-based line in the source file (0 for hub rows)


@dataclass
class Split:
    name: str  # e.g. "validation", "validation_mismatched"
    examples: list
    files: dict = field(default_factory=dict)  # path -> sha256 of files read
    info: dict = field(default_factory=dict)  # how the split was made, rows skipped, ...


@dataclass
class FitContext:
    """What ``Task.fit`` gets from the runner: a loaded, prepared model (the method already decided
    what trains), its processor, the data, and the resolved options (``cfg.lr`` etc.)."""

    model: object
    processor: object  # tokenizer / feature extractor / processor (the head's load_processor)
    method: object  # methods.base.Method (duck-typed: tasks never import methods)
    cfg: object  # RunConfig, fully resolved
    device: object
    train_examples: list
    eval_splits: list  # [Split]
    model_source: str  # resolved folder / hub id of the base model
    out_dir: str
    layout: object = None  # models.Layout
    head_names: tuple = ()  # parameter names that belong to the head (their own lr: cfg.head_lr)
    on_epoch: object = None  # callable(epoch_record, predictions): the runner saves run.json
    train_all: list = field(default_factory=list)  # the whole train split (train_examples is the subsample)

    @property
    def tokenizer(self):
        return getattr(self.processor, "tokenizer", self.processor)


class Task(ABC):
    """One task. Subclasses set the class attributes and implement ``load``, ``fit`` and
    ``write_predictions`` (``SupervisedTask`` implements the last two for loop-trained families)."""

    name = ""
    family = ""  # e.g. "glue", "alignment": options can be scoped to a family (``reads`` of a declared option)
    head = "classification"  # a registered models.heads.Head
    num_labels = 2
    metric_names: tuple = ("accuracy",)
    eval_splits: tuple = ("validation",)
    defaults: dict = {}  # the family's option defaults (see option_defaults)
    report_metrics: tuple = ()  # the report's metric columns; empty: every metric in run.json
    revision = 1  # raise when results change at unchanged options (compare re-runs its cached cells)
    holds_out_selection = False  # --selection-split (a validation split carved from train) supported
    # what the runner and the option checks ask of a task (attributes, not lists of names elsewhere):
    # common options (config.py) that only the tasks listing them here read (config.tasks_reading):
    # max_seq_length, eval_fraction, dataset, dataset_config, text_column
    shared_options: tuple = ()
    resumable = False  # trained by tunelab's loop, which checkpoints (--save-every) and resumes (--resume)
    data_parallel = False  # runs under torchrun / accelerate launch (train/distributed.py)
    data_parallel_why = "builds its own batches or training loop"  # said when it does not

    @property
    def main_metric(self) -> str:
        return self.metric_names[0]

    def option_defaults(self, method) -> dict:
        """Option defaults of this task for ``method`` (a Method class); they win over the method's."""
        return dict(self.defaults)

    def configure(self, cfg) -> "Task":
        """The task bound to one run's options (a copy when it keeps any); default: itself."""
        return self

    def validate(self, cfg) -> None:
        """Task-specific option checks, run before any data, model or output is touched."""

    @abstractmethod
    def load(self, split: str, data_dir: str | None) -> Split:
        """One split's examples (``"train"`` or a name in ``eval_splits``)."""

    def load_model(self, name: str, allow_pickle: bool = False):
        """(model, processor, layout, source) with this task's head."""
        from ..models import load_backbone

        return load_backbone(name, self.head, self.num_labels, allow_pickle=allow_pickle)

    @abstractmethod
    def fit(self, ctx: FitContext) -> FitSummary:
        """Train ``ctx.model`` and evaluate it after every epoch; return a ``FitSummary``."""

    # ------------------------------------------------------------ hooks of a loop-trained fit
    def before_fit(self, ctx: FitContext, evaluate):
        """Runs once the data is built, before the first step (``evaluate(model) -> (metrics,
        predictions)`` is the per-epoch evaluation); what it returns is handed to ``after_fit``."""
        return None

    def after_fit(self, ctx: FitContext, summary: FitSummary, before) -> dict:
        """Runs after training; may add to ``summary.final_metrics`` / ``final_predictions`` (e.g. a
        held-out split evaluated once); returns extra run.json keys (merged into ``summary.record``)."""
        return {}

    def train_loop(self, ctx: FitContext, train_loader, evaluate, **overrides) -> FitSummary:
        """The one call of ``train.loop.train`` (precision, accumulation, checkpoints, data-parallel,
        the epoch tracker) with the run's options; ``overrides``: its keyword arguments (``loss_fn``,
        ``lr``, ``head_lr``, ``extra_params``, ``on_step``, ``epoch_fields`` ...)."""
        from ..train.loop import train

        cfg = ctx.cfg
        kw = {"lr": cfg.lr, "on_epoch": ctx.on_epoch, "head_lr": cfg.head_lr, "head_names": ctx.head_names,
              "main_metric": self.main_metric, "loss_fn": getattr(self, "loss", None)}
        kw.update(overrides)
        if kw["loss_fn"] is None:
            del kw["loss_fn"]  # the model's own loss
        lr = kw.pop("lr")
        return train(ctx.model, ctx.method, train_loader, evaluate, cfg, lr, ctx.device, **kw)

    @abstractmethod
    def write_predictions(self, path: str, predictions: dict) -> None:
        """Write ``predictions.tsv`` from the summary's ``final_predictions``."""

    # ------------------------------------------------------------ tunelab predict (predict.py)
    def label_names(self) -> list | None:
        """Class names by id (``id2label`` of a predicting or exported model); None: no classes."""
        return None

    def restore(self, record: dict) -> None:
        """Before ``load_model`` on a finished run (predict / export): take back what ``load`` would
        have set from the data and the model needs (e.g. the class names of an image folder) from its
        run.json ``record`` (``record["run_dir"]``: the run folder it was read from). Default: nothing."""

    def read_inputs(self, path: str, cfg) -> list:
        """``tunelab predict --input PATH``: the inputs in a file (or folder) of the format and columns
        this family trains on (a label column may be there or not), in file order."""
        from ..errors import UserError

        raise UserError(f"tunelab predict: task {self.name} does not predict on new inputs (no read_inputs)")

    def text_inputs(self, texts: list, cfg) -> list:
        """``tunelab predict --text TEXT`` (repeatable): the inputs, for text families."""
        from ..errors import UserError

        raise UserError(f"tunelab predict --text: task {self.name} does not take text inputs; use --input FILE")

    def predict_inputs(self, model, processor, inputs: list, cfg, device, batch_size: int, progress=None):
        """One JSON-ready dict per input, in input order (a list or a generator), from the run's model
        (eval mode, the method's weights loaded) in batches of ``batch_size``; ``progress``: show a
        bar (``predict.progress_bar``-like; None: when long)."""
        from ..errors import UserError

        raise UserError(f"tunelab predict: task {self.name} does not predict on new inputs (no predict_inputs)")

    def metrics(self, predictions, references) -> dict:
        from ..metrics import compute

        return compute(self.metric_names, predictions, references)
