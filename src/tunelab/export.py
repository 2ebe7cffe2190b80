"""``tunelab export RUN_DIR --output DIR [--merge] [--dtype bf16|fp16]``: a finished run as a plain
Hugging Face model folder.

The run is rebuilt as ``tunelab predict`` does (predict.load_run: base model + the method's saved
weights). Full / layer-method runs: the model (safetensors) with its processor / tokenizer and the
label names in ``config.json`` (``id2label``). PEFT runs with ``--merge``: ``merge_and_unload`` where
PEFT can merge (LoRA and the other adapter methods that add to weights; the head's
``modules_to_save`` copies become the head), a plain model that ``AutoModelFor...from_pretrained(DIR)``
loads alone; where PEFT cannot (prompt / prefix tuning: virtual tokens are inputs, not weights), or
without ``--merge``, the PEFT adapter folder with a note in the card saying so. Every export writes
a model card (README.md): task, method, base model, data sha256 (run.json ``data``), metrics and the
command that trained it. ``--push-to-hub REPO`` uploads the folder (needs the internet).
"""

import json
import os
import shlex

from .errors import UserError

DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def train_command(rec: dict) -> str:
    """The ``tunelab run`` command line of the options the user gave (run.json ``config_sources``)."""
    from .config import FIELDS, flag

    cfg, sources = rec.get("config", {}), rec.get("config_sources", {})
    parts = ["tunelab", "run"]
    for k, v in cfg.items():
        if not str(sources.get(k, "")).startswith("given") or k not in FIELDS or v is None:
            continue
        if isinstance(v, bool):
            parts.append(flag(k) if v else "--no-" + k.replace("_", "-"))
        else:
            parts += [flag(k), shlex.quote(str(v))]
    return " ".join(parts)


def _check_out(out: str) -> None:
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise UserError(f"--output {out}: exists and is not an empty folder")


def _set_labels(config, names) -> None:
    if names and getattr(config, "num_labels", None) == len(names):
        config.id2label = dict(enumerate(names))
        config.label2id = {n: i for i, n in enumerate(names)}


def model_card(rec: dict, kind: str, note: str | None, names, auto_class: str, dtype: str | None) -> str:
    metrics = rec.get("metrics") or {}
    lines = ["---", "library_name: " + ("peft" if kind == "peft-adapter" else "transformers"),
             "tags:", "- tunelab", f"- {rec['task']}", f"- {rec['method']}", "---", "",
             f"# {rec['task']} / {rec['method']} / {rec['model']} (seed {rec['seed']})", "",
             f"Fine-tuned with tunelab on task `{rec['task']}` with method `{rec['method']}`.", "",
             f"- base model: `{rec['model']}` (loaded from `{rec.get('model_source')}`)",
             f"- what this folder is: {'a plain model (' + auto_class + ')' if kind != 'peft-adapter' else 'a PEFT adapter'}"
             + (f", weights cast to {dtype}" if dtype else ""),
             f"- finished: {rec.get('finished_at')}"]
    if names:
        lines.append("- labels (id2label): " + ", ".join(f"{i}={n}" for i, n in enumerate(names)))
    if note:
        lines += ["", "**Note.** " + note]
    lines += ["", "## Metrics", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items()]
    sizes = rec.get("data_sizes") or {}
    if sizes:
        lines += ["", "Examples: " + ", ".join(f"{k} {v}" for k, v in sizes.items())]
    lines += ["", "## Data (sha256)", "", "| file | sha256 |", "|---|---|"]
    lines += [f"| `{f}` | `{h}` |" for f, h in (rec.get("data") or {}).items()]
    lines += ["", "## Training command", "", "```", train_command(rec), "```", "",
              "Every resolved option is in `run.json` (copied here as `tunelab_run.json`).", ""]
    return "\n".join(lines)


def _unwrap_saved_modules(model) -> None:
    """Replace every PEFT ``ModulesToSaveWrapper`` (the head: classifier, pooler) by its trained copy, in
    place. PEFT's LoRA merge does this itself; IA3's (PEFT 0.21) fails on a wrapped module without a
    ``weight`` (BERT's pooler), so it is done here for every tuner before ``merge_and_unload``."""
    from peft.utils import ModulesToSaveWrapper

    for name, mod in list(model.named_modules()):
        if isinstance(mod, ModulesToSaveWrapper):
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, attr, mod.modules_to_save[mod.active_adapters[0]])


