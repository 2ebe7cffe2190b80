"""Resolving a run's options: given values (preset / study / YAML / command line) + the method's and the
task family's defaults -> one ``RunConfig`` (config.py declares the options; this needs the task and
method registries, so it sits above them: runner layer).

Defaults are merged in one documented order (later wins): the option's default < the method's
(``Method.option_defaults(given)``) < the task family's (``Task.option_defaults(method)``) < what the
user gave; ``cfg.sources`` records the level each value came from.
"""

import os

from .config import FIELDS, RunConfig, flag, validate
from .errors import UserError
from .methods import get_method
from .methods.budget import resolve_layer_budget
from .tasks import get_task


def applies(name: str, task, method_name: str) -> bool:
    """Whether the run (a task object and a method name) reads option ``name``."""
    reads = FIELDS[name].metadata["reads"]
    if not reads:
        return True
    tokens = {method_name, f"family:{task.family}", f"task:{task.name}"}
    return any(r in tokens for r in reads)



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
        if not applies(k, task, method_name):
            readers = ", ".join(r.replace("family:", "task family ").replace("task:", "--task ")
                                if ":" in r else f"--method {r}" for r in FIELDS[k].metadata["reads"])
            raise UserError(f"{flag(k)} does not apply to --method {method_name} on --task {task.name} "
                            f"(read by {readers})")
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
