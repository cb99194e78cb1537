"""Find run directories and read their records, tolerating damaged files.

A run directory (``<root>/<name>/<YYYYmmdd-HHMMSS>-<id>``, see :mod:`expctl.rundir`) holds
``summary.json``, ``metrics.jsonl``, ``config.yaml`` and ``overrides.yaml`` (see
:mod:`expctl.train.record`), and ``labels.json`` when people tagged it (see
:mod:`expctl.runs.labels`). Listing reads ``summary.json``, the short ``overrides.yaml`` and
``labels.json`` only — never ``metrics.jsonl`` — and imports nothing heavier than PyYAML, so
``expctl runs list`` over a thousand runs takes a fraction of a second.

Every reader here returns what it could read plus notes on what it could not: a torn
``summary.json`` (a SIGKILLed run, a full disk), a metrics file with a torn last line or a
garbage line in the middle, a config that is not YAML. Nothing here raises on a damaged record.

Run directories may sit on a shared filesystem that others write to, so every record file is
read defensively (:func:`read_record_bytes`): a symlink is followed (copied run dirs use them)
but the file it names must be a regular file — a FIFO, a device (``/dev/zero``) or a socket is
*refused* and never opened in a way that blocks — and no more than a size limit is read. YAML
records are read with the sweep files' alias limit. A refused file is a note in
:attr:`RunInfo.refused` (and in ``notes``); callers decide whether to show or skip the run.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from expctl.runs.labels import Labels, load_labels
from expctl.runs.overrides import dedupe_overrides

SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.yaml"
OVERRIDES_FILE = "overrides.yaml"
RECORD_FILES = (SUMMARY_FILE, METRICS_FILE)  # what marks a renamed directory as a run's

# <YYYYmmdd-HHMMSS>-<id>: how expctl.rundir names a run directory
RUN_DIR_NAME = re.compile(r"^(\d{8}-\d{6})-([0-9A-Za-z]+)$")
KNOWN_STATUSES = ("running", "completed", "stopped", "interrupted", "failed")

# The most bytes read of one record file. A summary, the overrides and the resolved config are
# kilobytes; metrics.jsonl grows with the run (one line per logged step), so it is read a line
# at a time up to its own limits and the note says where reading stopped.
MAX_RECORD_BYTES = 8 * 1024 * 1024
MAX_METRICS_BYTES = 128 * 1024 * 1024
MAX_METRICS_ROWS = 1_000_000


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
    # record files refused as unsafe to read (not a regular file, over the size limit, a YAML
    # alias bomb); also in ``notes``. `runs list` leaves such runs out, with a warning.
    refused: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)  # the raw summary.json
    # tags and notes people gave the run (labels.json beside the record, see expctl.runs.labels)
    labels: Labels = field(default_factory=Labels)

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
            "labels": self.labels.to_json(),
        }


# -- finding run directories ---------------------------------------------------------------------


@dataclass
class RunDirs:
    """The run directories under a runs root, and the directories that could not be read."""

    dirs: list[Path] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # "<path>: <why>", skipped


def scan_runs_root(root: Path) -> RunDirs:
    """Every run directory two levels under ``root`` (``<name>/<stamp>-<id>``).

    A directory counts when its name is a run directory's, or when it holds ``summary.json``
    or ``metrics.jsonl`` (a run dir renamed by hand; a config dir's config.yaml is not one).
    A missing root has no runs; a root that is not a readable directory is a
    :class:`~expctl.errors.UsageError`; a directory inside it that cannot be read (another
    user's, ``/proc``'s) is skipped and named in ``unreadable``.
    """
    found = RunDirs()
    for name_entry in _root_entries(Path(root)):
        if name_entry.name.startswith(".") or not _is_dir(name_entry):
            continue
        try:
            entries = list(os.scandir(name_entry.path))
        except FileNotFoundError:  # removed while we looked
            continue
        except OSError as e:
            found.unreadable.append(f"{name_entry.path}: {e.strerror or e}")
            continue
        for entry in entries:
            if not _is_dir(entry):
                continue
            path = Path(entry.path)
            try:
                marked = any(_lexists(path / f) for f in RECORD_FILES)
            except OSError as e:  # cannot look inside it
                found.unreadable.append(f"{path}: {e.strerror or e}")
                continue
            if marked or RUN_DIR_NAME.match(entry.name):
                found.dirs.append(path)
    return found


def find_run_dirs(root: Path) -> list[Path]:
    """The run directories of :func:`scan_runs_root` ([] if none; unreadable ones left out)."""
    return scan_runs_root(root).dirs


def _root_entries(root: Path) -> list[os.DirEntry[str]]:
    from expctl.errors import UsageError

    try:
        with os.scandir(root) as entries:
            return list(entries)
    except FileNotFoundError:
        return []  # nothing has run here yet: no runs, not an error
    except NotADirectoryError:
        # the words of `expctl run` (expctl.rundir.create_run_dir) for the same mistake
        what = "a file, not a directory" if root.is_file() else "not a directory"
        raise UsageError(
            f"the runs directory {root} is {what}",
            hint="pass a directory with --runs-dir (or EXPCTL_RUNS_DIR)",
        ) from None
    except OSError as e:
        raise UsageError(
            f"cannot read the runs directory {root}: {e.strerror or e}",
            hint="check its permissions, or pass another directory with --runs-dir "
            "(or EXPCTL_RUNS_DIR)",
        ) from None


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()  # follows a symlink: a copied tree may link its run dirs
    except OSError:
        return False


def _lexists(path: Path) -> bool:
    """Whether ``path`` exists (a symlink counts, even dangling); OSError when the directory
    cannot be searched."""
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return True


def looks_like_run_dir(path: Path) -> bool:
    try:
        return path.is_dir() and (
            bool(RUN_DIR_NAME.match(path.name)) or any(_lexists(path / f) for f in RECORD_FILES)
        )
    except OSError:
        return False


# -- reading record files safely -----------------------------------------------------------------


class Refused(str):
    """A note saying a record file was refused as unsafe to read (see the module docstring)."""


class RefusedFile(Exception):
    """Raised by :func:`read_record_bytes`; ``note`` says which file and why."""

    def __init__(self, note: str):
        super().__init__(note)
        self.note = Refused(note)


def open_record_file(path: Path, limit: int | None) -> int:
    """An open descriptor on ``path`` if it is (or links to) a regular file of at most ``limit``
    bytes; :class:`RefusedFile` otherwise. FileNotFoundError/OSError as os.open raises them.

    Checked before opening (a device is never opened) and again on the open file (it may have
    been swapped meanwhile); opened non-blocking, so a FIFO put there after the check cannot
    block the open.
    """
    _check_regular(path, os.stat(path), limit)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        _check_regular(path, os.fstat(fd), limit)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_record_bytes(path: Path, limit: int = MAX_RECORD_BYTES) -> bytes:
    """The bytes of a small record file (see :func:`open_record_file`); a file that grew past
    ``limit`` while being read is refused too."""
    with os.fdopen(open_record_file(path, limit), "rb") as f:
        # sized to the file: read(limit + 1) allocates the whole limit (8 MiB) per small file
        size = os.fstat(f.fileno()).st_size
        data = f.read(min(size, limit) + 1)
        if len(data) > size:  # it grew while being read
            data += f.read(limit + 1 - len(data))
    if len(data) > limit:
        raise RefusedFile(_too_large(path, limit))
    return data


def _check_regular(path: Path, st: os.stat_result, limit: int | None) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise RefusedFile(f"{path.name} is {_file_kind(st.st_mode)}, not a regular file: not read")
    if limit is not None and st.st_size > limit:
        raise RefusedFile(_too_large(path, limit))


def _file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "not a file"


def _too_large(path: Path, limit: int) -> str:
    return f"{path.name} is larger than {_mib(limit)}: not read"


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):g} MiB"


def _read_text(path: Path) -> tuple[str | None, str | None]:
    """``(text, None)``; ``(None, None)`` when missing; ``(None, note)`` when unreadable."""
    try:
        return read_record_bytes(path).decode("utf-8", errors="replace"), None
    except FileNotFoundError:
        return None, None
    except RefusedFile as e:
        return None, e.note
    except OSError as e:
        return None, f"cannot read {path.name}: {e.strerror or e}"


# -- reading one run -----------------------------------------------------------------------------


def read_summary(run_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """``(summary, None)``, or ``(None, note)`` when it is missing or unreadable."""
    text, note = _read_text(Path(run_dir) / SUMMARY_FILE)
    if text is None:
        return None, note or "no summary.json (the run was killed before writing it?)"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        what = "empty" if not text.strip() else f"not valid JSON ({e.msg} at line {e.lineno})"
        return None, f"summary.json is {what}: truncated or damaged"
    except (ValueError, RecursionError):  # a 5,000-digit number, [[[[... 100,000 deep
        return None, Refused("summary.json holds numbers too long or lists nested too deep")
    if not isinstance(data, dict):
        return None, "summary.json is not a JSON object: damaged"
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
        return [], [f"cannot read metrics.jsonl: {e.strerror or e}"]
    rows: list[dict[str, Any]] = []
    bad: list[int] = []
    number = 0
    budget = MAX_METRICS_BYTES
    with os.fdopen(fd, "rb") as f:
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
        cut = bool(f.read(1))
    notes = []
    if bad:
        if bad == [number] and not cut:
            notes.append(f"metrics.jsonl: the last line ({bad[0]}) is torn; ignored")
        else:
            shown = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
            notes.append(
                f"metrics.jsonl: {len(bad)} damaged line{'s' if len(bad) > 1 else ''} "
                f"skipped (line {shown})"
            )
    if cut:
        notes.append(
            f"metrics.jsonl is longer than expctl reads ({MAX_METRICS_ROWS:,} rows or "
            f"{_mib(MAX_METRICS_BYTES)}): only its first {len(rows):,} rows were read"
        )
    return rows, notes


def _json_line(raw: bytes) -> dict[str, Any] | None:
    try:
        row = json.loads(raw.decode("utf-8", errors="replace"))
    except (ValueError, RecursionError):  # JSONDecodeError, a 5,000-digit number, [[[[...
        return None
    return row if isinstance(row, dict) else None


def read_config(run_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The resolved config (``config.yaml``), or ``(None, note)``."""
    found, data, note = _read_yaml(Path(run_dir) / CONFIG_FILE)
    if note or not found:
        return None, note
    if data is None:
        return None, "config.yaml is empty: truncated?"
    if not isinstance(data, dict):
        return None, "config.yaml is not a mapping: damaged"
    return data, None


def read_overrides(run_dir: Path) -> tuple[list[str], str | None]:
    _, data, note = _read_yaml(Path(run_dir) / OVERRIDES_FILE)
    if note:
        return [], note
    if data is None:
        return [], None
    if not isinstance(data, list):
        return [], "overrides.yaml is not a list: damaged"
    return [str(o) for o in data], None


def _read_yaml(path: Path) -> tuple[bool, Any, str | None]:
    """``(found, data, note)``: data None when the file is missing, empty or unreadable (then
    the note says why)."""
    text, note = _read_text(path)
    if text is None:
        return note is not None, None, note
    from expctl.errors import SpecError
    from expctl.sweeps.spec.yaml import MAX_NODES

    try:
        return True, _yaml_load(text, path.name), None
    except SpecError:
        note = f"{path.name} expands to more than {MAX_NODES:,} values (nested YAML aliases)"
        return True, None, Refused(f"{note}: not read")
    except RecursionError:
        return True, None, Refused(f"{path.name} is nested too deep: not read")
    except Exception as e:  # yaml.YAMLError and friends: a damaged file
        return True, None, f"{path.name} is not valid YAML ({type(e).__name__}): damaged"


def _yaml_load(text: str, source: str) -> Any:
    """Safe YAML under the sweep files' alias limit (a 1 KB "billion laughs" would otherwise
    take minutes and gigabytes); SpecError past it."""
    import yaml

    # the limit's one home is the sweep file reader; it counts nodes before building anything
    from expctl.sweeps.spec.yaml import _check_expanded_size

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)  # libyaml: ~10x faster
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expanded_size(node, source)
        return loader.construct_document(node)
    finally:
        loader.dispose()


