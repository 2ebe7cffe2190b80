"""Name -> object registries with a "did you mean" hint on a miss."""

import difflib

from .errors import UserError


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict = {}

    def register(self, name: str):
        def deco(obj):
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = obj
            return obj

        return deco

    def add(self, name: str, obj) -> None:
        self.register(name)(obj)

    def remove(self, name: str) -> None:
        """Unregister ``name`` (a test's plugin cleaning up)."""
        self._items.pop(name, None)

    def get(self, name: str):
        if name not in self._items:
            raise UserError(unknown_name_message(self.kind, name, self.names()))
        return self._items[name]

    def names(self) -> list:
        return sorted(self._items)

    def __contains__(self, name) -> bool:
        return name in self._items


def unknown_name_message(kind: str, name: str, known) -> str:
    close = difflib.get_close_matches(str(name), list(known), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown {kind} '{name}'{hint}; known: {', '.join(sorted(known))}"
