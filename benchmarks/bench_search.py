"""What ``search: auto`` costs, and what it changes: the same study compared twice, untuned and with
``search=auto``, side by side in one script run (so both see the same machine load).

    python benchmarks/bench_search.py --data-dir ../shared/data/glue --task sst2 --methods full,lora,prompt \
        --train 200 --eval 200 --epochs 1 --out-dir /tmp/bench-search [--write BENCHMARKS.md]

Each arm is one ``tunelab compare`` (``--preset quick`` with ``tasks=TASK methods=... max_train_samples=...``
overrides) into its own fresh folder: ``untuned/`` and ``search/`` (the search arm recomputes the chosen
cells even where the default won, so its cost is what a first ``search=auto`` compare costs). Printed:
runs, process wall seconds of each arm and their ratio, and per method the main metric on the dev
split untuned vs tuned, the chosen lr and the majority-class score of the dev subset.
"""

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def compare(a, out: str, extra: list) -> float:
    cmd = [sys.executable, "-m", "tunelab.cli", "compare", "--preset", "quick", f"tasks={a.task}",
           f"methods={a.methods}", f"max_train_samples={a.train}", f"max_eval_samples={a.eval}",
           f"epochs={a.epochs}", *extra, "--data-dir", a.data_dir, "--output-dir", out, "--jobs", str(a.jobs)]
    t0 = time.perf_counter()
    with open(out + ".log", "w") as log:
        subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False,
                       env={**os.environ, "TQDM_DISABLE": "1"})
    return round(time.perf_counter() - t0, 1)


def rows(out: str) -> dict:
    with sqlite3.connect(os.path.join(out, "results.sqlite")) as db:
        db.row_factory = sqlite3.Row
        meta = {r["key"]: json.loads(r["value"]) for r in db.execute("SELECT key, value FROM meta")}
        runs = [dict(r) for r in db.execute("SELECT * FROM runs")]
    return meta, runs


def majority(out: str, task_label: str) -> dict:
    """The majority class's score on the dev subset the runs were evaluated on (from a predictions.tsv)."""
    from sklearn.metrics import accuracy_score, f1_score

    d = next(os.path.join(out, "runs", x) for x in sorted(os.listdir(os.path.join(out, "runs"))))
    refs = []
    with open(os.path.join(d, "predictions.tsv"), encoding="utf-8") as f:
        next(f)
        for line in f:
            refs.append(int(float(line.split("\t")[3])))
    maj = Counter(refs).most_common(1)[0][0]
    pred = [maj] * len(refs)
    return {"accuracy": accuracy_score(refs, pred), "f1": f1_score(refs, pred)}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", required=True)
    p.add_argument("--task", default="sst2")
    p.add_argument("--methods", default="full,lora,prompt")
    p.add_argument("--train", type=int, default=200)
    p.add_argument("--eval", type=int, default=200)
    p.add_argument("--epochs", type=float, default=1)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--same-folder", action="store_true",
                   help="the search arm runs in the untuned arm's folder (a chosen default reuses the untuned cell: "
                        "cheaper, but the cost columns then do not measure a first search)")
    a = p.parse_args()
    os.makedirs(a.out_dir, exist_ok=True)
    u_out = os.path.join(a.out_dir, "untuned")
    s_out = u_out if a.same_folder else os.path.join(a.out_dir, "search")
    wall_u = compare(a, u_out, [])
    _, ur = rows(u_out)  # before the search arm (which, with --same-folder, replaces a cell whose lr changed)
    maj = majority(u_out, a.task)
    ur = [r for r in ur if not r["run_id"].startswith("search--")]
    wall_s = compare(a, s_out, ["search=auto"])
    sm, sr = rows(s_out)
    n_search = len(sm.get("search_grid") or [])
    res = {"task": a.task, "methods": a.methods, "train": a.train, "eval": a.eval, "epochs": a.epochs,
           # per arm: the compare command's wall (includes skipped cached cells: ~0 when re-run) and the
           # sums over its runs of each run process's wall and CPU seconds (as measured when it ran)
           "untuned": {"runs": len(ur), "compare_wall_s": wall_u,
                       "run_wall_s": round(sum(r["process_wall_seconds"] or 0 for r in ur), 1),
                       "cpu_s": round(sum(r["process_cpu_seconds"] or 0 for r in ur), 1)},
           "search": {"runs": len(sr), "search_runs": n_search, "compare_wall_s": wall_s,
                      "run_wall_s": round(sum(r["process_wall_seconds"] or 0 for r in sr), 1),
                      "cpu_s": round(sum(r["process_cpu_seconds"] or 0 for r in sr), 1)},
           "majority": maj, "methods_result": []}
    res["run_wall_ratio"] = round(res["search"]["run_wall_s"] / res["untuned"]["run_wall_s"], 2)
    res["cpu_ratio"] = round(res["search"]["cpu_s"] / res["untuned"]["cpu_s"], 2) if res["untuned"]["cpu_s"] else None
    grid = set(sm.get("grid") or [])
    by_u = {r["label"]: r for r in ur}
    for o in sm.get("search") or []:
        final = next(r for r in sr if r["run_id"] in grid and r["label"] == o["label"])
        res["methods_result"].append({
            "method": o["label"], "metric": final["main_metric"], "untuned": by_u[o["label"]]["main_value"],
            "tuned": final["main_value"], "default_lr": o["default"]["lr"], "chosen": o["choice"],
            "selection_scores": {str(p["values"]["lr"]): p["score"] for p in o["points"]}})
    print(json.dumps(res, indent=1))
    with open(os.path.join(a.out_dir, "result.json"), "w") as f:
        json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
