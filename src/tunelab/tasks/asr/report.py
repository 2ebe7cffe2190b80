"""The report's speech section (``tasks.REPORT_SECTIONS``): for ASR runs (run.json ``asr``), CER/WER of
the base model -> the fine-tuned one on every eval split, and a few transcripts side by side."""


from .. import REPORT_SECTIONS
from ...results.record import records_with


def speech_blocks(done: list) -> tuple:
    """ASR runs (run.json ``asr``): CER/WER of the base model -> the fine-tuned one on every eval split
    (the change on the old domain is the forgetting), and a few transcripts side by side."""
    runs = records_with(done, "asr")
    out = []
    for task in dict.fromkeys(r["task"] for r, _ in runs):
        trs = [(r, rec) for r, rec in runs if r["task"] == task]
        first = trs[0][1]["asr"]
        splits = list(first.get("splits") or {})
        prefixes = {s: (first["splits"][s] or {}).get("metric_prefix", "") for s in splits}
        out.append(("h", 3, f"{task}: base -> fine-tuned"))
        out.append(("p", f"CER and WER (lower is better) of the base model and of each run on the same utterances; "
                         f"Δ = fine-tuned - base (positive on an old-domain split such as 'real' = forgetting). "
                         f"Normaliser: {first.get('normaliser', '?')}. Decoding: {first.get('decoding', '?')}."))
        header = ["run"] + [f"{s} {m.upper()} base -> tuned (Δ)" for s in splits for m in ("cer", "wer")]
        rows = []
        for r, rec in trs:
            m = rec.get("metrics") or {}
            cells = [f"{r['label']} (seed {r['seed']})"]
            for s in splits:
                for name in ("cer", "wer"):
                    k = prefixes[s] + name
                    a, b = m.get("base_" + k), m.get(k)
                    cells.append(f"{a:.4f} -> {b:.4f} ({b - a:+.4f})" if isinstance(a, (int, float))
                                 and isinstance(b, (int, float)) else "—")
            rows.append(cells)
        out.append(("table", header, rows))
        for s in splits:
            samples = [(r, (rec["asr"].get("samples") or {}).get(s) or []) for r, rec in trs]
            samples = [(r, x) for r, x in samples if x]
            if not samples:
                continue
            base = samples[0][1]
            header = ["file", "reference", "base"] + [f"{r['label']} (seed {r['seed']})" for r, _ in samples]
            body = []
            for i, x in enumerate(base):
                body.append([x.get("file", ""), x.get("reference", ""), x.get("base", "")]
                            + [(xs[i].get("fine_tuned", "") if i < len(xs) else "") for _, xs in samples])
            out.append(("p", f"{task} / {s}: transcripts side by side (the first {len(base)} utterances):"))
            out.append(("table", header, body))
    return "Speech recognition: before and after, forgetting, transcripts", out


REPORT_SECTIONS.add("asr", speech_blocks)
