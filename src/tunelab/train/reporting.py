"""``--report-to tensorboard,mlflow,wandb``: stream a run to the experiment trackers people watch.

Each tracker is driven through its own library (``torch.utils.tensorboard.SummaryWriter`` with the
``tensorboard`` package, ``mlflow``, ``wandb`` in offline mode); none is a dependency of tunelab
(``pip install 'tunelab[trackers]'``), and a missing one is a one-line error before anything runs.

What is logged (HF Trainer's names where it has them):
- per optimizer step: ``train/loss``, ``train/learning_rate``, ``train/grad_norm`` (train/loop.py's
  ``flush``; the alignment family through its TRL bridge's ``on_log``);
- per epoch: ``train/epoch_loss`` and every evaluation metric as ``eval/<metric>`` at the epoch's
  step (train/tracker.py ``EpochTracker.end_epoch``: both training paths);
- at the end: ``final/<metric>``, the parameter counts (``params/trainable`` ...), the resolved config
  as parameters, tags task / method / model / seed, and run.json plus the plots as artifacts.

The runner opens the reporter (``start``) after run.json is first written and closes it (``finish``)
with the run's status; in between ``active()`` is the one module-level reporter (one run per
process). A compare gives every cell ``experiment_name`` = the study's name (one MLflow experiment
per study, one run per cell, named by the cell's run id).
"""

import json
import os

from ..errors import UserError

KNOWN = ("tensorboard", "mlflow", "wandb")
_ACTIVE = None


def parse(value) -> list:
    """``--report-to`` text -> tracker names (``none`` / empty -> [])."""
    if value is None:
        return []
    names = [n.strip().lower() for n in str(value).split(",") if n.strip()]
    if names in (["none"], []):
        return []
    if "all" in names:
        names = list(KNOWN)
    bad = [n for n in names if n not in KNOWN]
    if bad or "none" in names:
        raise UserError(f"--report-to {value}: unknown tracker {(bad or ['none'])[0]!r} (choose from "
                        f"{', '.join(KNOWN)}, comma-separated, or none)")
    return list(dict.fromkeys(names))


MODULES = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow-skinny"),
           "wandb": ("wandb", "wandb")}


def check(value) -> list:
    """The tracker names, each of whose libraries imports; else one UserError line."""
    import importlib.util

    names = parse(value)
    for n in names:
        mod, pkg = MODULES[n]
        if importlib.util.find_spec(mod) is None:
            raise UserError(f"--report-to {n}: the {mod} package is not installed (pip install {pkg}, or "
                            "pip install 'tunelab[trackers]')")
    return names


def active():
    return _ACTIVE


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[prefix + k] = float(v)
    return out


class TensorBoard:
    def __init__(self, cfg, run_name, experiment):
        from torch.utils.tensorboard import SummaryWriter

        self.dir = cfg.logging_dir or os.path.join(cfg.output_dir, "tensorboard")
        self.writer = SummaryWriter(log_dir=self.dir)

    def params(self, params: dict, tags: dict):
        self.writer.add_text("config", "```\n" + json.dumps(params, indent=1, default=str) + "\n```", 0)
        self.writer.add_text("tags", json.dumps(tags), 0)

    def metrics(self, values: dict, step: int):
        for k, v in values.items():
            self.writer.add_scalar(k, v, step)

    def artifacts(self, paths: list):
        pass  # the files sit beside the event files' run folder

    def finish(self, status: str):
        self.writer.flush()
        self.writer.close()


class MLflow:
    def __init__(self, cfg, run_name, experiment):
        uri = os.environ.get("MLFLOW_TRACKING_URI", "")
        if uri.startswith("file:") or (uri and "://" not in uri):  # a local file store, asked for by name:
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses it unless told
        import mlflow

        self.mlflow = mlflow
        mlflow.set_experiment(experiment)
        if mlflow.active_run() is not None:  # a run left open in this process (a test, a notebook)
            mlflow.end_run()
        self.run = mlflow.start_run(run_name=run_name)

    def params(self, params: dict, tags: dict):
        # MLflow caps a parameter's value at 6000 characters; ours are short
        self.mlflow.log_params({k: ("None" if v is None else str(v))[:6000] for k, v in params.items()})
        self.mlflow.set_tags(tags)

    def metrics(self, values: dict, step: int):
        self.mlflow.log_metrics(values, step=step)

    def artifacts(self, paths: list):
        for p in paths:
            if os.path.isfile(p):
                self.mlflow.log_artifact(p)

    def finish(self, status: str):
        self.mlflow.end_run(status={"completed": "FINISHED", "interrupted": "KILLED"}.get(status, "FAILED"))


