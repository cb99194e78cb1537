"""Find run directories and read their records, tolerating damaged files.

A run directory (``<root>/<name>/<YYYYmmdd-HHMMSS>-<id>``, see :mod:`expctl.rundir`) holds
``summary.json``, ``metrics.jsonl``, ``config.yaml`` and ``overrides.yaml`` (see
:mod:`expctl.train.record`). Listing reads ``summary.json`` and the short ``overrides.yaml``
only — never ``metrics.jsonl`` — and imports nothing heavier than PyYAML, so ``expctl runs
list`` over a thousand runs takes a fraction of a second.

Every reader here returns what it could read plus notes on what it could not: a torn
``summary.json`` (a SIGKILLed run, a full disk), a metrics file with a torn last line or a
garbage line in the middle, a config that is not YAML. Nothing here raises on a damaged record.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from expctl.runs.overrides import dedupe_overrides

SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.yaml"
OVERRIDES_FILE = "overrides.yaml"
RECORD_FILES = (SUMMARY_FILE, METRICS_FILE)  # what marks a renamed directory as a run's

# <YYYYmmdd-HHMMSS>-<id>: how expctl.rundir names a run directory
RUN_DIR_NAME = re.compile(r"^(\d{8}-\d{6})-([0-9A-Za-z]+)$")
KNOWN_STATUSES = ("running", "completed", "stopped", "interrupted", "failed")


@dataclass
class RunInfo:
    """One run as ``runs list`` shows it: read from ``summary.json`` and ``overrides.yaml``."""

    path: Path  # absolute run directory
    id: str  # the random suffix of the directory name (e.g. ``57abd2``)
    dirname: str  # <YYYYmmdd-HHMMSS>-<id>
    name: str
    status: str  # a run status, or ``crashed`` (``running`` with no live writer)
    kind: str  # ``trainer`` | ``program``
    started_at: str | None
    ended_at: str | None
    duration_s: float | None
    device: str | None
    monitor: str | None  # the monitored metric (checkpoint.monitor, or the sweep's metric)
    mode: str | None  # ``min`` | ``max``
    final_metrics: dict[str, Any] = field(default_factory=dict)
    best_metrics: dict[str, Any] = field(default_factory=dict)
    # what made this run differ from the config defaults: the command-line overrides as given
    # (deduplicated, the last of a key wins: a resume appends), or a program trial's parameters
    overrides: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)  # the same, as key -> value
    sweep: dict[str, Any] | None = None  # {"id", "trial"} when known
    error: str | None = None
    notes: list[str] = field(default_factory=list)  # what could not be read, and why
    summary: dict[str, Any] = field(default_factory=dict)  # the raw summary.json

    @property
    def final_value(self) -> Any:
        return self.final_metrics.get(self.monitor) if self.monitor else None

    @property
    def best_value(self) -> Any:
        return self.best_metrics.get(self.monitor) if self.monitor else None

    @property
    def sort_key(self) -> tuple[str, str, int, str]:
        """Start order: the directory's stamp (what ``latest`` means everywhere), then, for runs
        started within one second (multirun trials), the sub-second start and the trial number."""
        m = RUN_DIR_NAME.match(self.dirname)
        stamp = m.group(1) if m else (self.started_at or "")
        trial = (self.sweep or {}).get("trial")
        return (stamp, self.started_at or "", trial if isinstance(trial, int) else -1, self.id)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "run_dir": str(self.path),
            "name": self.name,
            "status": self.status,
            "kind": self.kind,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration_s": self.duration_s,
            "device": self.device,
            "monitor": {"metric": self.monitor, "mode": self.mode} if self.monitor else None,
            "final": self.final_value,
            "best": self.best_value,
            "overrides": self.overrides,
            "params": self.params,
            "final_metrics": self.final_metrics,
            "best_metrics": self.best_metrics,
            "sweep": self.sweep,
            "error": self.error,
            "notes": self.notes,
        }


# -- finding run directories ---------------------------------------------------------------------


def find_run_dirs(root: Path) -> list[Path]:
    """Every run directory two levels under ``root`` (``<name>/<stamp>-<id>``); [] if none.

    A directory counts when its name is a run directory's, or when it holds ``summary.json``
    or ``metrics.jsonl`` (a run dir renamed by hand; a config dir's config.yaml is not one).
    """
    found: list[Path] = []
    try:
        names = [e for e in os.scandir(root) if e.is_dir() and not e.name.startswith(".")]
    except (FileNotFoundError, NotADirectoryError):
        return []
    for name_entry in names:
        try:
            entries = list(os.scandir(name_entry.path))
        except OSError:
            continue
        for entry in entries:
            if not entry.is_dir():
                continue
            path = Path(entry.path)
            if RUN_DIR_NAME.match(entry.name) or any((path / f).exists() for f in RECORD_FILES):
                found.append(path)
    return found


def looks_like_run_dir(path: Path) -> bool:
    return path.is_dir() and (
        bool(RUN_DIR_NAME.match(path.name)) or any((path / f).exists() for f in RECORD_FILES)
    )


# -- reading one run -----------------------------------------------------------------------------


def read_summary(run_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """``(summary, None)``, or ``(None, note)`` when it is missing or unreadable."""
    path = Path(run_dir) / SUMMARY_FILE
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None, "no summary.json (the run was killed before writing it?)"
    except OSError as e:
        return None, f"cannot read summary.json: {e.strerror or e}"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        what = "empty" if not text.strip() else f"not valid JSON ({e.msg} at line {e.lineno})"
        return None, f"summary.json is {what}: truncated or damaged"
    if not isinstance(data, dict):
        return None, "summary.json is not a JSON object: damaged"
    return data, None


def read_metrics(run_dir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Every readable row of ``metrics.jsonl`` and notes on the lines that were not.

    A torn last line (a hard kill mid-write) is dropped; a damaged line in the middle is
    skipped, and the rows after it are kept.
    """
    path = Path(run_dir) / METRICS_FILE
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return [], []
    except OSError as e:
        return [], [f"cannot read metrics.jsonl: {e.strerror or e}"]
    rows: list[dict[str, Any]] = []
    bad: list[int] = []
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            bad.append(number)
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad.append(number)
    notes = []
    if bad:
        if bad == [len(lines)]:
            notes.append(f"metrics.jsonl: the last line ({bad[0]}) is torn; ignored")
        else:
            shown = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
            notes.append(
                f"metrics.jsonl: {len(bad)} damaged line{'s' if len(bad) > 1 else ''} "
                f"skipped (line {shown})"
            )
    return rows, notes


def read_config(run_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The resolved config (``config.yaml``), or ``(None, note)``."""
    path = Path(run_dir) / CONFIG_FILE
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None, None
    except OSError as e:
        return None, f"cannot read config.yaml: {e.strerror or e}"
    try:
        data = _yaml_load(text)
    except Exception as e:  # yaml.YAMLError and friends: a damaged file
        return None, f"config.yaml is not valid YAML ({type(e).__name__}): damaged"
    if data is None:
        return None, "config.yaml is empty: truncated?"
    if not isinstance(data, dict):
        return None, "config.yaml is not a mapping: damaged"
    return data, None


def read_overrides(run_dir: Path) -> tuple[list[str], str | None]:
    path = Path(run_dir) / OVERRIDES_FILE
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return [], None
    except OSError as e:
        return [], f"cannot read overrides.yaml: {e.strerror or e}"
    try:
        data = _yaml_load(text)
    except Exception as e:
        return [], f"overrides.yaml is not valid YAML ({type(e).__name__}): damaged"
    if data is None:
        return [], None
    if not isinstance(data, list):
        return [], "overrides.yaml is not a list: damaged"
    return [str(o) for o in data], None


def _yaml_load(text: str) -> Any:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~10x faster
    return yaml.load(text, Loader=loader)


def load_run(run_dir: Path, *, check_lock: bool = True) -> RunInfo:
    """Read one run for listing (``summary.json`` + ``overrides.yaml``; never raises)."""
    # One guarded read per record file, each tolerating damage its own way: this must never raise.
    from expctl.rundir import run_dir_is_held

    path = Path(run_dir).absolute()
    m = RUN_DIR_NAME.match(path.name)
    run_id = m.group(2) if m else path.name
    notes: list[str] = []
    summary, note = read_summary(path)
    if note:
        notes.append(note)
    s = summary or {}
    raw_status = s.get("status") if isinstance(s.get("status"), str) else None
    if raw_status is None:
        # no readable record of how it ended: alive if a process still holds it
        status = "running" if check_lock and run_dir_is_held(path) else "crashed"
        if summary is not None:
            notes.append("summary.json has no status")
    elif raw_status == "running" and check_lock and not run_dir_is_held(path):
        status = "crashed"
        notes.append("status is running but no process holds the run (killed?)")
    else:
        status = raw_status
        if raw_status not in KNOWN_STATUSES:
            notes.append(f"unknown status {raw_status!r} in summary.json")
    kind = "program" if s.get("kind") == "program" else "trainer"
    monitor_node = _dict(s.get("monitor"))
    monitor = monitor_node.get("metric") if isinstance(monitor_node.get("metric"), str) else None
    mode = monitor_node.get("mode") if monitor_node.get("mode") in ("min", "max") else None
    params: dict[str, Any]
    if kind == "program":
        params = _dict(s.get("params"))
        overrides = [f"{k}={_text(v)}" for k, v in params.items()]
    else:
        given, note = read_overrides(path)
        if note:
            notes.append(note)
        overrides, params = dedupe_overrides(given)
    sweep = _dict(s.get("sweep")) or None
    started = _str(s.get("started_at")) or _stamp_time(m.group(1) if m else None)
    ended = _str(s.get("ended_at"))
    return RunInfo(
        path=path,
        id=run_id,
        dirname=path.name,
        name=_str(s.get("name")) or path.parent.name,
        status=status,
        kind=kind,
        started_at=started,
        ended_at=ended,
        duration_s=_duration(started, ended, status, s),
        device=_str(s.get("device")),
        monitor=monitor,
        mode=mode,
        final_metrics=_dict(s.get("final_metrics")),
        best_metrics=_dict(s.get("best_metrics")),
        overrides=overrides,
        params=params,
        sweep=sweep,
        error=_str(s.get("error")),
        notes=notes,
        summary=s,
    )


def load_runs(root: Path) -> list[RunInfo]:
    return [load_run(p) for p in find_run_dirs(root)]


# -- small helpers -------------------------------------------------------------------------------


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def _stamp_time(stamp: str | None) -> str | None:
    """The directory stamp (local time) as an ISO timestamp, for runs without a summary."""
    if not stamp:
        return None
    try:
        local = datetime.strptime(stamp, "%Y%m%d-%H%M%S").astimezone()
    except ValueError:
        return None
    return local.isoformat(timespec="seconds")


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _duration(
    started: str | None, ended: str | None, status: str, summary: dict[str, Any]
) -> float | None:
    total = _dict(summary.get("timings")).get("total_s")
    if not _number(total):
        total = None
    if total is not None and status != "running" and summary.get("resumed_from_step") is None:
        return float(total)  # precise; a resumed run's covers only its last attempt
    start = parse_time(started)
    end = parse_time(ended)
    if start and end:
        return max(0.0, (end - start).total_seconds())
    if start and status == "running":
        return max(0.0, time.time() - start.timestamp())
    return float(total) if total is not None else None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
