"""The user's own data, for every task family: the common data options read into ``datasets.Dataset`` splits.

The options (declared in config.py, read by a task that lists them in ``Task.shared_options``; the
whole set is ``DATA_OPTIONS``) follow HF's example scripts (``run_glue.py``, ``run_ner.py``):

- ``--train-file`` / ``--validation-file`` / ``--test-file``: CSV, TSV, JSON / JSONL or Parquet, by
  extension (``.csv .tsv .json .jsonl .parquet``);
- or ``--dataset NAME_OR_PATH [--dataset-config C]``: a ``save_to_disk`` folder (``load_from_disk``),
  a local folder of data files or a hub id (``load_dataset``), with ``--train-split`` /
  ``--validation-split`` / ``--test-split`` (defaults: train; validation, valid, dev or eval; test).

How a family uses it (tasks/textcls is the example)::

    from ..datafiles import DATA_OPTIONS, check_options, load_user_splits, hold_out

    class MyTask(SupervisedTask):
        shared_options = DATA_OPTIONS + ("eval_fraction", ...)

        def validate(self, cfg):                 # before anything is read
            check_options(cfg, self.name)
        def configure(self, cfg):                # once per run: read the data, fix the eval splits
            data = load_user_splits(cfg)         # UserData: .splits {"train", ["validation"], ["test"]}
            if "validation" not in data.splits:  # no validation data: a seeded (stratified) share of train
                hold_out(data, cfg.eval_fraction, label=lambda row: row["label"])
            ...                                  # data.require_columns(...), data.where(split, i) in errors
        def load(self, split, data_dir):
            return Split(split, examples, data.files_of(split), data.info_of(split))

Every error is a one-line ``UserError`` naming the option, file and line / column: an unknown
extension, a missing file, a CSV / TSV row with the wrong number of fields (file:line), a JSON line
that does not parse, a missing column (with the columns that exist), a ``--dataset`` that cannot be
loaded offline (with the advice to pass a local path). ``UserData.files_of`` gives each file's
sha256 (run.json ``data``), ``UserData.info_of`` how the split was made (run.json ``data_notes``),
including the held-out split's seed, fraction and procedure (tasks/splits.py ``seeded_split``).
"""

import csv
import json
import os
from dataclasses import dataclass, field

from ..errors import UserError
from .base import sha256_file
from .splits import seeded_split

FILE_OPTIONS = ("train_file", "validation_file", "test_file")
SPLIT_OPTIONS = ("train_split", "validation_split", "test_split")
DATA_OPTIONS = ("dataset", "dataset_config") + FILE_OPTIONS + SPLIT_OPTIONS
SPLITS = ("train", "validation", "test")
# file extension -> datasets builder
EXTENSIONS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
# split names tried when --validation-split / --test-split is not given
DEFAULT_SPLIT_NAMES = {"train": ("train",), "validation": ("validation", "valid", "dev", "eval"), "test": ("test",)}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def has_user_data(cfg) -> bool:
    """Whether the run names its own data (a file or ``--dataset``)."""
    return bool(getattr(cfg, "dataset", None) or any(getattr(cfg, o, None) for o in FILE_OPTIONS))


def check_options(cfg, task: str) -> None:
    """The data options' checks, before anything is read: a train source, files xor ``--dataset``,
    known extensions, files that exist, split names only with ``--dataset``."""
    files = {o: getattr(cfg, o, None) for o in FILE_OPTIONS}
    if getattr(cfg, "dataset", None) and any(files.values()):
        given = next(o for o, v in files.items() if v)
        raise UserError(f"{flag(given)}: give either data files or --dataset, not both")
    if not getattr(cfg, "dataset", None):
        if not files["train_file"]:
            raise UserError(f"--task {task} needs --train-file FILE (CSV, TSV, JSON / JSONL or Parquet) or "
                            "--dataset NAME_OR_PATH (a save_to_disk folder, a folder of data files or a hub id)")
        for o in SPLIT_OPTIONS + ("dataset_config",):
            if getattr(cfg, o, None):
                raise UserError(f"{flag(o)}: only with --dataset (data files name their split by option)")
        for o, path in files.items():
            if path:
                _builder(path, o)
                if not os.path.isfile(path):
                    raise UserError(f"{flag(o)} {path}: no such file")