class WandB:
    def __init__(self, cfg, run_name, experiment):
        import wandb

        self.wandb = wandb
        self.run = wandb.init(project=experiment, name=run_name, dir=cfg.logging_dir or cfg.output_dir,
                              mode=os.environ.get("WANDB_MODE", "offline"), reinit="finish_previous")

    def params(self, params: dict, tags: dict):
        self.run.config.update(params, allow_val_change=True)
        self.run.tags = tuple(f"{k}:{v}" for k, v in tags.items())

    def metrics(self, values: dict, step: int):
        self.run.log(values, step=step)

    def artifacts(self, paths: list):
        art = self.wandb.Artifact(f"run-{self.run.id}", type="tunelab-run")
        for p in paths:
            if os.path.isfile(p):
                art.add_file(p)
        self.run.log_artifact(art)

    def finish(self, status: str):
        self.run.finish(exit_code=0 if status == "completed" else 1)


BACKENDS = {"tensorboard": TensorBoard, "mlflow": MLflow, "wandb": WandB}


class Reporter:
    """The run's trackers; every call goes to each of them. Step numbers only grow (a tracker
    drops or reorders earlier steps otherwise): an epoch's values are logged at its last step."""

    def __init__(self, backends: list):
        self.backends = backends
        self.last_step = 0

    def _each(self, fn: str, *args):
        for b in self.backends:
            getattr(b, fn)(*args)

    def step(self, step: int, loss=None, lr=None, grad_norm=None):
        values = {k: float(v) for k, v in (("train/loss", loss), ("train/learning_rate", lr),
                                            ("train/grad_norm", grad_norm)) if v is not None}
        if values:
            self.last_step = max(self.last_step, step)
            self._each("metrics", values, step)

    def epoch(self, rec: dict):
        values = {f"eval/{k}": v for k, v in _flat(rec.get("metrics") or {}).items()}
        if rec.get("train_loss") is not None:
            values["train/epoch_loss"] = float(rec["train_loss"])
        if rec.get("epoch") is not None:
            values["train/epoch"] = float(rec["epoch"])
        step = max(int(rec.get("step") or 0), self.last_step)
        self.last_step = step
        if values:
            self._each("metrics", values, step)

    def finish(self, record: dict, out_dir: str | None):
        status = record.get("status", "failed")
        values = {f"final/{k}": v for k, v in _flat(record.get("metrics") or {}).items()}
        values.update({f"params/{k}": v for k, v in _flat(record.get("params") or {}).items()})
        t = record.get("time") or {}
        if t.get("train_seconds") is not None:
            values["time/train_seconds"] = float(t["train_seconds"])
        try:
            if values:
                self._each("metrics", values, self.last_step)
            if out_dir:
                files = [os.path.join(out_dir, "run.json")] + [os.path.join(out_dir, f)
                                                                for f in record.get("figures") or []]
                self._each("artifacts", files)
        finally:
            self._each("finish", status)


def start(cfg, record: dict):
    """Open the run's trackers (``cfg.report_to``) and log its config and tags; None when there are none."""
    global _ACTIVE
    names = check(cfg.report_to)
    if not names:
        _ACTIVE = None
        return None
    experiment = (cfg.experiment_name or os.environ.get("MLFLOW_EXPERIMENT_NAME") or os.environ.get("WANDB_PROJECT")
                  or "tunelab")
    run_name = os.path.basename(os.path.normpath(cfg.output_dir))
    backends = []
    try:
        for n in names:
            backends.append(BACKENDS[n](cfg, run_name, experiment))
    except Exception:
        for b in backends:
            b.finish("failed")
        raise
    rep = Reporter(backends)
    params = {k: v for k, v in cfg.as_dict().items()}
    tags = {"task": cfg.task, "method": cfg.method, "model": cfg.model, "seed": str(cfg.seed), "tunelab.run_dir": os.path.abspath(cfg.output_dir)}
    rep._each("params", params, tags)
    _ACTIVE = rep
    return rep


def finish(record: dict, out_dir: str | None) -> None:
    """Close the active reporter with the run's final record (status, metrics, params, figures)."""
    global _ACTIVE
    rep, _ACTIVE = _ACTIVE, None
    if rep is not None:
        rep.finish(record, out_dir)
