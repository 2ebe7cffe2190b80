"""Re-score finished alignment runs on one shared held-out set, so that the runs can be tested pair by pair.

Each ``tunelab run`` of a preference objective evaluates on ``--max-eval-samples`` held-out pairs drawn
per seed, so two seeds (or a small draw) see different pairs and a sign test on 128 pairs has little
power. This script loads every given run (base model + its saved adapter or weights, as ``tunelab
predict`` does), scores ALL of the task's held-out pairs (or the first ``--max-eval-samples``) with the
run's own prompt / response truncation, and prints:

1. per run: held-out ``pref_accuracy_per_token`` and ``pref_accuracy`` of the base model (the same
   loaded model with its adapter disabled, or the base weights) and of the run, the pairs it newly
   ranks right / wrong per token with the exact sign test (``change_vs_base`` of the task's
   evaluation), and ``chosen_logppl``;
2. per seed, every objective against the reference objective (``--against``, default dpo) on the same
   pairs: pairs only it ranks right / only the other ranks right per token, exact sign test.

    python benchmarks/bench_pref_rescore.py /work/runs/dpo-budget/*-s[012] --threads 1 [--append BENCHMARKS.md]
"""

import argparse
import os
import sys

from bench_common import append_section, command_line, machine_line


def objective_name(rec: dict) -> str:
    al = rec.get("alignment", {})
    loss = al.get("loss_type")
    name = al.get("objective", rec["task"])
    return f"dpo-{loss}" if name == "dpo" and loss and loss != "sigmoid" else name


def score_run(run_dir: str, max_pairs, cache: dict) -> dict:
    """-> {objective, seed, base_rows, rows, metrics, base_metrics} for one finished run."""
    import torch

    from tunelab.predict import load_run
    from tunelab.tasks.alignment.data import tokenize_pairs
    from tunelab.tasks.alignment.evaluate import lm_preference_metrics

    task, model, tok, cfg, rec = load_run(run_dir)
    tok = getattr(tok, "tokenizer", tok)
    examples = task.load("validation", cfg.data_dir).examples[:max_pairs]
    pairs = tokenize_pairs(examples, tok, cfg.max_prompt_length, cfg.max_response_length)
    device, bs = torch.device("cpu"), cfg.eval_batch_size
    with torch.no_grad():
        key = (rec.get("model_source"), cfg.data_dir, cfg.max_prompt_length, cfg.max_response_length, len(pairs))
        if key not in cache:  # the base model's scores: the same for every run with this model, data and truncation
            if hasattr(model, "disable_adapter"):
                with model.disable_adapter():
                    cache[key] = lm_preference_metrics(model, pairs, tok.pad_token_id, bs, device)
            else:
                base, _, _, _ = task.load_model(cfg.model)
                cache[key] = lm_preference_metrics(base.eval(), pairs, tok.pad_token_id, bs, device)
        metrics, rows = lm_preference_metrics(model, pairs, tok.pad_token_id, bs, device)
    base_metrics, base_rows = cache[key]
    return {"run": os.path.basename(os.path.normpath(run_dir)), "objective": objective_name(rec), "seed": rec["seed"],
            "metrics": metrics, "rows": rows, "base_metrics": base_metrics, "base_rows": base_rows}


def tables(scored: list, against: str) -> list:
    from tunelab.tasks.alignment.evaluate import change_vs_base

    n = len(scored[0]["rows"]) if scored else 0
    lines = [f"Held-out pairs per run: {n} (the same pairs for every run).", "",
             "| run | objective | seed | per-token pref. accuracy base -> trained | gained / lost pairs per token "
             "(sign-test p) | pref. accuracy base -> trained | chosen logppl base -> trained |",
             "|---|---|---|---|---|---|---|"]
    for s in sorted(scored, key=lambda s: (s["objective"], s["seed"])):
        m, b = s["metrics"], s["base_metrics"]
        c = change_vs_base(s["base_rows"], s["rows"])["pref_accuracy_per_token"]
        lines.append(f"| {s['run']} | {s['objective']} | {s['seed']} | {b['pref_accuracy_per_token']:.3f} -> "
                     f"{m['pref_accuracy_per_token']:.3f} | {c['gained']}-{c['lost']} (p {c['sign_test_p']:.3f}) | "
                     f"{b['pref_accuracy']:.3f} -> {m['pref_accuracy']:.3f} | "
                     f"{b['chosen_logppl']:.3f} -> {m['chosen_logppl']:.3f} |")
    ref = {s["seed"]: s for s in scored if s["objective"] == against}
    pairs = [(s, ref[s["seed"]]) for s in scored if s["objective"] != against and s["seed"] in ref]
    if pairs:
        lines += ["", f"| objective vs {against} (same seed, same pairs) | seed | pairs only it ranks right / only "
                      f"{against} ranks right, per token | sign-test p |", "|---|---|---|---|"]
        for s, r in sorted(pairs, key=lambda x: (x[0]["objective"], x[0]["seed"])):
            c = change_vs_base(r["rows"], s["rows"])["pref_accuracy_per_token"]  # dpo's ranking as the "base"
            lines.append(f"| {s['objective']} | {s['seed']} | {c['gained']} / {c['lost']} | {c['sign_test_p']:.3f} |")
    return lines


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="finished alignment run folders (tunelab run --output-dir)")
    p.add_argument("--max-eval-samples", type=int, default=None, help="the first N held-out pairs (default: all)")
    p.add_argument("--against", default="dpo", help="the objective every other one is compared with, per seed")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--append", help="append the tables to this markdown file")
    a = p.parse_args()
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    cache, scored = {}, []
    for run in a.runs:
        scored.append(score_run(run, a.max_eval_samples, cache))
        s = scored[-1]
        print(f"{s['run']}: per-token {s['base_metrics']['pref_accuracy_per_token']:.3f} -> "
              f"{s['metrics']['pref_accuracy_per_token']:.3f}", flush=True)
    lines = tables(scored, a.against)
    print("\n".join(lines))
    if a.append:
        append_section(a.append, ["", "### Finished preference runs re-scored on one held-out set", "",
                                  machine_line(a.threads), "", f"Command: `{command_line('bench_pref_rescore.py')}`",
                                  "", *lines, ""])
    return 0


if __name__ == "__main__":
    sys.exit(main())
