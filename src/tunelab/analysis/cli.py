"""``tunelab analyze attention RUN_DIR [--samples N]`` (see ``analysis/attention.py``)."""


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("analyze", help="analyse a finished run (attention)")
    sub = p.add_subparsers(dest="analysis")
    a = sub.add_parser("attention", help="attention entropy and where it goes, base vs fine-tuned (attention.json/.png)")
    a.add_argument("run_dir", help="a completed run folder (with run.json)")
    a.add_argument("--samples", type=int, default=200, help="dev examples to read (seeded subset; default 200)")
    a.add_argument("--batch-size", type=int, default=32, help="examples per forward pass")
    a.add_argument("--data-dir", default=None, help="data folder (default: the run's data_dir)")
    a.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    a.set_defaults(func=_attention)
    p.set_defaults(func=lambda ns: (p.print_help(), 2)[1])


def _attention(ns) -> int:
    import torch

    from .attention import analyze_attention

    if ns.threads:
        torch.set_num_threads(ns.threads)
    r = analyze_attention(ns.run_dir, samples=ns.samples, batch_size=ns.batch_size, data_dir=ns.data_dir)
    o = r["overall"]
    print(f"{r['method']} on {r['task']}, {r['samples']} {r['split']} examples, {r['layers']} layers x {r['heads']} heads")
    for m in ("entropy", "content", "special", "function", "cls_content"):
        print(f"  {m:<12} base {o[m]['base']:.4f}  fine-tuned {o[m]['finetuned']:.4f}  delta {o[m]['delta']:+.4f}")
    print(f"-> {r['run_dir']}/attention.json, attention.png")
    return 0
