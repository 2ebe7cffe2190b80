"""Same seed, same numbers: compare the runs of two compare output folders cell by cell, exactly.

For every run id found in both ``A/runs/`` and ``B/runs/`` it checks that the final metrics, the
per-epoch history (metrics and losses), the trainable-parameter counts and the best epoch are
bit-identical (the floats as run.json wrote them), and prints one table row per cell plus a summary.
Timings, dates, versions and paths are not compared.

    python benchmarks/compare_runs.py runs/before-quick runs/after-quick
"""

import argparse
import json
import os
import sys

COMPARED = ("metrics", "history", "params", "best_epoch", "status")
HISTORY_SKIP = ("seconds", "time", "train_seconds", "epoch_seconds", "cpu_seconds")


def load(folder: str) -> dict:
    runs = os.path.join(folder, "runs")
    out = {}
    for rid in sorted(os.listdir(runs)) if os.path.isdir(runs) else []:
        path = os.path.join(runs, rid, "run.json")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                out[rid] = json.load(f)
    return out


def strip_timing(value):
    """Drop wall/CPU-time keys anywhere inside a history entry (they differ between any two runs)."""
    if isinstance(value, dict):
        return {k: strip_timing(v) for k, v in value.items() if not any(s in k for s in HISTORY_SKIP)}
    if isinstance(value, list):
        return [strip_timing(v) for v in value]
    return value


def differences(a: dict, b: dict) -> list:
    diffs = []
    for key in COMPARED:
        x, y = a.get(key), b.get(key)
        if key == "history":
            x, y = strip_timing(x), strip_timing(y)
        if x != y:
            diffs.append(key)
    return diffs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("before")
    p.add_argument("after")
    a = p.parse_args(argv)
    before, after = load(a.before), load(a.after)
    common = sorted(set(before) & set(after))
    only = sorted(set(before) ^ set(after))
    print("| run | main metric before | after | identical |")
    print("|---|---|---|---|")
    same = 0
    for rid in common:
        ra, rb = before[rid], after[rid]
        main = ra.get("main_metric") or next(iter(ra.get("metrics") or {}), None)
        diffs = differences(ra, rb)
        same += not diffs
        ma, mb = (ra.get("metrics") or {}).get(main), (rb.get("metrics") or {}).get(main)
        print(f"| {rid} | {main}={ma} | {main}={mb} | {'yes' if not diffs else 'NO: ' + ', '.join(diffs)} |")
    print(f"\n{same} of {len(common)} cells bit-identical (metrics, history, params, best epoch, status)"
          + (f"; in one folder only: {', '.join(only)}" if only else ""))
    return 0 if same == len(common) and not only else 1


if __name__ == "__main__":
    sys.exit(main())
