"""How commands print data: the one ``--format`` option, strict JSON, plain tables and CSV.

stdout is data (README, "Conventions"): JSON is strict — NaN and infinities, which JSON has no
words for, are written as the strings ``"nan"``, ``"inf"`` and ``"-inf"`` (jq and every parser
read them) — and tables are plain aligned columns when piped (a log, ``grep``, ``column``).

Text that people read (tables, CSV, plain pages, rich tables, stderr lines) goes through
:func:`printable`: names, overrides and notes come from files others may write (a shared runs
directory, a sweep journal), and a raw ``ESC ] 0 ; ... BEL`` in one would retitle or clear the
reader's terminal. JSON needs nothing: ``json.dumps`` writes control characters as ``\u001b``.

Every command renders through :func:`emit`: it builds a typed result (an object with
``to_json()`` for json/yaml, ``page()`` for the table format, ``csv_table()`` where ``--format
csv`` is offered) and hands it over with the ``--format`` value. Nothing outside this module
branches on the format (``tests/test_output.py`` fails when something does). Two styles: piped
(or ``NO_COLOR``) a page is plain aligned columns; on a terminal the same page is drawn by rich
(tables with rules at their natural width, JSON/YAML highlighted), every cell still escaped
by :func:`printable`.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any, NamedTuple

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


def json_cell(data: Any) -> str:
    """A value on one line of a table (a dict, a list): the same strict JSON, compact."""
    import json

    from expctl.record.jsonpolicy import output_value

    return json.dumps(output_value(data), default=str, allow_nan=False)


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


# -- the one renderer ------------------------------------------------------------------------------


class Table(NamedTuple):
    """Columns and rows as a table shows them (numbers short: JSON keeps every digit).

    ``title`` heads it in a page (its lines then indented); ``empty`` is said on stderr instead
    of drawing a table with no rows (stdout stays empty); ``note`` is a line under it; ``right``
    names the columns aligned right on a terminal."""

    columns: tuple[str, ...]
    rows: Sequence[Sequence[Any]]
    title: str | None = None
    empty: str | None = None
    note: str | None = None
    right: tuple[str, ...] = ()


class Lines(NamedTuple):
    """Text lines of a page (``label  value`` facts, a dumped config), under an optional title."""

    lines: Sequence[str]
    title: str | None = None


class Document(NamedTuple):
    """A page: its blocks one after another, a blank line between them."""

    blocks: Sequence[Table | Lines] = ()


Page = Table | Lines | Document

if TYPE_CHECKING:  # a Protocol class costs at import; only the type checker needs it
    from typing import Protocol

    class Result(Protocol):
        """What a command hands to :func:`emit`: its data for json/yaml and its page for a table.
        A result offered as ``--format csv`` also has ``csv_table() -> Table`` (a stable schema:
        every column, values whole)."""

        def to_json(self) -> Any: ...

        def page(self) -> Page: ...


def emit(result: Result, fmt: Enum | str) -> None:
    """Write ``result`` on stdout in the ``--format`` asked for: the one place that knows them."""
    name = str(fmt.value if isinstance(fmt, Enum) else fmt)
    _WRITERS[name](result)


def _write_json(result: Result) -> None:
    _write_data(json_text(result.to_json()), "json")


def _write_yaml(result: Result) -> None:
    from expctl.config.show import dump_yaml  # OmegaConf's dumper: byte-identical with Hydra's

    _write_data(dump_yaml(result.to_json()), "yaml")


def _write_csv(result: Result) -> None:
    from expctl.cli.common import out

    table: Table = result.csv_table()  # type: ignore[attr-defined]
    out(csv_text(table.columns, table.rows))


def _write_page(result: Result) -> None:
    from expctl.cli.common import err, out

    page = as_document(result.page())
    empty = [b for b in page.blocks if isinstance(b, Table) and b.empty and not b.rows]
    if empty and len(page.blocks) == 1:
        err(empty[0].empty or "")
        return
    if _terminal():
        _print_rich(page)
        return
    out("\n".join(page_lines(page)))


_WRITERS = {"json": _write_json, "yaml": _write_yaml, "csv": _write_csv, "table": _write_page}


def _terminal() -> bool:
    from expctl.cli.common import no_color

    return sys.stdout.isatty() and not no_color()


def _write_data(text: str, lexer: str) -> None:
    """JSON/YAML: as written when piped; highlighted on a terminal, never wrapped or cut by us
    (the terminal wraps a long line, as it does the plain text)."""
    from expctl.cli.common import console, out

    text = text.rstrip("\n")
    if not _terminal():
        out(text)
        return
    from rich.syntax import Syntax

    syntax = Syntax(text, lexer, theme="ansi_dark", background_color="default")
    console().print(syntax.highlight(text), soft_wrap=True)


def as_document(page: Page) -> Document:
    return page if isinstance(page, Document) else Document([page])


def page_lines(page: Page) -> list[str]:
    """The piped style: plain aligned columns, a titled block indented under ``title:``."""
    lines: list[str] = []
    for i, block in enumerate(as_document(page).blocks):
        if i:
            lines.append("")
        if isinstance(block, Table):
            body = table_lines(block.columns, block.rows)
            body += [printable(block.note)] if block.note else []
        else:
            body = [printable(line) for line in block.lines]
        if block.title is not None:
            lines.append(printable(block.title) + ":")
            body = ["  " + line for line in body]
        lines += body
    return lines


def _print_rich(page: Document) -> None:
    """The terminal style: the same blocks as rich tables, each drawn at its natural width (a
    cell is never folded or cut; the terminal wraps what is wider than it, as with plain text);
    every cell a :func:`rich_text` (no markup read, no escape sent)."""
    from rich.measure import Measurement
    from rich.table import Table as RichTable

    from expctl.cli.common import console

    screen = console()
    terminal_width = screen.width
    for block in page.blocks:
        if isinstance(block, Lines):
            if block.title is not None:
                screen.print(rich_text(block.title + ":", style="bold"), soft_wrap=True)
            for line in block.lines:
                indent = "  " if block.title is not None else ""
                screen.print(rich_text(indent + line), soft_wrap=True)
            continue
        title = rich_text(block.title) if block.title is not None else None
        table = RichTable(title=title, title_justify="left")
        for column in block.columns:
            if column in block.right:
                table.add_column(rich_text(column), justify="right", no_wrap=True)
            else:
                table.add_column(rich_text(column), no_wrap=True)
        for row in block.rows:
            table.add_row(*(rich_text(cell) for cell in row))
        wide = screen.options.update(max_width=1_000_000)
        screen.width = max(terminal_width, Measurement.get(screen, wide, table).maximum)
        screen.print(table)
        screen.width = terminal_width
        if block.note:
            screen.print(rich_text(block.note), soft_wrap=True)


class Shown(NamedTuple):
    """A result whose two forms are at hand: ``data`` (plain values, what json/yaml write) and
    ``view`` (the page); ``csv`` where the command offers it."""

    data: Any
    view: Page
    csv: Table | None = None

    def to_json(self) -> Any:
        return self.data

    def page(self) -> Page:
        return self.view

    def csv_table(self) -> Table:
        return self.csv or (self.view if isinstance(self.view, Table) else Table((), []))
