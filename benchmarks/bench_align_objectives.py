"""Memory and time of the reference-free objectives (ORPO, SimPO) against DPO, with full fine-tuning
(DPO holds a frozen second copy of the model as its reference) and with LoRA (TRL scores DPO's
reference with the adapter disabled, so no second copy), side by side in one script run.

Each (method, objective) is its own ``tunelab run`` subprocess on the same model, hh-rlhf pairs and
settings, no judge (``--judge none``: the judge's memory would be the same for every row). Columns:
train seconds (evaluation excluded) and the training phase's peak RSS (``alignment.train_memory``:
sampled every 20 ms, the base model freed before training unless it is the reference), each also as
a ratio to DPO with the same method; the process's peak RSS; held-out pref_accuracy base -> trained.
``--append BENCHMARKS.md`` adds the table with the command that made it.

    python benchmarks/bench_align_objectives.py --data-dir ../shared/data/hh-rlhf --threads 1 --append BENCHMARKS.md
"""

import argparse
import os
import sys
import time

from bench_common import append_section, command_line, machine_line, run_tunelab

OBJECTIVES = ("dpo", "orpo", "simpo")


def fmt(v, nd=3) -> str:
    return "" if v is None else f"{v:.{nd}f}"


def table(rows: list) -> str:
    lines = ["| method | objective | reference model | train s | x DPO | train-phase peak RSS MB | x DPO | "
             "process peak RSS MB | pref_accuracy base -> trained | status |", "|---|---|---|---|---|---|---|---|---|---|"]
    dpo = {r["method"]: r for r in rows if r["objective"] == "dpo" and "rec" in r}
    for r in rows:
        if "rec" not in r:
            lines.append(f"| {r['method']} | {r['objective']} |  |  |  |  |  |  |  | failed: {r['failed']} |")
            continue
        rec, al = r["rec"], r["rec"]["alignment"]
        t, mem = rec["time"]["train_seconds"], al["train_memory"]["peak_rss_mb"]
        d = dpo.get(r["method"])
        dt = d["rec"]["time"]["train_seconds"] if d else None
        dm = d["rec"]["alignment"]["train_memory"]["peak_rss_mb"] if d else None
        m = rec["metrics"]
        lines.append(f"| {r['method']} | {r['objective']} | {al['reference_model']} | {t:.1f} | "
                     f"{fmt(t / dt if dt else None, 2)} | {mem:.0f} | {fmt(mem / dm if dm else None, 2)} | "
                     f"{rec['memory']['peak_rss_mb']:.0f} | {fmt(m.get('base_pref_accuracy'))} -> "
                     f"{fmt(m.get('pref_accuracy'))} | {rec['status']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objectives", default=",".join(OBJECTIVES))
    ap.add_argument("--methods", default="full,lora")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--data-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                       "..", "..", "shared", "data", "hh-rlhf"))
    ap.add_argument("--max-train-samples", type=int, default=16)
    ap.add_argument("--max-eval-samples", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--extra", default="--max-prompt-length 64 --max-response-length 48 --batch-size 2 --grad-accum 4",
                    help="more `tunelab run` options for every run, one string")
    ap.add_argument("--out-dir", default="runs/bench_align_objectives")
    ap.add_argument("--append", default=None, help="append the table to this markdown file")
    args = ap.parse_args(argv)
    rows, t0 = [], time.time()
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        for obj in [o.strip() for o in args.objectives.split(",") if o.strip()]:
            cmd = ["--task", obj, "--method", method, "--model", args.model, "--data-dir", args.data_dir,
                   "--seed", str(args.seed), "--max-train-samples", str(args.max_train_samples),
                   "--max-eval-samples", str(args.max_eval_samples), "--judge", "none", "--win-rate-prompts", "0",
                   *args.extra.split()]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            rec, wall, err = run_tunelab(cmd, os.path.join(args.out_dir, f"{obj}-{method}"), f"{obj}/{method}")
            rows.append({"method": method, "objective": obj, **({"rec": rec} if rec else {"failed": err})})
            print(f"{method:<5} {obj:<6} done in {wall:.0f} s" + (" (failed)" if err else ""), flush=True)
    total = time.time() - t0
    text = table(rows)
    print()
    print(text)
    print(f"\ntotal wall time {total / 60:.1f} min")
    if args.append:
        append_section(args.append, [
            "", f"### Reference-free objectives (ORPO, SimPO) vs DPO: memory and time ({args.model})", "",
            f"Command: `{command_line('bench_align_objectives.py', argv)}`  ",
            f"{machine_line(args.threads)}; total wall time {total / 60:.1f} min.", "", text, ""])
    return 1 if any("failed" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
