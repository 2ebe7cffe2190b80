"""Tuning inside compare: ``search:`` in a study (every method) or in a method entry (that method),
also ``tunelab compare ... search=auto`` on the command line.

- ``search: auto`` searches the learning rate on **three points around each cell's resolved lr**
  (the method's default, or what the study gave it): ``lr x {1/3, 1, 3}`` (``AUTO_LR_FACTORS``),
  rounded to 3 significant digits. ``head_lr`` follows ``lr`` unless the study sets it.
- ``search: {lr: [1e-4, 3e-4, 1e-3], lora_r: [4, 16]}``: the product of the lists (any declared
  option; ``lr: auto`` gives the automatic lr points). At study level an option that a method does
  not read is left out of that method's grid (a method with nothing left is not searched); in a
  method entry it is an error. ``search: off`` in a method entry excludes that method.

**Selection never sees the reported split.** Every grid point of (model, task, method) is one
``tunelab run`` with ``selection_split = search_fraction`` (default 0.1): the runner holds out that
share of the *training* split (stratified by label, seeded by ``tasks.splits.SELECTION_SEED``, so
it is the same split for every method, point and seed; run.json's ``data_notes.selection``
records it), trains on the rest and evaluates on the held-out part instead of dev. Search runs use
the study's first seed and its sizes (``max_train_samples`` of the rest, ``max_eval_samples`` of
the held-out part). The best point in the task's main-metric direction wins (``search_metric:
accuracy`` chooses on another registered metric: MRPC's main metric F1 favours the majority class); a tie goes to the
unsearched (default) point, else to the first in grid order; failed points (a diverged lr) do not
compete. Then the chosen configuration runs with every seed as an ordinary grid cell and is
reported on the dev/test split as without search (a chosen point equal to the default is the
untuned cell itself, same key, so it is reused).

Search cells are ordinary cells (``OUTPUT_DIR/search/<run-id>``, run ids ``search--...``): cached
and resumable exactly like the grid's, stored in ``results.sqlite`` (table ``runs``; the report's
tables read only the ids in meta ``grid``). The grid, each point's score and the choice per
(model, task, method) are in meta ``search``, in ``OUTPUT_DIR/search.json`` and in each final
run's ``compare-cell.json`` (``search``). Only task families that can hold out a selection split
(``Task.holds_out_selection``: glue) can be searched; others are refused with one line.
"""

import itertools
import math
import os
from dataclasses import dataclass, field

from ..errors import UserError
from ..resolve import applies, build_config, readers
from .config import AUTO, CompareConfig
from .grid import Cell, _slug, cell_code, cell_values, config_hash, run_id

AUTO_LR_FACTORS = (1 / 3, 1, 3)
SEARCH_DIR = "search"
PREFIX = "search--"


@dataclass
class SearchGroup:
    """The grid points of one (model, task, method label): one cell each."""

    task: str
    label: str
    method: str
    model: str
    seed: int
    where: str
    default: dict  # the searched options' values in the untuned cell
    points: list = field(default_factory=list)  # [{option: value}]
    cells: list = field(default_factory=list)  # [Cell], one per point
    metric: str = ""  # the study's search_metric; "": the task's main metric

    @property
    def key(self) -> tuple:
        return self.task, self.label, self.model


def method_spec(cc: CompareConfig, entry):
    """The search a method entry gets: its own, else the study's; None when not searched."""
    spec = entry.search if entry.search is not None else cc.search
    return None if spec in (None, "off") else spec


def searching(cc: CompareConfig) -> bool:
    return any(method_spec(cc, m) is not None for m in cc.methods)


def _sig(x: float) -> float:
    return float(f"{x:.3g}")


def _point_slug(point: dict) -> str:
    def v(x):
        return f"{x:g}" if isinstance(x, float) else str(x)

    return _slug("-".join(f"{k}{v(x)}" for k, x in point.items()))


