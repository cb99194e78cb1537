"""Overrides as a run records them (``key=value`` strings) read back as keys and values: for
the `runs list` overrides column, ``--where`` on parameters and the diff of `runs compare`."""

from __future__ import annotations

import re
from typing import Any


def dedupe_overrides(overrides: list[str]) -> tuple[list[str], dict[str, Any]]:
    """Overrides with one entry per key (the last wins, in the position of the first), and the
    same as ``{key: value}`` (``+``/``++`` prefixes dropped; ``~key`` has value None)."""
    by_key: dict[str, str] = {}
    values: dict[str, Any] = {}
    for override in overrides:
        key, value = split_override(override)
        if key is None:
            continue
        by_key[key] = override
        values[key] = value
    return list(by_key.values()), values


def split_override(override: str) -> tuple[str | None, Any]:
    text = override.strip()
    if text.startswith("~"):
        return text[1:].split("=", 1)[0] or None, None
    key, sep, value = text.partition("=")
    key = key.lstrip("+")
    if not sep or not key:
        return None, None
    return key, parse_scalar(value)


_INT = re.compile(r"^[-+]?\d+$")
_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def parse_scalar(text: str) -> Any:
    """A value as written on a command line or in ``--where``: number, bool, null or text."""
    t = text.strip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "'\"":
        return t[1:-1]
    low = t.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("null", "none", "~"):
        return None
    if _INT.match(t):
        return int(t)
    if _FLOAT.match(t) or low in ("inf", "-inf", "+inf", "nan"):
        return float(t)
    return t
