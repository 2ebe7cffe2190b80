"""Self-contained HTML rendering of the report blocks: inline CSS, every image embedded as a base64
``data:`` URI, no script and no external reference, so the file can be mailed or archived alone."""

import base64
import html

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1300px;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { border-bottom: 1px solid #bbb; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; white-space: nowrap; }
th { background: #f0f0f0; white-space: normal; max-width: 11em; vertical-align: bottom; }
td:first-child, th:first-child { text-align: left; }
td.best { font-weight: bold; background: #e6f4e6; }
td.tie { background: #f1f7e9; }
ul.findings li { margin: .2em 0; }
p.rec { background: #f4f8ff; border-left: 4px solid #3b6fb6; padding: .4em .8em; margin: .3em 0; }
p.small { font-size: 12px; color: #555; }
td.flag { font-weight: bold; background: #fde2e2; color: #9b1c1c; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 13px; color: #555; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: 12px; }
.scroll { overflow-x: auto; }
.kp { white-space: pre-wrap; border-left: 3px solid #ccc; padding-left: .8em; font-size: 14px; }
mark.gold { background: #fde68a; } mark.pred { background: #bfdbfe; } mark.both { background: #86efac; }
"""


def _e(s) -> str:
    return html.escape(str(s))


def table_html(t) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in t.header)
    body = []
    for i, row in enumerate(t.rows):
        cells = "".join(f'<td class="best">{_e(v)}</td>' if (i, j) in t.best else
                        f'<td class="flag">{_e(v)}</td>' if (i, j) in t.flagged else
                        f'<td class="tie">{_e(v)}</td>' if (i, j) in getattr(t, "tied", ()) else f"<td>{_e(v)}</td>"
                        for j, v in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    notes = "".join(f"<p><em>{_e(n)}</em></p>" for n in t.notes)
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'
            + notes)


def image_data_uri(path: str) -> str:
    with open(path, "rb") as f:
        data = base64.b64encode(f.read()).decode("ascii")
    mime = "image/svg+xml" if path.endswith(".svg") else "image/jpeg" if path.endswith((".jpg", ".jpeg")) else "image/png"
    return f"data:{mime};base64,{data}"


def render_html(blocks: list, title: str) -> str:
    out = []
    for b in blocks:
        kind = b[0]
        if kind == "h":
            out.append(f"<h{b[1]}>{_e(b[2])}</h{b[1]}>")
        elif kind == "p":  # ("p", text[, css class])
            out.append(f'<p class="{_e(b[2])}">{_e(b[1])}</p>' if len(b) > 2 else f"<p>{_e(b[1])}</p>")
        elif kind == "ul":  # ("ul", [item, ...][, css class])
            cls = f' class="{_e(b[2])}"' if len(b) > 2 else ""
            out.append(f"<ul{cls}>" + "".join(f"<li>{_e(x)}</li>" for x in b[1]) + "</ul>")
        elif kind == "table":
            out.append(table_html(b[1]))
        elif kind == "img":
            _, path, _rel, caption = b[:4]
            out.append(f'<figure><img src="{image_data_uri(path)}" alt="{_e(caption)}">'
                       f"<figcaption>{_e(caption)}</figcaption></figure>")
        elif kind == "code":
            out.append(f"<pre>{_e(b[1])}</pre>")
        elif kind == "marked":  # report/keyphrase.py: a document with gold / predicted phrases
            _, caption, segments = b
            text = "".join(f'<mark class="{t}">{_e(s)}</mark>' if t else _e(s) for s, t in segments)
            out.append(f'<figure><div class="kp">{text}</div><figcaption>{_e(caption)} — '
                       f'<mark class="gold">gold only</mark> <mark class="pred">predicted only</mark> '
                       f'<mark class="both">both</mark></figcaption></figure>')
        else:
            raise ValueError(f"unknown block {kind!r}")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>'
            f"<body>\n" + "\n".join(out) + "\n</body></html>\n")
