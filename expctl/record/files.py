"""Every name inside a run directory, and the directory's own name.

A run directory is ``<root>/<name>/<YYYYmmdd-HHMMSS>-<id>`` (made by
:func:`expctl.rundir.create_run_dir`) and holds::

    config.yaml        the resolved config (secrets redacted)
    overrides.yaml     the command-line overrides, as given (a resume appends new ones)
    metrics.jsonl      every logged row, one JSON object per line
    summary.json       status, final/best metrics, device, timings, trackers, best checkpoint
    checkpoints/       top-k checkpoints + last.pt (see expctl.train.checkpoints)
    provenance.json    git, environment, command (expctl.provenance); written last
    diff.patch         ``git diff HEAD`` of the working tree, capped
    requirements.txt   installed distributions, ``name==version``
    resumes/N/         the provenance of the Nth resume
    labels.json        people's tags and notes (expctl.runs.labels), beside the record
    .lock              flock'ed by the process writing the run
    .labels.lock       flock'ed while labels.json is changed

This module is the one place those names are spelled (``tests/test_record.py`` fails when a
literal of them appears elsewhere in ``expctl/``).
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

CONFIG_FILE = "config.yaml"
OVERRIDES_FILE = "overrides.yaml"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT_FILE = "last.pt"  # in CHECKPOINT_DIR: what a resume restores
PROVENANCE_FILE = "provenance.json"
DIFF_FILE = "diff.patch"
REQUIREMENTS_FILE = "requirements.txt"
RESUMES_DIR = "resumes"  # resumes/N/: the provenance of the Nth resume (code may have changed)
# people's labels (runs tag/note), beside the record: written by runs/labels.py
LABELS_FILE = "labels.json"
LABELS_LOCK_FILE = ".labels.lock"
LOCK_FILE = ".lock"  # flock'ed by the process writing the run; the kernel drops it with the process

PROVENANCE_FILES = (PROVENANCE_FILE, DIFF_FILE, REQUIREMENTS_FILE)
RECORD_FILES = (SUMMARY_FILE, METRICS_FILE)  # what marks a renamed directory as a run's

# <YYYYmmdd-HHMMSS>-<id>: the directory stamp (local time) and the run's random id
STAMP_FORMAT = "%Y%m%d-%H%M%S"
RUN_DIR_NAME = re.compile(r"^(\d{8}-\d{6})-([0-9A-Za-z]+)$")


def last_checkpoint(run_dir: Path) -> Path:
    """``RUN_DIR/checkpoints/last.pt``: what ``run --resume`` restores."""
    return Path(run_dir) / CHECKPOINT_DIR / LAST_CHECKPOINT_FILE


def last_checkpoint_name() -> str:
    """``checkpoints/last.pt`` as a path relative to the run directory (for messages)."""
    return f"{CHECKPOINT_DIR}/{LAST_CHECKPOINT_FILE}"


def run_dir_name(stamp: str, run_id: str) -> str:
    return f"{stamp}-{run_id}"


def run_id(run_dir: Path) -> str:
    """The run's id: the random suffix of its directory name (the name itself when it is not a
    run directory's)."""
    m = RUN_DIR_NAME.match(Path(run_dir).name)
    return m.group(2) if m else Path(run_dir).name


def loose_run_id(run_dir: Path) -> str:
    """What a run reference matches an id against: the text after the directory name's last
    ``-`` (also for a directory renamed by hand)."""
    return Path(run_dir).name.rsplit("-", 1)[-1]


def dir_stamp(run_dir: Path) -> str:
    """The directory's ``YYYYmmdd-HHMMSS`` stamp ("" when its name has none): start order."""
    m = RUN_DIR_NAME.match(Path(run_dir).name)
    return m.group(1) if m else ""


def stamp_time(stamp: str | None) -> str | None:
    """The directory stamp (local time) as an ISO timestamp, for runs without a summary."""
    if not stamp:
        return None
    try:
        local = datetime.strptime(stamp, STAMP_FORMAT).astimezone()
    except ValueError:
        return None
    return local.isoformat(timespec="seconds")


def resume_dirs(run_dir: Path) -> list[Path]:
    """``RUN_DIR/resumes/N`` (each resume's provenance), in resume order."""
    root = Path(run_dir) / RESUMES_DIR
    try:
        numbered = [p for p in root.iterdir() if p.name.isdigit() and p.is_dir()]
    except OSError:  # none (the usual case), or unreadable: no resumes to show
        return []
    return sorted(numbered, key=lambda p: int(p.name))


def next_resume_dir(run_dir: Path) -> Path:
    """Create and return ``RUN_DIR/resumes/N`` for the next resume's provenance."""
    root = Path(run_dir) / RESUMES_DIR
    taken = [int(p.name) for p in root.iterdir() if p.name.isdigit()] if root.is_dir() else []
    target = root / str(max(taken, default=0) + 1)
    target.mkdir(parents=True, exist_ok=True)
    return target
