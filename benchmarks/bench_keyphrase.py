"""Keyphrase extraction: unsupervised baselines and fine-tuned runs on the same test split, one metric code.

For each dataset (inspec, kdd, www) the test split is loaded exactly as ``tunelab run --task NAME`` loads
it (tasks/keyphrase.py), and every system is scored by ``keyphrase_scores`` (tasks/keyphrase_metrics.py):

- YAKE (PyPI ``yake``; top 10, n-grams <= 3, the package's defaults) and KeyBERT (PyPI ``keybert`` with the
  offline all-MiniLM-L6-v2 sentence encoder; top 10, 1-3-grams, English stop words): both rank 10 phrases,
  so their F1@M is their F1@10 at 10 predictions;
- "present-keys oracle": the gold keys found in the text, i.e. the best any extractor can do (the ceiling);
- fine-tuned runs given with ``--runs RUN_DIR ...`` (``tunelab run`` folders of a keyphrase task): their test
  metrics recomputed from predictions.tsv (and checked against run.json's ``test_*``).

    python benchmarks/bench_keyphrase.py --data-dir ../shared/data/keyphrase --datasets inspec \\
        --baselines yake,keybert --runs runs/inspec-full --threads 1 --append BENCHMARKS.md
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_common import append_section, command_line, machine_line  # noqa: E402


def score_rows(name, preds, docs, seconds):
    from tunelab.tasks.keyphrase.metrics import keyphrase_scores

    s = keyphrase_scores(preds, [d.keys for d in docs])
    return {"system": name, **s, "docs": len(docs), "seconds": seconds}


def present_oracle(docs) -> list:
    """Each document's gold keys that occur in its text (stemmed word match), in gold order."""
    from tunelab.tasks.keyphrase.data import phrase_key, stem_word

    out = []
    for d in docs:
        stems = " " + " ".join(stem_word(w) for w in d.words) + " "
        out.append([k for k in d.keys if phrase_key(k) and " " + " ".join(phrase_key(k)) + " " in stems])
    return out


def run_rows(run_dirs, dataset, docs):
    from tunelab.tasks.keyphrase.task import read_predictions, read_ranked
    from tunelab.tasks.keyphrase.metrics import keyphrase_scores

    rows, seen = [], set()
    ids = [d.id for d in docs]
    for rd in run_dirs:
        with open(os.path.join(rd, "run.json"), encoding="utf-8") as f:
            rec = json.load(f)
        if rec["task"] != dataset or rec.get("status") != "completed":
            continue
        test = read_predictions(os.path.join(rd, "predictions.tsv")).get("test", [])
        subset = [i for i, _, _ in test] != ids
        if subset and tuple(i for i, _, _ in test) not in seen:  # --max-eval-samples: YAKE again on exactly these documents, for a like-for-like row
            seen.add(tuple(i for i, _, _ in test))
            by_id = {d.id: d for d in docs}
            sub = [by_id[i] for i, _, _ in test]
            t0 = time.perf_counter()
            from tunelab.tasks.keyphrase.baselines import yake_keyphrases

            rows.append(score_rows(f"YAKE on the {len(sub)} test docs of {os.path.basename(os.path.normpath(rd))}",
                                   [yake_keyphrases(d.text, n=10) for d in sub], sub,
                                   round(time.perf_counter() - t0, 1)))
        ranked = read_ranked(os.path.join(rd, "predictions.tsv")).get("test", [])
        s = keyphrase_scores([p for _, _, p in test], [g for _, g, _ in test], ranked)
        for k in ("f1@5", "f1@10", "f1@M"):
            assert abs(s[k] - rec["metrics"]["test_" + k]) < 1e-9, (rd, k, s[k], rec["metrics"]["test_" + k])
        model = os.path.basename(os.path.normpath(rec["model"]))
        label = f"{rec['method']} {model} ({rec['data_sizes']['train']} train docs, {rec['config']['epochs']:g} ep, " \
                f"lr {rec['config']['lr']:g}; best val epoch {rec['best_epoch']}, reported: last)"
        rows.append({"system": label, **s, "docs": len(test), "seconds": rec["time"]["train_seconds"]})
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--datasets", default="inspec,kdd,www")
    ap.add_argument("--baselines", default="yake", help="comma list of yake, keybert (or none)")
    ap.add_argument("--runs", nargs="*", default=[], help="tunelab run folders to add (their test split)")
    ap.add_argument("--max-docs", type=int, default=None, help="first N test documents only (quick checks)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--append", default=None, help="append the table to this markdown file")
    args = ap.parse_args(argv)

    import torch

    from tunelab.tasks import get_task
    from tunelab.tasks.keyphrase.baselines import keybert_keyphrases, yake_keyphrases

    torch.set_num_threads(args.threads)
    baselines = [b for b in args.baselines.split(",") if b and b != "none"]
    lines = [f"| dataset | system | F1@5 | F1@10 | F1@M | P@10 | R@10 | test docs | seconds |", "|---" * 9 + "|"]
    notes = []
    for name in args.datasets.split(","):
        task = get_task(name)
        split = task.load("test", args.data_dir)
        docs = split.examples[: args.max_docs] if args.max_docs else split.examples
        rows = [score_rows("present-keys oracle (ceiling)", present_oracle(docs), docs, 0.0)]
        absent = split.info["gold_keys"]["absent_share"]
        notes.append(f"{name}: {len(docs)} test documents, {100 * absent:.1f} % of the gold keys absent from the text")
        for b in baselines:
            t0 = time.perf_counter()
            if b == "yake":
                preds = [yake_keyphrases(d.text, n=10) for d in docs]
            elif b == "keybert":
                preds = keybert_keyphrases([d.text for d in docs], n=10)
            else:
                raise SystemExit(f"unknown baseline {b}")
            rows.append(score_rows({"yake": "YAKE (yake, top 10)", "keybert": "KeyBERT (minilm, top 10)"}[b],
                                   preds, docs, round(time.perf_counter() - t0, 1)))
        rows += run_rows(args.runs, name, docs)
        for r in rows:
            lines.append(f"| {name} | {r['system']} | {r['f1@5']:.4f} | {r['f1@10']:.4f} | {r['f1@M']:.4f} | "
                         f"{r['p@10']:.4f} | {r['r@10']:.4f} | {r['docs']} | {r['seconds']} |")
    out = [f"Command: `{command_line('bench_keyphrase.py', argv)}`  ", machine_line(args.threads) + "  ",
           "; ".join(notes) + ".", "", *lines, ""]
    print("\n".join(out))
    if args.append:
        append_section(args.append, ["", *out])


if __name__ == "__main__":
    main()
