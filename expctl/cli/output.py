"""How commands print data: the one ``--format`` option, strict JSON, plain tables and CSV.

stdout is data (README, "Conventions"): JSON is strict — NaN and infinities, which JSON has no
words for, are written as the strings ``"nan"``, ``"inf"`` and ``"-inf"`` (jq and every parser
read them) — and tables are plain aligned columns that read the same in a terminal and a log.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from enum import Enum
from typing import Any

import typer


class TableOrJson(str, Enum):
    table = "table"
    json = "json"


class YamlOrJson(str, Enum):
    yaml = "yaml"
    json = "json"


class TableJsonCsv(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


def format_option(choices: type[Enum]) -> Any:
    """The ``--format/-f`` option of every command; ``choices`` is one of the enums above."""
    names = ", ".join(str(c.value) for c in choices)
    return typer.Option("--format", "-f", help=f"Output format: {names}.")


def json_text(data: Any) -> str:
    """Strict JSON (see the module docstring), indented for people who read it too."""
    return json.dumps(_finite(data), indent=2, default=str, allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def short_number(value: Any) -> str:
    """A float with ~4 significant digits for tables (JSON keeps every digit)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table_lines(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Plain aligned columns: readable on a terminal and in a log file alike."""
    cells = [tuple("" if c is None else str(c) for c in row) for row in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    import csv  # here, not at the top: only `--format csv` pays for it
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([["" if c is None else c for c in row] for row in rows])
    return buffer.getvalue().rstrip("\n")
