"""Attention analysis (seed 003 section 4.2): where does each head look, before and after fine-tuning?

For a finished run, the base model (``record["model"]``, i.e. the pretrained backbone) and the
fine-tuned model (the run folder: a full HF model, or base + PEFT adapter) read the same dev
examples with eager attention (``output_attentions=True``). Per layer and head we report, averaged
over every real query token (padding queries dropped):

- ``entropy``: -sum_k a_k log a_k of the query's attention row (nats; 0 = one key, log(n_keys) =
  uniform). ``max_entropy`` is the mean log(n_keys) bound for the same queries (per model: PEFT
  virtual tokens add keys).
- shares of the attention mass (they sum to 1 per query): ``special`` on [CLS]/[SEP] (tokens
  outside both input texts), ``content`` on content words (tokens of a word that is neither a
  stopword, scikit-learn's English list plus contraction pieces, nor pure punctuation),
  ``function`` on stopwords and punctuation, ``virtual`` on PEFT virtual tokens (prompt/prefix
  tuning; 0 otherwise). Padding keys get no category; their share (``pad``, exactly 0 with a
  correct mask) is reported as a check.
- ``cls_content`` / ``cls_special``: the same shares for the [CLS] query alone (the token the
  classifier reads).

Writes ``attention.json`` (per layer x head, per-layer means, overall means and the fine-tuned
minus base deltas) and ``attention.png`` into the run folder.
"""

import os

import numpy as np
import torch

from ..errors import UserError

METRICS = ("entropy", "special", "content", "function", "virtual", "pad", "cls_content", "cls_special")
CONTRACTION_PIECES = {"s", "t", "d", "ll", "m", "re", "ve", "nt", "n't"}


def stopwords() -> frozenset:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS) | CONTRACTION_PIECES


def word_category(word: str, stop: frozenset) -> str:
    if not any(ch.isalnum() for ch in word):
        return "function"  # punctuation
    return "function" if word.lower() in stop else "content"


def token_categories(enc, i: int, texts: tuple, stop: frozenset) -> list:
    """Category of every token of example ``i`` of a fast-tokenizer encoding with offsets:
    'special' (not from either text: [CLS], [SEP]), 'content' or 'function' (by the whole word the
    token belongs to, so "##ing" pieces follow their word)."""
    seq_ids, word_ids, offsets = enc.sequence_ids(i), enc.word_ids(i), enc["offset_mapping"][i]
    spans = {}
    for j, (s, w) in enumerate(zip(seq_ids, word_ids)):
        if s is None or w is None:
            continue
        a, b = offsets[j]
        lo, hi = spans.get((s, w), (a, b))
        spans[(s, w)] = (min(lo, a), max(hi, b))
    cats = []
    for s, w in zip(seq_ids, word_ids):
        if s is None or w is None:
            cats.append("special")
        else:
            a, b = spans[(s, w)]
            cats.append(word_category(texts[s][a:b], stop))
    return cats


class _Accumulator:
    """Sums over real queries of per-(layer, head) statistics."""

    def __init__(self):
        self.sums = None
        self.n_queries = 0
        self.n_cls = 0
        self.max_entropy_sum = 0.0

    def add(self, attentions, mask: torch.Tensor, cats: torch.Tensor):
        """attentions: L x (B, H, Q, K); mask: (B, T) 1 = real token; cats: (B, T, 3) one-hot
        special/content/function (zeros at padding)."""
        B, T = mask.shape
        L = len(attentions)
        H = attentions[0].shape[1]
        if self.sums is None:
            self.sums = {m: torch.zeros(L, H, dtype=torch.float64) for m in METRICS}
        qmask = mask.to(torch.float64)  # (B, T)
        pad_keys = (1 - qmask)  # (B, T)
        n_keys = mask.sum(1).to(torch.float64)  # real keys per example
        for layer, att in enumerate(attentions):
            att = att.detach().to(torch.float64)
            vq, vk = att.shape[2] - T, att.shape[3] - T  # virtual query / key positions (prompt, prefix)
            a = att[:, :, vq:, :]  # (B, H, T, K) real-token queries
            real = a[..., vk:]  # (B, H, T, T)
            plogp = torch.where(a > 0, a * torch.log(a.clamp_min(1e-300)), torch.zeros_like(a))
            ent = -plogp.sum(-1)  # (B, H, T)
            w = qmask[:, None, :]  # (B, 1, T)
            s = self.sums
            s["entropy"][layer] += (ent * w).sum((0, 2))
            shares = torch.einsum("bhqk,bkc->bhqc", real, cats.to(torch.float64))  # (B, H, T, 3)
            for c, name in enumerate(("special", "content", "function")):
                s[name][layer] += (shares[..., c] * w).sum((0, 2))
                if name != "function":
                    s["cls_" + name][layer] += shares[:, :, 0, c].sum(0)
            s["virtual"][layer] += (a[..., :vk].sum(-1) * w).sum((0, 2)) if vk else 0.0
            s["pad"][layer] += (torch.einsum("bhqk,bk->bhq", real, pad_keys) * w).sum((0, 2))
        self.n_queries += int(mask.sum())
        self.n_cls += B
        vk = attentions[0].shape[3] - T
        self.max_entropy_sum += float((torch.log(n_keys + vk) * n_keys).sum())

    def result(self) -> dict:
        out = {}
        for m, v in self.sums.items():
            denom = self.n_cls if m.startswith("cls_") else self.n_queries
            out[m] = (v / denom).numpy()
        out["max_entropy"] = self.max_entropy_sum / self.n_queries
        return out


