"""Continued masked-LM pretraining on unlabelled in-domain text: a domain model made the way SciBERT
(and "Don't Stop Pretraining", Gururangan et al. 2020) was, at a CPU budget.

``tunelab pretrain mlm --model minilm --data-dir ../shared/data/keyphrase --output-dir DIR`` trains on
the *train* abstracts of every keyphrase dataset in the folder (split by the keyphrase tasks' own rule,
so no validation or test document is ever seen); ``--corpus FILE_OR_DIR ...`` takes plain-text files
instead (one document per file; folders: every ``*.txt`` below them). The result is a Hugging Face
model folder (``BertForMaskedLM`` weights + tokenizer + ``pretrain.json``) that ``tunelab run --model DIR``
loads with any head (the MLM head's weights are then unused).

Recipe:
- documents cut into windows of ``seq_length`` tokens (each with its own [CLS]/[SEP]);
- whole-word masking (``DataCollatorForLanguageModeling(whole_word_mask=True)``): 15 % of the words,
  all their sub-tokens replaced by [MASK] (HF's whole-word variant has no random / kept tokens);
- a seeded share of the documents (``heldout_share``) is held out; their MLM loss is measured on the
  same fixed masks before and after;
- all-MiniLM-L6-v2 ships no MLM head: ``BertForMaskedLM`` adds a fresh transform layer (the decoder is
  tied to the word embeddings). A loss measured with that random head says nothing about the encoder,
  so the head is first trained alone (``head_warmup_steps``, encoder frozen); "before" is the held-out
  loss after that warm-up (the general encoder with a fitted head), "after" the loss after
  ``max_steps`` of training everything. The loss with the untouched random head is recorded too;
- the loss is computed on the masked positions only (the vocabulary projection of the other tokens
  is skipped: about half the compute of a full-vocabulary forward on this small encoder);
- AdamW, linear warm-up (6 %) and decay; stops at ``max_steps`` or ``max_minutes``, whichever first.
"""

import math
import os
import sys
import random
import time
import warnings
from pathlib import Path

import torch

from ...errors import UserError
from .. import PRETRAINING


# ---------------------------------------------------------------- corpus

def keyphrase_train_texts(data_dir) -> tuple:
    """Train-split document texts of every keyphrase dataset in ``data_dir`` (the folder itself when it has
    docsutf8/, else its children that do). Returns (texts, sources: [{dataset, folder, train_documents}])."""
    from .task import SPLIT_SEED
    from .data import DATASETS, read_keyphrase_dir, split_docs

    root = Path(data_dir)
    if not root.is_dir():
        raise UserError(f"--data-dir {root}: no such folder")
    folders = [root] if (root / "docsutf8").is_dir() else sorted(c for c in root.iterdir() if (c / "docsutf8").is_dir())
    if not folders:
        raise UserError(f"--data-dir {root}: no keyphrase dataset (a folder with docsutf8/ and keys/) in it")
    names = {v.lower(): k for k, v in DATASETS.items()}
    texts, sources = [], []
    for folder in folders:
        name = names.get(folder.name.lower(), "keyphrase")  # inspec / kdd / www: their task's split rule
        docs, _ = read_keyphrase_dir(folder)
        splits, rule = split_docs(docs, name, SPLIT_SEED)
        texts += [d.text for d in splits["train"]]
        sources.append({"dataset": name if name != "keyphrase" else folder.name, "folder": str(folder.resolve()),
                        "train_documents": len(splits["train"]), "split_rule": rule["rule"],
                        "train_ids_sha256_16": rule["ids_sha256_16"]["train"]})
    return texts, sources


def corpus_texts(paths) -> tuple:
    """Plain-text documents: each file one document; a folder gives every *.txt below it (sorted)."""
    from ...textio import read_text

    files = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(q for q in p.rglob("*.txt") if q.is_file())
            if not found:
                raise UserError(f"--corpus {p}: no .txt files in this folder")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise UserError(f"--corpus {p}: no such file or folder")
    texts = []
    for f in files:
        t = read_text(str(f), what="corpus text")
        if not t.strip():
            raise UserError(f"{f}: empty document")
        texts.append(t)
    return texts, [{"files": len(files), "first": str(files[0]) if files else None}]


