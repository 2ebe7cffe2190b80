"""Parse a layer selection: ``9-11``, ``0,5,9``, ``top:3``, ``bottom:2``, ``top:25%``, mixes like ``0,4-5``."""

from ..errors import UserError


def parse_layers(spec, num_layers: int, option: str = "--layers") -> list:
    if isinstance(spec, int):
        spec = str(spec)
    if isinstance(spec, (list, tuple)):
        spec = ",".join(str(s) for s in spec)
    s = str(spec).strip().replace(" ", "")
    if not s:
        raise UserError(f"{option}: empty layer selection")
    if s.startswith(("top:", "bottom:")):
        side, n = s.split(":", 1)
        if n.endswith("%"):
            try:
                frac = float(n[:-1]) / 100
            except ValueError:
                raise UserError(f"{option} {spec}: {n!r} is not a percentage") from None
            count = max(1, round(frac * num_layers))
        else:
            try:
                count = int(n)
            except ValueError:
                raise UserError(f"{option} {spec}: {n!r} is not a number of layers") from None
        if not 1 <= count <= num_layers:
            raise UserError(f"{option} {spec}: the model has {num_layers} layers (0-{num_layers - 1})")
        return list(range(num_layers - count, num_layers)) if side == "top" else list(range(count))
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
            raise UserError(f"{option} {spec}: {part!r} is not a layer index or range "
                            "(use e.g. 9-11, 0,5,9, top:3, bottom:2, top:25%)") from None
    bad = sorted(i for i in out if not 0 <= i < num_layers)
    if bad:
        raise UserError(f"{option} {spec}: layer(s) {bad} out of range; the model has {num_layers} layers (0-{num_layers - 1})")
    return sorted(out)
