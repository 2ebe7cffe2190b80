"""Scoring with a model, batched and without gradients: response log-likelihoods, reward-model
scores, greedy generations."""

import contextlib

import torch

from ...train.batching import right_pad

STOP_STRINGS = ("\n\nHuman:", "\n\nAssistant:")


@contextlib.contextmanager
def eval_mode(model):
    was = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)


def _chunks(items, n):
    for i in range(0, len(items), n):
        yield items[i:i + n]


@torch.no_grad()
def response_logprobs(model, items, pad_id: int, batch_size: int, device) -> list:
    """items: [(context_ids, response_ids)] -> [(sum log p(response | context), n_response_tokens)]."""
    out = []
    with eval_mode(model):
        for batch in _chunks(items, batch_size):
            ids, att = right_pad([c + r for c, r in batch], pad_id)
            labels = torch.full_like(ids, -100)
            for i, (c, r) in enumerate(batch):
                labels[i, len(c):len(c) + len(r)] = torch.tensor(r, dtype=torch.long)
            logits = model(input_ids=ids.to(device), attention_mask=att.to(device)).logits
            logits = logits[:, -ids.shape[1]:]  # prompt tuning prepends virtual tokens
            tgt = labels[:, 1:].to(logits.device)
            mask = tgt != -100
            logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
            tok_lp = logp.gather(-1, tgt.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
            out.extend(zip(tok_lp.sum(1).tolist(), mask.sum(1).tolist()))
    return out


@torch.no_grad()
def reward_scores(model, seqs, pad_id: int, batch_size: int, device) -> list:
    """seqs: [token ids] -> scalar reward per sequence (sequence-classification head, 1 label)."""
    out = []
    with eval_mode(model):
        for batch in _chunks(seqs, batch_size):
            ids, att = right_pad(batch, pad_id)
            logits = model(input_ids=ids.to(device), attention_mask=att.to(device)).logits
            out.extend(logits[:, 0].float().cpu().tolist())
    return out


def clean_generation(text: str) -> str:
    """Cut a generated reply where the model starts writing the next dialogue turn."""
    cut = min([i for i in (text.find(s) for s in STOP_STRINGS) if i >= 0], default=len(text))
    return text[:cut].rstrip()


@torch.no_grad()
def generate(model, tok, prompts_ids, max_new_tokens: int, batch_size: int, device) -> list:
    """Greedy continuations (text, cleaned) of each prompt (token ids)."""
    from transformers import GenerationConfig

    # use_cache explicitly: transformers' Trainer leaves model.config.use_cache = False after training
    gen_cfg = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id,
                               eos_token_id=tok.eos_token_id, use_cache=True)
    out = []
    with eval_mode(model):
        for batch in _chunks(prompts_ids, batch_size):
            L = max(len(p) for p in batch)
            ids = torch.full((len(batch), L), tok.pad_token_id, dtype=torch.long)
            att = torch.zeros((len(batch), L), dtype=torch.long)
            for i, p in enumerate(batch):  # left padding for generation
                ids[i, L - len(p):] = torch.tensor(p, dtype=torch.long)
                att[i, L - len(p):] = 1
            seqs = model.generate(input_ids=ids.to(device), attention_mask=att.to(device), generation_config=gen_cfg)
            for row in seqs[:, L:].tolist():
                if tok.eos_token_id in row:
                    row = row[:row.index(tok.eos_token_id)]
                out.append(clean_generation(tok.decode(row, skip_special_tokens=True)))
    return out
