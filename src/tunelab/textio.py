"""Reading text files the one way tunelab does: UTF-8 (plain or gzipped), a leading BOM dropped, and
any undecodable byte a ``UserError`` naming the file, the 1-based line and the byte offset::

    data/SST-2/train.tsv:17: invalid UTF-8 byte 0xe9 at byte offset 11966 (the file must be UTF-8)

Nothing is silently replaced: a legacy-encoded file is the user's to convert (``iconv -f latin1
-t utf-8``). For a ``.gz`` file the offset counts bytes of the decompressed text. Splitting into lines
happens on bytes (``\\n`` never occurs inside a UTF-8 sequence), so line numbers and offsets are exact.
"""

import gzip
import json
import zlib

from .errors import UserError

BOM = "\ufeff"


def _open_binary(path: str):
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def _read_error(path: str, e: Exception) -> UserError:
    """An OSError / broken gzip stream as one line."""
    if isinstance(e, (EOFError, zlib.error, gzip.BadGzipFile)):
        return UserError(f"{path}: cannot read (not a valid gzip file: {e})")
    return UserError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})")


def bad_utf8_message(path: str, line: int, offset: int, byte: int, what: str = "file",
                     gz: bool = False) -> str:
    where = " of the decompressed text" if gz else ""
    return f"{path}:{line}: invalid UTF-8 byte 0x{byte:02x} at byte offset {offset}{where} (the {what} must be UTF-8)"


def decode(data: bytes, path: str, what: str = "file") -> str:
    """bytes -> str (UTF-8, leading BOM dropped); undecodable bytes -> UserError with line and offset."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise UserError(bad_utf8_message(path, line, e.start, data[e.start], what, path.endswith(".gz"))) from None
    return text[1:] if text.startswith(BOM) else text


def read_text(path: str, what: str = "file") -> str:
    """The whole file (``.gz`` decompressed) as text. ``what`` names the file in the message
    ("the YAML config must be UTF-8")."""
    try:
        with _open_binary(path) as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise _read_error(path, e) from None
    return decode(data, path, what)


def open_lines(path: str, what: str = "file"):
    """Yield ``(line_number, text)`` for every line (1-based, line ending kept), streaming; a bad byte
    raises UserError at the line that holds it."""
    offset = 0
    gz = path.endswith(".gz")
    try:
        with _open_binary(path) as f:
            for i, raw in enumerate(f, start=1):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise UserError(bad_utf8_message(path, i, offset + e.start, raw[e.start], what, gz)) from None
                if i == 1 and text.startswith(BOM):
                    text = text[1:]
                yield i, text
                offset += len(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise _read_error(path, e) from None


def read_jsonl(path: str, what: str = "JSON Lines file") -> list:
    """``[(line_number, value)]`` for every non-blank line; invalid JSON names file and line."""
    rows = []
    for i, text in open_lines(path, what):
        if text.strip():
            try:
                rows.append((i, json.loads(text)))
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{i}: invalid JSON ({e.msg})") from None
    return rows


def read_tsv_by_split(path: str, fields) -> dict:
    """A predictions.tsv (header line, tab-separated) -> {split: [row tuple]}, each row the values of
    ``fields``: a column name (its text as written) or a ``(name, parse)`` pair (e.g. ``json.loads``)."""
    out = {}
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            row = dict(zip(header, line.rstrip("\n").split("\t")))
            out.setdefault(row["split"], []).append(
                tuple(row[c] if isinstance(c, str) else c[1](row[c[0]]) for c in fields))
    return out
