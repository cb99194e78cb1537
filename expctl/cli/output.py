"""How commands print data: the one ``--format`` option, strict JSON, plain tables and CSV.

stdout is data (README, "Conventions"): JSON is strict — NaN and infinities, which JSON has no
words for, are written as the strings ``"nan"``, ``"inf"`` and ``"-inf"`` (jq and every parser
read them) — and tables are plain aligned columns that read the same in a terminal and a log.

Text that people read (tables, CSV, plain pages, rich tables, stderr lines) goes through
:func:`printable`: names, overrides and notes come from files others may write (a shared runs
directory, a sweep journal), and a raw ``ESC ] 0 ; ... BEL`` in one would retitle or clear the
reader's terminal. JSON needs nothing: ``json.dumps`` writes control characters as ``\u001b``.
"""

from __future__ import annotations

import re
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
    """Strict JSON (see the module docstring), indented for people who read it too; NaN/inf
    as the one JSON policy says (:func:`expctl.record.jsonpolicy.output_json`)."""
    from expctl.record.jsonpolicy import output_json

    return output_json(data)


# C0 and C1 control characters, DEL, and the Unicode controls that reorder or hide text
# (bidirectional overrides and isolates: "Trojan Source"; zero-width joiners are harmless).
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_UNPRINTABLE_BUT_LINES = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def printable(text: Any, *, lines: bool = False) -> str:
    """``text`` with every control character shown as a visible escape (``\x1b``, ``\n``,
    ``\u202e``), so a hostile name reads as odd instead of acting on the terminal. With
    ``lines``, newlines and tabs are kept (multi-line pages; stderr messages)."""
    pattern = _UNPRINTABLE_BUT_LINES if lines else _UNPRINTABLE
    return pattern.sub(_escape, str(text))


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char)
    if named:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def rich_text(value: Any, style: str = "") -> Any:
    """A rich ``Text`` of :func:`printable` ``value``: rich reads no markup in it (a name
    ``[red]x`` stays those characters) and no escape reaches the terminal."""
    from rich.text import Text

    return Text(printable("" if value is None else value), style=style)


def short_number(value: Any) -> str:
    """A float with ~4 significant digits for tables (JSON keeps every digit)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table_lines(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Plain aligned columns: readable on a terminal and in a log file alike."""
    cells = [tuple("" if c is None else printable(c) for c in row) for row in [header, *rows]]
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
    # CSV is read in terminals too (`| column -ts,`): escaped like a table; JSON is the exact form
    writer.writerow([printable(h) for h in header])
    writer.writerows([["" if c is None else _csv_cell(c) for c in row] for row in rows])
    return buffer.getvalue().rstrip("\n")


def _csv_cell(value: Any) -> Any:
    return printable(value) if isinstance(value, str) else value
