"""Dynamic layer methods against full and selective fine-tuning at the same parameter budget.

On sst2, mrpc and cola with ``minilm``: full | selective top-25 % | alf (budget) | lisa | autofreeze
| badam. Every configuration runs as its own ``tunelab run`` subprocess, so peak memory (peak RSS
of that process) and train time are per run. Prints one table; ``--append BENCHMARKS.md`` adds it
with the command that made it and a line per task comparing ALF with full fine-tuning.

Budget parity: ALF runs first; its ``max_layers`` (layers fitting ``--budget`` of the non-head
parameters; 3 of 6 on minilm at 0.25) becomes LISA's gamma and BAdam's block size. LISA still
trains the embeddings (as published), so its trainable share is far above the budget; AutoFreeze
has no budget (it starts with everything trainable). The runs are short (about 60 optimizer steps
on sst2), so the switching intervals are shortened from the published 50 steps: see ``--interval``.

    python benchmarks/bench_dynamic_layers.py --threads 2 --append BENCHMARKS.md
    python benchmarks/bench_dynamic_layers.py --plan cola:64:1 --max-eval-samples 64   # smoke test
"""

import argparse
import json
import os
import subprocess
import sys
import time

from bench_common import append_section, command_line, machine_line, parse_plan, run_tunelab

METHODS = ("full", "selective", "alf", "lisa", "autofreeze", "badam")
DEFAULT_PLAN = "sst2:2000:1,mrpc:800:2,cola:1500:1"



