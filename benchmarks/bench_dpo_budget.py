"""How much CPU training does DPO need before held-out preference accuracy moves off the base model?

Each budget (train pairs x epochs, LoRA rank, lr) runs as one ``tunelab run --task dpo --method lora
--model smollm2`` per seed, evaluated on the same held-out hh-rlhf pairs after every epoch (so one run
of E epochs gives the budgets of 1..E epochs; the held-out subset is drawn per seed). The table:
optimizer steps, train seconds, the base model's held-out ``pref_accuracy_per_token`` and each seed's
after every epoch, the mean gain, and for
the last epoch the pairs newly ranked right / wrong against the base model with the exact sign test
(run.json ``alignment.change_vs_base``). "Clearly above the base" = every seed above the base and
every seed's sign test p < 0.05.

    python benchmarks/bench_dpo_budget.py --data-dir ../shared/data/hh-rlhf --budgets 400x3 --seeds 0,1,2 \
        --eval-samples 128 --threads 1 [--append BENCHMARKS.md]

A budget is ``PAIRSxEPOCHS[:rRANK][:lrLR]`` (default rank 8, lr tunelab's LoRA DPO default 1e-3).
Runs land in ``--out-dir/<budget>-s<seed>``; a completed one with the same command is reused.

``--objectives dpo,dpo-ipo,orpo,simpo,kto`` runs the other offline preference objectives at the same
budgets and seeds (``dpo-ipo`` = ``--task dpo --dpo-loss ipo``; each objective at tunelab's default lr
and beta unless the budget names an lr; runs in ``--out-dir/<objective>-<budget>-s<seed>``, dpo's as
above) and adds the objective table: held-out pref_accuracy, pref_accuracy_per_token, chosen_logppl
(each with the base model's), seeds above the base, each seed's gained / lost pairs with the exact sign
test, train time and peak RSS of training, mean +- std over seeds. Win rate is not in it: these runs
use ``--judge none``. The only offline judge is tunelab's reward model trained on the same few hundred
pairs, whose held-out accuracy is 0.53-0.56, so its win rates would be coin flips reported as numbers.
"""

import argparse
import os
import statistics
import sys

from bench_common import append_section, command_line, machine_line, run_or_reuse


def parse_budget(text: str) -> dict:
    pairs, _, rest = text.partition("x")
    epochs, *opts = rest.split(":")
    b = {"name": text, "pairs": int(pairs), "epochs": int(epochs), "rank": None, "lr": None}
    for o in opts:
        if o.startswith("r"):
            b["rank"] = int(o[1:])
        elif o.startswith("lr"):
            b["lr"] = o[2:]
        else:
            raise SystemExit(f"--budgets {text!r}: expected PAIRSxEPOCHS[:rRANK][:lrLR]")
    return b


OBJECTIVES = {"dpo": ["--task", "dpo"], "dpo-ipo": ["--task", "dpo", "--dpo-loss", "ipo"], "orpo": ["--task", "orpo"],
              "simpo": ["--task", "simpo"], "kto": ["--task", "kto"]}


def run_budget(a, b: dict, seed: int, objective: str = "dpo"):
    args = [*OBJECTIVES[objective], "--method", "lora", "--model", "smollm2", "--data-dir", a.data_dir,
            "--max-train-samples", str(b["pairs"]), "--epochs", str(b["epochs"]), "--seed", str(seed),
            "--max-eval-samples", str(a.eval_samples), "--max-prompt-length", str(a.max_prompt_length),
            "--max-response-length", str(a.max_response_length), "--judge", "none", "--win-rate-prompts", "0"]
    if b["rank"]:
        args += ["--lora-r", str(b["rank"])]
    if b["lr"]:
        args += ["--lr", b["lr"]]
    if a.threads:
        args += ["--threads", str(a.threads)]
    prefix = "" if objective == "dpo" else f"{objective}-"
    rec = run_or_reuse(args, os.path.join(a.out_dir, f"{prefix}{b['name'].replace(':', '-')}-s{seed}"),
                       f"{objective} {b['name']} seed {seed}")
    if rec is not None:
        per_epoch = [h["metrics"]["pref_accuracy_per_token"] for h in rec["history"]]
        print(f"{objective} {b['name']} seed {seed}: per-token acc by epoch {per_epoch} "
              f"(base {rec['metrics']['base_pref_accuracy_per_token']:.3f}), "
              f"train {rec['time']['train_seconds']:.0f} s", flush=True)
    return rec


