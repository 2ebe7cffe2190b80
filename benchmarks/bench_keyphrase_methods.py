"""Every adaptation method on the keyphrase family: one small `tunelab run` per (dataset, method).

This checks that the nine methods apply unchanged to token labelling on KDD and WWW and that each
run writes a complete record with the keyphrase metrics; at these sizes (a few dozen abstracts, one
epoch) the F1 values say little about the methods, and the table does not rank them.

    python benchmarks/bench_keyphrase_methods.py --data-dir ../shared/data/keyphrase --datasets kdd,www \
        [--train 32 --eval 16 --epochs 1] [--write BENCHMARKS.md]
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import append_section, command_line, machine_line, run_tunelab  # noqa: E402

METHODS = ["full", "lora", "prompt", "prefix", "selective", "alf", "lisa", "autofreeze", "badam"]
EXTRA = {"selective": ["--layers", "top:25%"]}  # the one method without a default layer choice
REQUIRED = ("status", "metrics", "history", "params", "time", "memory", "weights", "main_metric")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="../shared/data/keyphrase")
    p.add_argument("--datasets", default="kdd,www")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--train", type=int, default=32, help="train abstracts (seeded subset)")
    p.add_argument("--eval", type=int, default=16, help="validation / test abstracts (seeded subsets)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work-dir", default=os.path.join(tempfile.gettempdir(), "tunelab-bench-kp-methods"))
    p.add_argument("--write", help="append the table to this markdown file")
    a = p.parse_args()
    rows = []
    for ds in a.datasets.split(","):
        for m in a.methods.split(","):
            args = ["--task", ds, "--method", m, "--model", "minilm", "--data-dir", a.data_dir,
                    "--max-train-samples", str(a.train), "--max-eval-samples", str(a.eval), "--epochs", str(a.epochs),
                    "--max-seq-length", "128", "--doc-stride", "32", "--batch-size", "8", "--threads", str(a.threads),
                    *EXTRA.get(m, [])]
            rec, wall, err = run_tunelab(args, os.path.join(a.work_dir, f"{ds}-{m}"), f"{ds}/{m}")
            if rec is None:
                rows.append(f"| {ds} | {m} | FAILED: {err} | | | | | | |")
                print(rows[-1], flush=True)
                continue
            missing = [k for k in REQUIRED if k not in rec or rec[k] in (None, {}, [])]
            kp = all(k in rec["metrics"] for k in ("f1@10", "test_f1@10", "test_f1@5", "test_f1@M"))
            status = rec["status"] + ("" if not missing else f", missing {missing}") + ("" if kp else ", NO keyphrase metrics")
            p_ = rec["params"]
            rows.append(f"| {ds} | {m} | {status} | {p_['trainable']:,} ({100 * p_['trainable'] / p_['total']:.2f} %) | "
                        f"{rec['metrics']['f1@10']:.4f} | {rec['metrics']['test_f1@10']:.4f} | "
                        f"{rec['time']['train_seconds']:.1f} | {rec['cpu_time']['train_cpu_seconds']:.1f} | {wall:.0f} |")
            print(rows[-1], flush=True)
    table = ("| dataset | method | status | trainable params | val F1@10 | test F1@10 | train wall s | train CPU s "
             "| process wall s |\n|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows))
    print(table)
    if a.write:
        append_section(a.write, [
            "", f"## Every method on KDD and WWW (`bench_keyphrase_methods.py`, {time.strftime('%Y-%m-%d')})", "",
            f"{machine_line(a.threads)}. {a.train} train / {a.eval} validation / {a.eval} test abstracts (seeded "
            f"subsets of the fixed splits), {a.epochs} epoch(s), 128-token windows, stride 32, batch 8, each method's "
            "default options. A completeness check, not a ranking: at this size the F1 values are noise.",
            f"Command: `{command_line('bench_keyphrase_methods.py')}`", "", table, ""])


if __name__ == "__main__":
    main()
