"""``tunelab predict RUN_DIR``: use a finished run on new inputs.

The generic half lives here (run layer): run.json's resolved config -> the task and the base model
(``Task.load_model``, as the run loaded it) -> the method's saved weights (``Method.save``'s files:
a PEFT adapter folder ``adapter_config.json`` + ``adapter_model.safetensors`` with the head in
``modules_to_save``, or the whole model ``model.safetensors`` for full / layer methods). The family
half is three ``Task`` hooks (tasks/base.py): ``read_inputs(path, cfg)`` (the format and columns the
family trains on), ``text_inputs(texts, cfg)`` (``--text``, text families) and
``predict_inputs(model, processor, inputs, cfg, device, batch_size, progress)`` -> one JSON-ready
dict per input, in input order. A new family predicts by implementing them.
"""

import json
import os
import sys

from .errors import UserError


def read_run(run_dir: str, what: str = "tunelab predict") -> dict:
    """run.json of a completed run (UserError otherwise)."""
    from .results.record import read_record

    path = os.path.join(run_dir, "run.json")
    if not os.path.isfile(path):
        raise UserError(f"{what} {run_dir}: no run.json there (not a run folder)")
    try:
        rec = read_record(run_dir)
        rec["config"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{what} {run_dir}: run.json is unreadable ({e})") from None
    if rec.get("status") != "completed":
        raise UserError(f"{what} {run_dir}: the run's status is {rec.get('status')!r}, not completed: "
                        "it has no final weights")
    return rec


def run_config(rec: dict):
    """The run's resolved RunConfig, rebuilt from run.json (options unknown to this tunelab are dropped)."""
    from . import tasks  # noqa: F401  (every declared option)
    from .config import FIELDS, RunConfig

    return RunConfig(**{k: v for k, v in rec["config"].items() if k in FIELDS})


def weight_files(run_dir: str) -> list:
    return sorted(f for f in os.listdir(run_dir) if f.startswith("model") and f.endswith(".safetensors"))


def load_run(run_dir: str, device: str = "cpu", what: str = "tunelab predict"):
    """(task, model, processor, cfg, record) of a completed run, the model in eval mode on ``device``:
    the base model as the run loaded it, with the method's saved weights."""
    import torch

    from .tasks import get_task

    rec = {**read_run(run_dir, what), "run_dir": os.path.abspath(run_dir)}  # restore may read files there
    cfg = run_config(rec)
    task = get_task(cfg.task).configure(cfg)
    task.restore(rec)  # what load() would have set from the data (image classes ...)
    model, processor, _layout, _source = task.load_model(cfg.model, allow_pickle=cfg.allow_pickle)
    if os.path.isfile(os.path.join(run_dir, "adapter_config.json")):
        import warnings

        from peft import PeftModel

        with warnings.catch_warnings():  # transformers' deprecation notes from inside PEFT: not the user's to act on
            warnings.filterwarnings("ignore", category=FutureWarning)
            model = PeftModel.from_pretrained(model, run_dir, is_trainable=False)
    else:
        files = weight_files(run_dir)
        if not files:
            raise UserError(f"{what} {run_dir}: neither adapter_model.safetensors nor model.safetensors there")
        from safetensors.torch import load_file

        state = {}
        for f in files:
            state.update(load_file(os.path.join(run_dir, f)))
        missing, unexpected = model.load_state_dict(state, strict=False)
        tied = set(getattr(model, "_tied_weights_keys", None) or [])
        tied |= {k for k in missing if _is_tied(model, k)}
        missing = [k for k in missing if k not in tied]
        if missing or unexpected:
            raise UserError(f"{what} {run_dir}: the saved weights do not fit the base model {cfg.model} "
                            f"(missing {missing[:3]}, unexpected {list(unexpected)[:3]})")
    model.to(torch.device(device)).eval()
    return task, model, processor, cfg, rec


def _is_tied(model, key: str) -> bool:
    """A parameter left out of the checkpoint because it shares storage with one that is in it."""
    try:
        p = model.get_parameter(key)
    except AttributeError:
        return False
    ptr = p.data_ptr()
    return any(q.data_ptr() == ptr for n, q in model.named_parameters(remove_duplicate=False) if n != key)


def predict(run_dir: str, input_path: str | None = None, texts: list | None = None, device: str = "auto",
            batch_size: int | None = None, progress: bool | None = None) -> list:
    """Predictions of the run in ``run_dir`` on a file (``input_path``) or strings (``texts``): one dict
    per input, in input order."""
    import torch

    from .train.resources import resolve_device

    if bool(input_path) == bool(texts):
        raise UserError("tunelab predict: give --input FILE or --text TEXT (one of them)")
    dev = resolve_device(device)
    task, model, processor, cfg, _rec = load_run(run_dir, str(dev))
    if input_path:
        if not os.path.exists(input_path):
            raise UserError(f"--input {input_path}: no such file or folder")
        inputs = task.read_inputs(input_path, cfg)
    else:
        inputs = task.text_inputs(list(texts), cfg)
    if not inputs:
        raise UserError(f"--input {input_path}: no inputs in it")
    bs = batch_size or cfg.eval_batch_size
    with torch.no_grad():
        out = list(task.predict_inputs(model, processor, inputs, cfg, dev, bs, progress))
    if len(out) != len(inputs):
        raise RuntimeError(f"task {task.name}: {len(out)} predictions for {len(inputs)} inputs")
    return out


def write_jsonl(rows: list, path: str | None) -> None:
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if path is None:
        sys.stdout.write(lines)
        sys.stdout.flush()
        return
    d = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(d, exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(lines)
        os.replace(tmp, path)
    except OSError as e:
        raise UserError(f"--output {path}: cannot write ({e.strerror or e})") from None
