"""Document representations on a folder-per-category corpus (BBC News by default), one table:
every baseline of ``tunelab.tasks.docrep.baselines`` and, unless ``--train-docs 0``, a short self-supervised
contrastive fine-tuning of the encoder (``tunelab.tasks.docrep.objective``) evaluated the same way (mean over
all chunks). Same seeded stratified split and the same evaluation (``tunelab.tasks.docrep.evaluate``) for every
row: logistic-regression test accuracy and macro-F1, 5-NN cosine accuracy, KMeans NMI; seconds = fitting
the representation (training included) + embedding train and test documents.

This is a standalone measurement, in-process, without ``tunelab run``: the docrep task family will run
the fine-tuning through tunelab's training loop.

    python benchmarks/bench_docrep_baselines.py --data-dir ../shared/data/news/bbc --threads 1
    python benchmarks/bench_docrep_baselines.py --baselines '' --train-docs 1780 --lr 5e-5   # training only
"""

import argparse
import json
import os
import sys
import time

from bench_common import command_line, machine_line


def parse_args(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=os.path.join(here, "..", "..", "shared", "data", "news", "bbc"))
    p.add_argument("--model", default="minilm")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--baselines", default="tfidf,doc2vec,encoder-trunc-128,encoder-trunc-512,encoder-chunks",
                   help="comma-separated names (docrep.baselines); empty for none")
    p.add_argument("--train-docs", type=int, default=400, help="train documents for the contrastive run (0: skip)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--objective", default="declutr", choices=("declutr", "simcse"))
    p.add_argument("--temperature", type=float, default=0.05)
    p.add_argument("--train-length", type=int, default=128,
                   help="chunk window for training (0: model length). 128: every BBC article but one gives a "
                        "two-chunk pair; at 512 only 795 of 2,225 do, the rest are dropout pairs")
    p.add_argument("--eval-length", type=int, default=0,
                   help="chunk window for the fine-tuned encoder's document vectors (0: model length)")
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    return p.parse_args(argv)


def contrastive_finetune(model, tok, texts, args, log):
    """Plain AdamW loop over pair batches (what tunelab's loop will do for the docrep task)."""
    import torch

    from tunelab.tasks.docrep.chunks import chunk_documents, model_length
    from tunelab.tasks.docrep.objective import batches_per_epoch, contrastive_loss, pair_batches, pairing_stats

    length = args.train_length or model_length(tok, model.config)
    docs_chunks = chunk_documents(tok, texts, length)
    log(f"  training chunks: window {length}, {sum(map(len, docs_chunks))} chunks; "
        f"{pairing_stats(docs_chunks, args.objective)}")
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    model.train()
    losses, n_batches = [], batches_per_epoch(len(docs_chunks), args.batch_size)
    for epoch in range(args.epochs):
        for step, batch in enumerate(pair_batches(docs_chunks, args.batch_size, gen, args.objective,
                                                  tok.pad_token_id or 0)):
            loss = contrastive_loss(model, batch, args.temperature)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
            log(f"  epoch {epoch + 1} step {step + 1}/{n_batches} loss {loss.item():.4f}")
    model.eval()
    return losses


def main(argv=None):
    args = parse_args(argv)
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    import numpy as np
    import torch

    from tunelab.tasks.docrep.baselines import baseline_vectors, load_encoder
    from tunelab.tasks.docrep.chunks import length_report, special_tokens, tokenize_documents
    from tunelab.tasks.docrep.evaluate import evaluate_vectors
    from tunelab.tasks.docrep.news import read_bbc, stratified_split

    torch.set_num_threads(args.threads)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    docs, _, info = read_bbc(args.data_dir)
    labels = [d.label for d in docs]
    tr, te, split = stratified_split(labels, args.test_fraction, args.seed)
    train_texts, test_texts = [docs[i].text for i in tr], [docs[i].text for i in te]
    train_y, test_y = [labels[i] for i in tr], [labels[i] for i in te]
    model, tok = load_encoder(args.model)
    n_special = sum(map(len, special_tokens(tok)))
    lengths = length_report([len(x) for x in tokenize_documents(tok, [d.text for d in docs])],
                            (128, 256, 512), n_special)
    log(f"{len(docs)} documents {info['per_category']}; fallback decodes {info['fallback_decoded']}; "
        f"split train {split['train']} / test {split['test']} (seed {args.seed}); {args.model} lengths {lengths}")

    rows = []
    for name in [b for b in args.baselines.split(",") if b]:
        t0 = time.time()
        xtr, xte = baseline_vectors(name, train_texts, test_texts, model, tok, seed=args.seed)
        seconds = time.time() - t0
        m = evaluate_vectors(xtr, train_y, xte, test_y, seed=args.seed)
        rows.append({"representation": name, **m, "seconds": seconds})
        log(f"{name}: {m} ({seconds:.0f} s)")

    if args.train_docs > 0:
        rng = np.random.RandomState(args.seed)
        pick = sorted(rng.choice(len(train_texts), min(args.train_docs, len(train_texts)), replace=False))
        ft_model, _ = load_encoder(args.model)
        t0 = time.time()
        losses = contrastive_finetune(ft_model, tok, [train_texts[i] for i in pick], args, log)
        train_s = time.time() - t0
        chunks_name = f"encoder-chunks-{args.eval_length}" if args.eval_length else "encoder-chunks"
        xtr, xte = baseline_vectors(chunks_name, train_texts, test_texts, ft_model, tok)
        seconds = time.time() - t0
        m = evaluate_vectors(xtr, train_y, xte, test_y, seed=args.seed)
        q = max(1, len(losses) // 4)
        name = (f"{args.objective} fine-tuned ({len(pick)} docs, {args.epochs} ep, bs {args.batch_size}, "
                f"lr {args.lr:g}, window {args.train_length or 'model'}) + {chunks_name}")
        rows.append({"representation": name, **m, "seconds": seconds, "train_seconds": train_s,
                     "loss_first_quarter": float(np.mean(losses[:q])), "loss_last_quarter": float(np.mean(losses[-q:])),
                     "steps": len(losses)})
        log(f"{name}: {m} (train {train_s:.0f} s, loss {np.mean(losses[:q]):.3f} -> {np.mean(losses[-q:]):.3f})")

    print(f"`{command_line('bench_docrep_baselines.py', argv)}`  ")
    print(f"{machine_line(args.threads)}; {len(docs)} documents, split seed {args.seed}, "
          f"test {split['test']} ({args.test_fraction:g}); model {args.model}\n")
    print("| representation | accuracy | macro-F1 | 5-NN acc | NMI | seconds |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['representation']} | {r['accuracy']:.4f} | {r['macro_f1']:.4f} | {r['knn_accuracy']:.4f} | "
              f"{r['nmi']:.4f} | {r['seconds']:.1f} |")
    for r in rows:
        if "train_seconds" in r:
            print(f"\n{r['representation']}: {r['steps']} steps, train {r['train_seconds']:.0f} s, "
                  f"contrastive loss first quarter {r['loss_first_quarter']:.3f} -> last quarter {r['loss_last_quarter']:.3f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"rows": rows, "split": {k: v for k, v in split.items() if k != "test_indices"},
                       "lengths": lengths, "data": info}, f, indent=1)


if __name__ == "__main__":
    main()
