"""Token-classification data: CoNLL files, JSON(L) / hub rows of ``tokens`` + ``ner_tags``, tag schemes.

Pure functions; the task calls them. What is read (``Sentence``: words, tags as strings, where it came from):

- **CoNLL** (``.conll``, ``.txt``, ``.iob``, ``.bio``, ``.tsv`` without a header): one token per line, columns
  separated by spaces or tabs, the token first and the tag last (``EU NNP B-NP B-ORG``); a blank line ends a
  sentence; ``-DOCSTART-`` lines are skipped (and end a sentence), as the HF ``conll2003`` loader does. Every
  line of a file has the same number of columns (else: the file, the line, the two counts).
- **JSON lines / JSON / Parquet** (``.jsonl``, ``.json``, ``.parquet``: read by tasks/datafiles.py, the
  reader every family shares) and rows of ``--dataset`` (a hub id or a ``save_to_disk`` folder): a list of tokens (``tokens``, else ``words``) and a list of tags of the same length
  (``ner_tags``, else ``tags``, ``labels``, ``label``); tags are strings, or integers naming
  ``label_names`` (a ``ClassLabel`` sequence, ``--label-list``, or a ``labels.json`` beside the file).

Tag schemes: IOB1, IOB2 (BIO), IOBES and BILOU tags (``B-PER``, ``I-PER``, ``E-``/``S-``, ``L-``/``U-``, ``O``)
are all turned into IOB2 (``S``/``U`` -> ``B``, ``E``/``L`` -> ``I``, an ``I-X`` that does not continue an
``X`` entity -> ``B-X``: the IOB1 -> IOB2 rule, a no-op on IOB2). Any other tag is an unknown scheme.
The model's labels: ``O``, then ``B-T``, ``I-T`` for every entity type T of the train split, types sorted:
the same ids whichever form the data came in (so a CoNLL file and its JSONL copy train alike).
"""

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ...errors import UserError

CONLL_EXTENSIONS = (".conll", ".conll03", ".txt", ".iob", ".iob1", ".iob2", ".bio", ".bioes", ".iobes", ".tsv")
TOKEN_COLUMNS = ("tokens", "words")
TAG_COLUMNS = ("ner_tags", "tags", "labels", "label")
TAG_RE = re.compile(r"^(?:O|([BIESLU])-(.+))$")
SEP_RE = re.compile(r"[ \t]+")


@dataclass
class Sentence:
    tokens: list  # words
    tags: list  # one string tag per word (IOB2 after normalise)
    line: int = 0  # 1-based line of the first word in its file (CoNLL), or of the row (JSONL); 0: hub rows
    source: str = ""  # the file (or dataset) it came from
    index: int = 0  # 0-based sentence / row index in its source
    conll: bool = False  # one word per line: word j is on line ``line + j``

    def where(self, word: int | None = None) -> str:
        """The file and line (CoNLL: the word's own line), or row, for a message."""
        if self.conll and word is not None:
            return f"{self.source}: line {self.line + word}"
        at = f"{self.source}: line {self.line}" if self.line else f"{self.source}: row {self.index}"
        return at if word is None else f"{at} (word {word + 1} {self.tokens[word]!r})"


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise UserError(f"{path}: line {line}: not valid UTF-8 (byte {e.start}: {raw[e.start:e.start + 1]!r})") from None


def read_conll(path, tags_needed: bool = True) -> list:
    """Sentences of a CoNLL file (see the module docstring); tags as written (not yet normalised).
    ``tags_needed=False`` (``tunelab predict``): a file of tokens alone (one column) is read too, and
    the sentences' tags are left empty."""
    path = Path(path)
    text = _read_text(path)
    out, tokens, tags, first_line = [], [], [], 0
    columns = ref_line = None

    def flush():
        nonlocal tokens, tags
        if tokens:
            out.append(Sentence(tokens, tags, first_line, str(path), len(out), conll=True))
        tokens, tags = [], []

    for n, raw in enumerate(text.split("\n"), 1):
        line = raw.rstrip("\r").strip(" \t")
        if not line:
            flush()
            continue
        fields = SEP_RE.split(line)
        if fields[0] == "-DOCSTART-":
            flush()
            continue
        if len(fields) < 2 and tags_needed:
            raise UserError(f"{path}: line {n}: one column {fields[0]!r}: a CoNLL line needs the token first and "
                            "the tag last, separated by spaces or tabs")
        if columns is None:
            columns, ref_line = len(fields), n
        elif len(fields) != columns:
            raise UserError(f"{path}: line {n}: {len(fields)} columns where line {ref_line} has {columns} (token "
                            "first, tag last; a token with a space inside shifts the columns)")
        if not tokens:
            first_line = n
        tokens.append(fields[0])
        if tags_needed:
            tags.append(fields[-1])
    flush()
    if not out:
        raise UserError(f"{path}: no sentences (a CoNLL file: one 'token ... tag' line per word, blank lines "
                        "between sentences)")
    return out


