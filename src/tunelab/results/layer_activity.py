"""``layer_activity.png``: which layers trained when, and how each scored (dynamic layer methods).

One row per layer (0 = next to the embeddings; an ``emb`` row when the embeddings ever trained),
one column per interval between two decisions, as wide as its steps. Blue = trained in that
interval, grey = frozen; the darker the cell, the higher the layer's score at the decision that
opened the interval (scores normalised per decision, max = 1; no score = lightest).
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap, Normalize  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402


def _cmap(name: str, lo: float, hi: float) -> ListedColormap:
    return ListedColormap(plt.get_cmap(name)(np.linspace(lo, hi, 256)))


def plot_layer_activity(timeline: list, path: str, num_layers: int, score_name: str = "", title: str = "") -> str:
    """Draw the timeline of a dynamic layer method (see ``methods/dynamic.py``) into ``path``."""
    trained, frozen = _cmap("Blues", 0.25, 0.95), _cmap("Greys", 0.04, 0.5)
    with_emb = any(e.get("embeddings") for e in timeline)
    rows = num_layers + (1 if with_emb else 0)
    fig = plt.figure(figsize=(10, 1.6 + 0.45 * rows))
    gs = fig.add_gridspec(1, 3, width_ratios=[1, 0.018, 0.018], wspace=0.25)
    ax, cax1, cax2 = fig.add_subplot(gs[0]), fig.add_subplot(gs[1]), fig.add_subplot(gs[2])
    end = 1
    for e in timeline:
        x0 = e["step"]
        x1 = e["until"] if e.get("until") is not None else x0 + 1
        end = max(end, x1)
        scores = e.get("scores") or [None] * num_layers
        known = [s for s in scores if s is not None]
        top = max(known) if known and max(known) > 0 else None
        for i in range(num_layers):
            s = scores[i] if i < len(scores) else None
            level = (s / top) if (s is not None and top) else 0.0
            color = trained(level) if i in e["active"] else frozen(level)
            y = i + (1 if with_emb else 0)
            ax.add_patch(Rectangle((x0, y), max(x1 - x0, 1e-9), 1, facecolor=color, edgecolor="white", linewidth=0.5))
        if with_emb:
            ax.add_patch(Rectangle((x0, 0), max(x1 - x0, 1e-9), 1, facecolor=trained(0.6) if e.get("embeddings") else frozen(0.0),
                                   edgecolor="white", linewidth=0.5))
    ax.set_xlim(0, end)
    ax.set_ylim(0, rows)
    labels = (["emb"] if with_emb else []) + [f"L{i}" for i in range(num_layers)]
    ax.set_yticks([r + 0.5 for r in range(rows)])
    ax.set_yticklabels(labels)
    ax.set_xlabel("optimizer step (white = before the first decision: only the head trains)"
                  if timeline and timeline[0]["step"] > 0 else "optimizer step")
    ax.set_ylabel("layer (L0 = next to embeddings)")
    ax.set_title(title or "layer activity", fontsize=10)
    cb1 = fig.colorbar(plt.cm.ScalarMappable(norm=Normalize(0, 1), cmap=trained), cax=cax1)
    cb1.ax.set_title("trained", fontsize=7)
    cb1.set_ticks([])
    cb2 = fig.colorbar(plt.cm.ScalarMappable(norm=Normalize(0, 1), cmap=frozen), cax=cax2)
    cb2.ax.set_title("frozen", fontsize=7)
    cb2.set_label("score / best score at the decision", fontsize=8)
    note = "blue = trained, grey = frozen; darker = higher score at the decision that opened the interval"
    if score_name:
        note += f"\nscore: {score_name}"
    fig.text(0.01, 0.01, note, fontsize=7.5, va="bottom")
    height = 1.6 + 0.45 * rows
    fig.subplots_adjust(left=0.07, right=0.92, top=1 - 0.4 / height, bottom=0.95 / height)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
