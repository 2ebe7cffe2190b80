"""Resolving a run's options: given values (preset / study / YAML / command line) + the method's and the
task family's defaults -> one ``RunConfig`` (config.py declares the options; this needs the task and
method registries, so it sits above them: runner layer).

Defaults are merged in one documented order (later wins): the option's default < the method's
(``Method.option_defaults(given)``) < the task family's (``Task.option_defaults(method)``) < what the
user gave; ``cfg.sources`` records the level each value came from.
"""

import os

from .config import FIELDS, RunConfig, Trait, flag, validate
from .errors import UserError
from .methods import get_method, method_names
from .methods.budget import resolve_layer_budget
from .tasks import get_task, load_all, task_names


def load_options() -> None:
    """Import every method and task family, so that ``config.FIELDS`` / ``RunConfig`` hold every
    declared option (``tunelab.tasks`` registers this loader with config too; both are idempotent)."""
    load_all()


def _reads(reader, task, method) -> bool:
    if isinstance(reader, Trait):
        return reader.matches(method if reader.kind == "method" else task)
    return reader in (method.name, f"family:{task.family}", f"task:{task.name}")


def applies(name: str, task, method_name: str) -> bool:
    """Whether the run (a task object and a method name) reads option ``name``: its ``reads`` name the
    method, the task or its family, or a trait the method / an attribute the task has."""
    reads = FIELDS[name].metadata["reads"]
    if not reads:
        return True
    method = get_method(method_name)
    return any(_reads(r, task, method) for r in reads)


def readers(name: str) -> str:
    """Who reads option ``name``, for the error line: ``--method lora, --method alf``; a trait is
    spelled out as the registered methods / the task families (or tasks) that have it."""
    out = []
    for r in FIELDS[name].metadata["reads"]:
        if isinstance(r, Trait) and r.kind == "method":
            out += [f"--method {n}" for n in method_names() if r.matches(get_method(n))]
        elif isinstance(r, Trait):
            tasks = [get_task(n) for n in task_names()]
            for fam in sorted({t.family for t in tasks}):
                members = [t for t in tasks if t.family == fam]
                hits = [t for t in members if r.matches(t)]
                out += [f"task family {fam}"] if hits and len(hits) == len(members) else [f"--task {t.name}" for t in hits]
        elif ":" in r:
            out.append(r.replace("family:", "task family ").replace("task:", "--task "))
        else:
            out.append(f"--method {r}")
    return ", ".join(dict.fromkeys(out))



def build_config(values: dict) -> RunConfig:
    """Given options (preset/study/YAML/CLI, already merged by the caller) -> a resolved RunConfig.
    Every given option must be read by the chosen method or task."""
    values = dict(values)
    if not values.get("task"):
        raise UserError("--task is required (tunelab list shows the tasks)")
    task = get_task(values["task"])
    method_name = values.get("method") or FIELDS["method"].default
    method = get_method(method_name)
    for k in values:
        if k not in FIELDS:
            raise UserError(f"unknown option '{k}'")
        if not applies(k, task, method_name):
            raise UserError(f"{flag(k)} does not apply to --method {method_name} on --task {task.name} "
                            f"(read by {readers(k)})")
    # explicit None for lr / head_lr means "the default"
    given = {k: v for k, v in values.items() if not (k in ("lr", "head_lr") and v is None)}
    levels = [("method", method.option_defaults(given)), ("task", task.option_defaults(method)), ("given", given)]
    merged, sources = {}, {}
    for level, d in levels:
        for k, v in d.items():
            if k not in FIELDS:
                raise ValueError(f"{level} defaults name an unknown option {k!r}")
            merged[k], sources[k] = v, level
    cfg = RunConfig(**merged)
    if cfg.head_lr is None:
        cfg.head_lr, sources["head_lr"] = cfg.lr, sources.get("lr", "default") + " (= lr)"
    if cfg.data_dir is None and cfg.dataset is None and os.environ.get("TUNELAB_DATA_DIR"):  # --dataset: the hub
        cfg.data_dir, sources["data_dir"] = os.environ["TUNELAB_DATA_DIR"], "env TUNELAB_DATA_DIR"
    cfg.sources = {k: sources.get(k, "default") for k in FIELDS}
    validate(cfg)
    if cfg.layer_budget is not None:
        resolve_layer_budget(cfg)  # --alf-budget = it, lisa's embeddings frozen, conflicts are UserErrors
    return cfg
