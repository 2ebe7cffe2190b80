"""Markdown rendering of the report blocks (see ``report.document``); images are linked relative to
OUTPUT_DIR, the best value of a column is **bold**."""


def _cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def table_md(t) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in t.header) + " |",
             "|" + "|".join("---" for _ in t.header) + "|"]
    for i, row in enumerate(t.rows):
        cells = [f"**{_cell(v)}**" if (i, j) in t.best else _cell(v) for j, v in enumerate(row)]
        lines.append("| " + " | ".join(cells) + " |")
    out = "\n".join(lines)
    if t.notes:
        out += "\n\n" + "\n".join(f"_{n}_" for n in t.notes)
    return out


def render_md(blocks: list) -> str:
    out = []
    for b in blocks:
        kind = b[0]
        if kind == "h":
            out.append("#" * b[1] + " " + b[2])
        elif kind == "p":
            out.append(b[1])
        elif kind == "ul":
            out.append("\n".join(f"- {x}" for x in b[1]))
        elif kind == "table":
            out.append(table_md(b[1]))
        elif kind == "img":
            _, _abs, rel, caption = b[:4]
            out.append(f"![{caption}]({rel})\n\n_{caption}_")
        elif kind == "code":
            out.append("```" + (b[2] if len(b) > 2 else "") + "\n" + b[1].rstrip("\n") + "\n```")
        elif kind == "marked":  # gold only **x**, predicted only _x_, both ***x***
            _, caption, segments = b
            wrap = {"": "{}", "gold": "**{}**", "pred": "_{}_", "both": "***{}***"}
            body = " ".join("".join(wrap[t].format(" ".join(s.split()) if t else s) for s, t in segments).split())
            out.append("> " + body + f"\n\n_{caption}_ (gold only **bold**, predicted only "
                       "_italic_, both ***bold italic***)")
        else:
            raise ValueError(f"unknown block {kind!r}")
    return "\n\n".join(out) + "\n"
