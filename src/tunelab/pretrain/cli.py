"""``tunelab pretrain mlm --model M (--data-dir DIR | --corpus PATH ...) --output-dir OUT`` (pretrain/mlm.py)."""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("pretrain", help="continued pretraining that makes a new base model (domain adaptation)")
    sub = p.add_subparsers(dest="objective")
    m = sub.add_parser("mlm", help="continued masked-LM pretraining (whole-word masking) on in-domain text",
                       description="Domain-adaptive pretraining as SciBERT / 'Don't Stop Pretraining': continue "
                                   "masked-LM training of an encoder on unlabelled in-domain text; writes a model "
                                   "folder that `tunelab run --model OUTPUT_DIR` accepts, and pretrain.json with the "
                                   "held-out MLM loss before and after.")
    m.add_argument("--model", default="minilm", help="model alias or folder (default: minilm)")
    src = m.add_mutually_exclusive_group(required=True)
    src.add_argument("--data-dir", help="keyphrase data (docsutf8/ + keys/ folders, e.g. ../shared/data/keyphrase): "
                                        "the train-split abstracts of every dataset in it, never validation/test")
    src.add_argument("--corpus", nargs="+", metavar="PATH", help="plain-text files or folders of *.txt (a file = a document)")
    m.add_argument("--output-dir", required=True, help="the new model folder")
    m.add_argument("--max-steps", type=int, default=300, help="optimizer steps of MLM training (default 300)")
    m.add_argument("--max-minutes", type=float, default=8.0, help="wall-clock budget; stops early when reached (default 8)")
    m.add_argument("--head-warmup-steps", type=int, default=60,
                   help="steps training the fresh MLM head alone before the 'before' loss (default 60)")
    m.add_argument("--seq-length", type=int, default=256, help="tokens per window (default 256)")
    m.add_argument("--batch-size", type=int, default=16, help="windows per step (default 16)")
    m.add_argument("--lr", type=float, default=1e-4, help="peak learning rate (default 1e-4)")
    m.add_argument("--mlm-probability", type=float, default=0.15, help="share of words masked (default 0.15)")
    m.add_argument("--heldout-share", type=float, default=0.1, help="documents held out for the loss (default 0.1)")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    m.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    m.set_defaults(func=_mlm)
    p.set_defaults(func=lambda ns: (p.print_help(), 2)[1])


def _mlm(ns) -> int:
    import torch

    from .mlm import pretrain_mlm

    if ns.threads:
        torch.set_num_threads(ns.threads)
    r = pretrain_mlm(ns.model, ns.output_dir, data_dir=ns.data_dir, corpus=ns.corpus, max_steps=ns.max_steps,
                     max_minutes=ns.max_minutes, head_warmup_steps=ns.head_warmup_steps, seq_length=ns.seq_length,
                     batch_size=ns.batch_size, lr=ns.lr, mlm_probability=ns.mlm_probability,
                     heldout_share=ns.heldout_share, seed=ns.seed, overwrite=ns.overwrite)
    h = r["heldout_loss"]
    print(f"pretrained {r['model']} for {r['steps']} steps on {r['corpus']['train_documents']} documents: held-out MLM "
          f"loss {h['before']:.4f} -> {h['after']:.4f} -> {ns.output_dir} (use: tunelab run --model {ns.output_dir})")
    return 0