def table(results: list) -> list:
    lines = ["| budget (pairs x epochs, LoRA r, lr) | epoch | optimizer steps | train s (mean) | base (by seed) | "
             "per-token pref. accuracy by seed | mean gain | seeds above base | gained / lost pairs, sign-test p "
             "(per seed) |", "|---|---|---|---|---|---|---|---|---|"]
    for b, recs in results:
        recs = [r for r in recs if r is not None]
        if not recs:
            lines.append(f"| {b['name']} | | | | | failed | | | |")
            continue
        # the held-out subset is drawn per seed, so each seed has its own base number
        base = [r["metrics"]["base_pref_accuracy_per_token"] for r in recs]
        steps = recs[0]["time"]["steps"]
        cfg = recs[0]["config"]
        label = f"{b['pairs']} x {b['epochs']}, r {cfg.get('lora_r')}, lr {cfg['lr']:g}"
        for e in range(b["epochs"]):
            accs = [r["history"][e]["metrics"]["pref_accuracy_per_token"] for r in recs]
            gain = statistics.mean(x - b for x, b in zip(accs, base))
            last = e == b["epochs"] - 1
            flips = " / ".join(
                f"{c['gained']}-{c['lost']}, p {c['sign_test_p']:.3f}"
                for c in (r["alignment"]["change_vs_base"]["pref_accuracy_per_token"] for r in recs)) if last else ""
            secs = statistics.mean(r["time"]["train_seconds"] for r in recs) if last else None
            lines.append(f"| {label if e == 0 else ''} | {e + 1} | {round(steps * (e + 1) / b['epochs'])} | "
                         f"{'' if secs is None else f'{secs:.0f}'} | {' / '.join(f'{b:.3f}' for b in base)} | "
                         f"{' / '.join(f'{x:.3f}' for x in accs)} | {gain:+.3f} | "
                         f"{sum(x > b for x, b in zip(accs, base))}/{len(accs)} | {flips} |")
    return lines


def mean_std(values: list, fmt: str = ".3f") -> str:
    if len(values) < 2:
        return format(values[0], fmt) if values else ""
    return f"{statistics.mean(values):{fmt}} ± {statistics.stdev(values):{fmt}}"


def objective_table(rows: list) -> list:
    """rows: [(objective, budget, [run.json or None per seed])] -> markdown lines, mean +- std over seeds."""
    lines = ["| objective | budget | lr | seeds | pref. accuracy (base) | per-token pref. accuracy (base) | "
             "gain per token | seeds above base | chosen logppl (base) | gained / lost pairs per token, sign-test p "
             "(per seed) | train s | peak RSS MB |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for objective, b, recs in rows:
        done = [r for r in recs if r is not None]
        if not done:
            lines.append(f"| {objective} | {b['name']} | | 0/{len(recs)} | failed | | | | | | | |")
            continue
        m = [r["metrics"] for r in done]
        col = lambda k: mean_std([x[k] for x in m])  # noqa: E731
        changes = [r["alignment"]["change_vs_base"]["pref_accuracy_per_token"] for r in done]
        flips = " / ".join(f"{c['gained']}-{c['lost']}, p {c['sign_test_p']:.3f}" for c in changes)
        above = sum(x["pref_accuracy_per_token"] > x["base_pref_accuracy_per_token"] for x in m)
        lines.append(
            f"| {objective} | {b['pairs']} x {b['epochs']} | {done[0]['config']['lr']:g} | {len(done)}/{len(recs)} | "
            f"{col('pref_accuracy')} ({col('base_pref_accuracy')}) | "
            f"{col('pref_accuracy_per_token')} ({col('base_pref_accuracy_per_token')}) | "
            f"{statistics.mean(x['pref_accuracy_per_token'] - x['base_pref_accuracy_per_token'] for x in m):+.3f} | "
            f"{above}/{len(m)} | "
            f"{col('chosen_logppl')} ({col('base_chosen_logppl')}) | "
            f"{flips} | "
            f"{mean_std([r['time']['train_seconds'] for r in done], '.0f')} | "
            f"{mean_std([r['alignment']['train_memory']['peak_rss_mb'] for r in done], '.0f')} |")
    return lines


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="../shared/data/hh-rlhf")
    p.add_argument("--budgets", default="400x3")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--eval-samples", type=int, default=128)
    p.add_argument("--max-prompt-length", type=int, default=64)
    p.add_argument("--max-response-length", type=int, default=48)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out-dir", default=os.path.join("runs", "bench-dpo-budget"))
    p.add_argument("--objectives", default="dpo", help="comma-separated: " + ", ".join(OBJECTIVES))
    p.add_argument("--append", help="append the table(s) to this markdown file")
    a = p.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    objectives = a.objectives.split(",")
    unknown = [o for o in objectives if o not in OBJECTIVES]
    if unknown:
        raise SystemExit(f"--objectives {','.join(unknown)}: expected some of {', '.join(OBJECTIVES)}")
    budgets = [parse_budget(t) for t in a.budgets.split(",")]
    runs = [(o, b, [run_budget(a, b, s, o) for s in seeds]) for b in budgets for o in objectives]
    lines = table([(b, recs) for o, b, recs in runs if o == "dpo"]) if "dpo" in objectives else []
    if objectives != ["dpo"]:
        lines += ["", *objective_table(runs)] if lines else objective_table(runs)
    print("\n".join(lines))
    if a.append:
        title = "DPO: the CPU budget at which held-out preference accuracy moves" if objectives == ["dpo"] else \
            "Preference objectives at one CPU budget"
        append_section(a.append, ["", f"### {title}", "", machine_line(a.threads), "",
                                  f"Command: `{command_line('bench_dpo_budget.py')}`", "", *lines, ""])
    return 0 if all(r is not None for _, _, recs in runs for r in recs) else 1


if __name__ == "__main__":
    sys.exit(main())
