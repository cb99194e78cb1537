"""Runs as ``runs *`` lists them: :class:`RunInfo`, loaded from a run directory's record.

The record itself — file names, the tolerant readers, safe opening, finding run directories,
run references — is :mod:`expctl.record`'s; this module turns what it reads into a
:class:`RunInfo`. Loading reads ``summary.json``, the short ``overrides.yaml`` and
``labels.json`` only — never ``metrics.jsonl`` — and imports nothing heavier than PyYAML, so
``expctl runs list`` over a thousand runs takes a fraction of a second. Nothing here raises on
a damaged record: what could not be read is a note (a refused file also in
:attr:`RunInfo.refused`; callers decide whether to show or skip the run).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, get_args

from expctl.record.files import dir_stamp, run_id, stamp_time
from expctl.record.jsonpolicy import is_finite_number
from expctl.record.read import read_overrides, read_summary
from expctl.record.refs import start_order
from expctl.record.safe_read import Refused
from expctl.runs.labels import Labels, load_labels
from expctl.runs.overrides import dedupe_overrides
from expctl.status import RunStatus

KNOWN_STATUSES = get_args(RunStatus)  # what a record may say (expctl.status: one vocabulary)


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
        return start_order(self.dirname, self.started_at, self.sweep, self.id)

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
        "git.workdir_untracked": git.get("workdir_untracked")
        if isinstance(git.get("workdir_untracked"), bool)
        else None,
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
    path = Path(run_dir).absolute()
    notes: list[str] = []
    summary, note = read_summary(path)
    if note:
        notes.append(note)
    s = summary or {}
    status = _status(path, summary, check_lock, notes)
    kind = "program" if s.get("kind") == "program" else "trainer"
    monitor_node = _dict(s.get("monitor"))
    monitor = monitor_node.get("metric") if isinstance(monitor_node.get("metric"), str) else None
    mode = monitor_node.get("mode") if monitor_node.get("mode") in ("min", "max") else None
    overrides, params = _overrides_and_params(path, s, kind, notes)
    labels, note = load_labels(path)  # read as safely as the record files (read_record_bytes)
    if note:
        notes.append(note)
    started = _str(s.get("started_at")) or stamp_time(dir_stamp(path) or None)
    ended = _str(s.get("ended_at"))
    return RunInfo(
        path=path,
        id=run_id(path),
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
        sweep=_dict(s.get("sweep")) or None,
        error=_str(s.get("error")),
        notes=notes,
        refused=[n for n in notes if isinstance(n, Refused)],
        summary=s,
        labels=labels,
    )


def _status(path: Path, summary: dict[str, Any] | None, check_lock: bool, notes: list[str]) -> str:
    """The run's status: the summary's, ``running`` or ``crashed`` by its lock when the summary
    has none or says ``running``; notes say what was odd."""
    from expctl.rundir import run_dir_is_held

    s = summary or {}
    raw_status = s.get("status") if isinstance(s.get("status"), str) else None
    if raw_status is None:
        if summary is not None:
            notes.append("summary.json has no status")
        # no readable record of how it ended: alive if a process still holds it
        return "running" if check_lock and run_dir_is_held(path) else "crashed"
    if raw_status == "running" and check_lock and not run_dir_is_held(path):
        notes.append("status is running but no process holds the run (killed?)")
        return "crashed"
    if raw_status not in KNOWN_STATUSES:
        notes.append(f"unknown status {raw_status!r} in summary.json")
    return raw_status


def _overrides_and_params(
    path: Path, s: dict[str, Any], kind: str, notes: list[str]
) -> tuple[list[str], dict[str, Any]]:
    """What made the run differ from the defaults: a program trial's parameters, or the
    trainer's recorded overrides (deduplicated, the last of a key wins)."""
    if kind == "program":
        params = _dict(s.get("params"))
        return [f"{k}={_text(v)}" for k, v in params.items()], params
    given, note = read_overrides(path)
    if note:
        notes.append(note)
    return dedupe_overrides(given)


# -- small helpers -------------------------------------------------------------------------------


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


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
    if not is_finite_number(total):
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
