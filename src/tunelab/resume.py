"""``tunelab run --resume OUTPUT_DIR``: continue a killed run from its last checkpoint.

The run's options are the ones its run.json records; options given with ``--resume`` must agree
with them (a compare re-running an interrupted cell gives all of them), else the resume is refused
with one line naming the options that differ. Only where and how the run executes may change:
``--threads``, ``--save-every`` and ``--data-dir`` (the data files must have the recorded sha256).
A completed run, or one without a checkpoint, is refused too; a run stopped by SIGTERM / SIGINT
(status "interrupted", train/preempt.py) with a checkpoint resumes like a killed one. The loop's side of checkpoints is
``train/checkpoint.py``.
"""

import os
import time

from . import tasks  # noqa: F401  (registers the loader of every declared option: FIELDS is complete)
from .config import FIELDS, RunConfig, flag, validate
from .errors import UserError
from .results.record import read_record
from .train.checkpoint import find_checkpoint, read_meta

CAN_DIFFER = ("threads", "save_every", "data_dir", "report_to", "logging_dir", "experiment_name")


def _norm(v):
    return int(v) if isinstance(v, float) and v.is_integer() else v


def differing(given: dict, recorded: dict, out_dir: str) -> list:
    """The given options whose values differ from the recorded run's (as ``--flag value (recorded x)``)."""
    from .train.resources import resolve_device

    out = []
    for k, v in given.items():
        if k in CAN_DIFFER or (k in ("lr", "head_lr") and v is None):
            continue
        if k == "overwrite":
            if v:
                out.append("--overwrite (a resumed run keeps its folder)")
            continue
        if k == "output_dir":
            if os.path.realpath(v) != os.path.realpath(out_dir):
                out.append(f"--output-dir {v} (resuming {out_dir})")
            continue
        if k == "device":
            v = str(resolve_device(v))
        rv = recorded.get(k, FIELDS[k].default)
        if _norm(v) != _norm(rv):
            out.append(f"{flag(k)} {_norm(v)} (recorded {_norm(rv)})")
    return out


def resume_config(out_dir: str, given: dict) -> RunConfig:
    """The recorded run's resolved config, with ``resume_checkpoint`` set; refuses with a UserError."""
    where = f"--resume {out_dir}"
    if not os.path.isfile(os.path.join(out_dir, "run.json")):
        raise UserError(f"{where}: no run.json there (not a run folder)")
    try:
        rec = read_record(out_dir)
        recorded = rec["config"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{where}: run.json is unreadable ({e})") from None
    if rec.get("status") == "completed":
        raise UserError(f"{where}: the run already completed; nothing to resume")
    path = find_checkpoint(out_dir)
    if path is None:
        raise UserError(f"{where}: no checkpoint (the run was not started with --save-every, or was killed "
                        "before its first one); start it again without --resume")
    if read_meta(path).get("started_at") != rec.get("started_at"):
        raise UserError(f"{where}: the checkpoint belongs to another run than its run.json; start it again")
    diff = differing(given, recorded, out_dir)
    if diff:
        raise UserError(f"{where}: {', '.join(diff)} differ from the recorded run; resume without them "
                        "or start a new run")
    values = {k: recorded[k] for k in FIELDS if k in recorded}
    values.update({k: given[k] for k in CAN_DIFFER if k in given})
    values.update(output_dir=out_dir, overwrite=False)
    cfg = RunConfig(**values)
    cfg.sources = {**{k: "default" for k in FIELDS}, **rec.get("config_sources", {}),
                   **{k: "given (resume)" for k in CAN_DIFFER if k in given}}
    validate(cfg)
    cfg.resume_checkpoint = path
    return cfg


def resume_record(cfg, record: dict) -> None:
    """On a resumed run, before anything is written: the new run.json keeps the first start time
    and the history so far and notes the resume; the data must be the recorded data."""
    old = read_record(cfg.output_dir)
    recorded = set(old.get("data", {}).values())
    changed = [f for f, sha in record["data"].items() if sha not in recorded]
    if changed or len(record["data"]) != len(old.get("data", {})):
        raise UserError(f"--resume {cfg.output_dir}: the data ({(changed or list(record['data']) or ['?'])[0]}) "
                        "differs from the recorded run's (sha256)")
    meta = read_meta(cfg.resume_checkpoint)
    record["started_at"] = old["started_at"]
    record["history"] = list(meta["history"])
    record["resumed"] = old.get("resumed", []) + [{"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                                   "from_step": meta["step"], "epoch": meta["epoch"] + 1}]
