"""Completion-only language-modelling batches: SFT and Chain-of-Hindsight (Liu et al. 2023).

Both produce ``input_ids`` / ``attention_mask`` / ``labels`` with ``labels = -100`` everywhere
except on completion tokens (response tokens and the EOS that ends them), so the model's own
causal-LM loss is the completion-only loss and SFT and CoH share the same normalisation.

Chain-of-Hindsight sequence, per pair, with a feedback template drawn at random and the order of
the two completions drawn at random::

    <prompt> <phrase A><completion A><eos>\\n<phrase B><completion B><eos>

e.g. ``...Assistant: An unhelpful answer: <rejected><eos>\\nA helpful answer: <chosen><eos>``.
Loss on both completions (not on prompt, phrases or separators). At inference the prompt ends
with the positive phrase of the first template (``coh_inference_ids``). The paper's extra
pretraining loss and random masking of past tokens are not used here.
"""

import random

import torch

# (positive phrase, negative phrase)
COH_TEMPLATES = (
    ("A helpful answer:", "An unhelpful answer:"),
    ("A good response:", "A bad response:"),
    ("A more preferred answer:", "A less preferred answer:"),
    ("The better reply:", "The worse reply:"),
    ("A response the user liked:", "A response the user disliked:"),
)


def _pad_batch(seqs, labels, pad_id):
    L = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), L), pad_id, dtype=torch.long)
    att = torch.zeros((len(seqs), L), dtype=torch.long)
    lab = torch.full((len(seqs), L), -100, dtype=torch.long)
    for i, (s, y) in enumerate(zip(seqs, labels)):
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
        att[i, :len(s)] = 1
        lab[i, :len(y)] = torch.tensor(y, dtype=torch.long)
    return {"input_ids": ids, "attention_mask": att, "labels": lab}


class SFTCollator:
    """prompt + chosen response; loss on the response (and its EOS) only."""

    def __init__(self, tok):
        self.pad_id = tok.pad_token_id

    def __call__(self, pairs):
        seqs = [p.prompt_ids + p.chosen_ids for p in pairs]
        labels = [[-100] * len(p.prompt_ids) + list(p.chosen_ids) for p in pairs]
        return _pad_batch(seqs, labels, self.pad_id)


def _phrase_ids(tok, text):
    return tok(text, add_special_tokens=False).input_ids


def coh_inference_ids(tok, prompt_ids, templates=COH_TEMPLATES) -> list:
    """The prompt CoH generates / is scored from: the prompt followed by the positive phrase."""
    return list(prompt_ids) + _phrase_ids(tok, " " + templates[0][0])


class CoHCollator:
    """Chain-of-Hindsight batches. Templates and order come from a seeded RNG, so a run is
    reproducible while each epoch sees fresh draws."""

    def __init__(self, tok, seed: int = 0, templates=COH_TEMPLATES):
        self.tok, self.pad_id = tok, tok.pad_token_id
        self.rng = random.Random(seed)
        self.templates = templates
        # phrase token ids: first phrase follows the prompt after a space, second follows a newline
        self._first = {p: _phrase_ids(tok, " " + p) for t in templates for p in t}
        self._second = {p: _phrase_ids(tok, "\n" + p) for t in templates for p in t}

    def build(self, pair):
        """-> (input_ids, labels, meta) for one pair."""
        pos, neg = self.rng.choice(self.templates)
        parts = [(pos, pair.chosen_ids, "chosen"), (neg, pair.rejected_ids, "rejected")]
        if self.rng.random() < 0.5:
            parts.reverse()
        seq, lab = list(pair.prompt_ids), [-100] * len(pair.prompt_ids)
        for k, (phrase, completion, _) in enumerate(parts):
            ph = (self._second if k else self._first)[phrase]
            seq += ph + list(completion)
            lab += [-100] * len(ph) + list(completion)
        return seq, lab, {"template": (pos, neg), "order": [name for _, _, name in parts]}

    def __call__(self, pairs):
        built = [self.build(p) for p in pairs]
        return _pad_batch([b[0] for b in built], [b[1] for b in built], self.pad_id)
