"""Prompt tuning on minilm at the quick preset's SST-2 budget: what makes it learn (issue 15).

Every variant is one ``tunelab run --method prompt`` at the quick preset's sst2 cell (500 train
examples x 2 epochs, batch 16, max length 128, 300 dev examples, threads 1, seed 0 unless the
variant says otherwise) with its own extra options. Two runs at a time. Each row: the main metric
after each epoch, the dev subset's majority-class share (counted from the gold labels in that
run's predictions.tsv), the share of dev examples predicted positive (a run at the majority class
predicts one class for all), train CPU seconds and wall seconds.

The head-only controls train the classifier + pooler exactly as the prompt runs do, with the
virtual tokens held at their initialisation (prompt lr 1e-12): what the trained prompt adds over
them is the honest gain of prompt tuning.

    python benchmarks/bench_prompt_sweep.py --data-dir ../shared/data/glue --stages init,head
    python benchmarks/bench_prompt_sweep.py --data-dir ../shared/data/glue --reuse --append BENCHMARKS.md
    # the defaults on the quick preset's other cells
    python benchmarks/bench_prompt_sweep.py --data-dir ../shared/data/glue --stages check --task mrpc \
        --max-train-samples 1500 --max-eval-samples 408 --out-dir runs/bench-prompt-mrpc
    python benchmarks/bench_prompt_sweep.py --data-dir ../shared/data/glue --stages check --task cola \
        --max-train-samples 1000 --epochs 3 --out-dir runs/bench-prompt-cola

Runs land in ``--out-dir/<variant>``; ``--reuse`` takes a completed run from there instead of
running it again (the table is then assembled from earlier stages).
"""

import argparse
import collections
import json
import os
import shlex
import sys
from concurrent.futures import ThreadPoolExecutor

from bench_common import append_section, command_line, machine_line, run_tunelab

TEXT = "Is the sentiment of this review positive or negative?"
T = ["--prompt-init", "text", "--prompt-init-text", TEXT]
V = ["--prompt-init", "vocab"]
FROZEN = ["--lr", "1e-12"]  # head-only control: the virtual tokens stay at their initialisation

# stage -> [(variant name, extra options)]
STAGES = {
    "init": [  # lr 3e-2 for prompt and head (the method's default), three initialisations; random was the default
        ("random lr 3e-2", ["--prompt-init", "random"]),
        ("vocab lr 3e-2", ["--prompt-init", "vocab"]),
        ("text lr 3e-2", T),
        ("text 'positive negative' lr 3e-2", ["--prompt-init", "text", "--prompt-init-text", "positive negative"]),
    ],
    "head": [  # head-only controls: which head lr suits the classifier + pooler
        *[(f"head-only (random) head lr {h}", ["--prompt-init", "random", *FROZEN, "--head-lr", h])
          for h in ("1e-3", "3e-3", "1e-2", "3e-2")],
        *[(f"head-only (text) head lr {h}", [*T, *FROZEN, "--head-lr", h]) for h in ("1e-3", "3e-3", "1e-2", "3e-2")],
        ("head-only (vocab) head lr 3e-2", ["--prompt-init", "vocab", *FROZEN, "--head-lr", "3e-2"]),
    ],
    "lr": [  # vocab init, the head at 3e-2 as before, the prompt's lr swept
        *[(f"vocab lr {lr}, head lr 3e-2", V + ["--lr", lr, "--head-lr", "3e-2"]) for lr in ("3e-3", "1e-2", "1e-1", "3e-1")],
        *[(f"vocab lr 3e-2, head lr {h}", V + ["--lr", "3e-2", "--head-lr", h]) for h in ("1e-3", "1e-2")],
    ],
    "more": [  # vocab lr 3e-2 (head too): more virtual tokens, longer warm-up, twice the steps
        ("vocab lr 3e-2, 50 tokens", V + ["--num-virtual-tokens", "50"]),
        ("vocab lr 3e-2, 100 tokens", V + ["--num-virtual-tokens", "100"]),
        ("vocab lr 3e-2, warm-up 0.2", V + ["--warmup-ratio", "0.2"]),
        ("vocab lr 3e-2, 4 epochs", V + ["--epochs", "4"]),
    ],
    "check": [  # the method's defaults (no options) and their head-only control: run with --task mrpc / cola
        ("defaults (vocab, lr 3e-2)", []),
        ("head-only (vocab) head lr 3e-2", FROZEN + ["--head-lr", "3e-2"]),
    ],
    "random-seeds": [  # the old default (random init) on the same two seeds
        *[(f"random lr 3e-2 seed {s}", ["--prompt-init", "random", "--seed", s]) for s in ("1", "2")],
    ],
    "seeds": [  # the trained prompt vs its head-only control on two more seeds (other train and dev subsets)
        *[(f"{what} seed {s}", opts + ["--seed", s]) for s in ("1", "2") for what, opts in (
            ("vocab lr 3e-2", V), ("head-only (vocab) head lr 3e-2", V + FROZEN + ["--head-lr", "3e-2"]),
            ("text lr 3e-2", T), ("head-only (text) head lr 3e-2", T + FROZEN + ["--head-lr", "3e-2"]))],
    ],
}


