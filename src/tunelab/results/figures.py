"""Figures drawn from a finished run's record, beside run.json (listed in its ``figures``).

Today: ``layer_activity.png`` for a run with a layer timeline (the dynamic layer methods' ``layers``
entry, methods/dynamic.py). Drawing lives here, not in the methods, so a method only records data.
"""

import os


def plot_record(record: dict, out_dir: str) -> list:
    """Draw every figure the record has data for; returns the file names written."""
    files = []
    timeline = record.get("layers")
    if timeline:
        from .layer_activity import plot_layer_activity

        details = record.get("method_details") or {}
        share = (record.get("params") or {}).get("trainable_fraction_mean")
        title = f"{record['method']} on {record['task']}" + (f" - trainable share mean {share:.1%}" if share is not None else "")
        plot_layer_activity(timeline, os.path.join(out_dir, "layer_activity.png"),
                            num_layers=record["layout"]["num_layers"], score_name=details.get("score", ""), title=title)
        files.append("layer_activity.png")
    return files
