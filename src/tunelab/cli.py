"""Command line: ``tunelab run | list`` (and the commands other modules add).

Errors a user caused print one line on stderr and exit 2; ``--debug`` shows the traceback.
"""

import argparse
import os
import sys

from .errors import RunFailed, UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UserError(f"{self.prog}: {message}")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    """Every declared option, one argparse group per owner: the common options, then each method's,
    then each task family's (``config.owners``). Values stay text here: config_from_args coerces
    them and build_config checks them like YAML values."""
    from .config import FIELDS, owners
    from .resolve import load_options

    load_options()  # every method's and family's declarations
    for title, names in owners():
        group = p.add_argument_group(title)
        for name in names:
            f = FIELDS[name]
            flag = "--" + name.replace("_", "-")
            text = f.metadata["help"].replace("%", "%%")  # argparse %-formats help ("top:25%")
            if f.py_type is bool:
                group.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=text)
            else:
                group.add_argument(flag, type=str, default=argparse.SUPPRESS, metavar=name.upper(), help=text)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tunelab", description="Fine-tune pretrained transformers with many methods; compare them honestly.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    p = sub.add_parser("run", help="fine-tune one model on one task with one method")
    p.add_argument("args", nargs="*", help="[CONFIG.yaml] [key=value ...]")
    _add_run_options(p)
    p.add_argument("--resume", metavar="OUTPUT_DIR", help="continue the killed run in OUTPUT_DIR from its last "
                   "checkpoint (--save-every), with its recorded options")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    sub.add_parser("list", help="known tasks, methods and model aliases")
    _add_use_commands(sub)
    for extra in _extra_commands():
        extra.add_parser(sub)
    return parser


def _add_use_commands(sub) -> None:
    """``tunelab predict`` and ``tunelab export``: use a finished run (predict.py, export.py)."""
    p = sub.add_parser("predict", help="predict with a finished run on new inputs (JSONL, one line per input)")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--input", metavar="FILE", help="inputs in the format the task trains on (a TSV / JSONL file; "
                   "audio files or an audiofolder for ASR; images or an ImageFolder for image tasks)")
    p.add_argument("--text", action="append", metavar="TEXT", help="one text input (repeatable; text tasks; "
                   "a sentence pair as FIRST<TAB>SECOND)")
    p.add_argument("--output", metavar="FILE", help="write the JSONL here (default: stdout)")
    p.add_argument("--batch-size", type=int, metavar="N", help="inputs per batch (default: the run's eval batch size)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: on long inputs at a terminal)")
    p.set_defaults(func=cmd_predict)
    p = sub.add_parser("export", help="a finished run as a plain Hugging Face model folder (+ model card)")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--output", required=True, metavar="DIR", help="the folder to write (new or empty)")
    p.add_argument("--merge", action="store_true", help="merge PEFT adapters into the base weights "
                   "(merge_and_unload) where PEFT can; otherwise the adapter folder is written with a note")
    p.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), help="cast the weights (default: as trained, fp32)")
    p.add_argument("--push-to-hub", metavar="REPO", help="also upload the folder to the Hugging Face Hub "
                   "(needs the internet and a token)")
    p.set_defaults(func=cmd_export)


def cmd_predict(ns) -> int:
    from .predict import predict, write_jsonl

    if ns.batch_size is not None and ns.batch_size < 1:
        raise UserError(f"--batch-size {ns.batch_size}: must be >= 1")
    rows = predict(ns.run_dir, ns.input, ns.text, ns.device, ns.batch_size, ns.progress)
    write_jsonl(rows, ns.output)
    if ns.output:
        print(f"{len(rows)} predictions -> {ns.output}", file=sys.stderr)
    return 0


def cmd_export(ns) -> int:
    from .export import export

    info = export(ns.run_dir, ns.output, merge=ns.merge, dtype=ns.dtype, push_to_hub=ns.push_to_hub)
    print(f"exported {info['kind']} -> {ns.output}" + (f" (pushed to {ns.push_to_hub})" if ns.push_to_hub else ""))
    return 0


def _extra_commands() -> list:
    """Commands living in their own modules (compare, report, analyze) register here."""
    mods = []
    import importlib

    for name in ("tunelab.compare.cli", "tunelab.analysis.cli", "tunelab.pretrain.cli", "tunelab.report.cli"):
        try:
            mods.append(importlib.import_module(name))
        except ModuleNotFoundError as e:
            if e.name and not name.startswith(e.name):
                raise
    return mods