# -- provenance (written by expctl.provenance when the run starts) ------------------------------

# diff.patch is capped by provenance.max_diff_bytes (1 MB by default) but the cap is the user's:
# it is hashed a block at a time, up to this many bytes
MAX_DIFF_BYTES = 128 * 1024 * 1024


def read_provenance(run_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """``(provenance.json, None)``, or ``(None, note)`` when it is missing (a run made before
    expctl recorded provenance), damaged or refused (a :class:`Refused` note). Never raises."""
    from expctl.provenance import PROVENANCE_FILE  # its one home (imported here: runs list
    # reads no provenance unless asked, and need not import its writer)

    text, note = _read_text(Path(run_dir) / PROVENANCE_FILE)
    if text is None:
        return None, note or "no provenance.json (recorded since expctl 0.1; an older run?)"
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None, "provenance.json is not valid JSON: truncated or damaged"
    except (ValueError, RecursionError):
        return None, Refused("provenance.json holds numbers too long or lists nested too deep")
    if not isinstance(data, dict):
        return None, "provenance.json is not a JSON object: damaged"
    return data, None


def resume_provenance_dirs(run_dir: Path) -> list[Path]:
    """``RUN_DIR/resumes/N`` (each resume's provenance), in resume order."""
    from expctl.train.record import RESUMES_DIR

    root = Path(run_dir) / RESUMES_DIR
    try:
        numbered = [p for p in root.iterdir() if p.name.isdigit() and p.is_dir()]
    except OSError:  # none (the usual case), or unreadable: no resumes to show
        return []
    return sorted(numbered, key=lambda p: int(p.name))


def read_requirements(run_dir: Path) -> tuple[dict[str, str] | None, str | None]:
    """``requirements.txt`` as ``{name: version}`` (None when missing or unreadable)."""
    from expctl.provenance import REQUIREMENTS_FILE

    text, note = _read_text(Path(run_dir) / REQUIREMENTS_FILE)
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

    from expctl.provenance import DIFF_FILE

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


def provenance_fields(record: dict[str, Any] | None) -> dict[str, Any]:
    """The facts of a provenance.json by the names ``--where``/``--sort``, ``runs show`` and
    ``runs compare`` use (``git.commit``, ``env.host``, ``pkg.torch``...); absent facts are
    left out. Tolerates any shape: a damaged file gives fewer keys, never an error."""
    if not record:
        return {}
    git = _dict(record.get("git"))
    env = _dict(record.get("environment"))
    torch = _dict(env.get("torch"))
    devices = _dict(torch.get("devices"))
    slurm = _dict(env.get("slurm"))
    fields: dict[str, Any] = {
        "git.commit": _str(git.get("commit")),
        "git.branch": _str(git.get("branch")),
        "git.describe": _str(git.get("describe")),
        "git.dirty": git.get("dirty") if isinstance(git.get("dirty"), bool) else None,
        "git.remote": _str(git.get("remote_url")),
        "git.changed_files": git.get("changed_files"),
        "git.untracked_files": git.get("untracked_files"),
        "git.note": _str(git.get("note")) or _str(git.get("error")) or _str(git.get("off")),
        "env.host": _str(env.get("hostname")),
        "env.platform": _str(env.get("platform")),
        "env.python": _str(_dict(env.get("python")).get("version")),
        "env.expctl": _str(env.get("expctl")),
        "env.cuda": _str(torch.get("cuda")),
        "env.device": _str(devices.get("device")),
        "env.gpus": ", ".join(map(str, devices["names"]))
        if isinstance(devices.get("names"), list)
        else None,
        "env.processes": devices.get("processes"),
        "env.cuda_visible_devices": _str(env.get("cuda_visible_devices")),
        "env.slurm_job": _str(slurm.get("SLURM_JOB_ID")),
        "env.slurm_array": f"{slurm['SLURM_ARRAY_JOB_ID']}_{slurm.get('SLURM_ARRAY_TASK_ID')}"
        if slurm.get("SLURM_ARRAY_JOB_ID")
        else None,
        "env.slurm_nodes": _str(slurm.get("SLURM_JOB_NODELIST")),
    }
    for name, version in _dict(env.get("packages")).items():
        fields[f"pkg.{name}"] = _str(version)
    return {k: v for k, v in fields.items() if v is not None}


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
    labels, note = load_labels(path)  # read as safely as the record files (read_record_bytes)
    if note:
        notes.append(note)
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
        refused=[n for n in notes if isinstance(n, Refused)],
        summary=s,
        labels=labels,
    )


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