def method_args(method: str, args, alf_layers: int | None) -> list:
    m = alf_layers or args.fallback_layers
    k = str(args.interval)
    return {
        "full": [],
        "selective": ["--layers", "top:25%"],
        "alf": ["--alf-budget", str(args.budget), "--alf-interval", k],
        "lisa": ["--lisa-layers", str(m), "--lisa-interval", k],
        "autofreeze": ["--autofreeze-interval", str(max(1, args.interval // 2))],
        "badam": ["--badam-block-layers", str(m), "--badam-interval", k],
    }[method]


def trainable_fraction(rec: dict) -> float:
    p = rec["params"]
    if "trainable_fraction_mean" in p:
        return p["trainable_fraction_mean"]
    non_head = p["total"] - p["head"]
    return p["trainable_without_head"] / non_head if non_head else 0.0


def run_one(task, n_train, epochs, method, seed, args, alf_layers):
    out = os.path.join(args.out_dir, f"{task}-{method}-s{seed}")
    cmd = ["--task", task, "--method", method, "--model", args.model, "--max-train-samples", str(n_train),
           "--epochs", str(epochs), "--seed", str(seed)]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.max_eval_samples:
        cmd += ["--max-eval-samples", str(args.max_eval_samples)]
    extra = method_args(method, args, alf_layers)
    rec, wall, err = run_tunelab(cmd + extra, out, f"{task}/{method}")
    if err is not None:
        return {"task": task, "method": method, "seed": seed, "failed": err, "args": " ".join(extra)}
    main = rec["main_metric"]
    return {
        "task": task, "method": method, "seed": seed, "args": " ".join(extra),
        "metric": main, "value": rec["metrics"][main], "metrics": rec["metrics"],
        "fraction": trainable_fraction(rec), "train_s": rec["time"]["train_seconds"], "steps": rec["time"]["steps"],
        "peak_rss_mb": rec["memory"]["peak_rss_mb"], "opt_state_mb": rec["params"].get("optimizer_state_mb_peak"),
        "wall_s": wall, "max_layers": rec.get("method_details", {}).get("max_layers"),
        "layer_changes": sum(1 for a, b in zip(rec.get("layers", []), rec.get("layers", [])[1:]) if a["active"] != b["active"]),
        "run_dir": out,
    }


def table(rows: list) -> str:
    head = "| task | method | args | metric | trainable share (mean) | train s | peak RSS MB | Adam state MB (peak) | set changes |"
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        if "failed" in r:
            lines.append(f"| {r['task']} | {r['method']} | {r['args']} | FAILED: {r['failed']} | | | | | |")
            continue
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in r["metrics"].items())
        opt = "" if r["opt_state_mb"] is None else f"{r['opt_state_mb']:.0f}"
        ch = "" if r["method"] in ("full", "selective") else str(r["layer_changes"])
        lines.append(f"| {r['task']} | {r['method']} | {r['args']} | {metrics} | {r['fraction']:.3f} | "
                     f"{r['train_s']:.1f} | {r['peak_rss_mb']:.0f} | {opt} | {ch} |")
    return "\n".join(lines)


def alf_vs_full(rows: list) -> list:
    out = []
    for task in dict.fromkeys(r["task"] for r in rows):
        by = {r["method"]: r for r in rows if r["task"] == task and "failed" not in r}
        if "alf" in by and "full" in by:
            a, f = by["alf"], by["full"]
            out.append(f"- {task}: ALF {a['metric']} {a['value']:.4f} vs full {f['value']:.4f} "
                       f"(delta {a['value'] - f['value']:+.4f}); train time {a['train_s']:.1f} s vs {f['train_s']:.1f} s "
                       f"(x{a['train_s'] / f['train_s']:.2f}); trainable share {a['fraction']:.3f}; "
                       f"active set changed {a['layer_changes']} time(s)")
    return out


def attention_rows(rows: list, args) -> list:
    """``tunelab analyze attention`` on the full and alf runs (``--attention-samples``)."""
    out = []
    for r in rows:
        if "failed" in r or r["method"] not in ("full", "alf"):
            continue
        cmd = [sys.executable, "-m", "tunelab.cli", "analyze", "attention", r["run_dir"],
               "--samples", str(args.attention_samples)] + (["--threads", str(args.threads)] if args.threads else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"  attention analysis failed for {r['run_dir']}", file=sys.stderr)
            continue
        with open(os.path.join(r["run_dir"], "attention.json"), encoding="utf-8") as f:
            o = json.load(f)["overall"]
        out.append((r["task"], r["method"], o))
    return out


def attention_table(arows: list) -> str:
    lines = ["| task | method | entropy base -> ft | content share base -> ft | [CLS]/[SEP] share base -> ft | [CLS] query content share base -> ft |",
             "|---|---|---|---|---|---|"]
    for task, method, o in arows:
        cells = [f"{o[m]['base']:.3f} -> {o[m]['finetuned']:.3f} ({o[m]['delta']:+.3f})"
                 for m in ("entropy", "content", "special", "cls_content")]
        lines.append(f"| {task} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", default=DEFAULT_PLAN, help=f"task:train_samples:epochs,... (default {DEFAULT_PLAN})")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--budget", type=float, default=0.25, help="ALF budget (share of non-head parameters)")
    ap.add_argument("--interval", type=int, default=20,
                    help="switching interval for alf/lisa/badam (autofreeze: half of it); default 20")
    ap.add_argument("--fallback-layers", type=int, default=3, help="gamma / block size when alf is not run")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--max-eval-samples", type=int, default=None)
    ap.add_argument("--data-dir", default=os.environ.get("TUNELAB_DATA_DIR")
                    or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "glue"))
    ap.add_argument("--out-dir", default="runs/bench_dynamic_layers")
    ap.add_argument("--append", default=None, help="append the table to this markdown file")
    ap.add_argument("--attention-samples", type=int, default=0,
                    help="also run `tunelab analyze attention` on the full and alf runs with N dev examples (0 = off)")
    args = ap.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise SystemExit(f"--methods: unknown {bad}; known {METHODS}")
    methods.sort(key=lambda m: METHODS.index(m))  # alf before lisa/badam (they take its layer count)
    rows = []
    t0 = time.time()
    for task, n, epochs in parse_plan(args.plan):
        for seed in [int(s) for s in args.seeds.split(",")]:
            alf_layers = None
            for m in methods:
                r = run_one(task, n, epochs, m, seed, args, alf_layers)
                if m == "alf" and r.get("max_layers"):
                    alf_layers = r["max_layers"]
                rows.append(r)
                if "failed" not in r:
                    print(f"{task:<6} {m:<11} {r['metric']} {r['value']:.4f}  share {r['fraction']:.3f}  "
                          f"train {r['train_s']:.1f}s  rss {r['peak_rss_mb']:.0f}MB", flush=True)
    total = time.time() - t0
    text = table(rows)
    summary = alf_vs_full(rows)
    print()
    print(text)
    print("\n".join(summary))
    atext = ""
    if args.attention_samples:
        atext = attention_table(attention_rows(rows, args))
        print()
        print(atext)
    print(f"\ntotal wall time {total / 60:.1f} min (attention analysis not included)")
    if args.append:
        block = [
            "", "## Dynamic layer methods at a 25 % budget (benchmarks/bench_dynamic_layers.py)", "",
            f"Command: `{command_line('bench_dynamic_layers.py', argv)}`  ",
            f"{machine_line(args.threads)}; plan {args.plan}; seeds {args.seeds}; total wall time {total / 60:.1f} min.", "",
            "Trainable share = share of the non-head parameters (embeddings + layers) that trained, time-averaged "
            "for dynamic methods. Peak RSS is the whole `tunelab run` process (model, data, optimizer). "
            "Adam state = peak size of the optimizer's moment tensors (dynamic methods release frozen layers' state; "
            "full fine-tuning would hold ~173 MB on minilm).", "",
            text, "", "ALF vs full fine-tuning (single seed unless --seeds says otherwise):", *summary, "",
        ]
        if atext:
            block += [f"Attention analysis (`tunelab analyze attention RUN --samples {args.attention_samples}`; "
                      "mean over layers and heads; delta in brackets):", "", atext, ""]
        append_section(args.append, block)
    return 1 if any("failed" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
