"""Reports of a compare study: ``report.md`` and a self-contained ``report.html`` in OUTPUT_DIR,
built from ``results.sqlite`` (tables, statistics, findings, plots)."""

import os

from ..errors import UserError


def write_report(output_dir: str) -> tuple:
    """Write OUTPUT_DIR/report.md and report.html; returns their paths."""
    from ..results.store import Store
    from .document import build
    from .render_html import render_html
    from .render_md import render_md

    db = os.path.join(output_dir, "results.sqlite")
    if not os.path.isfile(db):
        raise UserError(f"{output_dir}: no results.sqlite (run tunelab compare first)")
    store = Store(db)
    try:
        title, blocks = build(output_dir, store)
    finally:
        store.close()
    md, html = os.path.join(output_dir, "report.md"), os.path.join(output_dir, "report.html")
    _write(md, render_md(blocks))
    _write(html, render_html(blocks, title))
    return md, html


def _write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