def find_columns(columns, source: str, tokens_column: str | None = None, tags_column: str | None = None) -> tuple:
    """(tokens column, tags column) among ``columns``: the given names, else the usual ones."""
    cols = list(columns)

    def pick(given, usual, what, flag):
        if given:
            if given not in cols:
                raise UserError(f"{source}: no column {given!r} ({flag}); the columns are: {', '.join(map(str, cols))}")
            return given
        for c in usual:
            if c in cols:
                return c
        raise UserError(f"{source}: no {what} column (looked for {', '.join(usual)}; give {flag}); the columns "
                        f"are: {', '.join(map(str, cols))}")

    return (pick(tokens_column, TOKEN_COLUMNS, "tokens", "--text-column"),
            pick(tags_column, TAG_COLUMNS, "tags", "--label-column"))


def rows_to_sentences(rows, source: str, label_names=None, tokens_column=None, tags_column=None,
                      columns=None) -> tuple:
    """Sentences from (line, row dict) pairs. Integer tags are looked up in ``label_names``. Returns
    (sentences, info) with the columns used and the rows skipped (no tokens)."""
    rows = list(rows)
    if not rows:
        raise UserError(f"{source}: no rows")
    tok_col, tag_col = find_columns(columns if columns is not None else rows[0][1].keys(), source,
                                    tokens_column, tags_column)
    out, skipped = [], 0
    for i, (line, row) in enumerate(rows):
        where = f"{source}: line {line}" if line else f"{source}: row {i}"
        if not isinstance(row, dict):
            raise UserError(f"{where}: not a JSON object")
        if tok_col not in row or tag_col not in row:
            missing = tok_col if tok_col not in row else tag_col
            raise UserError(f"{where}: no {missing!r}; the row has: {', '.join(map(str, row))}")
        tokens, tags = row[tok_col], row[tag_col]
        if not isinstance(tokens, list) or not isinstance(tags, list):
            raise UserError(f"{where}: {tok_col!r} and {tag_col!r} must be lists (one tag per token)")
        if len(tokens) != len(tags):
            sid = f" (sentence id {row['id']})" if "id" in row else ""
            raise UserError(f"{where}{sid}: {len(tokens)} tokens but {len(tags)} tags in {tag_col!r}")
        if not tokens:
            skipped += 1
            continue
        names = []
        for t in tags:
            if isinstance(t, bool) or not isinstance(t, (int, str)):
                raise UserError(f"{where}: tag {t!r}: tags are strings or integer label ids")
            if isinstance(t, int):
                if label_names is None:
                    raise UserError(f"{where}: integer tags but no label names: give --label-list "
                                    "(comma-separated, or a JSON file with the list) or put labels.json beside the file")
                if not 0 <= t < len(label_names):
                    raise UserError(f"{where}: tag id {t} outside the {len(label_names)} label names")
                names.append(label_names[t])
            else:
                names.append(t)
        out.append(Sentence([str(w) for w in tokens], names, line, source, i))
    return out, {"tokens_column": tok_col, "tags_column": tag_col, "empty_rows_skipped": skipped}


def class_label_names(ds, tags_column: str):
    """The names of a ``Sequence(ClassLabel)`` tags column (hub / save_to_disk datasets), else None."""
    feat = ds.features.get(tags_column)
    inner = getattr(feat, "feature", None)
    if isinstance(feat, list) and feat:  # datasets' [ClassLabel] form
        inner = feat[0]
    return list(inner.names) if inner is not None and hasattr(inner, "names") else None


def dataset_sentences(ds, lines, source: str, label_names=None, tokens_column=None, tags_column=None) -> tuple:
    """Sentences of a ``datasets.Dataset`` (``lines``: the 1-based line of each row in its file, or None).
    Integer tags are named by ``label_names``, else the column's ClassLabel names."""
    tok_col, tag_col = find_columns(ds.column_names, source, tokens_column, tags_column)
    names = label_names or class_label_names(ds, tag_col)
    rows = ((lines[i] if lines else 0, row) for i, row in enumerate(ds))
    return rows_to_sentences(rows, source, names, tok_col, tag_col, columns=ds.column_names)


