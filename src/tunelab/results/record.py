"""run.json: everything needed to reproduce and report a run, written atomically.

``status`` is "running" while training, "failed"/"interrupted" if it stopped, and "completed" only
after weights, predictions and the final record are all on disk.
"""

import json
import os
import platform
import subprocess
import tempfile

from ..errors import UserError


def write_json_atomic(path: str, data: dict) -> None:
    """Write to a temp file beside ``path``, fsync, rename: ``path`` is the old or the new file, never
    half of one. An OSError (disk full, permission) -> ``OutputError`` naming ``path``."""
    from ..errors import output_error

    d = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=".json")
    except OSError as e:
        raise output_error(path, e) from e
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=False, default=_default)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise output_error(path, e) from e
        raise


def _default(o):
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, set):
        return sorted(o)
    return str(o)


def read_record(run_dir: str) -> dict:
    with open(os.path.join(run_dir, "run.json"), encoding="utf-8") as f:
        return json.load(f)


def records_with(rows: list, key: str) -> list:
    """[(row, record)] for the report's rows (``row["run_dir"]``) whose run.json reads and holds a dict
    under ``key`` (a family's own section: ``asr``, ``alignment``)."""
    out = []
    for r in rows:
        try:
            rec = read_record(r["run_dir"])
        except (OSError, ValueError):
            continue
        if isinstance(rec.get(key), dict):
            out.append((r, rec))
    return out


def git_commit() -> str | None:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict:
    import peft
    import torch
    import transformers

    from .. import __version__

    return {"python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "peft": peft.__version__,
            "tunelab": __version__, "git_commit": git_commit(), "platform": platform.platform()}


def check_output_dir(path: str, overwrite: bool) -> None:
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"--output-dir {path}: exists and is not a folder")
    if os.path.isdir(path) and os.listdir(path) and not overwrite:
        raise UserError(f"--output-dir {path}: exists and is not empty (pass --overwrite to replace it)")
