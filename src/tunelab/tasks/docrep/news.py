"""Labelled document corpora for the docrep family: a folder per category (BBC News and any corpus laid
out the same way), a CSV / JSON Lines file with text and label columns, or a hub dataset; plus the
seeded, stratified, document-level train/test split.

Labels are used only by the extrinsic evaluation (``docrep.evaluate``); training never sees them.

Every reader returns ``(docs, files, info)``: ``docs`` a list of :class:`Doc`, ``files`` the
``{source: sha256}`` entry for run.json ``data`` (one digest for a whole folder, not one per article),
``info`` what a reader of run.json needs to know (documents per category, fallback decodes, ...).
"""

import csv
import hashlib
import json
import os
from dataclasses import dataclass

from ...errors import UserError


@dataclass
class Doc:
    text: str
    label: str  # category name (the folder name for a folder corpus)
    source: str  # "sport/199.txt" (relative to the corpus folder), "file.csv:12" or "hub:NAME/split#row"


# Files known to be in a legacy 8-bit encoding, decoded with that encoding instead of UTF-8 and
# recorded in info["fallback_decoded"]. BBC's sport/199.txt has one byte 0xA3 (a pound sign in
# Latin-1, see shared/data/news/bbc/SOURCE.md). Any other byte that is not UTF-8, in any other file,
# is an error naming the file and the byte offset: we never guess an encoding silently.
BBC_LEGACY_FILES = {"sport/199.txt": "latin-1"}

HUB_DEFAULT = "SetFit/bbc-news"  # columns: text, label (int), label_text (category name); splits train, test


def decode_text(raw: bytes, where: str, fallback: str | None = None):
    """bytes -> (text, fallback record or None). UTF-8 (a BOM is dropped); if that fails and ``fallback``
    names an encoding, decode with it and say so; otherwise UserError naming the file and byte offset."""
    try:
        return raw.decode("utf-8-sig"), None
    except UnicodeDecodeError as e:
        if fallback is None:
            raise UserError(f"{where}: not valid UTF-8 at byte offset {e.start} (byte 0x{raw[e.start]:02x}); "
                            f"re-save the file as UTF-8") from None
        bad = _invalid_utf8_offsets(raw)
        try:
            text = raw.decode(fallback)
        except UnicodeDecodeError as e2:
            raise UserError(f"{where}: not valid UTF-8 (byte offset {e.start}) nor {fallback} "
                            f"(byte offset {e2.start})") from None
        return text, {"file": where, "encoding": fallback, "invalid_utf8_bytes": len(bad),
                      "first_invalid_offset": bad[0]}


def _invalid_utf8_offsets(raw: bytes) -> list:
    """Byte offsets where UTF-8 decoding fails (each bad byte skipped in turn)."""
    out, pos = [], 0
    while pos < len(raw):
        try:
            raw[pos:].decode("utf-8")
            break
        except UnicodeDecodeError as e:
            out.append(pos + e.start)
            pos += e.start + 1
    return out


def read_bbc(folder: str, legacy_files: dict | None = None):
    """Read a folder-per-category corpus: ``folder/<category>/*.txt``, one document per file, the
    category is the folder name. BBC News is the reference layout, but any corpus laid out the same way
    works. -> (docs, files, info).

    Order is deterministic (categories sorted, files sorted by name), so document indices are stable.
    Files not ending in .txt and hidden files are skipped and counted; files directly in ``folder``
    (BBC's README.TXT) are ignored. ``legacy_files`` maps paths relative to ``folder`` to the encoding
    used when a file is not UTF-8 (default: :data:`BBC_LEGACY_FILES`); any other non-UTF-8 file, an
    empty file, or fewer than two categories -> UserError with one line naming it.
    """
    legacy = BBC_LEGACY_FILES if legacy_files is None else legacy_files
    if not os.path.isdir(folder):
        raise UserError(f"--data-dir {folder}: no such folder")
    categories = sorted(d for d in os.listdir(folder)
                        if not d.startswith(".") and os.path.isdir(os.path.join(folder, d)))
    docs, fallbacks, skipped, empty_categories = [], [], 0, []
    digest = hashlib.sha256()
    for cat in categories:
        names = sorted(os.listdir(os.path.join(folder, cat)))
        txt = [n for n in names if n.endswith(".txt") and not n.startswith(".")
               and os.path.isfile(os.path.join(folder, cat, n))]
        skipped += len(names) - len(txt)
        if not txt:
            empty_categories.append(cat)
            continue
        for name in txt:
            rel = f"{cat}/{name}"
            path = os.path.join(folder, cat, name)
            with open(path, "rb") as f:
                raw = f.read()
            digest.update(rel.encode() + b"\0" + hashlib.sha256(raw).digest())
            text, fb = decode_text(raw, path, legacy.get(rel))
            if fb is not None:
                fb["file"] = rel
                fallbacks.append(fb)
            if not text.strip():
                raise UserError(f"{path}: empty file (a document needs some text)")
            docs.append(Doc(text=text.strip(), label=cat, source=rel))
    found = sorted({d.label for d in docs})
    if len(found) < 2:
        raise UserError(f"--data-dir {folder}: expected one sub-folder of .txt files per category "
                        f"(at least 2 categories), found {len(found)}")
    info = {"format": "folder per category (<category>/*.txt)",
            "documents": len(docs),
            "per_category": {c: sum(d.label == c for d in docs) for c in found},
            "fallback_decoded": fallbacks,  # [{file, encoding, invalid_utf8_bytes, first_invalid_offset}]
            "skipped_files": skipped,  # not *.txt, or hidden
            "folders_without_txt": empty_categories}
    return docs, {os.path.abspath(folder): digest.hexdigest()}, info


