"""Parse a layer selection into global layer indices (``models/layout.py`` numbers the layers of
all stacks in module order).

One stack, or every stack alike: ``9-11``, ``0,5,9``, ``top:3``, ``bottom:2``, ``top:25%``, mixes
like ``0,4-5``. On a model with several stacks (encoder + decoder) a selection without a stack name
applies to each stack (``top:2`` = the top 2 encoder layers and the top 2 decoder layers); a part
prefixed by a stack name applies to that stack only: ``encoder:top:2,decoder:0-1``. Indices are
always counted inside their stack.
"""

from ..errors import UserError

HINT = "use e.g. 9-11, 0,5,9, top:3, bottom:2, top:25%, or encoder:top:2,decoder:0-1"


def _one_stack(s: str, spec, n: int, option: str, where: str) -> set:
    """Indices (0..n-1) selected by ``s`` (comma parts without stack names) inside one stack."""
    if s.startswith(("top:", "bottom:")):
        side, k = s.split(":", 1)
        if k.endswith("%"):
            try:
                frac = float(k[:-1]) / 100
            except ValueError:
                raise UserError(f"{option} {spec}: {k!r} is not a percentage") from None
            count = max(1, round(frac * n))
        else:
            try:
                count = int(k)
            except ValueError:
                raise UserError(f"{option} {spec}: {k!r} is not a number of layers") from None
        if not 1 <= count <= n:
            raise UserError(f"{option} {spec}: {where}has {n} layers (0-{n - 1})")
        return set(range(n - count, n)) if side == "top" else set(range(count))
    out = set()
    for part in s.split(","):
        try:
            if "-" in part:
                a, b = part.split("-", 1)
                lo, hi = int(a), int(b)
                if lo > hi:
                    raise UserError(f"{option} {spec}: range {part} is reversed")
                out.update(range(lo, hi + 1))
            else:
                out.add(int(part))
        except ValueError:
            raise UserError(f"{option} {spec}: {part!r} is not a layer index or range ({HINT})") from None
    bad = sorted(i for i in out if not 0 <= i < n)
    if bad:
        raise UserError(f"{option} {spec}: layer(s) {bad} out of range; {where}has {n} layers (0-{n - 1})")
    return out


def _stacks_of(layout_or_n):
    """[(name, num_layers, offset)] from a Layout or a plain layer count (one unnamed stack)."""
    if isinstance(layout_or_n, int):
        return [(None, layout_or_n, 0)]
    return [(s.name, s.num_layers, s.offset) for s in layout_or_n.stacks]


def _split_by_stack(s: str, names: list, spec, option: str) -> dict:
    """'encoder:top:2,decoder:0-1' -> {'encoder': 'top:2', 'decoder': '0-1'}; no prefix -> {None: s}."""
    groups, current = {}, None
    for part in s.split(","):
        head, _, rest = part.partition(":")
        if rest and head in names:
            current = head
            part = rest
        elif rest and head not in ("top", "bottom") and not head.isdigit():
            raise UserError(f"{option} {spec}: unknown layer stack '{head}' (stacks: {', '.join(names)})")
        groups.setdefault(current, []).append(part)
    if None in groups and len(groups) > 1:
        raise UserError(f"{option} {spec}: name the stack of every part once one part names one ({HINT})")
    return {k: ",".join(v) for k, v in groups.items()}


def parse_layers(spec, layout, option: str = "--layers") -> list:
    """Sorted global layer indices. ``layout``: a ``Layout`` or the number of layers of one stack."""
    if isinstance(spec, int):
        spec = str(spec)
    if isinstance(spec, (list, tuple)):
        spec = ",".join(str(s) for s in spec)
    s = str(spec).strip().replace(" ", "")
    if not s:
        raise UserError(f"{option}: empty layer selection")
    stacks = _stacks_of(layout)
    names = [name for name, _, _ in stacks if name]
    groups = _split_by_stack(s, names, spec, option)
    out = set()
    for name, n, offset in stacks:
        part = groups.get(None if None in groups else name)
        if part is None:
            continue
        where = "the model " if len(stacks) == 1 else f"stack {name} "
        out.update(offset + i for i in _one_stack(part, spec, n, option, where))
    return sorted(out)