def config_from_args(ns) -> "object":
    from .config import FIELDS, _coerce, load_yaml, parse_overrides
    from .resolve import build_config

    values = {}
    positional = list(ns.args)
    if positional and "=" not in positional[0]:
        values.update(load_yaml(positional.pop(0)))
    flags = {k: v for k, v in vars(ns).items() if k in FIELDS}
    for k, v in flags.items():
        values[k] = _coerce(k, v, "--" + k.replace("_", "-"))
    values.update(parse_overrides(positional))
    if getattr(ns, "resume", None):
        from .resume import resume_config

        return resume_config(ns.resume, values)
    return build_config(values)


def cmd_list() -> None:
    from .methods import get_method, method_names
    from .models import ALIASES
    from .tasks import get_task, task_names

    print("tasks:")
    tasks = [(n, get_task(n)) for n in task_names()]
    wn, wf, wh = (max(len(x) for x in col) for col in zip(*[(n, t.family, t.head) for n, t in tasks]))
    for n, t in tasks:
        print(f"  {n:<{wn}} {t.family:<{wf}} {t.head:<{wh}} metrics: {', '.join(t.metric_names)}")
    print("methods:")
    for n in method_names():
        m = get_method(n)
        doc = (m.__doc__ or "").strip().splitlines()[0] if m.__doc__ else ""
        print(f"  {n:<12} default lr {m.default_lr:<8g} {doc}")
    print("model aliases:")
    for n, (desc, _) in ALIASES.items():
        print(f"  {n:<12} {desc}")


def _error_line(line: str) -> None:
    """The one error line on stderr; a compare child (TUNELAB_ERRORS_TO_STDOUT) also puts it in its log."""
    print(line, file=sys.stderr)
    if os.environ.get("TUNELAB_ERRORS_TO_STDOUT"):
        print(line, flush=True)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        ns = build_parser().parse_args(argv)
        if ns.command != "run" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise UserError(f"tunelab {ns.command}: only `tunelab run` runs data-parallel "
                            "(torchrun / accelerate launch)")
        if ns.command == "run":
            from .runner import run
            from .train import distributed
            from .train.preempt import handle_signals

            with handle_signals():  # SIGTERM / SIGINT: stop at a step boundary, record "interrupted" (train/preempt.py)
                cfg = config_from_args(ns)
                with distributed.process_group(cfg.device):  # torchrun / accelerate launch: one rank of a data-parallel run
                    rec = run(cfg)
            if distributed.launcher_rank() != 0:
                return 0
            health = rec.get("training_health") or {}
            if health.get("diverged"):
                print(f"tunelab: warning: training diverged (5-step mean loss {health['start_loss']} -> "
                      f"{health['max_loss']}); the run is flagged in run.json (training_health)", file=sys.stderr)
            print(f"{rec['status']}: {rec['task']}/{rec['method']} " + " ".join(f"{k}={v:.4f}" for k, v in rec["metrics"].items())
                  + f" -> {rec['config']['output_dir']}/run.json")
        elif ns.command == "list":
            cmd_list()
        elif ns.command and hasattr(ns, "func"):
            return ns.func(ns) or 0
        else:
            build_parser().print_help()
            return 2
        return 0
    except UserError as e:
        if debug:
            raise
        if int(os.environ.get("RANK", "0")) == 0:  # data-parallel: every rank raises the same line; rank 0 prints it
            _error_line(f"tunelab: error: {e}")
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM (train/preempt.py): 128 + the signal
        code = getattr(e, "exit_code", 130)
        step = getattr(e, "step", None)
        where = (f" at step {step}" + ("; checkpoint written: continue with tunelab run --resume"
                                       if getattr(e, "checkpoint", False) else "")) if step is not None else ""
        print(f"tunelab: interrupted ({getattr(e, 'signal_name', 'SIGINT')}){where}", file=sys.stderr)
        return code
    except RunFailed as e:  # diverged / could not write: recorded in run.json as failed when possible
        if debug:
            raise
        _error_line(f"tunelab: run failed: {e}")
        return 1
    except Exception as e:  # noqa: BLE001
        if debug:
            raise
        msg = str(e).splitlines()[0] if str(e) else ""
        print(f"tunelab: error: {type(e).__name__}: {msg} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
