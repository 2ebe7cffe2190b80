"""Word-level tagging with a token-classification head, shared by the families that label words
(keyphrase: B/I/O over a document's words; token-classification: NER and any BIO/IOB tags).

Pure functions on words, label ids and a fast tokenizer (no family's label set here):

- ``encode_windows``: one word sequence -> model inputs of at most ``max_length`` tokens, cut at word
  boundaries and overlapping by about ``stride`` tokens; the first sub-token of every word carries its
  label id, the other sub-tokens and the special tokens -100 (``run_ner.py``'s default,
  ``label_all_tokens=False``);
- ``merge_word_probs``: per-token probabilities of a sequence's windows -> one distribution per word
  (read at the word's first sub-token, averaged over the windows holding it);
- ``collate`` / ``token_logits`` / ``predict_word_probs``: batches of windows, the logits of the
  window's own tokens (prompt tuning prepends virtual tokens), and the word distributions of many
  sequences at once, longest windows first.

The option ``--doc-stride`` (the overlap of consecutive windows) is declared here, read by both families.
"""

import numpy as np
import torch

from ..config import declare, opt
from ..errors import UserError


@declare("tagging", "task family", reads=("family:keyphrase", "family:token-classification"),
         title="task families keyphrase, token-classification (sliding windows)")
class TaggingOptions:
    doc_stride: int = opt(128, "keyphrase / token-classification: tokens shared by consecutive sliding windows of a "
                               "sequence longer than --max-seq-length (its words' predictions are averaged over the "
                               "windows); must be < --max-seq-length minus the special tokens", min=0)


def check_stride(stride: int, max_length: int) -> None:
    """The option check of ``--doc-stride`` against ``--max-seq-length`` (before any data is read)."""
    if stride >= max_length - 2:
        raise UserError(f"--doc-stride {stride} must be smaller than --max-seq-length {max_length} "
                        "minus the special tokens")


def encode_windows(words, label_ids, tokenizer, max_length: int = 512, stride: int = 128) -> list:
    """Cut one word sequence into model inputs of at most `max_length` tokens (special tokens included).

    Windows hold whole words (a window never starts or ends inside a word, unless one word alone is longer
    than a window: then its extra sub-tokens are cut). Consecutive windows overlap by about `stride`
    tokens (rounded to whole words); words in the overlap are labelled in both windows (two contexts for
    training) and their predictions are averaged by merge_word_probs. Every word appears in some window.

    Each window: input_ids, attention_mask, labels (``label_ids[w]`` on word w's first sub-token, -100 on
    other sub-tokens and special tokens; all -100 when `label_ids` is None), word_ids (index into `words` of
    every token, -1 for special tokens). Needs a fast tokenizer (word_ids); for byte-level BPE tokenizers
    (RoBERTa, GPT-2) load it with add_prefix_space=True."""
    if stride < 0 or max_length < 3:
        raise ValueError("encode_windows: need max_length >= 3 and stride >= 0")
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=False)
    if stride >= budget:
        raise UserError(f"--doc-stride {stride} must be smaller than the window ({budget} tokens without special tokens)")
    if not words:
        return []
    enc = tokenizer(list(words), is_split_into_words=True, add_special_tokens=False, verbose=False)
    wids = enc.word_ids()
    n_tok_word = [0] * len(words)
    for w in wids:
        n_tok_word[w] += 1
    starts = np.concatenate([[0], np.cumsum(n_tok_word)])  # token position of each word start (and the end)
    n_tok = int(starts[-1])

    def first_word_at_or_after(tok):  # first word whose start token >= tok
        return int(np.searchsorted(starts[:-1], tok, side="left"))

    windows, w0 = [], 0
    while w0 < len(words):
        tok0 = int(starts[w0])
        w1 = int(np.searchsorted(starts, tok0 + budget, side="right")) - 1  # words w0..w1-1 fit entirely
        w1 = min(max(w1, w0 + 1), len(words))  # at least one word (truncated if too long)
        windows.append(_encode_window(words, label_ids, tokenizer, w0, w1, max_length))
        if w1 >= len(words) or starts[w1] >= n_tok:
            break
        nxt = first_word_at_or_after(int(starts[w1]) - stride)  # overlap of ~stride tokens
        w0 = min(max(nxt, w0 + 1), w1)  # progress, and never skip a word
    return windows


