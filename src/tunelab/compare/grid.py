"""The grid: every (model, seed, task, method label) of a CompareConfig as one validated run config
with a stable run id and config hash.

A cell's config is fully resolved (config.py's merge order: field defaults < method < task family
< study < command line), and ``compare/execute.run_args`` passes every option the cell's method and
task read to its child, so re-running a cell reproduces it exactly. Options in the study's shared,
task-level or model-level settings and command-line overrides apply to the cells whose method and
task read them (``alf_budget`` shared by a study does not reach its ``full`` cells); an option
given to one method entry must apply to that method.

The hash (the cell's cache key) covers what defines a run's result: task, method, model, seed,
**every resolved option the cell's method and task read** (defaults included: an option's default
that changes value changes the key of exactly the cells that read it), the method's and task's
``revision``, and a **fingerprint of their code**: the sha256 of the method's module source and of
every ``.py`` file of the task family's package (``code_fingerprint``), so an edit to LoRA's module
re-runs the LoRA cells and nothing else. It leaves out where and how a run runs (output dir,
overwrite, data dir path (the data files' sha256 are in run.json), threads, device, save_every) and
options the cell does not read (a new option of another method keeps every other key). The hash is
stored beside each finished run (``compare-cell.json``, with the fingerprints); ``config_matches``
checks that run.json's config agrees with every value of the cell.

Output folders of older tunelab versions (whose key left defaults out and had no fingerprint) are
**recomputed**, not migrated: nothing recorded there says which code made those runs, so none of
their cells can be shown to be current; their keys differ and every cell re-runs once.
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
    code: dict = None  # fingerprints of the method's and task's source (cell_code)
    search: dict = None  # the search that chose this cell's configuration (compare/search.py), if any

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


def _source_files(obj) -> list:
    """The source files behind a method class or a task object: the modules of the method class and
    of its base classes from the same package (LoRA: ``lora.py``, ``peft_common.py``, ``base.py``);
    every ``.py`` file of the package holding the task's class (its family: ``tasks/glue/*.py``), or
    the module alone when it is not in a package."""
    import inspect

    def src(c):
        try:
            p = inspect.getsourcefile(c)
        except TypeError:
            return None
        return p if p and os.path.isfile(p) else None

    cls = obj if isinstance(obj, type) else type(obj)
    path = src(cls)
    if not path:
        return []
    if isinstance(obj, type):
        top = cls.__module__.split(".")[0]
        return sorted({p for c in cls.__mro__ if c.__module__.split(".")[0] == top and (p := src(c))})
    if "." not in cls.__module__:
        return [path]
    folder = os.path.dirname(path)
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".py"))


_FP_CACHE: dict = {}


def code_fingerprint(obj) -> str:
    """sha256 (16 hex digits) over the source files of a method class or task object (``_source_files``:
    names relative to their folder, then contents); "" when the source cannot be found."""
    files = _source_files(obj)
    key = tuple((f, os.path.getmtime(f), os.path.getsize(f)) for f in files if os.path.isfile(f))
    if key in _FP_CACHE:
        return _FP_CACHE[key]
    h = hashlib.sha256()
    for f, _, _ in key:
        h.update(os.path.basename(f).encode() + b"\0")
        with open(f, "rb") as fh:
            h.update(fh.read())
        h.update(b"\0")
    fp = h.hexdigest()[:16] if key else ""
    _FP_CACHE[key] = fp
    return fp


def cell_code(method_name: str, task_name: str) -> dict:
    """{"method_code": fingerprint, "task_code": fingerprint} of a cell's method and task."""
    from ..methods import get_method
    from ..tasks import get_task

    return {"method_code": code_fingerprint(get_method(method_name)), "task_code": code_fingerprint(get_task(task_name))}


def config_hash(config: dict, revisions: dict | None = None, code: dict | None = None) -> str:
    """Hash of a resolved run config (a RunConfig dict or run.json's "config"): every option the run's
    method and task read (``resolve.applies``; defaults included), the revisions of its method and
    task (``{"method": 2}``) and ``code`` (``cell_code``: the fingerprints of their source)."""
    from ..methods import get_method
    from ..resolve import _reads
    from ..tasks import get_task

    cfg = dict(config)
    task = get_task(cfg["task"]) if cfg.get("task") else None
    method = get_method(cfg.get("method") or FIELDS["method"].default)

    def applies(k):  # resolve.applies, with the method looked up once
        reads = FIELDS[k].metadata["reads"]
        return not reads or any(_reads(r, task, method) for r in reads)
    keep = {f"{k}_revision": r for k, r in (revisions or {}).items()}
    keep.update(code or {})
    for k, v in cfg.items():
        if k in NOT_HASHED or k not in FIELDS:
            continue
        if task is not None and k not in ("task", "method", "model", "seed") and not applies(k):
            continue
        keep[k] = _norm(v)
    blob = json.dumps(keep, sort_keys=True, separators=(",", ":"), default=str)
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
           report_to: str | None = None, logging_dir: str | None = None, chosen: dict | None = None) -> list:
    """All cells, model-major then seed, task, method (full FT first where listed first). ``report_to``
    (compare --report-to): every cell reports to those trackers, in one experiment named after the study
    (``experiment_name``), its TensorBoard files under ``logging_dir``/<run id> when given. ``chosen``:
    (task label, method label, model label) -> options a search chose (compare/search.py)."""
    from ..methods import get_method
    from ..tasks import get_task

    cells = []
    for model in cc.models:
        for seed in cc.seeds:
            for task in cc.tasks:
                for m in cc.methods:
                    values = cell_values(cc, task, model, m, get_task(task.name))
                    values.update((chosen or {}).get((task.label, m.label, model.label)) or {})
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
                    code = cell_code(m.name, task.name)
                    cells.append(Cell(rid, task.label, m.label, m.name, model.label, seed, cfg,
                                      config_hash(cfg.as_dict(), revisions, code), code))
    return cells