def expand_search(cc: CompareConfig, output_dir: str, data_dir: str | None = None,
                  threads: int | None = None) -> list:
    """Every searched (model, task, method) as a SearchGroup with one validated cell per point."""
    from ..methods import get_method
    from ..tasks import get_task, task_names

    groups = []
    seed = cc.seeds[0]
    for model in cc.models:
        for task in cc.tasks:
            task_obj = get_task(task.name)
            for m in cc.methods:
                spec = method_spec(cc, m)
                if spec is None:
                    continue
                own = m.search is not None  # a method entry's own grid: every option must apply
                where = m.where if own else f"{m.where} (study search)"
                if not getattr(task_obj, "holds_out_selection", False):
                    fams = sorted({get_task(n).family for n in task_names()
                                   if getattr(get_task(n), "holds_out_selection", False)})
                    raise UserError(f"{where}: search: task {task.label} (family {task_obj.family}) cannot hold out "
                                    f"a selection split from its training data, so it cannot be tuned without "
                                    f"looking at the reported split; search supports task families: "
                                    f"{', '.join(fams)} (run it in a study without search)")
                values = cell_values(cc, task, model, m, task_obj)
                if data_dir is not None:
                    values["data_dir"] = data_dir
                if threads is not None:
                    values["threads"] = threads
                values.update(task=task.name, method=m.name, model=model.name, seed=seed)
                try:
                    base = build_config(values)
                except UserError as e:
                    raise UserError(f"{m.where}: {m.label} on {task.label}: {e}") from None
                grid = {"lr": AUTO} if spec == AUTO else dict(spec)
                for k in list(grid):
                    if not applies(k, task_obj, m.name):
                        if own:
                            raise UserError(f"{where}: search: {k} does not apply to --method {m.name} on --task "
                                            f"{task.name} (read by {readers(k)})")
                        del grid[k]
                    elif not own and grid[k] != AUTO and not _valid(values, k, grid[k][0], m.name):
                        del grid[k]  # read, but not in this configuration (lora_r for ALF without --adapter lora)
                if not grid:
                    continue
                if grid.get("lr") == AUTO:
                    grid["lr"] = list(dict.fromkeys(_sig(base.lr * f) for f in AUTO_LR_FACTORS))
                g = SearchGroup(task.label, m.label, m.name, model.label, seed, where,
                                {k: getattr(base, k) for k in grid}, metric=cc.search_metric)
                for combo in itertools.product(*grid.values()):
                    point = dict(zip(grid, combo))
                    rid = PREFIX + run_id(task.label, m.label, model.label, seed) + "--" + _point_slug(point)
                    vals = {**values, **point, "selection_split": cc.search_fraction,
                            "output_dir": os.path.join(output_dir, SEARCH_DIR, rid), "overwrite": True}
                    try:
                        cfg = build_config(vals)
                        get_method(m.name)().validate(cfg)
                    except UserError as e:
                        raise UserError(f"{where}: search: {m.label} on {task.label} at "
                                        f"{', '.join(f'{k}={v}' for k, v in point.items())}: {e}") from None
                    revisions = {"method": get_method(m.name).revision, "task": task_obj.revision}
                    code = cell_code(m.name, task.name)
                    g.points.append(point)
                    g.cells.append(Cell(rid, task.label, m.label, m.name, model.label, seed, cfg,
                                        config_hash(cfg.as_dict(), revisions, code), code))
                groups.append(g)
    return groups


def _valid(values: dict, key: str, value, method: str) -> bool:
    from ..methods import get_method

    try:
        get_method(method)().validate(build_config({**values, key: value}))
    except UserError:
        return False
    return True


def _better(a: float, b: float, higher: bool) -> bool:
    return a > b if higher else a < b


def choose(group: SearchGroup, store=None) -> dict:
    """The group's outcome: every point's score on the selection split and the choice (see the
    module docstring); ``store`` (optional) supplies failed points' errors."""
    from ..metrics import higher_is_better
    from .execute import completed_record

    points, metric, split = [], None, None
    for point, cell in zip(group.points, group.cells):
        rec = completed_record(cell)
        entry = {"values": point, "run_id": cell.run_id, "status": "completed" if rec else "failed", "score": None}
        if rec is not None:
            metric = group.metric or rec.get("main_metric")
            score = (rec.get("metrics") or {}).get(metric)
            if score is None:
                entry["error"] = f"the run recorded no metric {metric!r}"
            entry["score"] = score if isinstance(score, (int, float)) and math.isfinite(score) else None
            split = split or {**((rec.get("data_notes") or {}).get("selection") or {}),
                              "used": rec.get("data_sizes")}  # after max_train/eval_samples
        elif store is not None:
            entry["status"], entry["error"] = "failed", store.error(cell.run_id)
        points.append(entry)
    higher = higher_is_better(metric) if metric else True
    best = None
    for e in points:
        if e["score"] is None:
            continue
        if (best is None or _better(e["score"], best["score"], higher)
                or (e["score"] == best["score"] and e["values"] == group.default and best["values"] != group.default)):
            best = e
    return {"task": group.task, "label": group.label, "method": group.method, "model": group.model,
            "seed": group.seed, "metric": metric, "higher_is_better": higher, "selection_split": split,
            "grid": {k: list(dict.fromkeys(p[k] for p in group.points)) for k in group.default},
            "default": group.default, "points": points,
            "choice": None if best is None else best["values"],
            "choice_is_default": best is not None and best["values"] == group.default}


def chosen(outcomes: list) -> dict:
    """(task label, method label, model label) -> the chosen point (groups with a choice)."""
    return {(o["task"], o["label"], o["model"]): o["choice"] for o in outcomes if o["choice"]}
