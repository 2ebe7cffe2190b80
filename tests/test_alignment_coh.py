"""Chain-of-Hindsight and SFT batches: the loss mask covers exactly the completion tokens.

Uses SmolLM2's real tokenizer on real hh-rlhf pairs (no model needed)."""

import pytest

from tunelab.tasks.alignment.collate import COH_TEMPLATES, CoHCollator, SFTCollator, coh_inference_ids
from tunelab.tasks.alignment.data import tokenize_pairs
from tunelab.tasks.alignment.preference import load_pairs


@pytest.fixture(scope="module")
def pairs(smollm2_tokenizer, hh_data_dir):
    ex = load_pairs("train", hh_data_dir, None, 0.1)[0][:32]
    return tokenize_pairs(ex, smollm2_tokenizer, 96, 48)


def _labelled_runs(labels):
    runs, cur = [], []
    for y in labels:
        if y != -100:
            cur.append(y)
        elif cur:
            runs.append(cur)
            cur = []
    if cur:
        runs.append(cur)
    return runs


def test_coh_mask_decodes_to_exactly_the_two_completions(smollm2_tokenizer, pairs):
    tok = smollm2_tokenizer
    batch = CoHCollator(tok, seed=0)(pairs[:8])
    for i, p in enumerate(pairs[:8]):
        ids, labels, att = batch["input_ids"][i].tolist(), batch["labels"][i].tolist(), batch["attention_mask"][i]
        n = int(att.sum())
        assert all(y == -100 for y in labels[n:])  # padding is never a target
        runs = _labelled_runs(labels[:n])
        assert len(runs) == 2
        decoded = sorted(tok.decode(r) for r in runs)
        assert decoded == sorted([p.chosen + tok.eos_token, p.rejected + tok.eos_token])
        # targets are the input tokens themselves (the model shifts), and nothing else is a target
        assert all(y == x for x, y in zip(ids, labels) if y != -100)
        masked_out = tok.decode([x for x, y in zip(ids[:n], labels[:n]) if y == -100])
        assert masked_out.startswith(p.prompt)
        assert any(pos in masked_out and neg in masked_out for pos, neg in COH_TEMPLATES)


def test_coh_templates_and_order_are_drawn_per_example_reproducibly(smollm2_tokenizer, pairs):
    ca, cb, cc = (CoHCollator(smollm2_tokenizer, seed=s) for s in (0, 0, 1))
    a, b, c = ([col.build(p)[2] for p in pairs] for col in (ca, cb, cc))
    assert a == b and a != c
    assert len({m["template"] for m in a}) >= 3
    assert {tuple(m["order"]) for m in a} == {("chosen", "rejected"), ("rejected", "chosen")}


def test_coh_inference_prompt_ends_with_the_positive_phrase(smollm2_tokenizer, pairs):
    tok = smollm2_tokenizer
    ids = coh_inference_ids(tok, pairs[0].prompt_ids)
    assert tok.decode(ids) == tok.decode(pairs[0].prompt_ids) + " " + COH_TEMPLATES[0][0]


def test_sft_mask_is_the_chosen_response(smollm2_tokenizer, pairs):
    tok = smollm2_tokenizer
    batch = SFTCollator(tok)(pairs[:4])
    for i, p in enumerate(pairs[:4]):
        runs = _labelled_runs(batch["labels"][i].tolist())
        assert [tok.decode(r) for r in runs] == [p.chosen + tok.eos_token]