def _encode(tokenizer, examples, max_len: int):
    firsts = [e.texts[0] for e in examples]
    seconds = [e.texts[1] for e in examples] if len(examples[0].texts) > 1 else None
    return tokenizer(firsts, seconds, truncation=True, max_length=max_len, padding=True,
                     return_offsets_mapping=True, return_tensors="pt")


@torch.no_grad()
def attention_stats(model, tokenizer, examples, max_len: int = 128, batch_size: int = 32) -> dict:
    """Per-(layer, head) statistics of ``model`` over ``examples`` (see module doc)."""
    model.eval()
    stop = stopwords()
    acc = _Accumulator()
    index = {"special": 0, "content": 1, "function": 2}
    counts = {"special": 0, "content": 0, "function": 0}
    for start in range(0, len(examples), batch_size):
        chunk = examples[start:start + batch_size]
        enc = _encode(tokenizer, chunk, max_len)
        mask = enc["attention_mask"]
        cats = torch.zeros(mask.shape[0], mask.shape[1], 3)
        for i, ex in enumerate(chunk):
            for j, c in enumerate(token_categories(enc, i, ex.texts, stop)):
                if mask[i, j]:
                    cats[i, j, index[c]] = 1
                    counts[c] += 1
        inputs = {k: v for k, v in enc.items() if k != "offset_mapping"}
        out = model(**inputs, output_attentions=True)
        if not getattr(out, "attentions", None):
            raise UserError(f"{type(model).__name__} returned no attentions (eager attention needed)")
        acc.add(out.attentions, mask, cats)
    res = acc.result()
    res["token_counts"] = counts
    res["queries"] = acc.n_queries
    return res


def _eager(model):
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    else:  # older transformers
        model.config._attn_implementation = "eager"
    return model


