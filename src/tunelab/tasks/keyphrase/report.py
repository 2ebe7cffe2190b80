"""Keyphrase runs in the report: two test documents with the gold and the predicted phrases marked.

Block ``("marked", caption, segments)``: ``segments`` is the document text cut into ``(text, tag)`` pieces,
tag "" (plain), "gold" (a gold keyphrase only), "pred" (a predicted one only) or "both". Matching is the
metric's: lower-cased Porter-stemmed word sequences (tasks/keyphrase/data.py). Predicted = the top 10.
The documents are the first two of the run's test split (in the order of predictions.tsv), not chosen.
"""

import json
import os

from .. import REPORT_SECTIONS

TOP_K = 10
N_DOCS = 2


def _spans(stems, keys):
    """Word positions covered by any occurrence of any key (a tuple of stems)."""
    hit = [False] * len(stems)
    for key in keys:
        n = len(key)
        for s in range(len(stems) - n + 1):
            if n and tuple(stems[s:s + n]) == key:
                for t in range(s, s + n):
                    hit[t] = True
    return hit


def highlight_segments(text: str, gold, predicted) -> list:
    """``text`` as [(piece, tag)]; consecutive words with the same tag form one piece."""
    from .data import WORD_RE, phrase_key, stem_word

    words = list(WORD_RE.finditer(text))
    stems = [stem_word(m.group()) for m in words]
    g = _spans(stems, {phrase_key(k) for k in gold})
    p = _spans(stems, {phrase_key(k) for k in predicted})
    tags = ["both" if a and b else "gold" if a else "pred" if b else "" for a, b in zip(g, p)]
    out, pos, i = [], 0, 0
    while i < len(words):
        j = i
        while j + 1 < len(words) and tags[j + 1] == tags[i] and tags[i]:
            j += 1
        start, end = words[i].start(), words[j].end()
        if start > pos:
            out.append((text[pos:start], ""))
        out.append((text[start:end], tags[i]))
        pos, i = end, j + 1
    if pos < len(text):
        out.append((text[pos:], ""))
    merged = []  # plain pieces next to each other become one
    for piece, tag in out:
        if merged and merged[-1][1] == tag == "":
            merged[-1] = (merged[-1][0] + piece, "")
        else:
            merged.append((piece, tag))
    return merged


def _is_keyphrase_run(run_dir: str) -> bool:
    try:
        with open(os.path.join(run_dir, "predictions.tsv"), encoding="utf-8") as f:
            return f.readline().startswith("split\tdoc_id\tgold_keys\tpredicted_keys")
    except OSError:
        return False


def keyphrase_blocks(done: list) -> tuple:
    """Blocks for every keyphrase task of the study: one run per task (full fine-tuning if there is one,
    lowest seed), its first two test documents marked."""
    from .task import read_predictions
    from .data import phrase_key, stem_word, tokenize_words

    out, seen = [], set()
    runs = sorted((r for r in done if _is_keyphrase_run(r["run_dir"])),
                  key=lambda r: (r["task"], r["model"], r["method"] != "full", r["seed"]))
    for r in runs:
        if (r["task"], r["model"]) in seen:
            continue
        seen.add((r["task"], r["model"]))
        try:
            with open(os.path.join(r["run_dir"], "run.json"), encoding="utf-8") as f:
                rec = json.load(f)
            folder = rec["data_notes"]["train"]["source"]["folder"]
        except (OSError, KeyError, ValueError):
            continue  # hub data: no document files to show
        preds = read_predictions(os.path.join(r["run_dir"], "predictions.tsv"))
        split = "test" if "test" in preds else next(iter(preds), None)
        if split is None:
            continue
        out.append(("p", f"{r['task']} ({r['model']}), run {r['run_id']}: the first {N_DOCS} {split} documents. "
                         f"Gold keyphrases and the top {TOP_K} predicted ones marked (stemmed match); gold keys "
                         f"absent from the text cannot be marked and are listed below each document."))
        for doc_id, gold, pred in preds[split][:N_DOCS]:
            try:
                with open(os.path.join(folder, "docsutf8", doc_id + ".txt"), encoding="utf-8-sig") as f:
                    text = f.read().replace("\r\n", "\n").replace("\r", "\n")
            except OSError:
                continue
            segs = highlight_segments(text, gold, pred[:TOP_K])
            stems = " " + " ".join(stem_word(w) for w in tokenize_words(text)) + " "
            absent = list(dict.fromkeys(k for k in gold if " " + " ".join(phrase_key(k)) + " " not in stems))
            caption = (f"document {doc_id}: predicted (ranked) {'; '.join(pred[:TOP_K]) or '(none)'} | "
                       f"gold absent from the text: {'; '.join(absent) or '(none)'}")
            out.append(("marked", caption, segs))
    return "Keyphrase examples", out


REPORT_SECTIONS.add("keyphrase", keyphrase_blocks)
