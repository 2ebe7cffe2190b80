"""Whisper on a new domain: CER/WER on accents/ and on real/ (forgetting) before and after fine-tuning.

Each method runs as its own ``tunelab run --task speech-accents`` subprocess on the same model, data
subset and seed (``--jobs`` of them at a time). Every run transcribes its eval splits with the base
model first (cached: the same numbers for every method) and after every epoch. Prints one table:
trainable share, accents/test CER and WER base -> fine-tuned, real/test CER and WER base ->
fine-tuned (the change on real/ is the forgetting: positive = worse), validation CER, train time,
wall time and peak RSS. ``--append BENCHMARKS.md`` adds it with the date, machine and command.

    python benchmarks/bench_asr.py --data-dir ../shared/data/speech --max-train-samples 64 --epochs 2 \\
        --methods "full;lora;selective --layers decoder:top:2;alf" --append BENCHMARKS.md
"""

import argparse
import os
import shlex
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from bench_common import append_section, command_line, machine_line, run_tunelab

DEFAULT_METHODS = "full;lora;selective --layers decoder:top:2;alf"


def run_one(spec: str, args) -> dict:
    words = shlex.split(spec)
    label = spec.replace("--layers ", "").replace(" ", "")
    out = os.path.join(args.out_dir, "".join(c if c.isalnum() or c in "-_." else "_" for c in label))
    cmd = ["--task", "speech-accents", "--method", *words, "--model", args.model, "--data-dir", args.data_dir,
           "--seed", str(args.seed), "--max-train-samples", str(args.max_train_samples),
           "--max-eval-samples", str(args.max_eval_samples), "--epochs", str(args.epochs)]
    cmd += shlex.split(args.extra)
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    rec = reusable(out, args) if args.reuse else None
    if rec is not None:
        print(f"{label:<28} reused {out}", flush=True)
        return {"label": label, "rec": rec, "wall_s": _seconds(rec), "failed": None, "reused": True}
    rec, wall, err = run_tunelab(cmd, out, label)
    print(f"{label:<28} done in {wall:.0f} s" + (f" (failed: {err})" if err else ""), flush=True)
    return {"label": label, "rec": rec, "wall_s": wall, "failed": err}


def reusable(out: str, args):
    """A completed run.json in ``out`` made with this benchmark's sizes (``--reuse``), else None."""
    import json

    try:
        with open(os.path.join(out, "run.json"), encoding="utf-8") as f:
            rec = json.load(f)
    except (OSError, ValueError):
        return None
    c = rec.get("config", {})
    same = (rec.get("status") == "completed" and c.get("model") == args.model and c.get("seed") == args.seed
            and c.get("max_train_samples") == args.max_train_samples
            and c.get("max_eval_samples") == args.max_eval_samples and float(c.get("epochs")) == args.epochs)
    return rec if same else None


def _seconds(rec: dict) -> float:
    """Wall seconds of a finished run from its record (started_at -> finished_at)."""
    from datetime import datetime

    f = "%Y-%m-%dT%H:%M:%S%z"
    return (datetime.strptime(rec["finished_at"], f) - datetime.strptime(rec["started_at"], f)).total_seconds()


def fmt(v, nd=3) -> str:
    return "" if v is None else f"{v:.{nd}f}"


def arrow(m: dict, key: str) -> str:
    before, after = m.get("base_" + key), m.get(key)
    if before is None or after is None:
        return ""
    return f"{before:.3f} -> {after:.3f} ({after - before:+.3f})"


def table(rows: list) -> str:
    lines = ["| method | trainable % | accents test CER base -> tuned | accents test WER | real CER (forgetting) | "
             "real WER | accents val CER | lr | train s | wall s | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["failed"]:
            lines.append(f"| {r['label']} |  |  |  |  |  |  |  |  | {r['wall_s']:.0f} | failed: {r['failed']} |")
            continue
        rec = r["rec"]
        m, p = rec["metrics"], rec["params"]
        pct = p.get("trainable_fraction_mean")
        pct = f"{100 * pct:.1f} (mean)" if pct is not None else f"{p['trainable_pct']:.2f}"
        lines.append(f"| {r['label']} | {pct} | {arrow(m, 'test_cer')} | {arrow(m, 'test_wer')} | "
                     f"{arrow(m, 'real_cer')} | {arrow(m, 'real_wer')} | {arrow(m, 'cer')} | {rec['config']['lr']:g} | "
                     f"{rec['time']['train_seconds']:.0f} | {r['wall_s']:.0f} | {rec['memory']['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default=DEFAULT_METHODS, help="';'-separated: a method name and its options")
    ap.add_argument("--model", default="whisper-tiny")
    ap.add_argument("--data-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                       "..", "..", "shared", "data", "speech"))
    ap.add_argument("--max-train-samples", type=int, default=64)
    ap.add_argument("--max-eval-samples", type=int, default=30)
    ap.add_argument("--epochs", type=float, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time (each its own process)")
    ap.add_argument("--extra", default="", help="more `tunelab run` options for every method, one string")
    ap.add_argument("--out-dir", default="runs/bench_asr")
    ap.add_argument("--reuse", action="store_true",
                    help="keep runs already completed in --out-dir with the same sizes (wall time: start -> finish)")
    ap.add_argument("--append", default=None, help="append the table to this markdown file")
    args = ap.parse_args(argv)
    specs = [s.strip() for s in args.methods.split(";") if s.strip()]
    t0 = time.time()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        rows = list(pool.map(lambda s: run_one(s, args), specs))
    total = time.time() - t0
    text = table(rows)
    print()
    print(text)
    print(f"\ntotal wall time {total / 60:.1f} min")
    if args.append:
        sizes = next((r["rec"]["data_sizes"] for r in rows if r["rec"]), {})
        reused = sum(bool(r.get("reused")) for r in rows)
        append_section(args.append, [
            "", f"## Whisper on accents: new-domain gain and forgetting on real speech ({args.model})", "",
            f"Command: `{command_line('bench_asr.py', argv)}`  ",
            f"{machine_line(args.threads)}, {args.jobs} run(s) at a time; total wall time {total / 60:.1f} min"
            + (f" ({reused} of {len(rows)} runs reused from --out-dir, their wall s from run.json)" if reused else "")
            + ".  ",
            f"Utterances: {', '.join(f'{k} {v}' for k, v in sizes.items())}; CER/WER corpus-level after the "
            f"lower-case, punctuation-stripped normaliser (tasks/asr_text.py); base = the same model before "
            f"training on the same utterances; greedy decoding.", "", text, ""])
    return 1 if any(r["failed"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