# ---------------------------------------------------------------- model pieces

def masked_loss(model, batch):
    """Cross-entropy over the masked positions only (skips the vocabulary projection of the others)."""
    labels = batch["labels"]
    base = getattr(model, model.base_model_prefix, None)
    head = getattr(model, "cls", None) or getattr(model, "lm_head", None)
    if base is None or head is None:  # an architecture we do not know: its own (full-vocabulary) loss
        return model(**batch).loss
    hidden = base(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    sel = labels != -100
    logits = head(hidden[sel])
    return torch.nn.functional.cross_entropy(logits.float(), labels[sel])


@torch.no_grad()
def heldout_loss(model, batches) -> float:
    """Token-weighted mean MLM loss over fixed, pre-masked batches."""
    model.eval()
    total, n = 0.0, 0
    for b in batches:
        k = int((b["labels"] != -100).sum())
        if k:
            total += float(masked_loss(model, b)) * k
            n += k
    model.train()
    return total / n if n else float("nan")


def _windows(texts, tokenizer, seq_length):
    """Each text cut into windows of at most seq_length tokens (special tokens included), with the
    offsets and special-token masks the whole-word collator needs."""
    rows = []
    for t in texts:
        enc = tokenizer(t, truncation=True, max_length=seq_length, return_overflowing_tokens=True,
                        return_offsets_mapping=True, return_special_tokens_mask=True)
        for i in range(len(enc["input_ids"])):
            rows.append({k: enc[k][i] for k in ("input_ids", "attention_mask", "special_tokens_mask", "offset_mapping")})
    return rows


def _padded(collator, pad_id):
    """The HF collator on rows padded by hand first (tokenizer.pad leaves offset_mapping ragged)."""
    def collate(rows):
        n = max(len(r["input_ids"]) for r in rows)
        fill = {"input_ids": pad_id, "attention_mask": 0, "special_tokens_mask": 1, "offset_mapping": (0, 0)}
        return collator([{k: list(r[k]) + [fill[k]] * (n - len(r[k])) for k in fill} for r in rows])
    return collate


# ---------------------------------------------------------------- the command

def pretrain_mlm(model: str, output_dir: str, data_dir: str | None = None, corpus=None, max_steps: int = 300,
                 max_minutes: float = 8.0, head_warmup_steps: int = 60, seq_length: int = 256, batch_size: int = 16,
                 lr: float = 1e-4, mlm_probability: float = 0.15, heldout_share: float = 0.1, seed: int = 0,
                 overwrite: bool = False, log=print) -> dict:
    """Continue MLM pretraining of ``model`` on in-domain text; write the model folder and pretrain.json.
    Returns the record (also in OUTPUT_DIR/pretrain.json)."""
    from transformers import DataCollatorForLanguageModeling
    from transformers import get_linear_schedule_with_warmup

    from ...models.loading import load_plain
    from ...results.record import versions, write_json_atomic

    if (data_dir is None) == (not corpus):
        raise UserError("tunelab pretrain mlm: give either --data-dir (keyphrase datasets: their train abstracts) "
                        "or --corpus FILE_OR_DIR ...")
    for name, v, ok in (("--max-steps", max_steps, max_steps >= 1), ("--seq-length", seq_length, seq_length >= 8),
                        ("--batch-size", batch_size, batch_size >= 1), ("--lr", lr, lr > 0),
                        ("--head-warmup-steps", head_warmup_steps, head_warmup_steps >= 0),
                        ("--mlm-probability", mlm_probability, 0 < mlm_probability < 1),
                        ("--heldout-share", heldout_share, 0 < heldout_share < 1),
                        ("--max-minutes", max_minutes, max_minutes > 0)):
        if not ok:
            raise UserError(f"{name} {v}: out of range")
    if os.path.exists(output_dir) and (not os.path.isdir(output_dir) or (os.listdir(output_dir) and not overwrite)):
        raise UserError(f"--output-dir {output_dir}: exists and is not an empty folder (pass --overwrite to replace it)")
    texts, sources = keyphrase_train_texts(data_dir) if data_dir else corpus_texts(corpus)
    if len(texts) < 2:
        raise UserError("tunelab pretrain mlm: the corpus needs at least 2 documents (one is held out)")

    mlm, tok, source = load_plain(model, "AutoModelForMaskedLM")
    if not getattr(tok, "is_fast", False) or tok.mask_token is None:
        raise UserError(f"--model {model}: needs a fast tokenizer with a mask token for whole-word masking")
    torch.manual_seed(seed)

    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    n_held = max(1, round(heldout_share * len(texts)))
    held = [texts[i] for i in sorted(order[:n_held])]
    train = [texts[i] for i in sorted(order[n_held:])]
    train_rows, held_rows = _windows(train, tok, seq_length), _windows(held, tok, seq_length)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "random token replacement is not supported with whole word masking"
        collate = _padded(DataCollatorForLanguageModeling(tok, mlm_probability=mlm_probability, whole_word_mask=True,
                                                          seed=seed), tok.pad_token_id)
        held_collate = _padded(DataCollatorForLanguageModeling(tok, mlm_probability=mlm_probability,
                                                               whole_word_mask=True, seed=seed + 1), tok.pad_token_id)
    held_batches = [held_collate(held_rows[i:i + batch_size]) for i in range(0, len(held_rows), batch_size)]
    held_batches = [{k: v for k, v in b.items() if k in ("input_ids", "attention_mask", "labels")} for b in held_batches]
    gen = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(train_rows, batch_size=batch_size, shuffle=True, generator=gen,
                                         collate_fn=collate, drop_last=len(train_rows) > batch_size)

    def batches():
        while True:
            for b in loader:
                yield {k: v for k, v in b.items() if k in ("input_ids", "attention_mask", "labels")}

    stream = batches()
    t_start = time.perf_counter()
    deadline = t_start + 60 * max_minutes
    record = {"model": model, "model_source": source, "architecture": type(mlm).__name__,
              "corpus": {"sources": sources, "documents": len(texts), "train_documents": len(train),
                         "heldout_documents": len(held), "train_windows": len(train_rows),
                         "heldout_windows": len(held_rows),
                         "heldout_masked_tokens": int(sum(int((b["labels"] != -100).sum()) for b in held_batches))},
              "settings": {"max_steps": max_steps, "max_minutes": max_minutes, "head_warmup_steps": head_warmup_steps,
                           "seq_length": seq_length, "batch_size": batch_size, "lr": lr,
                           "mlm_probability": mlm_probability, "whole_word_mask": True, "heldout_share": heldout_share,
                           "seed": seed, "threads": torch.get_num_threads()}}
    loss_random_head = heldout_loss(mlm, held_batches)
    log(f"held-out MLM loss with the untrained head: {loss_random_head:.4f}")

    # 1. the MLM head alone (encoder and tied embeddings frozen): a fair "before"
    head = getattr(mlm, "cls", None) or getattr(mlm, "lm_head", None)
    head_params = [p for n, p in head.named_parameters() if p is not mlm.get_input_embeddings().weight] if head else []
    warm_steps = 0
    if head_params and head_warmup_steps:
        for p in mlm.parameters():
            p.requires_grad_(False)
        for p in head_params:
            p.requires_grad_(True)
        opt = torch.optim.AdamW(head_params, lr=1e-3)
        mlm.train()
        while warm_steps < head_warmup_steps and time.perf_counter() < deadline:
            loss = masked_loss(mlm, next(stream))
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            warm_steps += 1
        for p in mlm.parameters():
            p.requires_grad_(True)
    loss_before = heldout_loss(mlm, held_batches)
    log(f"held-out MLM loss, general encoder + fitted head ({warm_steps} head steps): {loss_before:.4f}")

    # 2. everything trains
    no_decay = lambda n, p: p.ndim < 2 or "norm" in n.lower() or n.endswith(".bias")  # noqa: E731
    named = [(n, p) for n, p in mlm.named_parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": [p for n, p in named if not no_decay(n, p)], "weight_decay": 0.01},
                             {"params": [p for n, p in named if no_decay(n, p)], "weight_decay": 0.0}], lr=lr)
    sched = get_linear_schedule_with_warmup(opt, math.ceil(0.06 * max_steps), max_steps)
    mlm.train()
    losses, step, t_train = [], 0, time.perf_counter()
    while step < max_steps and time.perf_counter() < deadline:
        loss = masked_loss(mlm, next(stream))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(mlm.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        step += 1
        if step % 50 == 0:
            log(f"step {step}/{max_steps}: train loss (last 50) {sum(losses[-50:]) / len(losses[-50:]):.4f}")
    train_seconds = time.perf_counter() - t_train
    loss_after = heldout_loss(mlm, held_batches)
    log(f"held-out MLM loss after {step} steps: {loss_after:.4f} (before {loss_before:.4f})")

    os.makedirs(output_dir, exist_ok=True)
    for f in os.listdir(output_dir):  # --overwrite: only our own file names would remain otherwise
        fp = os.path.join(output_dir, f)
        if os.path.isfile(fp):
            os.unlink(fp)
    mlm.save_pretrained(output_dir, safe_serialization=True)
    tok.save_pretrained(output_dir)
    record.update({
        "heldout_loss": {"random_head": round(loss_random_head, 4), "before": round(loss_before, 4),
                         "after": round(loss_after, 4),
                         "perplexity_before": round(math.exp(loss_before), 2),
                         "perplexity_after": round(math.exp(loss_after), 2)},
        "steps": step, "head_warmup_steps_done": warm_steps,
        "stopped_by": "max_steps" if step >= max_steps else "max_minutes",
        "train_loss_first_50": round(sum(losses[:50]) / max(1, len(losses[:50])), 4) if losses else None,
        "train_loss_last_50": round(sum(losses[-50:]) / max(1, len(losses[-50:])), 4) if losses else None,
        "train_seconds": round(train_seconds, 1), "total_seconds": round(time.perf_counter() - t_start, 1),
        "versions": versions(), "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    write_json_atomic(os.path.join(output_dir, "pretrain.json"), record)
    return record


# ------------------------------------------------------------------ `tunelab pretrain mlm` (pretrain/cli.py)
KIND = "mlm"
HELP = "continued masked-LM pretraining (whole-word masking) on in-domain text: a domain-adapted encoder"


def add_arguments(m) -> None:
    from ...config import add_option  # tunelab run's options: same flags, types and range checks

    add_option(m, "model", help="model alias or folder (default: minilm)")
    src = m.add_mutually_exclusive_group(required=True)
    add_option(src, "data_dir", help="keyphrase data (docsutf8/ + keys/ folders, e.g. ../shared/data/keyphrase): "
                                     "the train-split abstracts of every dataset in it, never validation/test")
    src.add_argument("--corpus", nargs="+", metavar="PATH", help="plain-text files or folders of *.txt (a file = a document)")
    add_option(m, "output_dir", required=True, help="the new model folder")
    m.add_argument("--max-steps", type=int, default=300, help="optimizer steps of MLM training (default 300)")
    m.add_argument("--max-minutes", type=float, default=8.0, help="wall-clock budget; stops early when reached (default 8)")
    m.add_argument("--head-warmup-steps", type=int, default=60,
                   help="steps training the fresh MLM head alone before the 'before' loss (default 60)")
    m.add_argument("--seq-length", type=int, default=256, help="tokens per window (default 256)")
    add_option(m, "batch_size", default=16, help="windows per step (default 16)")
    add_option(m, "lr", default=1e-4, help="peak learning rate (default 1e-4)")
    m.add_argument("--mlm-probability", type=float, default=0.15, help="share of words masked (default 0.15)")
    m.add_argument("--heldout-share", type=float, default=0.1, help="documents held out for the loss (default 0.1)")
    add_option(m, "seed")
    add_option(m, "threads")
    add_option(m, "overwrite", help="replace a non-empty output folder")


def main(ns) -> int:
    import torch

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

PRETRAINING.add(KIND, sys.modules[__name__])
