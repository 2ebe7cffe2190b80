"""The grid: every (model, seed, task, method label) of a CompareConfig as one validated run config
with a stable run id and config hash.

A cell's config is fully resolved (config.py's merge order: field defaults < method < task family
< study < command line), and ``compare/execute.run_args`` passes every option the cell's method and
task read to its child, so re-running a cell reproduces it exactly. Options in the study's shared,
task-level or model-level settings and command-line overrides apply to the cells whose method and
task read them (``alf_budget`` shared by a study does not reach its ``full`` cells); an option
given to one method entry must apply to that method.

The hash covers what defines a run's result (task, method, model, seed, every resolved option) and
leaves out where and how it runs (output dir, overwrite, data dir path (the data files' sha256 are
in run.json), threads, device). Options at their field default (except lr) are left out too, so
adding a new option with a default elsewhere in tunelab does not invalidate finished runs, while
changing any value does. A method or task whose results change at the same options (a new
algorithm behind an unchanged option value) raises its ``revision`` (``Method.revision``,
``Task.revision``; above 1 it is hashed), and a field default that changes is caught by
``config_matches``, which compares every resolved value. The hash is stored beside each finished
run (``compare-cell.json``); ``config_matches`` checks that run.json's config agrees with every
value of the cell.
"""

import hashlib
import json
import os
import re
from dataclasses import dataclass

from ..config import FIELDS, RunConfig
from ..resolve import applies, build_config
from ..errors import UserError
from .config import CompareConfig

NOT_HASHED = ("output_dir", "overwrite", "data_dir", "threads", "device", "save_every",
              "report_to", "logging_dir", "experiment_name")  # where it is logged (--report-to) neither


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


def config_hash(config: dict, revisions: dict | None = None) -> str:
    """Hash of a resolved run config (a RunConfig dict or run.json's "config") and the revisions of
    its method and task (``{"method": 2}``; revision 1 is left out so first revisions keep old hashes)."""
    cfg = dict(config)
    keep = {f"{k}_revision": r for k, r in (revisions or {}).items() if r != 1}
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


def cell_values(cc: CompareConfig, task, model, m, task_obj) -> dict:
    """The options one cell is given: shared, task- and model-level options and command-line
    overrides where the cell's method and task read them; the method entry's own options always."""
    soft = {**cc.shared, **task.options, **model.options}
    values = {k: v for k, v in soft.items() if applies(k, task_obj, m.name)}
    values.update(m.options)
    values.update({k: v for k, v in cc.overrides.items() if applies(k, task_obj, m.name)})
    return values


def expand(cc: CompareConfig, output_dir: str, data_dir: str | None = None, threads: int | None = None,
           report_to: str | None = None, logging_dir: str | None = None) -> list:
    """All cells, model-major then seed, task, method (full FT first where listed first). ``report_to``
    (compare --report-to): every cell reports to those trackers, in one experiment named after the study
    (``experiment_name``), its TensorBoard files under ``logging_dir``/<run id> when given."""
    from ..methods import get_method
    from ..tasks import get_task

    cells = []
    for model in cc.models:
        for seed in cc.seeds:
            for task in cc.tasks:
                for m in cc.methods:
                    values = cell_values(cc, task, model, m, get_task(task.name))
                    if data_dir is not None:
                        values["data_dir"] = data_dir
                    if threads is not None:
                        values["threads"] = threads
                    rid = run_id(task.label, m.label, model.label, seed)
                    if report_to is not None:
                        values.update(report_to=report_to, experiment_name=values.get("experiment_name") or cc.name)
                        if logging_dir is not None:
                            values["logging_dir"] = os.path.join(logging_dir, rid)
                    values.update(task=task.name, method=m.name, model=model.name, seed=seed,
                                  output_dir=os.path.join(output_dir, "runs", rid), overwrite=True)
                    try:
                        cfg = build_config(values)
                        get_method(m.name)().validate(cfg)
                    except UserError as e:
                        raise UserError(f"{m.where}: {m.label} on {task.label}: {e}") from None
                    revisions = {"method": get_method(m.name).revision, "task": get_task(task.name).revision}
                    cells.append(Cell(rid, task.label, m.label, m.name, model.label, seed, cfg,
                                      config_hash(cfg.as_dict(), revisions)))
    return cells
