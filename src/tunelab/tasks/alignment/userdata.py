"""The alignment tasks on the user's own data: the common data options (``--train-file`` /
``--validation-file`` / ``--test-file``, or ``--dataset`` with ``--*-split``; read by
tasks/datafiles.py) -> examples in the row formats of formats.py.

No validation data: a share ``--eval-fraction`` of the usable train examples is held out with the
family's fixed split seed (preference.seeded_split: the same pairs for every run seed, and for an
hh-rlhf file the same as the hh-rlhf folder reader's). A test split, when given, is
evaluated once after training as ``test_*`` metrics and never decides anything (``finish``).
"""

from ...errors import UserError
from ..base import Split
from ..datafiles import DATA_OPTIONS, check_options, has_user_data, load_user_splits
from .formats import detect, render_examples, rows_to_examples
from .preference import SPLIT_SEED, seeded_split

__all__ = ["DATA_OPTIONS", "UserPairs", "has_user_data", "render_context", "finish"]


class UserPairs:
    """Every split of the run's own data, parsed once (``configure``: before anything is written)."""

    def __init__(self, cfg, task):
        check_options(cfg, task.name)
        if getattr(cfg, "subset", None):
            raise UserError("--subset: names an hh-rlhf subset folder under --data-dir; not with --train-file / --dataset")
        data = load_user_splits(cfg)
        self.kind, self.task = ("sft" if task.objective == "sft" else "preference"), task.name
        self.format = detect(data.splits["train"].column_names, self.kind, data.sources["train"], task.name)
        self.splits = {name: self._parse(data, name) for name in data.splits}
        if "validation" not in self.splits:
            self._hold_out(cfg.eval_fraction)
        self.paired = all(e.rejected is not None or (e.messages and e.messages.get("rejected") is not None)
                          for e in self.splits["validation"].examples)

    def _parse(self, data, name) -> Split:
        ds = data.splits[name]
        fmt = detect(ds.column_names, self.kind, data.sources[name], self.task)
        if fmt != self.format:
            raise UserError(f"{data.sources[name]}: {fmt} data, but the train data is {self.format} "
                            "(every split in one format)")
        lines = data.lines.get(name)
        rows = ((i, lines[i] if lines else i, row) for i, row in enumerate(ds))
        examples, skipped = rows_to_examples(rows, fmt, self.kind, lambda i: data.where(name, i))
        if not examples:
            raise UserError(f"{data.sources[name]}: no usable examples for the {name} split "
                            f"({len(ds)} rows, skipped: {skipped})")
        info = {**data.info_of(name), "format": fmt, "examples": len(examples)}
        if skipped:
            info["skipped"] = skipped
        return Split(name, examples, data.files_of(name), info)

    def _hold_out(self, fraction: float) -> None:
        """A fixed-seed share of the train examples (after skipped rows: as the hh-rlhf folder reader
        splits one file, so an hh-rlhf file gives the same train / validation pairs)."""
        train = self.splits["train"]
        tr, ev = seeded_split(len(train.examples), fraction)
        if not tr or not ev:
            raise UserError(f"{train.info.get('source', 'train')}: {len(train.examples)} usable example(s); too few "
                            "to hold out a validation split (give --validation-file / --validation-split)")
        record = {"from": "train", "fraction": float(fraction), "seed": SPLIT_SEED, "sizes": {"train": len(tr),
                  "validation": len(ev)}, "procedure": "tasks/splits.py seeded_split of the usable examples"}
        for name, idx in (("validation", ev), ("train", tr)):
            self.splits[name] = Split(name, [train.examples[i] for i in idx], dict(train.files),
                                      {**train.info, "examples": len(idx), "held_out": record})

    @property
    def eval_splits(self) -> tuple:
        return ("validation", "test") if "test" in self.splits else ("validation",)

    def load(self, split: str) -> Split:
        s = self.splits[split]
        return Split(s.name, list(s.examples), dict(s.files), dict(s.info))


def render_context(task, ctx) -> str | None:
    """Message lists -> text with the model's tokenizer, in place on ``ctx``; -> how (None: all text)."""
    tok = ctx.tokenizer
    src = task.user.splits["train"].info.get("source", "train") if getattr(task, "user", None) else "train"
    ctx.train_examples, how = render_examples(ctx.train_examples, tok, src)
    ctx.train_all = render_examples(ctx.train_all, tok, src)[0] if ctx.train_all else ctx.train_all
    for s in ctx.eval_splits:
        s.examples = render_examples(s.examples, tok, s.info.get("source", s.name))[0]
    return how


def finish(task, ctx, summary, how):
    """After training: the test split's metrics (``test_*``, predictions under "test") and run.json's
    ``alignment.data_format``."""
    user = getattr(task, "user", None)
    fmt = {"format": user.format if user else task.data,
           "messages": how or "none (text fields)"}
    if how == "chat_template":
        fmt["chat_template"] = "the model's tokenizer.chat_template (trl.data_utils.apply_chat_template)"
    elif how == "human_assistant":
        fmt["chat_template"] = "none in the tokenizer: hh-rlhf's '\\n\\nHuman: ... \\n\\nAssistant:' form"
    summary.record.setdefault("alignment", {})["data_format"] = fmt
    test = [s for s in ctx.eval_splits if s.name == "test"]
    if test:
        metrics, rows, pairs = evaluate_split(task, ctx, test[0].examples)
        summary.final_metrics.update({f"test_{k}": v for k, v in metrics.items()})
        summary.final_predictions = {**(summary.final_predictions or {}), "test": (rows, pairs)}
    return summary


def evaluate_split(task, ctx, examples):
    """The held-out evaluation of fit.py (same metrics, same truncation) on another split."""
    from .collate import coh_inference_ids
    from .data import tokenize_pairs
    from .evaluate import lm_preference_metrics, reward_preference_metrics

    cfg, tok = ctx.cfg, ctx.tokenizer
    pairs = tokenize_pairs(examples, tok, cfg.max_prompt_length, cfg.max_response_length)
    if task.objective == "reward":
        metrics, rows = reward_preference_metrics(ctx.model, pairs, tok.pad_token_id, cfg.eval_batch_size, ctx.device)
    else:
        context = (lambda ids: coh_inference_ids(tok, ids)) if task.objective == "coh" else list
        metrics, rows = lm_preference_metrics(ctx.model, pairs, tok.pad_token_id, cfg.eval_batch_size, ctx.device,
                                              context)
    return metrics, rows, pairs
