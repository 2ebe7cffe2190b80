"""The grid: every (model, seed, task, method label) of a CompareConfig as one validated run config
with a stable run id and config hash.

The hash covers what defines a run's result as requested (task, method, model, seed, every option,
with the method's default learning rate filled in so that a changed default re-runs the cell) and
leaves out where and how it runs (output dir, overwrite, data dir path (the data files' sha256 are
in run.json), threads, device). Options at their ``RunConfig`` default are left out too, so adding
a new option with a default elsewhere in tunelab does not invalidate finished runs, while changing
any value does. The hash is stored beside each finished run (``compare-cell.json``), because
run.json records values the run resolved itself (e.g. a head learning rate) that a request leaves
open; ``config_matches`` checks that run.json agrees with every value the request did set.
"""

import hashlib
import json
import os
import re
from dataclasses import dataclass

from ..config import FIELDS, RunConfig, build_config
from ..errors import UserError
from .config import CompareConfig

NOT_HASHED = ("output_dir", "overwrite", "data_dir", "threads", "device")


@dataclass
class Cell:
    run_id: str
    task: str  # task label (= task name unless relabelled)
    label: str  # method label
    method: str  # registered method name
    model: str  # model label
    seed: int
    config: RunConfig  # validated; output_dir = OUTPUT_DIR/runs/<run_id>
    config_hash: str

    @property
    def run_dir(self) -> str:
        return self.config.output_dir


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", os.path.basename(os.path.normpath(str(s)))) or "x"


def run_id(task: str, label: str, model: str, seed: int) -> str:
    return f"{_slug(task)}--{_slug(label)}--{_slug(model)}--s{seed}"


def _norm(v):
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def config_hash(config: dict, default_lr: float | None = None) -> str:
    """Hash of a run config (a RunConfig dict or run.json's "config"); lr None -> ``default_lr``."""
    cfg = dict(config)
    if cfg.get("lr") is None and default_lr is not None:
        cfg["lr"] = default_lr
    keep = {}
    for k, v in cfg.items():
        if k in NOT_HASHED or k not in FIELDS:
            continue
        if k != "lr" and k not in ("task", "method", "model", "seed") and _norm(v) == _norm(FIELDS[k].default):
            continue
        keep[k] = _norm(v)
    blob = json.dumps(keep, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def config_matches(requested: dict, recorded: dict) -> bool:
    """run.json's config agrees with every option the request set (None = left to the run)."""
    for k, want in requested.items():
        if k in NOT_HASHED or k not in FIELDS or want is None:
            continue
        if _norm(recorded.get(k, FIELDS[k].default)) != _norm(want):
            return False
    return True


def expand(cc: CompareConfig, output_dir: str, data_dir: str | None = None, threads: int | None = None) -> list:
    """All cells, model-major then seed, task, method (full FT first where listed first)."""
    from ..methods import get_method

    cells = []
    for model in cc.models:
        for seed in cc.seeds:
            for task in cc.tasks:
                for m in cc.methods:
                    values = {**cc.shared, **task.options, **model.options, **m.options, **cc.overrides}
                    if data_dir is not None:
                        values["data_dir"] = data_dir
                    if threads is not None:
                        values["threads"] = threads
                    rid = run_id(task.label, m.label, model.label, seed)
                    values.update(task=task.name, method=m.name, model=model.name, seed=seed,
                                  output_dir=os.path.join(output_dir, "runs", rid), overwrite=True)
                    try:
                        cfg = build_config(values)
                        method = get_method(m.name)
                        method().validate(cfg)
                    except UserError as e:
                        raise UserError(f"{m.where}: {m.label} on {task.label}: {e}") from None
                    cells.append(Cell(rid, task.label, m.label, m.name, model.label, seed, cfg,
                                      config_hash(cfg.as_dict(), method.default_lr)))
    return cells
