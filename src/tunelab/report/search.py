"""The report's "Tuning (search)" section: for a compare run with ``search:`` (compare/search.py),
per task one table: each method's grid, its score on the selection split at every point, and the
choice that the grid's runs then used. Built from meta ``search`` of the store alone."""

from .tables import Table


def _v(x) -> str:
    return f"{x:.3g}" if isinstance(x, float) else str(x)


def _point(values: dict) -> str:
    return ", ".join(f"{k}={_v(v)}" for k, v in values.items())


def search_blocks(meta: dict) -> list:
    outcomes = meta.get("search") or []
    if not outcomes:
        return []
    frac = meta.get("search_fraction")
    split = next((o["selection_split"] for o in outcomes if o.get("selection_split")), None) or {}
    sizes, used = split.get("sizes") or {}, split.get("used") or {}
    how = (f"{'stratified by label, ' if split.get('stratified') else ''}seed {split.get('seed')}: "
           f"{sizes.get('selection', '?')} of {sizes.get('selection', 0) + sizes.get('train', 0) or '?'} training "
           f"examples held out; the search runs used {used.get('train', '?')} of the rest for training and "
           f"{used.get('selection', '?')} held-out examples to score" if split else "")
    out = [("h", 2, "Tuning (search)"),
           ("p", "Each searched method was tuned per task before the grid ran: every grid point trained once (the "
                 f"study's first seed) on the training data minus a selection split ({_v(frac)} of it; {how}) and "
                 "was scored on that selection split, never on the split reported above. The best point in the "
                 "main metric's direction was chosen (a tie goes to the default) and then run with every seed. "
                 "`search: auto` is lr x {1/3, 1, 3} around each method's default lr (compare/search.py).")]
    for task in dict.fromkeys(o["task"] for o in outcomes):
        rows = []
        for o in (o for o in outcomes if o["task"] == task):
            pts = []
            for p in o["points"]:
                s = "failed" if p["score"] is None else f"{p['score']:.4f}"
                mark = " (chosen)" if o["choice"] is not None and p["values"] == o["choice"] else ""
                pts.append(f"{_point(p['values'])}: {s}{mark}")
            choice = _point(o["choice"]) if o["choice"] else "none completed: default kept"
            rows.append([o["label"] + (f" ({o['model']})" if len({x['model'] for x in outcomes}) > 1 else ""),
                         _point(o["default"]), "; ".join(pts), choice,
                         "yes" if o.get("choice_is_default") else "no"])
        metric = next((o["metric"] for o in outcomes if o["task"] == task and o["metric"]), "main metric")
        out.append(("h", 3, f"{task}: selection-split {metric} per grid point"))
        out.append(("table", Table(["method", "default", f"grid point: {metric} on the selection split", "chosen",
                                    "chosen = default"], rows)))
    return out
