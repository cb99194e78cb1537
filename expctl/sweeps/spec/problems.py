"""Collecting every problem of a sweep file (with its ``file:line``) instead of stopping at one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from expctl.errors import Problems


def sweep_problems(source: str, lines: dict[str, int]) -> Problems:
    """A :class:`~expctl.errors.Problems` whose paths carry the sweep file's ``file:line:``; a
    value without its own line (a default, a flattened name) points at its parent key."""

    def locate(path: str) -> str:
        probe = path
        while probe:
            if probe in lines:
                return f"{Path(source).name}:{lines[probe]}: {path}"
            probe = probe.rpartition(".")[0]
        return path

    return Problems(locate)


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
