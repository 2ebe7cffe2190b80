"""Semi-supervised ViT transfer on Fashion-MNIST (seed 001's DISTL, in miniature): random vs
DINO-pretrained initialisation x supervised-only vs self-trained, at a few labelled fractions and
seeds; test accuracy mean +- std over seeds.

Every cell is one ``tunelab run --semi-supervised`` subprocess (``vit-tiny``, full fine-tuning).
Its round 0 *is* the supervised-only model: the supervised phase runs the same loop with the same
seed, data order and augmentation as a run without ``--semi-supervised`` (tests/test_image_task.py
checks this equality), so one run gives both numbers: "supervised" = round 0's test accuracy,
"self-trained" = the final student's. The self-trained model also sees its labelled images again
during the rounds (one labelled batch per step); ``--matched-supervised`` adds supervised-only runs
trained for the same number of labelled-batch steps, to separate "more labelled steps" from
"self-training".

The DINO start is ``--dino`` (a folder from ``tunelab pretrain dino``; its ``pretrain.json`` k-NN
curve is printed with the table). ``--append BENCHMARKS.md`` adds the table with the command.

    python benchmarks/bench_vision.py --dino runs/dino-vit-tiny --seeds 0,1,2 --labelled 20,100 --jobs 2 \
        --append BENCHMARKS.md
"""

import argparse
import concurrent.futures as cf
import json
import math
import os
import shlex
import statistics
import time

from bench_common import append_section, command_line, machine_line, run_tunelab

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data", "images")


def run_cell(args, init: str, model: str, lpc: int, seed: int, matched_epochs: float | None = None) -> dict:
    semi = matched_epochs is None
    what = f"{init}-l{lpc}-s{seed}" + ("" if semi else "-matched")
    out = os.path.join(args.out_dir, what)
    cmd = ["--task", "fashion-mnist", "--model", model, "--method", "full", "--data-dir", args.data_dir,
           "--labelled-per-class", str(lpc), "--seed", str(seed), "--lr", str(args.lr),
           "--epochs", str(args.epochs if semi else matched_epochs), "--batch-size", str(args.batch_size),
           "--eval-fraction", str(args.eval_fraction), "--threads", str(args.threads)]
    if semi:
        cmd += ["--semi-supervised", "--self-train-rounds", str(args.rounds),
                "--unlabelled-per-round", str(args.unlabelled_per_round)]
    cmd += shlex.split(args.extra)
    side = os.path.join(out, "bench.json")  # how the run was made, for --reuse
    if args.reuse and os.path.isfile(side):  # a finished run of an earlier invocation with the same command
        with open(side, encoding="utf-8") as f:
            made = json.load(f)
        with open(os.path.join(out, "run.json"), encoding="utf-8") as f:
            rec = json.load(f)
        if rec.get("status") == "completed" and made["command"] == cmd:
            return {"init": init, "lpc": lpc, "seed": seed, "semi": semi, "rec": rec, "wall": made["wall_s"], "err": None,
                    "reused": True}
    rec, wall, err = run_tunelab(cmd, out, what)
    if rec is not None:
        with open(side, "w", encoding="utf-8") as f:
            json.dump({"command": cmd, "wall_s": wall}, f)
    return {"init": init, "lpc": lpc, "seed": seed, "semi": semi, "rec": rec, "wall": wall, "err": err}


def mean_std(xs: list) -> str:
    if not xs:
        return ""
    if len(xs) == 1:
        return f"{xs[0]:.4f}"
    return f"{statistics.mean(xs):.4f} ± {statistics.stdev(xs):.4f}"


