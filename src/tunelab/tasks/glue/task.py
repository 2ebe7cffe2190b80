"""The nine GLUE tasks, as a table of specs, from a local GLUE download or the hub (nyu-mll/glue).

Local layout is the standard ``glue_data`` download: ``SST-2/train.tsv``, ``CoLA/dev.tsv``,
``MNLI/dev_matched.tsv`` ... read with the original files' quirks: MRPC's UTF-8 BOM, CoLA's missing
header, no CSV quoting (a field may contain a double quote), columns found by header name so the
extra annotator columns of MNLI dev do not matter. Both sources produce the same ``Example`` rows.
"""

import os
from dataclasses import dataclass

from ...errors import UserError
from ...textio import read_text
from .. import TASKS
from ..base import Example, Split, sha256_file
from ..supervised import TextClassificationTask

BINARY = {"0": 0, "1": 1}
NLI3 = {"entailment": 0, "neutral": 1, "contradiction": 2}
NLI2 = {"entailment": 0, "not_entailment": 1}


@dataclass(frozen=True)
class GlueSpec:
    name: str
    folder: str
    text_cols: tuple  # header names, or column indices when the file has no header
    label_col: object
    labels: dict | None  # raw label -> id; None = regression score
    metrics: tuple
    hub_cols: tuple
    header: bool = True
    ncols: int | None = None  # for header-less files
    eval_files: tuple = (("validation", "dev.tsv"),)


SPECS = [
    GlueSpec("cola", "CoLA", (3,), 1, BINARY, ("mcc", "accuracy"), ("sentence",), header=False, ncols=4),
    GlueSpec("sst2", "SST-2", ("sentence",), "label", BINARY, ("accuracy",), ("sentence",)),
    GlueSpec("mrpc", "MRPC", ("#1 String", "#2 String"), "Quality", BINARY, ("f1", "accuracy"), ("sentence1", "sentence2")),
    GlueSpec("qqp", "QQP", ("question1", "question2"), "is_duplicate", BINARY, ("f1", "accuracy"), ("question1", "question2")),
    GlueSpec("stsb", "STS-B", ("sentence1", "sentence2"), "score", None, ("pearson", "spearman"), ("sentence1", "sentence2")),
    GlueSpec("mnli", "MNLI", ("sentence1", "sentence2"), "gold_label", NLI3, ("accuracy",), ("premise", "hypothesis"),
             eval_files=(("validation_matched", "dev_matched.tsv"), ("validation_mismatched", "dev_mismatched.tsv"))),
    GlueSpec("qnli", "QNLI", ("question", "sentence"), "label", NLI2, ("accuracy",), ("question", "sentence")),
    GlueSpec("rte", "RTE", ("sentence1", "sentence2"), "label", NLI2, ("accuracy",), ("sentence1", "sentence2")),
    GlueSpec("wnli", "WNLI", ("sentence1", "sentence2"), "label", BINARY, ("accuracy",), ("sentence1", "sentence2")),
]


def read_glue_tsv(path: str, spec: GlueSpec, need_label: bool = True) -> list:
    """Parse one GLUE TSV file into Examples; any malformed row is a UserError naming file:line.
    ``need_label=False`` (tunelab predict): a file without the label column gives label None."""
    lines = read_text(path, what="GLUE TSV").split("\n")  # BOM (MRPC) dropped; "\r" kept, stripped below
    if lines and lines[-1] == "":
        lines.pop()
    start = 0
    if spec.header:
        if not lines:
            raise UserError(f"{path}: empty file (expected a header line)")
        header = lines[0].rstrip("\r").split("\t")
        need = list(spec.text_cols) + ([spec.label_col] if need_label or spec.label_col in header else [])
        missing = [c for c in need if c not in header]
        if missing:
            raise UserError(f"{path}:1: header lacks column(s) {missing}; found {header}")
        idx = [header.index(c) for c in spec.text_cols]
        lab = header.index(spec.label_col) if spec.label_col in header else None
        ncols = len(header)
        start = 1
    else:
        idx, lab, ncols = list(spec.text_cols), spec.label_col, spec.ncols
    out = []
    for i, raw in enumerate(lines[start:], start=start + 1):
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) != ncols:
            raise UserError(f"{path}:{i}: expected {ncols} tab-separated columns, found {len(cols)}")
        raw_label = cols[lab].strip() if lab is not None else None
        if raw_label is None:
            label = None
        elif spec.labels is None:
            try:
                label = float(raw_label)
            except ValueError:
                raise UserError(f"{path}:{i}: score {raw_label!r} is not a number") from None
        else:
            if raw_label not in spec.labels:
                raise UserError(f"{path}:{i}: unknown label {raw_label!r} (expected one of {sorted(spec.labels)})")
            label = spec.labels[raw_label]
        out.append(Example(texts=tuple(cols[j] for j in idx), label=label, line=i))
    return out


