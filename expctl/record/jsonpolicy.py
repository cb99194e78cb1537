"""The one NaN/inf/JSON policy.

JSON has no NaN or infinity. Two readers, two needs, one module:

* **Record files** (``summary.json``, ``metrics.jsonl``): a non-finite float is written as
  ``null`` (:func:`record_value`): a diverged loss *has* no value, and every JSON parser reads
  the file. Read back it is ``None`` — through :mod:`expctl.record.read`, ``runs *`` and
  ``--format json`` alike. A file someone else wrote with Python's ``NaN``/``Infinity`` tokens
  still reads (``json.loads`` accepts them) as the float it says.
* **``--format json`` output** (:func:`output_value`, used by ``cli/output.json_text``): a
  non-finite float *read* from somewhere (a metric computed in memory, a hand-written record) is
  written as the strings ``"nan"``, ``"inf"``, ``"-inf"``, so the output stays strict JSON that
  ``jq`` reads and the value is still visible.

:func:`is_finite_number` is the one test "is this a plottable, comparable number" (not a bool).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def is_finite_number(value: Any) -> bool:
    """An int or float (not a bool) that is finite."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def finite_or_none(value: Any) -> Any:
    """NaN/inf are not JSON: record them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def record_value(value: Any) -> Any:
    """JSON-ready for a record file: paths as text, NaN/inf as null, secret values scrubbed
    (error messages and notes may quote them)."""
    from expctl.secrets import scrub

    if isinstance(value, Mapping):
        return {str(k): record_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [record_value(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        return scrub(value)
    return finite_or_none(value)


def metrics_line(row: Mapping[str, Any]) -> str:
    """One ``metrics.jsonl`` line (newline included): NaN/inf as null."""
    return json.dumps({k: finite_or_none(v) for k, v in row.items()}) + "\n"


def output_value(value: Any) -> Any:
    """For ``--format json``: NaN/inf as the strings ``"nan"``/``"inf"``/``"-inf"``."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: output_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [output_value(v) for v in value]
    return value


# Indented JSON is written by Python's pure-Python encoder (the C one only writes compact JSON):
# 100,000 trials took ~3 s. A list this long, at the top or one level down, is written one
# compact item per line instead (C encoder; still strict JSON, and one item per line greps well).
LONG_LIST = 1_000


def output_json(data: Any) -> str:
    """``--format json``'s text: strict JSON (``allow_nan=False``) under :func:`output_value`,
    indented (a list of more than :data:`LONG_LIST` items: one compact item per line)."""
    if isinstance(data, list | tuple) and len(data) > LONG_LIST:
        return _long_list(data, "")
    if isinstance(data, dict) and any(
        isinstance(v, list | tuple) and len(v) > LONG_LIST for v in data.values()
    ):
        items = [
            f"  {json.dumps(str(k))}: "
            + (_long_list(v, "  ") if isinstance(v, list | tuple) else _indented(v, "  "))
            for k, v in data.items()
        ]
        return "{\n" + ",\n".join(items) + "\n}"
    return _indented(data, "")


def _indented(value: Any, prefix: str) -> str:
    text = json.dumps(output_value(value), indent=2, default=str, allow_nan=False)
    return text.replace("\n", "\n" + prefix) if prefix else text


def _long_list(items: Any, prefix: str) -> str:
    if not items:
        return "[]"
    return "[\n" + ",\n".join(f"{prefix}  {_compact(v)}" for v in items) + f"\n{prefix}]"


def _compact(value: Any) -> str:
    try:  # the C encoder refuses NaN (allow_nan=False): only then walk the value
        return json.dumps(value, default=str, allow_nan=False)
    except ValueError:
        return json.dumps(output_value(value), default=str, allow_nan=False)