def majority_share(run_dir: str) -> tuple:
    """(majority-class share of the gold dev labels, share predicted as label 1) from predictions.tsv."""
    with open(os.path.join(run_dir, "predictions.tsv"), encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f][1:]
    gold = collections.Counter(r[3] for r in rows)
    pred1 = sum(r[4] == "1" for r in rows)
    return max(gold.values()) / len(rows), pred1 / len(rows)


def run_variant(name: str, extra: list, args) -> dict:
    out = os.path.join(args.out_dir, name.replace(" ", "_").replace("'", "").replace("/", "-"))
    base = ["--task", args.task, "--method", "prompt", "--model", args.model, "--data-dir", args.data_dir,
            "--max-train-samples", str(args.max_train_samples), "--epochs", str(args.epochs),
            "--batch-size", "16", "--max-eval-samples", str(args.max_eval_samples), "--max-seq-length", "128",
            "--threads", "1"]
    done = os.path.join(out, "run.json")
    if args.reuse and os.path.exists(done):
        with open(done, encoding="utf-8") as f:
            rec = json.load(f)
        if rec.get("status") == "completed":
            return {"name": name, "extra": extra, "rec": rec, "wall": rec["time"]["train_seconds"], "dir": out}
    if args.reuse_only:
        return {"name": name, "extra": extra, "failed": "not run"}
    rec, wall, err = run_tunelab(base + extra, out, name)
    print(f"  {name}: {err or rec['metrics']}", file=sys.stderr, flush=True)
    return {"name": name, "extra": extra, "rec": rec, "wall": wall, "dir": out, "failed": err}


def table(rows: list, main: str) -> list:
    lines = [f"| variant | options | dev {main} per epoch | majority share | predicted positive | train CPU s | "
             "train wall s |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        opts = " ".join(shlex.quote(a) for a in r["extra"])
        if r.get("failed"):
            lines.append(f"| {r['name']} | `{opts}` | failed: {r['failed']} |  |  |  |  |")
            continue
        rec = r["rec"]
        curve = " -> ".join(f"{e['metrics'][main]:.3f}" for e in rec["history"])
        maj, pos = majority_share(r["dir"])
        lines.append(f"| {r['name']} | `{opts}` | {curve} | {maj:.3f} | {pos:.2f} | "
                     f"{rec['cpu_time']['train_cpu_seconds']:.0f} | {rec['time']['train_seconds']:.0f} |")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--stages", default=",".join(STAGES), help="comma-separated: " + ", ".join(STAGES))
    ap.add_argument("--task", default="sst2")
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--max-train-samples", type=int, default=500)
    ap.add_argument("--epochs", type=float, default=2)
    ap.add_argument("--max-eval-samples", type=int, default=300)
    ap.add_argument("--out-dir", default="runs/bench-prompt")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--reuse", action="store_true", help="take completed runs from --out-dir")
    ap.add_argument("--reuse-only", action="store_true", help="with --reuse: run nothing, table what exists")
    ap.add_argument("--append", help="append the table to this markdown file (BENCHMARKS.md)")
    args = ap.parse_args()
    variants = [v for s in args.stages.split(",") for v in STAGES[s.strip()]]
    with ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda v: run_variant(v[0], v[1], args), variants))
    main_metric = next((r["rec"]["main_metric"] for r in rows if r.get("rec")), "accuracy")
    lines = table(rows, main_metric)
    print("\n".join(lines))
    if args.append:
        section = ["", f"## Prompt tuning sweep: {args.task} {args.max_train_samples} x {args.epochs:g} epochs "
                   f"(benchmarks/bench_prompt_sweep.py)", "", machine_line(1) + ".", "",
                   f"Command: `{command_line('bench_prompt_sweep.py')}`", "", *lines, ""]
        append_section(args.append, section)


if __name__ == "__main__":
    main()