def read_json_file(path, label_names=None, tokens_column=None, tags_column=None, option: str = "train_file") -> tuple:
    """A JSON lines / JSON / Parquet file (tasks/datafiles.read_file); integer tags named by ``label_names``,
    else a ``labels.json`` beside the file."""
    from ..datafiles import _quiet, read_file

    _quiet()  # no progress bars: an error stays one line
    path = Path(path)
    if label_names is None:
        beside = path.parent / "labels.json"
        if beside.is_file():
            label_names = read_label_list(str(beside))
    ds, lines = read_file(str(path), option)
    return dataset_sentences(ds, lines, str(path), label_names, tokens_column, tags_column)


def read_label_list(value: str) -> list:
    """``--label-list``: comma-separated names, or a JSON file holding the list (labels.json)."""
    p = Path(value)
    if value.endswith(".json") or p.is_file():
        if not p.is_file():
            raise UserError(f"--label-list {value}: no such file")
        try:
            names = json.loads(_read_text(p))
        except json.JSONDecodeError as e:
            raise UserError(f"{p}: line {e.lineno}: not valid JSON ({e.msg})") from None
        if isinstance(names, dict):  # {"0": "O", ...} / id2label
            try:
                names = [names[k] for k in sorted(names, key=int)]
            except ValueError:
                raise UserError(f"{p}: a label list is a JSON list of names (or an id -> name object)") from None
    else:
        names = [n.strip() for n in value.split(",")]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise UserError(f"--label-list {value}: a non-empty list of label names")
    return names


# --- tag schemes ---

def parse_tag(tag: str, where: str) -> tuple:
    """('O', None) or (prefix, type); anything else: an unknown tag scheme."""
    m = TAG_RE.match(tag)
    if not m:
        raise UserError(f"{where}: tag {tag!r}: unknown tag scheme (expected IOB1 / IOB2 / IOBES / BILOU tags "
                        "such as B-PER, I-PER, O)")
    return ("O", None) if tag == "O" else (m.group(1), m.group(2))


def to_iob2(sentences, what: str) -> dict:
    """Normalise every sentence's tags to IOB2 in place; returns {scheme, tags_changed}. IOBES and BILOU
    prefixes together in one split are refused."""
    prefixes, changed = set(), 0
    first_seen = {}
    for s in sentences:
        parsed = []
        for j, t in enumerate(s.tags):
            p, typ = parse_tag(t, s.where(j))
            if p != "O" and p not in first_seen:
                first_seen[p] = s.where(j)
            prefixes.add(p)
            parsed.append((p, typ))
        if prefixes & {"E", "S"} and prefixes & {"L", "U"}:
            p = "L" if "L" in prefixes else "U"
            raise UserError(f"{s.where()}: {what} mixes IOBES (E-/S-) and BILOU (L-/U-) tags: unknown tag scheme "
                            f"(first {p}- at {first_seen.get(p, s.where())})")
        new, prev_type = [], None
        for p, typ in parsed:
            if p == "O":
                new.append("O")
                prev_type = None
                continue
            if p in ("S", "U"):
                p = "B"
            elif p in ("E", "L"):
                p = "I"
            if p == "I" and prev_type != typ:
                p = "B"
            new.append(f"{p}-{typ}")
            prev_type = typ
        changed += sum(a != b for a, b in zip(s.tags, new))
        s.tags = new
    scheme = ("IOBES" if prefixes & {"E", "S"} else "BILOU" if prefixes & {"L", "U"} else
              "IOB1" if changed else "IOB2")
    return {"scheme_read": scheme, "tags_changed_to_iob2": changed}


def entity_types(sentences) -> list:
    return sorted({t[2:] for s in sentences for t in s.tags if t != "O"})


def label_list(types) -> list:
    """The model's labels: O, then B-T, I-T per type (sorted)."""
    out = ["O"]
    for t in sorted(types):
        out += [f"B-{t}", f"I-{t}"]
    return out


def check_known(sentences, types, what: str) -> None:
    """Every entity type of an eval split occurs in train (the model has no label for a new one)."""
    known = set(types)
    for s in sentences:
        for j, t in enumerate(s.tags):
            if t != "O" and t[2:] not in known:
                raise UserError(f"{s.where(j)}: tag {t!r} in the {what} data: entity "
                                f"type {t[2:]!r} never occurs in the train data (train types: {', '.join(types) or 'none'})")
