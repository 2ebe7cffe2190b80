"""Equal budgets in a report: each layer-selecting method's achieved share and the study's budget.

A layer-selecting method is one that reads ``--layer-budget`` (the ``selects_layers`` trait:
selective, alf, lisa, autofreeze, badam). Its achieved share is run.json ``params.trainable_fraction_mean``:
the time-average over optimizer steps of the share of the backbone's non-head parameters
(embeddings + layers) that trained (``methods/dynamic.py``, ``methods/selective.py``); older
selective runs without it get the static ``trainable_without_head / (total - head)``.

The study's budget is the ``layer_budget`` the study gave (command-line override, shared option,
or one value across its task / model / method entries; ALF's ``alf_budget`` counts when no
``layer_budget`` is given, since the rivals were meant to run at ALF's budget), else the one
``params.layer_budget`` its runs recorded. A row whose share is more than ``TOLERANCE`` (2 points)
off it is flagged in the tables and named in the findings.
"""

from .stats import mean_std

TOLERANCE = 0.02
FLAG = "⚠"


def layer_methods() -> tuple:
    """The registered methods with the ``selects_layers`` trait (they read ``--layer-budget``)."""
    from ..methods import get_method, method_names

    return tuple(n for n in method_names() if get_method(n).selects_layers)


def _static_layer_method(name) -> bool:
    from ..methods import METHODS, method_names

    m = METHODS.get(name) if name in method_names() else None
    return bool(m and m.selects_layers and not m.changes_trainable_set)


def study_budget(meta: dict, rows: list) -> float | None:
    cfg = meta.get("config") or {}
    for level in ("overrides", "shared"):
        v = (cfg.get(level) or {}).get("layer_budget")
        if v is not None:
            return float(v)
    entries = [e for k in ("tasks", "models", "methods") for e in cfg.get(k) or []]
    vals = {float(e["options"]["layer_budget"]) for e in entries
            if (e.get("options") or {}).get("layer_budget") is not None}
    if not vals:
        vals = {float(e["options"]["alf_budget"]) for e in cfg.get("methods") or []
                if (e.get("options") or {}).get("alf_budget") is not None}  # only alf reads it
    if not vals:
        vals = {float((r.get("params") or {})["layer_budget"]) for r in rows
                if r.get("status") == "completed" and (r.get("params") or {}).get("layer_budget") is not None}
    return vals.pop() if len(vals) == 1 else None


def row_share(r: dict) -> float | None:
    p = r.get("params") or {}
    if p.get("trainable_fraction_mean") is not None:
        return float(p["trainable_fraction_mean"])
    # older static layer-subset runs (selective) without it: trainable_without_head is the share at every step
    if _static_layer_method(r.get("method")) and r.get("total") and r.get("trainable_without_head") is not None:
        return r["trainable_without_head"] / (r["total"] - (r.get("head") or 0))
    return None


def achieved_share(rows: list) -> tuple:
    """(mean, std) over the seeds' achieved shares; (None, None) without any."""
    return mean_std([row_share(r) for r in rows])


def off_budget(method: str, share: float | None, budget: float | None) -> bool:
    return (budget is not None and share is not None and method in layer_methods()
            and abs(share - budget) > TOLERANCE + 1e-12)


def budget_sentence(ts) -> str | None:
    """One findings sentence: the study budget, each layer-selecting method's share, the flagged ones."""
    ms = [m for m in ts.methods if m.rows and m.method in layer_methods() and m.share[0] is not None]
    if not ms or ts.layer_budget is None:
        return None
    b = ts.layer_budget
    shares = ", ".join(f"{m.label} {100 * m.share[0]:.1f} %" for m in ms)
    off = [m for m in ms if off_budget(m.method, m.share[0], b)]
    s = f"Layer budget {100 * b:g} % of the backbone; achieved time-averaged shares: {shares}."
    if off:
        s += (f" More than {100 * TOLERANCE:g} points off the budget ({FLAG} in the table), so not an equal-budget "
              f"comparison: {', '.join(m.label + (' (above)' if m.share[0] > b else ' (below)') for m in off)}.")
    else:
        s += f" All within {100 * TOLERANCE:g} points of it."
    return s
