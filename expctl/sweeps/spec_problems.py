"""Collecting every problem of a sweep file (with its ``file:line``) instead of stopping at one."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from expctl.errors import did_you_mean


class Problems:
    """Collects (path, message) pairs; paths carry ``file:line:`` where the YAML gave one."""

    def __init__(self, source: str, lines: dict[str, int]):
        self.source = source
        self.lines = lines
        self.items: list[tuple[str, str]] = []
        self.warnings: list[str] = []

    def add(self, path: str, message: str) -> None:
        line = self._line(path)
        where = f"{Path(self.source).name}:{line}: {path}" if line else path
        self.items.append((where, message))

    def _line(self, path: str) -> int | None:
        # A value without its own line (a default, a flattened name) points at its parent key.
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path.rpartition(".")[0]
        return None

    def unknown_key(
        self,
        path: str,
        key: str,
        allowed: tuple[str, ...] | list[str],
        also: tuple[str, ...] = (),
    ) -> None:
        close = did_you_mean(key, list(allowed)) or did_you_mean(key, list(also))
        suffix = f"; did you mean {close[0]!r}?" if close else f"; allowed: {', '.join(allowed)}"
        self.add(f"{path}.{key}" if path else key, f"unknown key {key!r}{suffix}")

    def unknown_keys(self, path: str, keys: Iterable[Any], allowed: tuple[str, ...]) -> bool:
        """Report every key not in ``allowed``; True when there was none."""
        ok = True
        for key in keys:
            if key not in allowed:
                self.unknown_key(path, str(key), allowed)
                ok = False
        return ok

    def bad_choice(self, path: str, what: str, value: Any, allowed: tuple[str, ...]) -> None:
        close = did_you_mean(str(value), list(allowed))
        suffix = f"; did you mean {close[0]!r}?" if close else ""
        self.add(path, f"unknown {what} {value!r}{suffix} (one of: {', '.join(allowed)})")


# bool is an int subclass, but `true` is never meant as a number in a sweep file.
def is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def param_path(name: str, data: dict) -> str:
    """The YAML path of a flattened parameter (nested blocks re-expanded for line lookup)."""
    node: Any = data.get("parameters", {})
    parts = name.split(".")
    path = "parameters"
    i = 0
    while i < len(parts):
        # the longest dotted key at this level wins (flat `a.b` or nested `a: {parameters:}`)
        for j in range(len(parts), i, -1):
            key = ".".join(parts[i:j])
            if isinstance(node, dict) and key in node:
                path = f"{path}.{key}"
                node = node[key]
                i = j
                if i < len(parts) and isinstance(node, dict) and "parameters" in node:
                    node = node["parameters"]
                    path = f"{path}.parameters"
                break
        else:
            return f"{path}.{'.'.join(parts[i:])}"
    return path
