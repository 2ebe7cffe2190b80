"""Exact parameter accounting of a model over its layout (run.json ``params``)."""

from torch import nn


def count_params(model: nn.Module, layout) -> dict:
    """Exact counts over unique parameter tensors; trainable = requires_grad."""
    seen = set()
    total = trainable = head = 0
    layers = set()
    for n, p in model.named_parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        k = p.numel()
        total += k
        if p.requires_grad:
            trainable += k
            kind = layout.classify(n)
            if kind == "head":
                head += k
            elif isinstance(kind, tuple):
                layers.add(kind[1])
    return {
        "trainable": trainable,
        "total": total,
        "trainable_pct": round(100.0 * trainable / total, 4) if total else 0.0,
        "trainable_without_head": trainable - head,
        "head": head,
        "trainable_layers": sorted(layers),
    }
