"""``tunelab predict`` for the alignment tasks: greedy generations (the evaluation's decoding:
``--max-response-length`` new tokens, cut at the next dialogue turn; CoH conditioned on its positive
phrase) and, when an input has responses, their log-likelihood scores as in predictions.tsv
(``chosen_score`` / ``rejected_score``: summed log p(response + EOS | prompt), and token counts);
the ``reward`` task scores instead (its head gives one number per sequence).

Inputs are the family's training formats: hh-rlhf JSON Lines (``chosen`` / ``rejected`` dialogues;
a row with only ``prompt`` is generated from) or Alpaca JSON / JSON Lines (``instruction``,
``input``; ``output`` optional); ``--text`` is one user turn (hh-rlhf: wrapped as
``\\n\\nHuman: TEXT\\n\\nAssistant:``; Alpaca: the Alpaca prompt of the instruction)."""

import json

from ...errors import UserError
from ...textio import read_jsonl, read_text
from .collate import coh_inference_ids
from .data import tokenize_pairs
from .instruction import alpaca_prompt
from .preference import ASSISTANT, HUMAN, PairExample, split_dialogues
from .scoring import generate, response_logprobs, reward_scores


def read_inputs(task, path: str) -> list:
    if task.data == "alpaca":
        text = read_text(path, what="Alpaca file")
        if text.lstrip().startswith("["):
            try:
                rows = list(enumerate(json.loads(text), 1))
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
        else:
            rows = read_jsonl(path, what="Alpaca file")
        out = []
        for line, r in rows:
            if not isinstance(r, dict) or not isinstance(r.get("instruction"), str):
                raise UserError(f"{path}:{line}: expected an object with a string field 'instruction'")
            out.append(PairExample(alpaca_prompt(r["instruction"], r.get("input") or ""),
                                   r.get("output") if isinstance(r.get("output"), str) else None, None, line))
        return out
    out = []
    for line, r in read_jsonl(path, what="hh-rlhf file"):
        if isinstance(r, dict) and isinstance(r.get("chosen"), str) and isinstance(r.get("rejected"), str):
            parts = split_dialogues(r["chosen"], r["rejected"])
            if parts is None:
                raise UserError(f"{path}:{line}: the two dialogues share no '{ASSISTANT.strip()}' turn")
            out.append(PairExample(*parts, line=line))
        elif isinstance(r, dict) and isinstance(r.get("prompt"), str):
            out.append(PairExample(r["prompt"], None, None, line))
        else:
            raise UserError(f"{path}:{line}: expected an object with string fields 'chosen' and 'rejected' "
                            "(or 'prompt')")
    return out


def text_inputs(task, texts: list) -> list:
    if task.data == "alpaca":
        return [PairExample(alpaca_prompt(t), None, None, 0) for t in texts]
    return [PairExample(t if ASSISTANT in t else f"{HUMAN} {t}{ASSISTANT}", None, None, 0) for t in texts]


def predict_inputs(task, model, processor, inputs, cfg, device, batch_size, progress=None):
    from ..base import progress_bar

    tok = getattr(processor, "tokenizer", processor)
    bar = progress_bar(len(inputs), f"predict {task.name}", progress)
    context = (lambda ids: coh_inference_ids(tok, ids)) if task.objective == "coh" else list
    for b in range(0, len(inputs), batch_size):
        chunk = inputs[b:b + batch_size]
        # tokenize_pairs truncates as training did; a prompt-only input gets an empty (unscored) response
        toks = tokenize_pairs([e if e.chosen is not None else PairExample(e.prompt, "", None, e.line) for e in chunk],
                              tok, cfg.max_prompt_length, cfg.max_response_length)
        rows = [{"prompt": e.prompt} for e in chunk]
        if task.objective == "reward":
            seqs = [t.prompt_ids + (t.chosen_ids if e.chosen is not None else []) for e, t in zip(chunk, toks)]
            for r, s in zip(rows, reward_scores(model, seqs, tok.pad_token_id, batch_size, device)):
                r["score" if r.get("chosen") is None else "chosen_score"] = s
            rej = [(i, t.prompt_ids + t.rejected_ids) for i, t in enumerate(toks) if t.rejected_ids is not None]
            if rej:
                for (i, _), s in zip(rej, reward_scores(model, [s for _, s in rej], tok.pad_token_id, batch_size,
                                                        device)):
                    rows[i]["chosen_score"] = rows[i].pop("score")
                    rows[i]["rejected_score"] = s
        else:
            gens = generate(model, tok, [context(t.prompt_ids) for t in toks], cfg.max_response_length, batch_size,
                            device)
            for r, g in zip(rows, gens):
                r["generation"] = g
            items = [(i, k, t.chosen_ids if k == "chosen" else t.rejected_ids) for k in ("chosen", "rejected")
                     for i, (e, t) in enumerate(zip(chunk, toks))
                     if (e.chosen if k == "chosen" else e.rejected) is not None]
            if items:
                lp = response_logprobs(model, [(context(toks[i].prompt_ids), ids) for i, _, ids in items],
                                       tok.pad_token_id, batch_size, device)
                for (i, k, _), (s, n) in zip(items, lp):
                    rows[i][f"{k}_score"], rows[i][f"{k}_tokens"] = s, n
        yield from rows
        bar.update(len(chunk))
    bar.close()
