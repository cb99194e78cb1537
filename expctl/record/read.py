"""The one tolerant reader of a run's record files.

One convention: every reader returns what it could read plus what it could not —
``(value, note)`` (``read_metrics``: ``(rows, notes)``) — and never raises on a damaged record:
a torn ``summary.json`` (a SIGKILLed run, a full disk), a metrics file with a torn last line or
a garbage line in the middle, a config that is not YAML. A note that is a
:class:`~expctl.record.safe_read.Refused` says the file was refused as unsafe to read. The
trainer's resume, program trials, sweeps and ``runs *`` all read through here.

Non-finite numbers read as :mod:`expctl.record.jsonpolicy` says (the writer put ``null``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from expctl.record.files import (
    CONFIG_FILE,
    DIFF_FILE,
    METRICS_FILE,
    OVERRIDES_FILE,
    PROVENANCE_FILE,
    REQUIREMENTS_FILE,
    SUMMARY_FILE,
)
from expctl.record.safe_read import (
    MAX_DIFF_BYTES,
    MAX_METRICS_BYTES,
    MAX_METRICS_ROWS,
    Refused,
    RefusedFile,
    mib,
    open_record_file,
    read_text,
    read_yaml,
)


def read_summary(run_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """``(summary, None)``, or ``(None, note)`` when it is missing or unreadable."""
    return _read_json_object(Path(run_dir) / SUMMARY_FILE, "the run was killed before writing it?")


def read_provenance(run_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """``(provenance.json, None)``, or ``(None, note)`` when it is missing (a run made before
    expctl recorded provenance), damaged or refused (a :class:`Refused` note). Never raises."""
    return _read_json_object(
        Path(run_dir) / PROVENANCE_FILE, "recorded since expctl 0.1; an older run?"
    )


def _read_json_object(path: Path, when_missing: str) -> tuple[dict[str, Any] | None, str | None]:
    text, note = read_text(path)
    if text is None:
        return None, note or f"no {path.name} ({when_missing})"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        what = "empty" if not text.strip() else f"not valid JSON ({e.msg} at line {e.lineno})"
        return None, f"{path.name} is {what}: truncated or damaged"
    except (ValueError, RecursionError):  # a 5,000-digit number, [[[[... 100,000 deep
        return None, Refused(f"{path.name} holds numbers too long or lists nested too deep")
    if not isinstance(data, dict):
        return None, f"{path.name} is not a JSON object: damaged"
    return data, None


def read_metrics(run_dir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Every readable row of ``metrics.jsonl`` and notes on the lines that were not.

    A torn last line (a hard kill mid-write) is dropped; a damaged line in the middle is
    skipped, and the rows after it are kept. Read a line at a time, at most
    :data:`MAX_METRICS_ROWS` rows and :data:`MAX_METRICS_BYTES` bytes (a note says so).
    """
    path = Path(run_dir) / METRICS_FILE
    try:
        fd = open_record_file(path, None)
    except FileNotFoundError:
        return [], []
    except RefusedFile as e:
        return [], [e.note]
    except OSError as e:
        return [], [f"cannot read {METRICS_FILE}: {e.strerror or e}"]
    with os.fdopen(fd, "rb") as f:
        rows, bad, lines = _metrics_rows(f)
        cut = bool(f.read(1))
    notes = []
    if bad:
        if bad == [lines] and not cut:
            notes.append(f"{METRICS_FILE}: the last line ({bad[0]}) is torn; ignored")
        else:
            shown = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
            notes.append(
                f"{METRICS_FILE}: {len(bad)} damaged line{'s' if len(bad) > 1 else ''} "
                f"skipped (line {shown})"
            )
    if cut:
        notes.append(
            f"{METRICS_FILE} is longer than expctl reads ({MAX_METRICS_ROWS:,} rows or "
            f"{mib(MAX_METRICS_BYTES)}): only its first {len(rows):,} rows were read"
        )
    return rows, notes


def _metrics_rows(f: Any) -> tuple[list[dict[str, Any]], list[int], int]:
    """``(rows, numbers of damaged lines, lines read)`` within the row and byte limits."""
    rows: list[dict[str, Any]] = []
    bad: list[int] = []
    number = 0
    budget = MAX_METRICS_BYTES
    while len(rows) < MAX_METRICS_ROWS and budget > 0:
        raw = f.readline(budget)
        budget -= len(raw)
        if not raw or (budget == 0 and not raw.endswith(b"\n")):
            break  # the end, or a line cut by the byte limit: not a torn line
        number += 1
        row = _json_line(raw)
        if row is not None:
            rows.append(row)
        elif raw.strip():
            bad.append(number)
    return rows, bad, number


def _json_line(raw: bytes) -> dict[str, Any] | None:
    try:
        row = json.loads(raw.decode("utf-8", errors="replace"))
    except (ValueError, RecursionError):  # JSONDecodeError, a 5,000-digit number, [[[[...
        return None
    return row if isinstance(row, dict) else None


def read_config(run_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The resolved config (``config.yaml``), or ``(None, note)``."""
    found, data, note = read_yaml(Path(run_dir) / CONFIG_FILE)
    if note or not found:
        return None, note
    if data is None:
        return None, f"{CONFIG_FILE} is empty: truncated?"
    if not isinstance(data, dict):
        return None, f"{CONFIG_FILE} is not a mapping: damaged"
    return data, None


def read_overrides(run_dir: Path) -> tuple[list[str], str | None]:
    """The recorded overrides as given (``overrides.yaml``; [] when it has none)."""
    _, data, note = read_yaml(Path(run_dir) / OVERRIDES_FILE)
    if note:
        return [], note
    if data is None:
        return [], None
    if not isinstance(data, list):
        return [], f"{OVERRIDES_FILE} is not a list: damaged"
    return [str(o) for o in data], None


def read_requirements(run_dir: Path) -> tuple[dict[str, str] | None, str | None]:
    """``requirements.txt`` as ``{name: version}`` (None when missing or unreadable)."""
    text, note = read_text(Path(run_dir) / REQUIREMENTS_FILE)
    if text is None:
        return None, note
    found: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, version = line.strip().partition("==")
        if sep and name and version:
            found[name.strip().lower()] = version.strip()
    return found, None


def diff_digest(run_dir: Path) -> tuple[str | None, str | None]:
    """``sha256:HEX`` of the run's ``diff.patch`` (None when it has none), read as every record
    file is (a FIFO or device refused) a block at a time."""
    import hashlib

    path = Path(run_dir) / DIFF_FILE
    try:
        fd = open_record_file(path, MAX_DIFF_BYTES)
    except FileNotFoundError:
        return None, None
    except RefusedFile as e:
        return None, e.note
    except OSError as e:
        return None, f"cannot read {DIFF_FILE}: {e.strerror or e}"
    digest = hashlib.sha256()
    with os.fdopen(fd, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}", None
