"""The user cache (``$TUNELAB_CACHE``, else ``~/.cache/tunelab``): converted models, trained judges,
base-model evaluations. Entries are folders written atomically (temp folder + rename), so a crash
or a concurrent writer never leaves a half-written entry behind."""

import contextlib
import os
import shutil
import tempfile


def cache_root() -> str:
    root = os.environ.get("TUNELAB_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "tunelab")
    os.makedirs(root, exist_ok=True)
    return root


def cache_dir(*parts: str) -> str:
    """Path of a cache entry (not created)."""
    return os.path.join(cache_root(), *parts)


@contextlib.contextmanager
def atomic_dir(final: str):
    """``with atomic_dir(path) as tmp:`` write into ``tmp``; on success it becomes ``path``.
    If another process finished the same entry first, theirs is kept and ours discarded."""
    parent = os.path.dirname(final)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(dir=parent, prefix=".tmp-" + os.path.basename(final) + "-")
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; a cache entry is an ordinary folder
    try:
        yield tmp
        try:
            os.rename(tmp, final)
        except OSError:
            if not os.path.isdir(final):  # a real failure, not a lost race
                raise
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def model_fingerprint(source: str) -> str:
    """Identity of a base model for cache keys: a hub id, or a local folder's file names/sizes/mtimes."""
    import json

    if not os.path.isdir(source):
        return source
    files = sorted((f, os.path.getsize(os.path.join(source, f)), os.stat(os.path.join(source, f)).st_mtime_ns)
                   for f in os.listdir(source) if os.path.isfile(os.path.join(source, f)))
    return json.dumps([os.path.abspath(source), files])