def read_table(path: str, text_column: str = "text", label_column: str = "label"):
    """A CSV (header row) or JSON Lines file (.jsonl / .json, one object per line) with a text and a
    label column -> (docs, files, info). Rows with an empty text are an error naming the line."""
    if not os.path.isfile(path):
        raise UserError(f"--data-dir {path}: no such file")
    with open(path, "rb") as f:
        raw = f.read()
    text, _ = decode_text(raw, path)
    rows = []  # (line, dict)
    if path.endswith((".jsonl", ".json")):
        for i, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append((i, json.loads(line)))
                except json.JSONDecodeError as e:
                    raise UserError(f"{path}:{i}: invalid JSON ({e.msg})") from None
    else:
        reader = csv.DictReader(text.splitlines())
        rows = [(i + 2, r) for i, r in enumerate(reader)]  # line 1 is the header
    docs = []
    for line, r in rows:
        if not isinstance(r, dict) or text_column not in r or label_column not in r:
            cols = ", ".join(r) if isinstance(r, dict) else type(r).__name__
            raise UserError(f"{path}:{line}: needs columns {text_column!r} and {label_column!r} "
                            f"(--text-column / --label-column); found {cols}")
        t = r[text_column]
        if not isinstance(t, str) or not t.strip():
            raise UserError(f"{path}:{line}: empty {text_column!r}")
        docs.append(Doc(text=t.strip(), label=str(r[label_column]), source=f"{os.path.basename(path)}:{line}"))
    if len({d.label for d in docs}) < 2:
        raise UserError(f"{path}: expected at least 2 distinct values in column {label_column!r}")
    info = {"format": "table", "text_column": text_column, "label_column": label_column,
            "documents": len(docs), "per_category": _counts(d.label for d in docs), "fallback_decoded": []}
    return docs, {os.path.abspath(path): hashlib.sha256(raw).hexdigest()}, info


def load_hub(name: str = HUB_DEFAULT, text_column: str = "text", label_column: str = "label_text",
             config: str | None = None):
    """A hub dataset (online users) -> (docs, files, info). Every split the hub offers is pooled and
    re-split by :func:`stratified_split`, so the protocol is the same as for a local folder. The default,
    SetFit/bbc-news, is the same 2,225 BBC articles, but lower-cased with punctuation partly removed
    (the Kaggle ``bbc-text.csv``): numbers are not comparable with the local folder's."""
    try:
        import datasets
        import huggingface_hub

        datasets.logging.set_verbosity_error()  # one error line from us, not retry chatter
        huggingface_hub.utils.logging.set_verbosity_error()
        dd = datasets.load_dataset(name, config)
    except Exception as e:  # noqa: BLE001  (network / hub errors become one line)
        raise UserError(f"cannot load {name} from the hub ({type(e).__name__}); "
                        f"pass --data-dir with a folder per category or a CSV/JSONL file") from e
    docs, files = [], {}
    for split in sorted(dd):
        ds = dd[split]
        missing = [c for c in (text_column, label_column) if c not in ds.column_names]
        if missing:
            raise UserError(f"hub dataset {name} ({split}) has no column {missing[0]!r} "
                            f"(--text-column / --label-column); columns: {', '.join(ds.column_names)}")
        for i, r in enumerate(ds):
            t = r[text_column]
            if isinstance(t, str) and t.strip():
                docs.append(Doc(text=t.strip(), label=str(r[label_column]), source=f"hub:{name}/{split}#{i}"))
        files[f"hub:{name}/{split}"] = getattr(ds, "_fingerprint", "")
    info = {"format": "hub", "name": name, "text_column": text_column, "label_column": label_column,
            "documents": len(docs), "per_category": _counts(d.label for d in docs), "fallback_decoded": []}
    return docs, files, info