def export(run_dir: str, out: str, merge: bool = False, dtype: str | None = None,
           push_to_hub: str | None = None) -> dict:
    """Write the export folder; returns {"kind": "merged" | "model" | "peft-adapter", "note": ...}."""
    import torch

    from .models.heads import HEADS
    from .predict import load_run
    from .results.record import write_json_atomic

    _check_out(out)
    if push_to_hub is not None and os.environ.get("HF_HUB_OFFLINE") == "1":
        raise UserError(f"--push-to-hub {push_to_hub}: needs the internet (HF_HUB_OFFLINE=1 is set)")
    task, model, processor, cfg, rec = load_run(run_dir, "cpu", what="tunelab export")
    names = task.label_names()
    auto_class = HEADS.get(task.head).auto_class
    note = None
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover (peft is a dependency)
        PeftModel = ()
    if isinstance(model, PeftModel):
        peft_cfg = model.active_peft_config
        if not merge:
            kind, note = "peft-adapter", ("PEFT adapter folder (not merged; `tunelab export --merge` writes a plain "
                                          "model where PEFT can merge). Load it with `peft.AutoPeftModelFor...` or "
                                          f"`PeftModel.from_pretrained` on the base model `{rec['model']}`.")
        elif getattr(peft_cfg, "is_prompt_learning", False):
            kind, note = "peft-adapter", (f"{peft_cfg.peft_type} cannot be merged into the base weights (its virtual "
                                          "tokens are inputs, not weight changes): this is the PEFT adapter folder; "
                                          "load it with `PeftModel.from_pretrained` on the base model "
                                          f"`{rec['model']}`.")
        else:
            try:
                _unwrap_saved_modules(model)  # the trained head copies become the head
                model = model.merge_and_unload()
                kind = "merged"
            except (AttributeError, ValueError, NotImplementedError, TypeError) as e:
                kind, note = "peft-adapter", (f"PEFT cannot merge {peft_cfg.peft_type} here ({str(e).splitlines()[0]}): "
                                              "this is the PEFT adapter folder; load it with `PeftModel.from_pretrained` "
                                              f"on the base model `{rec['model']}`.")
                model = load_run(run_dir, "cpu", what="tunelab export")[1]  # a failed merge may have changed it
    else:
        kind = "model"
    target = model.get_base_model() if kind == "peft-adapter" else model
    _set_labels(target.config, names)
    if dtype and dtype != "fp32":
        model = model.to(getattr(torch, DTYPES[dtype]))
    try:
        os.makedirs(out, exist_ok=True)
        model.save_pretrained(out, safe_serialization=True)
        processor.save_pretrained(out)
        with open(os.path.join(out, "README.md"), "w", encoding="utf-8") as f:  # after PEFT's own README
            f.write(model_card(rec, kind, note, names, auto_class, dtype if dtype and dtype != "fp32" else None))
        write_json_atomic(os.path.join(out, "tunelab_run.json"), rec)
        with open(os.path.join(out, "tunelab_export.json"), "w", encoding="utf-8") as f:
            json.dump({"kind": kind, "note": note, "auto_class": auto_class, "dtype": dtype or "fp32",
                       "run_dir": os.path.abspath(run_dir)}, f, indent=2)
    except OSError as e:
        raise UserError(f"--output {out}: cannot write ({e.strerror or e})") from None
    pickles = [f for f in os.listdir(out) if f.endswith((".bin", ".pt", ".pth", ".ckpt", ".pkl"))]
    if pickles:  # safetensors only
        raise RuntimeError(f"export wrote pickle files {pickles}")
    if push_to_hub:
        push(out, push_to_hub)
    return {"kind": kind, "note": note}


def push(folder: str, repo: str) -> None:
    """Upload the export folder to the Hub (needs the internet and a token); one line if it cannot."""
    try:
        from huggingface_hub import HfApi

        api = HfApi()
        api.create_repo(repo, exist_ok=True)
        api.upload_folder(folder_path=folder, repo_id=repo)
    except Exception as e:  # noqa: BLE001  (offline, no token, no rights: one line)
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"--push-to-hub {repo}: the upload needs the internet and a Hugging Face token; it failed "
                        f"({type(e).__name__}: {msg[:200]}); the folder {folder} is written") from None