def _builder(path: str, option: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext not in EXTENSIONS:
        raise UserError(f"{flag(option)} {path}: unknown file extension {ext or '(none)'!r} (expected "
                        f"{', '.join(EXTENSIONS)})")
    return EXTENSIONS[ext]


@dataclass
class UserData:
    """The splits a run reads (``splits``: "train", and "validation" / "test" when there are any), and
    for each where it came from: ``sources`` (split -> file path or ``DATASET/split``), the row -> line
    map of text files (``lines``), the files' sha256 (``files``) and notes (``info``)."""

    splits: dict
    sources: dict
    files: dict = field(default_factory=dict)  # split -> {path or "hub:..." -> sha256 / fingerprint}
    lines: dict = field(default_factory=dict)  # split -> [1-based line of row i] (CSV / TSV / JSONL files)
    info: dict = field(default_factory=dict)  # split -> notes for run.json

    def where(self, split: str, i: int) -> str:
        """``file:LINE`` (text files) or ``SOURCE row I`` of row ``i`` of ``split`` (for error lines)."""
        lines = self.lines.get(split)
        if lines is not None and i < len(lines):
            return f"{self.sources[split]}:{lines[i]}"
        return f"{self.sources[split]} row {i}"

    def files_of(self, split: str) -> dict:
        return dict(self.files.get(split, {}))

    def info_of(self, split: str) -> dict:
        return dict(self.info.get(split, {}))

    def require_columns(self, columns, option_of: dict | None = None) -> None:
        """Every split has ``columns``; else a UserError naming the split's source, the column (and the
        option that chose it, from ``option_of``) and the columns that exist."""
        for split, ds in self.splits.items():
            for c in columns:
                if c not in ds.column_names:
                    by = f" ({flag(option_of[c])})" if option_of and c in option_of else ""
                    raise UserError(f"{self.sources[split]}: no column {c!r}{by}; columns: {', '.join(ds.column_names)}")


def load_user_splits(cfg) -> UserData:
    """Read the run's data options (see the module docstring) into ``UserData``; splits not given are
    absent (``hold_out`` makes a validation split from train)."""
    _quiet()
    if getattr(cfg, "dataset", None):
        return _load_dataset(cfg)
    data = UserData({}, {})
    for split, o in zip(SPLITS, FILE_OPTIONS):
        path = getattr(cfg, o, None)
        if path:
            ds, lines = read_file(path, o)
            data.splits[split], data.sources[split], data.lines[split] = ds, path, lines
            data.files[split] = {os.path.abspath(path): sha256_file(path)}
            data.info[split] = {"source": f"{flag(o)} {path}", "rows": len(ds)}
    return data


def read_file(path: str, option: str = "train_file"):
    """One data file -> (``datasets.Dataset``, [1-based line of each row] or None). CSV / TSV rows are
    checked for their number of fields first (the file:line of the first wrong one); JSONL lines
    must each parse. CSV/TSV: no NA guessing (an empty field is an empty string; "NA" is text); TSV
    has no quoting (as GLUE's files)."""
    import datasets

    builder = _builder(path, option)
    if not os.path.isfile(path):
        raise UserError(f"{flag(option)} {path}: no such file")
    ext = os.path.splitext(path)[1].lower()
    lines = None
    kwargs = {}
    if builder == "csv":
        tsv = ext == ".tsv"
        lines = _check_csv(path, tsv)
        kwargs = {"keep_default_na": False, "na_filter": False}
        if tsv:
            kwargs.update(sep="\t", quoting=csv.QUOTE_NONE)
    elif ext == ".jsonl" or (ext == ".json" and _looks_like_jsonl(path)):
        lines = _check_jsonl(path)
    try:
        ds = datasets.load_dataset(builder, data_files={"data": os.path.abspath(path)}, split="data", **kwargs)
    except Exception as e:  # noqa: BLE001  (a parser's error becomes one line naming the file)
        raise UserError(f"{flag(option)} {path}: cannot read as {ext[1:].upper()} ({type(e).__name__}: "
                        f"{_one_line(e)})") from None
    if lines is not None and len(lines) != len(ds):
        lines = None  # the parsers disagree on what a row is: errors name rows, not lines
    if len(ds) == 0:
        raise UserError(f"{flag(option)} {path}: no rows")
    return ds, lines


def _check_csv(path: str, tsv: bool) -> list:
    """[line of each data row]; UserError at the first row whose field count differs from the header's."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        try:
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if tsv else csv.reader(f)
            header, lines, start = None, [], 1
            for row in reader:
                if not row or (len(row) == 1 and row[0] == ""):
                    start = reader.line_num + 1
                    continue  # blank line (pandas skips them too)
                if header is None:
                    header = row
                elif len(row) != len(header):
                    raise UserError(f"{path}:{start}: expected {len(header)} {'tab-separated ' if tsv else ''}"
                                    f"fields (as the header), found {len(row)}")
                else:
                    lines.append(start)
                start = reader.line_num + 1
        except csv.Error as e:
            raise UserError(f"{path}:{reader.line_num}: {e}") from None
        except UnicodeDecodeError:
            raise UserError(f"{path}: not UTF-8 text") from None
    if header is None:
        raise UserError(f"{path}: empty file (expected a header line)")
    return lines


def _looks_like_jsonl(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(4096).lstrip()
    return head[:1] == b"{"


def _check_jsonl(path: str) -> list:
    lines = []
    with open(path, encoding="utf-8") as f:
        for n, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{n}: not valid JSON ({e.msg})") from None
            except UnicodeDecodeError:
                raise UserError(f"{path}: not UTF-8 text") from None
            if not isinstance(obj, dict):
                raise UserError(f"{path}:{n}: expected a JSON object per line, found {type(obj).__name__}")
            lines.append(n)
    return lines


def _load_dataset(cfg) -> UserData:
    import datasets

    name, config = cfg.dataset, getattr(cfg, "dataset_config", None)
    where = name + (f" ({config})" if config else "")
    local = os.path.exists(name)
    try:
        if local and _is_saved(name):
            loaded = datasets.load_from_disk(name)
            how = "load_from_disk"
        else:
            loaded = datasets.load_dataset(name, config)
            how = "load_dataset"
    except Exception as e:  # noqa: BLE001
        if local:
            raise UserError(f"--dataset {where}: cannot load this folder with datasets ({type(e).__name__}: "
                            f"{_one_line(e)})") from None
        raise UserError(f"--dataset {where}: cannot be loaded offline (no local folder of that name, and the hub "
                        f"is unreachable or has no such dataset: {type(e).__name__}); pass a local path (a "
                        "save_to_disk folder or a folder of data files) or --train-file FILE") from None
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict({"train": loaded})
    available = list(loaded.keys())
    data = UserData({}, {})
    used = {getattr(cfg, o, None) for o in SPLIT_OPTIONS} - {None}
    for split, o in zip(SPLITS, SPLIT_OPTIONS):
        chosen = getattr(cfg, o, None)
        if chosen:
            if chosen not in loaded:
                raise UserError(f"{flag(o)} {chosen}: --dataset {where} has no such split (splits: {', '.join(available)})")
        else:  # a split already taken (--validation-split test) is not read twice
            chosen = next((s for s in DEFAULT_SPLIT_NAMES[split] if s in loaded and s not in used), None)
            if chosen is None:
                if split == "train":
                    raise UserError(f"--dataset {where}: no train split (splits: {', '.join(available)}); name it "
                                    "with --train-split")
                continue
        used.add(chosen)
        ds = loaded[chosen]
        if len(ds) == 0:
            raise UserError(f"--dataset {where}: split {chosen} has no rows")
        data.splits[split], data.sources[split] = ds, f"{name}/{chosen}"
        data.files[split] = _dataset_files(ds, name, config, chosen, local)
        data.info[split] = {"source": f"--dataset {where} split {chosen} ({how})", "rows": len(ds)}
    return data


def _is_saved(path: str) -> bool:
    """A ``save_to_disk`` folder: a DatasetDict (dataset_dict.json) or a Dataset (state.json)."""
    return os.path.isdir(path) and any(os.path.isfile(os.path.join(path, f)) for f in ("dataset_dict.json", "state.json"))


def _dataset_files(ds, name, config, split, local) -> dict:
    out = {}
    for cf in getattr(ds, "cache_files", None) or []:
        p = cf.get("filename")
        if local and p and os.path.isfile(p) and os.path.abspath(p).startswith(os.path.abspath(name)):
            out[os.path.abspath(p)] = sha256_file(p)
    if not out:
        out[f"hub:{name}{'/' + config if config else ''}/{split}"] = getattr(ds, "_fingerprint", "")
    return out


def hold_out(data: UserData, fraction: float, seed: int = 0, label=None) -> dict:
    """No validation data: a seeded share ``fraction`` of train becomes "validation" (tasks/splits.py
    ``seeded_split``), stratified by ``label(row)`` when given and every class has >= 2 rows; else
    plain. Replaces ``data.splits["train"]`` and ``["validation"]``; returns the split record (also
    in both splits' ``info`` as ``held_out``, for run.json)."""
    train = data.splits["train"]
    rows = None
    if label is not None:
        rows = [label(r) for r in train]
        try:
            counts = {}
            for c in rows:
                counts[c] = counts.get(c, 0) + 1
            if min(counts.values()) < 2:
                rows = None
        except TypeError:  # unhashable labels (lists: multi-label): not stratified
            rows = None
    if len(train) < 2:
        raise UserError(f"{data.sources['train']}: {len(train)} row(s); too few to hold out a validation split "
                        "(give --validation-file)")
    idx = list(range(len(train)))
    parts, record = seeded_split(idx, {"validation": float(fraction)}, seed,
                                 label=(lambda i: rows[i]) if rows is not None else None)
    if not parts["train"]:
        raise UserError(f"{data.sources['train']}: {len(train)} row(s); too few to hold out a validation split")
    record = {"from": "train", "fraction": float(fraction), **record}
    src = data.sources["train"]
    lines = data.lines.get("train")
    for name in ("validation", "train"):
        data.splits[name] = train.select(parts[name])
        data.sources[name] = src
        if lines is not None:
            data.lines[name] = [lines[i] for i in parts[name]]
        data.files[name] = data.files_of("train") if name == "validation" else data.files.get("train", {})
        data.info[name] = {**data.info.get("train", {}), "rows": len(parts[name]), "held_out": record}
    return record


def _one_line(e) -> str:
    return " ".join(str(e).split())[:200]


def _quiet() -> None:
    import datasets
    import huggingface_hub

    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    huggingface_hub.utils.logging.set_verbosity_error()
