"""Report figures (matplotlib, Agg): per task a Pareto plot (main metric vs trainable % on a log
axis, and vs train time) and the learning curves (dev main metric per epoch)."""

import os

import numpy as np

from .tables import TaskSummary, higher_is_better


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def pareto_front(points: list) -> list:
    """Non-dominated points for (cost, quality): lower cost, higher quality. Returns them by cost."""
    front, best = [], -np.inf
    for c, q, *rest in sorted(points, key=lambda p: (p[0], -p[1])):
        if q > best:
            front.append((c, q, *rest))
            best = q
    return front


def pareto_plot(ts: TaskSummary, path: str) -> str:
    plt = _plt()
    done = [m for m in ts.methods if m.rows and ts.main_metric in m.metrics]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    costs = [("trainable parameters, % of model (log scale, head included)", lambda m: (m.params["pct"], None), True),
             ("train time (s)", lambda m: m.train_seconds, False)]
    for ax, (xlabel, getx, logx) in zip(axes, costs):
        pts = []
        for i, m in enumerate(done):
            x, xerr = getx(m)
            y, yerr = m.metrics[ts.main_metric]
            if x is None or y is None:
                continue
            ax.errorbar([x], [y], xerr=None if xerr is None else [xerr], yerr=None if yerr is None else [yerr],
                        fmt="o", color=f"C{i % 10}", capsize=3, label=m.label)
            ax.annotate(m.label, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
            pts.append((x, y))
        sign = 1 if higher_is_better(ts.main_metric) else -1
        front = [(c, sign * q) for c, q in pareto_front([(c, sign * q) for c, q in pts])]
        if len(front) > 1:
            ax.plot([p[0] for p in front], [p[1] for p in front], "--", color="grey", lw=1, label="Pareto front")
        if ts.main_metric in ts.majority:
            ax.axhline(ts.majority[ts.main_metric], color="red", ls=":", lw=1, label="majority class")
        if logx:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"dev {ts.main_metric}")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="best")
    fig.suptitle(f"{ts.task} ({ts.model}): quality vs cost")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def curves_plot(ts: TaskSummary, path: str) -> str | None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    drawn = 0
    for i, m in enumerate(ts.methods):
        per_epoch = {}
        for r in m.rows:
            for h in r.get("history") or []:
                v = (h.get("metrics") or {}).get(ts.main_metric)
                if v is not None:
                    per_epoch.setdefault(h["epoch"], []).append(v)
        if not per_epoch:
            continue
        ep = sorted(per_epoch)
        mean = [np.mean(per_epoch[e]) for e in ep]
        ax.plot(ep, mean, "o-", color=f"C{i % 10}", label=m.label)
        if m.n > 1:
            std = [np.std(per_epoch[e], ddof=1) if len(per_epoch[e]) > 1 else 0 for e in ep]
            ax.fill_between(ep, np.subtract(mean, std), np.add(mean, std), color=f"C{i % 10}", alpha=0.15)
        drawn += 1
    if not drawn:
        plt.close(fig)
        return None
    if ts.main_metric in ts.majority:
        ax.axhline(ts.majority[ts.main_metric], color="red", ls=":", lw=1, label="majority class")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"dev {ts.main_metric}")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title(f"{ts.task} ({ts.model}): learning curves")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def make_plots(summaries: list, out_dir: str) -> dict:
    """{(model, task): {"pareto": path, "curves": path|None}}"""
    os.makedirs(out_dir, exist_ok=True)
    out = {}
    for ts in summaries:
        stem = f"{ts.model}-{ts.task}".replace("/", "_")
        if not any(m.rows for m in ts.methods):
            continue
        out[(ts.model, ts.task)] = {
            "pareto": pareto_plot(ts, os.path.join(out_dir, f"pareto-{stem}.png")),
            "curves": curves_plot(ts, os.path.join(out_dir, f"curves-{stem}.png")),
        }
    return out


def cd_diagram(agg, groups: list, path: str, title: str = "") -> str | None:
    """Critical-difference diagram (Demšar 2006): each method at its mean rank on a rank axis (1 = best,
    left), the Nemenyi CD as a bar above the axis, and thick bars joining methods whose mean ranks
    differ by less than the CD (``groups``: report/overview.py ``cliques``). None when the Friedman test did
    not apply."""
    if agg.cd is None or not agg.labels:
        return None
    plt = _plt()
    k = len(agg.labels)
    order = sorted(agg.labels, key=lambda lb: agg.mean_rank[lb])
    half = (k + 1) // 2
    rows = max(half, k - half)
    height = 1.0 + 0.25 * rows + 0.16 * len(groups)
    fig, ax = plt.subplots(figsize=(8, height))
    ax.set_xlim(0.5, k + 0.5)
    top = 0.0
    ax.set_ylim(-(0.35 + 0.16 * len(groups) + 0.28 * rows), 0.8)
    ax.hlines(top, 1, k, color="black", lw=1)
    for r in range(1, k + 1):
        ax.vlines(r, top, top + 0.08, color="black", lw=1)
        ax.text(r, top + 0.12, str(r), ha="center", va="bottom", fontsize=9)
    # CD bar above the axis, left-aligned at rank 1
    ax.hlines(top + 0.55, 1, 1 + agg.cd, color="C3", lw=2)
    ax.vlines([1, 1 + agg.cd], top + 0.5, top + 0.6, color="C3", lw=2)
    ax.text(1 + agg.cd / 2, top + 0.61, f"CD = {agg.cd:.2f}", ha="center", va="bottom", fontsize=9, color="C3")
    # group bars just below the axis
    for g, members in enumerate(groups):
        y = top - 0.12 - 0.16 * g
        ax.hlines(y, agg.mean_rank[members[0]] - 0.03, agg.mean_rank[members[-1]] + 0.03, color="grey", lw=4, alpha=0.7)
    base = top - 0.2 - 0.16 * len(groups)
    for i, lb in enumerate(order):
        r = agg.mean_rank[lb]
        left = i < half
        row = i if left else k - 1 - i
        y = base - 0.28 * row
        xend = 0.55 if left else k + 0.45
        ax.plot([r, r, xend], [top, y, y], color="black", lw=0.8)
        ax.text(xend + (-0.02 if left else 0.02), y, f"{lb} ({r:.2f})", ha="right" if left else "left",
                va="center", fontsize=9)
    ax.axis("off")
    p = "< 0.001" if agg.p < 0.001 else f"= {agg.p:.3f}"
    ax.set_title((title + ": " if title else "") + f"mean rank over {len(agg.tasks)} tasks "
                 f"(Friedman χ² = {agg.statistic:.2f}, p {p})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path