def _counts(labels) -> dict:
    out = {}
    for x in labels:
        out[x] = out.get(x, 0) + 1
    return dict(sorted(out.items()))


def stratified_split(labels, test_fraction: float = 0.2, seed: int = 0):
    """Seeded, stratified, document-level split (scikit-learn ``train_test_split`` with
    ``stratify=labels``) -> (train_idx, test_idx, info), index lists sorted ascending. The same seed and
    labels always give the same split; ``info`` (for run.json) has the seed, fraction, per-category
    counts and the test indices. A category with fewer than 2 documents, or a fraction that leaves a
    side with fewer documents than there are categories -> UserError."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    labels = list(labels)
    if not 0.0 < test_fraction < 1.0:
        raise UserError(f"--test-fraction {test_fraction}: must be between 0 and 1 (exclusive)")
    counts = _counts(labels)
    small = [c for c, n in counts.items() if n < 2]
    if small:
        raise UserError(f"category {small[0]!r} has {counts[small[0]]} document: a stratified split needs "
                        f"at least 2 per category (add documents or remove the category)")
    try:
        tr, te = train_test_split(np.arange(len(labels)), test_size=test_fraction, stratify=labels,
                                  random_state=seed, shuffle=True)
    except ValueError as e:
        raise UserError(f"--test-fraction {test_fraction}: cannot split {len(labels)} documents in "
                        f"{len(counts)} categories ({e})") from None
    tr, te = sorted(int(i) for i in tr), sorted(int(i) for i in te)
    per = {c: [0, 0] for c in counts}
    for i in tr:
        per[labels[i]][0] += 1
    for i in te:
        per[labels[i]][1] += 1
    info = {"method": "sklearn.model_selection.train_test_split(stratify=labels, shuffle=True)",
            "seed": seed, "test_fraction": test_fraction, "train": len(tr), "test": len(te),
            "per_category_train_test": per, "test_indices": te}
    return tr, te, info


read_folder = read_bbc  # the same reader, by its generic name (any DIR/<category>/*.txt corpus)


TABLE_SUFFIXES = (".csv", ".jsonl", ".json")


def is_folder_corpus(folder: str) -> bool:
    """Does ``folder`` hold at least one ``<category>/*.txt`` sub-folder?"""
    if not os.path.isdir(folder):
        return False
    for d in os.listdir(folder):
        sub = os.path.join(folder, d)
        if not d.startswith(".") and os.path.isdir(sub) and any(n.endswith(".txt") for n in os.listdir(sub)):
            return True
    return False


def read_corpus(path: str, text_column: str | None = None, label_column: str | None = None,
                legacy_files: dict | None = None):
    """Any local corpus -> (docs, files, info): a folder per category (``DIR/<category>/*.txt``), a CSV /
    JSON Lines file, or a folder holding exactly one such file (what ``--data-dir`` names). Text and label
    columns default to ``text`` and ``label``; naming them for a folder corpus is an error."""
    if os.path.isdir(path) and is_folder_corpus(path):
        given = [f for f, v in (("--text-column", text_column), ("--label-column", label_column)) if v]
        if given:
            raise UserError(f"{given[0]}: {path} is a folder per category (the label is the folder name); "
                            f"columns apply to a CSV / JSONL file or a hub dataset")
        return read_bbc(path, legacy_files=legacy_files)
    if os.path.isdir(path):
        tables = sorted(n for n in os.listdir(path) if n.endswith(TABLE_SUFFIXES) and not n.startswith("."))
        if len(tables) != 1:
            found = f"found {len(tables)} ({', '.join(tables[:3])})" if tables else "found neither"
            raise UserError(f"--data-dir {path}: expected sub-folders of .txt files (<category>/*.txt) or exactly "
                            f"one .csv / .jsonl file; {found}")
        path = os.path.join(path, tables[0])
    if not path.endswith(TABLE_SUFFIXES):
        raise UserError(f"--data-dir {path}: not a folder per category nor a .csv / .jsonl file")
    return read_table(path, text_column or "text", label_column or "label")


def stratified_subset(labels, n: int | None, seed: int = 0) -> list:
    """Sorted indices of a seeded, stratified subset of ``n`` documents (each category keeps its share,
    scikit-learn ``train_test_split(train_size=n, stratify=labels)``); all indices when ``n`` is None or
    not smaller than the corpus."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    labels = list(labels)
    if n is None or n >= len(labels):
        return list(range(len(labels)))
    try:
        keep, _ = train_test_split(np.arange(len(labels)), train_size=n, stratify=labels, random_state=seed,
                                   shuffle=True)
    except ValueError:  # a category too small to stratify (the split that follows names it)
        keep = np.random.RandomState(seed).choice(len(labels), n, replace=False)
    return sorted(int(i) for i in keep)
