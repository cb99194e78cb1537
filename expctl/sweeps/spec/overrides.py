"""Sampled parameter values → Hydra ``key=value`` overrides that read back as the same values."""

from __future__ import annotations

import math
import re
from typing import Any


def to_overrides(params: dict[str, Any], raw_keys: dict[str, str] | None = None) -> list[str]:
    """``key=value`` overrides in Hydra's grammar for sampled values.

    A parameter named after a config group (``model: large``) becomes ``model=large``, which
    selects the option. ``raw_keys`` (multirun) maps a parameter to its override key, prefix
    included (``+extra``), and its values are already Hydra strings.
    """
    overrides = []
    for name, value in params.items():
        if raw_keys and name in raw_keys:
            overrides.append(f"{raw_keys[name]}={value}")
        else:
            overrides.append(f"{name}={render_value(value)}")
    return overrides


# Strings left unquoted: Hydra would read anything else (`1e-3`, `true`, `a b`) as another value.
_BARE = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./\-]*$")
_WORDS = {"true", "false", "null", "inf", "nan"}


def render_value(value: Any) -> str:
    """A Python value written so that Hydra's override parser reads back the same value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        if _BARE.match(value) and value.lower() not in _WORDS:
            return value
        escaped = value.replace("\\", "\\\\").replace("'", "\\'")
        return f"'{escaped}'"
    if isinstance(value, list | tuple):
        return "[" + ",".join(render_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{render_value(v)}" for k, v in value.items()) + "}"
    return render_value(str(value))
