"""A journal's lines as records: what a line must be, and what is damage (see
:mod:`expctl.sweeps.storage.journal` for the rules a reader and a writer follow)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from optuna.storages.journal._storage import JournalOperation

from expctl.errors import RuntimeFailure

OP_CODES = frozenset(int(op) for op in JournalOperation)
RECORD_START = b'{"op_code":'


class JournalDamaged(RuntimeFailure):
    """A complete journal line that is not a valid record (exit 1)."""

    def __init__(self, path: str | Path, line: int, reason: str):
        self.path, self.line = str(path), line
        super().__init__(
            f"{path}:{line}: the sweep journal is damaged ({reason})",
            hint=f"stop every agent using it, then run `expctl sweep repair --storage {path}` "
            "(it keeps a backup and checks the result); or restore the file from a backup",
        )


def parse_record(line: bytes, path: str | Path, number: int) -> dict[str, Any]:
    """One complete line → a journal record, or :class:`JournalDamaged` saying why not."""
    try:
        record = json.loads(line)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:  # 10⁵ nested brackets
        raise JournalDamaged(path, number, f"not JSON: {str(e).splitlines()[0]}") from None
    if not _is_record(record):
        if not isinstance(record, dict):
            raise JournalDamaged(path, number, "not a JSON object")
        raise JournalDamaged(path, number, f"unknown op_code {record.get('op_code')!r}")
    return record


def _is_record(record: Any) -> bool:
    if not isinstance(record, dict):
        return False
    op = record.get("op_code")
    return isinstance(op, int) and not isinstance(op, bool) and op in OP_CODES


# the C scanner under json.loads, without its regexes (not in typeshed's stubs)
_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def parse_lines(numbered: Iterable[tuple[int, bytes]], path: str | Path) -> list[dict[str, Any]]:
    """Complete lines (without their newlines), each with its line number → records, or
    :class:`JournalDamaged` for the first that is not one. The same verdicts as
    :func:`parse_record` line by line, in two thirds of the time: a journal line is one JSON
    object and nothing else, which the scanner reads without ``json.loads``' checks for
    whitespace and encoding; any line it does not read so is given to :func:`parse_record`."""
    records: list[dict[str, Any]] = []
    append, scan, op_codes = records.append, _scan, OP_CODES  # every agent runs this per record
    for number, line in numbered:
        try:
            text = line.decode()
            record, end = scan(text, 0)
        except (UnicodeDecodeError, ValueError, StopIteration, RecursionError):
            record, end, text = None, -1, ""
        # _is_record, inlined: JSON makes exact dicts and ints (a bool is not an int here)
        if (
            end == len(text)
            and type(record) is dict
            and type(record.get("op_code")) is int
            and record["op_code"] in op_codes
        ):
            append(record)
            continue
        append(parse_record(line, path, number))  # says why (or accepts, with whitespace)
    return records


def not_a_journal(path: str | Path) -> str | None:
    """Why the existing file at ``path`` is not a sweep journal, or None when it is one.

    A journal is a regular file that is empty, or whose first bytes — after any NUL bytes a
    full disk left in a first append — are ``{"op_code":``, the start of every record Optuna
    and expctl write. A torn or damaged first record still starts so (``sweep repair`` mends
    it); a copy of ``/etc/passwd``, a SQLite database, a device or a directory does not, and
    expctl never appends to, truncates or "repairs" it. Reads at most 64 bytes.
    """
    import stat

    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file (a device?)"
            return f"it is {kind}"
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as e:
        return f"it cannot be read ({e.strerror or e})"
    rest = head.lstrip(b"\0")
    if not rest or RECORD_START.startswith(rest[: len(RECORD_START)]):
        return None
    shown = head[:24].decode("utf-8", "replace").encode("unicode_escape").decode()
    return f"its first line is not an Optuna journal record (it starts {shown!r})"