def _encode_window(words, label_ids, tokenizer, w0, w1, max_length) -> dict:
    enc = tokenizer(list(words[w0:w1]), is_split_into_words=True, truncation=True, max_length=max_length)
    word_ids, lab = [], []
    prev = None
    for w in enc.word_ids():
        if w is None:
            word_ids.append(-1)
            lab.append(-100)
        else:
            word_ids.append(w0 + w)
            first = w != prev
            lab.append(int(label_ids[w0 + w]) if first and label_ids is not None else -100)
        prev = w
    return {"input_ids": list(enc["input_ids"]), "attention_mask": list(enc["attention_mask"]),
            "labels": lab, "word_ids": word_ids}


def merge_word_probs(windows, token_probs, n_words: int, n_labels: int, outside: int = 0) -> np.ndarray:
    """Per-word label probabilities [n_words, n_labels] from per-token probabilities of each window.

    token_probs[i] is an array [>= len(windows[i]['input_ids']), n_labels] (padded rows are ignored).
    A word's probability is read at its first sub-token and averaged over the windows that contain it.
    A word no window covers (a word the tokenizer maps to no token) gets P(label `outside`) = 1."""
    acc = np.zeros((n_words, n_labels), dtype=np.float64)
    cnt = np.zeros(n_words, dtype=np.int64)
    for win, probs in zip(windows, token_probs):
        probs = np.asarray(probs, dtype=np.float64)
        prev = -1
        for t, w in enumerate(win["word_ids"]):
            if w >= 0 and w != prev:
                acc[w] += probs[t]
                cnt[w] += 1
            prev = w
    out = np.zeros_like(acc)
    out[:, outside] = 1.0
    seen = cnt > 0
    out[seen] = acc[seen] / cnt[seen, None]
    return out


def collate(pad_id: int):
    """rows (windows) -> a batch of input_ids / attention_mask / labels, right-padded (labels with -100)."""
    def fn(rows):
        n = max(len(r["input_ids"]) for r in rows)
        batch = {"input_ids": [r["input_ids"] + [pad_id] * (n - len(r["input_ids"])) for r in rows],
                 "attention_mask": [r["attention_mask"] + [0] * (n - len(r["attention_mask"])) for r in rows],
                 "labels": [r["labels"] + [-100] * (n - len(r["labels"])) for r in rows]}
        return {k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()}
    return fn


def token_logits(model, batch):
    """Logits of the batch's own tokens [B, L, labels]: prompt tuning prepends virtual tokens, whose
    logits are dropped (for every other method this is the model's output as is)."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return out.logits[:, -batch["input_ids"].shape[1]:, :]


def token_loss(model, batch):
    """Cross-entropy over the labelled tokens (first sub-tokens), in float32."""
    logits = token_logits(model, batch)
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                             batch["labels"].reshape(-1), ignore_index=-100)


def window_tokens(model, tokenizer, max_seq_length: int) -> int:
    """Tokens per window: --max-seq-length, less when the model's positions cannot hold it plus the
    virtual tokens of prompt / prefix tuning."""
    limit = getattr(model.config, "max_position_embeddings", None) or max_seq_length
    if 0 < getattr(tokenizer, "model_max_length", 0) < 100_000:
        limit = min(limit, tokenizer.model_max_length)
    peft = getattr(model, "active_peft_config", None)
    if peft is not None and getattr(peft, "is_prompt_learning", False):
        limit -= peft.num_virtual_tokens
    return min(max_seq_length, limit)


@torch.no_grad()
def predict_word_probs(model, windows_per_seq, n_words_per_seq, collate_fn, batch_size, device, n_labels: int,
                       outside: int = 0) -> list:
    """[n_words, n_labels] word distributions of every sequence from its windows (softmax of the logits at
    each word's first sub-token, averaged over windows). Windows run longest first, in batches."""
    model.eval()
    flat = [(i, j) for i, ws in enumerate(windows_per_seq) for j in range(len(ws))]
    order = sorted(range(len(flat)), key=lambda k: -len(windows_per_seq[flat[k][0]][flat[k][1]]["input_ids"]))
    probs = [[None] * len(ws) for ws in windows_per_seq]
    for b in range(0, len(order), batch_size):
        idx = [flat[k] for k in order[b:b + batch_size]]
        batch = collate_fn([windows_per_seq[i][j] for i, j in idx])
        logits = token_logits(model, {k: v.to(device) for k, v in batch.items()})
        p = torch.softmax(logits.float(), -1).cpu().numpy()
        for (i, j), pi in zip(idx, p):
            probs[i][j] = pi[:len(windows_per_seq[i][j]["input_ids"])]
    return [merge_word_probs(ws, ps, n, n_labels, outside)
            for ws, ps, n in zip(windows_per_seq, probs, n_words_per_seq)]
