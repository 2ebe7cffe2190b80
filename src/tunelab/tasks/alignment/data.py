"""Tokenise and truncate prompt / response pairs once, the same way for every objective.

Prompts keep their last ``max_prompt_length`` tokens and then start at the first ``Human:`` turn
inside that window when there is one (so a dialogue is cut between turns, not mid-sentence; a
prompt rendered with a chat template whose turns start with the BOS token, as SmolLM2's
``<|im_start|>``, at the first such turn);
responses keep their first ``max_response_length`` tokens and end with EOS. Pieces are tokenised
separately and concatenated, so a completion's tokens are exactly known (what loss masks and
log-likelihoods need). The truncated texts are kept too: TRL's DPO/RLOO trainers take text.
"""

from dataclasses import dataclass

from .preference import HUMAN


@dataclass
class TokPair:
    prompt: str  # truncated texts
    chosen: str
    rejected: str | None
    prompt_ids: list  # special prefix (e.g. BOS) + prompt tokens
    chosen_ids: list  # response tokens + EOS
    rejected_ids: list | None
    line: int = 0


def special_prefix(tok) -> list:
    """Tokens the tokenizer puts before a text (BOS for Llama, nothing for GPT-2 / SmolLM2)."""
    with_sp = tok("a").input_ids
    without = tok("a", add_special_tokens=False).input_ids
    if len(with_sp) > len(without) and with_sp[len(with_sp) - len(without):] == without:
        return with_sp[:len(with_sp) - len(without)]
    return []


def ids(tok, text: str) -> list:
    return tok(text, add_special_tokens=False).input_ids


def truncate_prompt(tok, prompt: str, max_tokens: int) -> str:
    toks = ids(tok, prompt)
    if len(toks) <= max_tokens:
        return prompt
    text = tok.decode(toks[-max_tokens:])
    k = text.find(HUMAN, 1)
    if k < 0 and tok.bos_token and tok.bos_token in text:  # a chat template's turn marker (e.g. <|im_start|>)
        k = text.find(tok.bos_token, 1)
    if k > 0:
        text = text[k:]
    return text


def truncate_response(tok, response: str, max_tokens: int) -> str:
    toks = ids(tok, response)
    return response if len(toks) <= max_tokens else tok.decode(toks[:max_tokens])


def encode(tok, prompt: str, response: str | None = None) -> tuple:
    """(prompt_ids, response_ids + [eos]) for already truncated texts."""
    p = special_prefix(tok) + ids(tok, prompt)
    if not p:  # no prompt (SFT on plain 'text'): the sequence starts from BOS (else EOS, as GPT-2 documents)
        p = [tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id]
    r = None if response is None else ids(tok, response) + [tok.eos_token_id]
    return p, r


def tokenize_pairs(examples, tok, max_prompt: int, max_response: int) -> list:
    out = []
    for e in examples:
        prompt = truncate_prompt(tok, e.prompt, max_prompt)
        chosen = truncate_response(tok, e.chosen, max_response)
        rejected = None if e.rejected is None else truncate_response(tok, e.rejected, max_response)
        p, c = encode(tok, prompt, chosen)
        r = None if rejected is None else encode(tok, prompt, rejected)[1]
        out.append(TokPair(prompt, chosen, rejected, p, c, r, getattr(e, "line", 0)))
    return out
