"""The one run-reference resolver: ``RUN`` as ``run --resume``, ``run --like``, ``runs
show/compare/plot/tag`` and ``artifacts show``'s lineage read it.

    RUN := latest | latest~N        the newest run, the Nth before it (start order)
         | ID | ID-PREFIX           the random suffix of a run directory's name, or a unique prefix
         | STAMP-ID | NAME/STAMP-ID the directory name, with or without its run name
         | PATH                     a run directory

Start order is the directory stamp, then, for runs started within one second (a SLURM array,
multirun trials), the record's sub-second ``started_at`` and the sweep trial number
(:func:`start_order`), never the random ids alone.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from expctl.errors import NotFoundError, UsageError, did_you_mean_hint
from expctl.record.files import RUN_DIR_NAME, dir_stamp, loose_run_id, run_id, stamp_time
from expctl.record.scan import find_run_dirs, looks_like_run_dir

_LATEST = re.compile(r"^latest(?:~(\d+))?$")


def is_latest(ref: str) -> bool:
    """Whether ``ref`` is ``latest`` or ``latest~N`` (never a folder of that name)."""
    return bool(_LATEST.match(ref))


def resolve_run(ref: str, root: Path) -> Path:
    """The run directory ``ref`` names: a path to one, ``latest`` (``latest~1`` the one
    before), a run id or directory name, or a unique prefix of one."""
    m = _LATEST.match(ref)
    if m:
        return latest_run(root, int(m.group(1) or 0))
    path = Path(ref).expanduser()
    if path.is_dir():
        if looks_like_run_dir(path):
            return path.absolute()
        raise UsageError(
            f"{ref} is a directory but not a run directory (no summary.json or metrics.jsonl)",
            hint="give a run directory (RUNS/NAME/YYYYmmdd-HHMMSS-ID), a run id, or latest",
        )
    dirs = find_run_dirs(root)
    tail = ref.rstrip("/")
    exact = [d for d in dirs if tail in (loose_run_id(d), d.name, f"{d.parent.name}/{d.name}")]
    matches = exact or [
        d for d in dirs if loose_run_id(d).startswith(tail) or d.name.startswith(tail)
    ]
    if len(matches) == 1:
        return matches[0].absolute()
    if len(matches) > 1:
        shown = ", ".join(f"{d.parent.name}/{d.name}" for d in sorted(matches)[:6])
        raise UsageError(
            f"run {ref!r} is ambiguous: {len(matches)} runs match ({shown})",
            hint="give more characters of the id, or the run directory",
        )
    raise _unknown_run(ref, root, dirs)


def latest_run(root: Path, back: int = 0) -> Path:
    """``latest~back``: the run started ``back`` runs before the newest under ``root``.

    The one meaning of ``latest`` (``runs show``, ``runs compare``, ``run --resume``): start
    order by directory stamp, and for runs started within one second, by their records'
    sub-second start (:func:`start_order`), never by their random ids."""
    dirs = newest_runs(root, back + 1)
    if len(dirs) <= back:
        if not dirs:
            raise NotFoundError(
                f"no runs under {root}",
                hint="start one with `expctl run`, or point --runs-dir (EXPCTL_RUNS_DIR) at "
                "the runs directory",
            )
        raise NotFoundError(
            f"latest~{back}: there are only {len(dirs)} runs under {root}",
            hint="latest~0 is the newest run",
        )
    return dirs[back]


def newest_runs(root: Path, count: int) -> list[Path]:
    """The ``count`` newest runs under ``root``, newest first: the order ``latest~N`` counts."""
    dirs = sorted(find_run_dirs(root), key=dir_stamp, reverse=True)
    if dirs and count > 0:
        # runs started within the same second as the last one asked for: their records decide
        last = dirs[min(count, len(dirs)) - 1]
        tied = [d for d in dirs if dir_stamp(d) >= dir_stamp(last)]
        dirs[: len(tied)] = list(reversed(sorted(tied, key=start_key)))
    return [d.absolute() for d in dirs[:count]]


def start_order(
    dirname: str, started_at: str | None, sweep: dict[str, Any] | None, ident: str
) -> tuple[str, str, int, str]:
    """Start order: the directory's stamp (what ``latest`` means everywhere), then, for runs
    started within one second (multirun trials), the sub-second start and the trial number."""
    m = RUN_DIR_NAME.match(dirname)
    stamp = m.group(1) if m else (started_at or "")
    trial = (sweep or {}).get("trial")
    return (stamp, started_at or "", trial if isinstance(trial, int) else -1, ident)


def start_key(run_dir: Path) -> tuple[str, str, int, str]:
    """:func:`start_order` of a run directory, from its ``summary.json`` (tolerantly: a
    damaged record falls back to the directory stamp)."""
    from expctl.record.read import read_summary

    summary = read_summary(run_dir)[0] or {}
    started = summary.get("started_at")
    started = started if isinstance(started, str) and started else None
    sweep = summary.get("sweep")
    return start_order(
        run_dir.name,
        started or stamp_time(dir_stamp(run_dir) or None),
        sweep if isinstance(sweep, dict) else None,
        run_id(run_dir),
    )


def _unknown_run(ref: str, root: Path, dirs: list[Path]) -> NotFoundError:
    if not dirs:
        return NotFoundError(
            f"no run {ref!r}: there are no runs under {root}",
            hint="point --runs-dir (EXPCTL_RUNS_DIR) at the runs directory, or give a run "
            "directory's path",
        )
    ids = [loose_run_id(d) for d in dirs]
    guess = did_you_mean_hint(ref, ids + [d.name for d in dirs], every=True)
    recent = sorted(dirs, key=lambda d: d.name, reverse=True)[:5]
    listed = ", ".join(f"{loose_run_id(d)} ({d.parent.name})" for d in recent)
    return NotFoundError(
        f"no run {ref!r} under {root}",
        hint=f"{guess}recent runs: {listed} (see `expctl runs list`)",
    )