# Checked (relative to the working directory) when neither --data-dir nor TUNELAB_DATA_DIR is given,
# before falling back to the hub: the classic GLUE download script writes ``glue_data/``.
LOCAL_CANDIDATES = ("glue_data", "data/glue", "../shared/data/glue")


def local_glue_dir(folder: str) -> str | None:
    for cand in LOCAL_CANDIDATES:
        if os.path.isfile(os.path.join(cand, folder, "train.tsv")):
            return cand
    return None


class GlueTask(TextClassificationTask):
    family = "glue"
    shared_options = ("max_seq_length",)  # common options it reads
    holds_out_selection = True  # --selection-split: a validation split carved from train (runner.py)

    def __init__(self, spec: GlueSpec):
        self.spec = spec
        self.name = spec.name
        self.head = "regression" if spec.labels is None else "classification"
        self.num_labels = 1 if spec.labels is None else len(spec.labels)
        self.metric_names = spec.metrics
        self.eval_splits = tuple(s for s, _ in spec.eval_files)
        self.text_fields = len(spec.text_cols)

    def label_names(self) -> list | None:
        return None if self.spec.labels is None else sorted(self.spec.labels, key=self.spec.labels.get)

    def read_inputs(self, path: str, cfg) -> list:
        """A GLUE TSV file of this task (its text columns by header name; the label column optional)."""
        if os.path.isdir(path):
            raise UserError(f"--input {path}: a folder; task {self.name} reads a GLUE TSV file")
        return read_glue_tsv(path, self.spec, need_label=False)

    def _local_dir(self, data_dir: str) -> str:
        for cand in (os.path.join(data_dir, self.spec.folder), os.path.join(data_dir, "glue", self.spec.folder)):
            if os.path.isdir(cand):
                return cand
        raise UserError(f"--data-dir {data_dir}: no folder {self.spec.folder}/ for task {self.name}")

    def load(self, split: str, data_dir: str | None) -> Split:
        data_dir = data_dir or local_glue_dir(self.spec.folder)
        if data_dir:
            folder = self._local_dir(data_dir)
            fname = "train.tsv" if split == "train" else dict(self.spec.eval_files).get(split)
            if fname is None:
                raise UserError(f"task {self.name} has no split {split!r}")
            path = os.path.join(folder, fname)
            if not os.path.isfile(path):
                raise UserError(f"--data-dir {data_dir}: missing {self.spec.folder}/{fname} ({split} split of {self.name})")
            examples = read_glue_tsv(path, self.spec)
            files = {os.path.abspath(path): sha256_file(path)}
        else:
            examples, files = self._load_hub(split)
        if not examples:
            raise UserError(f"{next(iter(files), self.name)}: the {split} split of {self.name} is empty")
        return Split(split, examples, files)

    def _load_hub(self, split: str):
        try:
            import datasets
            import huggingface_hub

            datasets.logging.set_verbosity_error()  # one error line from us, not retry chatter
            huggingface_hub.utils.logging.set_verbosity_error()
            ds = datasets.load_dataset("nyu-mll/glue", self.name, split=split)
        except Exception as e:  # noqa: BLE001  (network / hub errors become one line)
            raise UserError(f"cannot load nyu-mll/glue/{self.name} from the hub ({type(e).__name__}); "
                            f"pass --data-dir or set TUNELAB_DATA_DIR to a local GLUE folder") from e
        cols = self.spec.hub_cols
        examples = [Example(texts=tuple(r[c] for c in cols), label=r["label"], line=0) for r in ds]
        return examples, {f"hub:nyu-mll/glue/{self.name}/{split}": getattr(ds, "_fingerprint", "")}


for _spec in SPECS:
    TASKS.add(_spec.name, GlueTask(_spec))
