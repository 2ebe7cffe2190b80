"""The alignment objectives on one preference subset: reward, sft, dpo, coh, rlhf.

Each objective runs as its own ``tunelab run`` subprocess on the same model, method and hh-rlhf
subset (same train pairs, same held-out pairs), in this order: ``reward`` first, so that ``rlhf``
is optimised against that trained reward model (``--reward-model``) rather than the win-rate judge.
Prints one table: held-out preference accuracy and chosen-response log-perplexity of the base and
the trained model, win rate vs the base model, the training curve's first-quarter -> last-quarter
mean of the objective's own signal (DPO: implicit-reward accuracy; reward: pair accuracy; RLHF:
mean reward; SFT / CoH: loss), train time and peak RSS. ``--append BENCHMARKS.md`` adds the table
with the command that made it.

    python benchmarks/bench_alignment.py --data-dir ../shared/data/hh-rlhf --max-train-samples 200 --append BENCHMARKS.md
"""

import argparse
import os
import shlex
import sys
import time

from bench_common import append_section, command_line, machine_line, run_tunelab

OBJECTIVES = ("reward", "sft", "dpo", "coh", "rlhf")


def run_one(obj: str, args, reward_dir: str | None) -> dict:
    out = os.path.join(args.out_dir, f"{obj}-{args.method}")
    cmd = ["--task", obj, "--method", args.method, "--model", args.model, "--data-dir", args.data_dir,
           "--seed", str(args.seed), "--max-train-samples", str(args.max_train_samples)] + shlex.split(args.extra)
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if obj == "rlhf" and reward_dir:
        cmd += ["--reward-model", reward_dir]
    rec, wall, err = run_tunelab(cmd, out, obj)
    if err is not None:
        return {"objective": obj, "failed": err, "wall_s": wall}
    return {"objective": obj, "rec": rec, "wall_s": wall, "run_dir": out}


def fmt(v, nd=3) -> str:
    return "" if v is None else f"{v:.{nd}f}"


def table(rows: list) -> str:
    lines = ["| objective | pref_accuracy base -> trained | chosen_logppl base -> trained | win_rate vs base | "
             "train signal (first 1/4 -> last 1/4 mean) | train s | peak RSS MB | status |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "failed" in r:
            lines.append(f"| {r['objective']} |  |  |  |  |  |  | failed: {r['failed']} |")
            continue
        rec = r["rec"]
        m, al = rec["metrics"], rec.get("alignment", {})
        curve = al.get("train_curve_summary") or {}
        sig = (f"{curve['metric']}: {fmt(curve['first_quarter_mean'])} -> {fmt(curve['last_quarter_mean'])} "
               f"({curve['steps']} logs)") if curve else ""
        lines.append(
            f"| {r['objective']} | {fmt(m.get('base_pref_accuracy'))} -> {fmt(m.get('pref_accuracy'))} | "
            f"{fmt(m.get('base_chosen_logppl'))} -> {fmt(m.get('chosen_logppl'))} | {fmt(m.get('win_rate'))} | {sig} | "
            f"{rec['time']['train_seconds']:.0f} | {rec['memory']['peak_rss_mb']:.0f} | {rec['status']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objectives", default=",".join(OBJECTIVES))
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--method", default="lora")
    ap.add_argument("--data-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                       "..", "..", "shared", "data", "hh-rlhf"))
    ap.add_argument("--max-train-samples", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--extra", default="", help="more `tunelab run` options for every objective, one string")
    ap.add_argument("--out-dir", default="runs/bench_alignment")
    ap.add_argument("--append", default=None, help="append the table to this markdown file")
    args = ap.parse_args(argv)
    objectives = [o.strip() for o in args.objectives.split(",") if o.strip()]
    bad = [o for o in objectives if o not in OBJECTIVES]
    if bad:
        raise SystemExit(f"--objectives: unknown {bad}; known {OBJECTIVES}")
    objectives.sort(key=OBJECTIVES.index)  # reward before rlhf
    rows, reward_dir, t0 = [], None, time.time()
    for obj in objectives:
        r = run_one(obj, args, reward_dir)
        if obj == "reward" and "failed" not in r:
            reward_dir = r["run_dir"]
        rows.append(r)
        print(f"{obj:<7} done in {r['wall_s']:.0f} s" + (" (failed)" if "failed" in r else ""), flush=True)
    total = time.time() - t0
    text = table(rows)
    print()
    print(text)
    print(f"\ntotal wall time {total / 60:.1f} min")
    if args.append:
        append_section(args.append, [
            "", f"## Alignment objectives on one hh-rlhf subset ({args.model}, {args.method})", "",
            f"Command: `{command_line('bench_alignment.py', argv)}`  ",
            f"{machine_line(args.threads)}; total wall time {total / 60:.1f} min.", "", text, ""])
    return 1 if any("failed" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