def load_models(run_dir: str, record: dict):
    """(base model, fine-tuned model, tokenizer) for a finished run folder, both with eager attention."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ..models import load_backbone
    from ..tasks import get_task

    task = get_task(record["task"])
    if task.head not in ("classification", "regression"):
        raise UserError(f"{run_dir}: attention analysis supports encoder classification runs, not {task.head}")

    def backbone():
        try:
            return load_backbone(record["model"], task.head, task.num_labels)
        except UserError:  # alias or hub id unavailable: the folder the run loaded
            src = record.get("model_source")
            if not src or not os.path.isdir(src):
                raise
            return load_backbone(src, task.head, task.num_labels)

    base, tok, _, _ = backbone()
    _eager(base)
    if os.path.exists(os.path.join(run_dir, "adapter_config.json")):
        from peft import PeftModel

        tuned = PeftModel.from_pretrained(_eager(backbone()[0]), run_dir)
    elif os.path.exists(os.path.join(run_dir, "config.json")):
        tuned = AutoModelForSequenceClassification.from_pretrained(run_dir, attn_implementation="eager")
    else:
        raise UserError(f"{run_dir}: no weights (config.json or adapter_config.json) to analyse")
    if os.path.exists(os.path.join(run_dir, "tokenizer_config.json")):
        tok = AutoTokenizer.from_pretrained(run_dir)
    if not tok.is_fast:
        raise UserError(f"{run_dir}: the attention analysis needs a fast tokenizer (word offsets)")
    return base, tuned, tok


def _tolist(x):
    return np.round(np.asarray(x, dtype=float), 6).tolist()


def analyze_attention(run_dir: str, samples: int = 200, batch_size: int = 32, data_dir: str | None = None) -> dict:
    """Run the analysis for ``run_dir``; write attention.json and attention.png there; return the result."""
    from ..results.record import read_record, write_json_atomic
    from ..runner import subsample
    from ..tasks import get_task

    if not os.path.isfile(os.path.join(run_dir, "run.json")):
        raise UserError(f"{run_dir}: no run.json (not a tunelab run folder)")
    record = read_record(run_dir)
    if record.get("status") != "completed":
        raise UserError(f"{run_dir}/run.json: status is {record.get('status')!r}, not 'completed'")
    if samples < 1:
        raise UserError(f"--samples {samples}: must be >= 1")
    task = get_task(record["task"])
    data_dir = data_dir or record.get("config", {}).get("data_dir") or os.environ.get("TUNELAB_DATA_DIR")
    split = task.load(task.eval_splits[0], data_dir)
    examples = subsample(split.examples, samples, record.get("seed", 0))
    max_len = record.get("config", {}).get("max_seq_length", 128)
    base, tuned, tok = load_models(run_dir, record)
    b = attention_stats(base, tok, examples, max_len, batch_size)
    f = attention_stats(tuned, tok, examples, max_len, batch_size)
    per_head = {k: {m: _tolist(r[m]) for m in METRICS} for k, r in (("base", b), ("finetuned", f))}
    per_head["delta"] = {m: _tolist(f[m] - b[m]) for m in METRICS}
    per_layer = {k: {m: _tolist(np.asarray(r[m]).mean(1)) for m in METRICS}
                 for k, r in (("base", b), ("finetuned", f))}
    per_layer["delta"] = {m: _tolist((f[m] - b[m]).mean(1)) for m in METRICS}
    overall = {m: {"base": round(float(b[m].mean()), 6), "finetuned": round(float(f[m].mean()), 6),
                   "delta": round(float((f[m] - b[m]).mean()), 6)} for m in METRICS}
    L, H = b["entropy"].shape
    result = {
        "run_dir": os.path.abspath(run_dir), "task": record["task"], "method": record["method"],
        "model": record["model"], "split": split.name, "samples": len(examples), "query_tokens": b["queries"],
        "layers": L, "heads": H, "token_counts": b["token_counts"],
        "max_entropy": {"base": round(b["max_entropy"], 6), "finetuned": round(f["max_entropy"], 6)},
        "definitions": {
            "entropy": "mean over real query tokens of -sum a log a over keys (nats)",
            "special": "share of attention on [CLS]/[SEP]", "content": "share on content words",
            "function": "share on stopwords and punctuation", "virtual": "share on PEFT virtual tokens",
            "pad": "share on padding keys (check: 0)", "cls_content": "content share of the [CLS] query",
            "cls_special": "special share of the [CLS] query",
            "delta": "finetuned - base",
        },
        "overall": overall, "per_layer": per_layer, "per_head": per_head,
    }
    write_json_atomic(os.path.join(run_dir, "attention.json"), result)
    plot_attention(result, os.path.join(run_dir, "attention.png"))
    return result


def plot_attention(result: dict, path: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    metrics = [("entropy", "attention entropy (nats)"), ("content", "share on content words"),
               ("special", "share on [CLS]/[SEP]")]
    fig, axes = plt.subplots(2, 3, figsize=(14, 7.5))
    L = result["layers"]
    for col, (m, label) in enumerate(metrics):
        ax = axes[0, col]
        for key, style in (("base", "o--"), ("finetuned", "s-")):
            ax.plot(range(L), result["per_layer"][key][m], style, label=key)
        ax.set_title(f"{label}: mean over heads", fontsize=10)
        ax.set_xlabel("layer")
        ax.set_xticks(range(L))
        ax.legend(fontsize=8)
        ax = axes[1, col]
        d = np.asarray(result["per_head"]["delta"][m])
        lim = float(np.abs(d).max()) or 1e-9
        im = ax.imshow(d, aspect="auto", cmap="RdBu_r", norm=TwoSlopeNorm(0, -lim, lim), origin="lower")
        ax.set_title(f"change (fine-tuned - base): {m}", fontsize=10)
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        fig.colorbar(im, ax=ax, fraction=0.046)
    o = result["overall"]
    fig.suptitle(f"attention, {result['method']} on {result['task']} ({result['samples']} {result['split']} examples): "
                 f"entropy {o['entropy']['base']:.3f} -> {o['entropy']['finetuned']:.3f}, "
                 f"content share {o['content']['base']:.3f} -> {o['content']['finetuned']:.3f}, "
                 f"[CLS] query content share {o['cls_content']['base']:.3f} -> {o['cls_content']['finetuned']:.3f}",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

