"""The report's alignment section (``tasks.REPORT_SECTIONS``): every alignment objective of a study
ranked in one table. The per-task tables of a report compare methods inside one task; a study of
alignment recipes compares objectives (tasks) on the same held-out pairs, which only this table does.

Rows: one per (task label, method label, model), mean over its seeds; ranked by held-out
``pref_accuracy_per_token`` (the ranking that does not favour short responses), then
``pref_accuracy``. Columns: both accuracies with the base model's value, chosen_logppl (lower is
better), the held-out pairs each seed's model newly ranks right / wrong against the base per token
with the exact sign test (run.json ``alignment.change_vs_base``: whether the accuracy change is more
than chance), win rate vs the base, train time and the training phase's peak RSS (run.json
``alignment.train_memory``), the reference model the objective held. Rows with equal accuracies share
a rank (1, 2, 2, 4): on a few dozen pairs most objectives tie, and their order then means nothing."""

from statistics import mean

from .. import REPORT_SECTIONS
from ...results.record import records_with

COLS = ("pref_accuracy_per_token", "pref_accuracy", "chosen_logppl", "win_rate")


def _mean(vals):
    vals = [v for v in vals if isinstance(v, (int, float))]
    return mean(vals) if vals else None


def _f(v, nd=3):
    return "—" if v is None else f"{v:.{nd}f}"


def _flips(recs: list) -> str:
    """Per seed: pairs gained-lost per token vs the base, and the sign test's p."""
    out = []
    for x in recs:
        c = ((x["alignment"].get("change_vs_base") or {}).get("pref_accuracy_per_token"))
        out.append("—" if not c else f"{c['gained']}-{c['lost']} (p {c['sign_test_p']:.2f})")
    return " / ".join(out)


def alignment_blocks(done: list) -> tuple:
    groups = {}
    for r, rec in records_with(done, "alignment"):
        groups.setdefault((r["task"], r["label"], r["model"]), []).append(rec)
    if not groups:
        return "Alignment objectives ranked", []
    rows = []
    for (task, label, model), recs in groups.items():
        m = lambda k: _mean([(x.get("metrics") or {}).get(k) for x in recs])  # noqa: E731
        al = recs[0]["alignment"]
        rows.append({
            "task": task, "label": label, "model": model, "seeds": len(recs), "objective": al.get("objective"),
            **{k: m(k) for k in COLS}, **{"base_" + k: m("base_" + k) for k in COLS[:3]},
            "train_s": _mean([(x.get("time") or {}).get("train_seconds") for x in recs]),
            "train_rss": _mean([(x["alignment"].get("train_memory") or {}).get("peak_rss_mb") for x in recs]),
            "reference": al.get("reference_model", "—"), "flips": _flips(recs),
        })
    key = lambda r: tuple(-(r[k] if r[k] is not None else float("-inf")) for k in COLS[:2])  # noqa: E731
    rows.sort(key=key)
    header = ["rank", "task (objective)", "method", "model", "seeds", "pref_accuracy_per_token (base)",
              "pref_accuracy (base)", "chosen_logppl (base)", "pairs gained-lost per token (sign-test p), per seed",
              "win_rate vs base", "train s",
              "training peak RSS MB", "reference model"]
    body = []
    for r in rows:
        rank = 1 + sum(key(other) < key(r) for other in rows)  # ties share a rank
        obj = r["task"] if r["task"] == r["objective"] else f"{r['task']} ({r['objective']})"
        body.append([str(rank), obj, r["label"], r["model"], str(r["seeds"]),
                     *(f"{_f(r[k])} ({_f(r['base_' + k])})" for k in COLS[:3]), r["flips"], _f(r["win_rate"]),
                     _f(r["train_s"], 1), _f(r["train_rss"], 0), r["reference"]])
    text = ("Every alignment run of the study on the same held-out pairs, one row per objective x method x model "
            "(mean over seeds), ranked by held-out pref_accuracy_per_token, then pref_accuracy (higher is better; "
            "chosen_logppl: lower is better). In brackets: the base model on the same pairs; a row that does not beat "
            "its bracket has not moved the ranking of the pairs, and a change whose sign test gives p >= 0.05 is within "
            "chance. Equal accuracies share a rank. Training peak RSS: the training phase alone "
            "(run.json alignment.train_memory), so objectives without a reference model show what they save.")
    return "Alignment objectives ranked", [("p", text), ("table", header, body)]


REPORT_SECTIONS.add("alignment", alignment_blocks)