def table(cells: list, args) -> list:
    lines = ["| init | labelled / class | seeds | supervised-only test acc | self-trained test acc | delta (per seed) | "
             "teacher test acc | pseudo-label acc by round | matched supervised test acc | minutes / run |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for init in ("random", "dino"):
        for lpc in args.labelled:
            semi = [c for c in cells if c["init"] == init and c["lpc"] == lpc and c["semi"] and c["rec"]]
            matched = [c for c in cells if c["init"] == init and c["lpc"] == lpc and not c["semi"] and c["rec"]]
            failed = [c for c in cells if c["init"] == init and c["lpc"] == lpc and c["err"]]
            if not semi:
                if failed:
                    lines.append(f"| {init} | {lpc} | | failed: {failed[0]['err']} | | | | | | |")
                continue
            rounds = [c["rec"]["semi_supervised"]["rounds"] for c in semi]
            sup = [r[0]["test"]["test_accuracy"] for r in rounds]
            st = [c["rec"]["metrics"]["test_accuracy"] for c in semi]
            teacher = [r[-1]["teacher_test"]["test_accuracy"] for r in rounds if "teacher_test" in r[-1]]
            pseudo = [statistics.mean(r[i]["pseudo_label_accuracy"] for r in rounds) for i in range(1, len(rounds[0]))]
            deltas = ", ".join(f"{b - a:+.4f}" for a, b in zip(sup, st))
            mins = statistics.mean(c["wall"] for c in semi) / 60
            lines.append(f"| {init} | {lpc} | {len(semi)} | {mean_std(sup)} | {mean_std(st)} | {deltas} | "
                         f"{mean_std(teacher)} | {' / '.join(f'{p:.3f}' for p in pseudo)} | "
                         f"{mean_std([c['rec']['metrics']['test_accuracy'] for c in matched])} | {mins:.1f} |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dino", required=True, help="DINO-pretrained model folder (tunelab pretrain dino) or alias")
    ap.add_argument("--data-dir", default=DATA)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--labelled", default="100", help="labelled images per class, comma-separated")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--epochs", type=float, default=15, help="supervised epochs over the labelled set")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--eval-fraction", type=float, default=0.02, help="validation carved from train (0.02: 1,200)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--unlabelled-per-round", type=int, default=2000)
    ap.add_argument("--matched-supervised", action="store_true",
                    help="also run supervised-only with as many labelled-batch steps as the self-trained run")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=2, help="runs at a time")
    ap.add_argument("--extra", default="", help="more `tunelab run` options for every run, one string")
    ap.add_argument("--out-dir", default="runs/bench_vision")
    ap.add_argument("--append", default=None)
    ap.add_argument("--inits", default="random,dino", help="which starts to run: random, dino or both")
    ap.add_argument("--reuse", action="store_true", help="reuse finished runs made with the same command line")
    args = ap.parse_args(argv)
    args.labelled = [int(x) for x in args.labelled.split(",")]
    seeds = [int(x) for x in args.seeds.split(",")]
    t0 = time.time()
    inits = [(i, m) for i, m in (("random", "vit-tiny"), ("dino", args.dino)) if i in args.inits.split(",")]
    jobs = [(init, model, lpc, seed) for seed in seeds for lpc in args.labelled for init, model in inits]
    with cf.ThreadPoolExecutor(args.jobs) as pool:
        cells = list(pool.map(lambda j: run_cell(args, *j), jobs))
        if args.matched_supervised:
            extra = []
            for c in cells:
                if c["rec"]:
                    steps = c["rec"]["time"]["steps"]  # every step took one labelled batch
                    per_epoch = math.ceil(c["lpc"] * 10 / args.batch_size)  # batches per epoch, the last one partial
                    extra.append((c["init"], args.dino if c["init"] == "dino" else "vit-tiny", c["lpc"], c["seed"],
                                  round(steps / per_epoch, 2)))
            cells += list(pool.map(lambda j: run_cell(args, *j[:4], matched_epochs=j[4]), extra))
    lines = table(cells, args)
    knn = ""
    pj = os.path.join(args.dino, "pretrain.json")
    if os.path.isfile(pj):
        with open(pj, encoding="utf-8") as f:
            pre = json.load(f)
        curve = ", ".join(f"step {h['step']}: {h['knn_accuracy']:.4f}" for h in pre["knn"]["history"])
        knn = (f"DINO start `{args.dino}`: {pre['options']['steps']} steps x batch {pre['options']['batch_size']} on "
               f"{pre['data']['images']} unlabelled images, {pre['time']['train_seconds'] / 60:.1f} min; k-NN accuracy "
               f"(k=20, {pre['data']['knn_bank']} labelled train images as the bank, {pre['data']['knn_queries']} "
               f"test images): {curve}.")
    print("\n".join(lines))
    if knn:
        print(knn)
    if args.append:
        block = ["", "## Semi-supervised ViT transfer on Fashion-MNIST (benchmarks/bench_vision.py)", "",
                 f"Command: `{command_line('bench_vision.py', argv)}`  ",
                 f"{machine_line(args.threads)}; {args.jobs} runs at a time; total wall time "
                 f"{(time.time() - t0) / 60:.1f} min"
                 + (f" ({sum(1 for c in cells if c.get('reused'))} runs reused from earlier invocations with the "
                    f"same options: --reuse)" if any(c.get("reused") for c in cells) else "") + ".", "",
                 f"vit-tiny (0.54 M parameters), full fine-tuning, lr {args.lr:g}, {args.epochs:g} supervised epochs, "
                 f"then {args.rounds} self-training rounds adding {args.unlabelled_per_round} unlabelled images each; "
                 f"test = the official 10,000 test images, evaluated once per round. Supervised-only = round 0 of the "
                 f"same run (identical to a run without --semi-supervised).", ""] + lines + ([ "", knn] if knn else []) + [""]
        append_section(args.append, block)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
