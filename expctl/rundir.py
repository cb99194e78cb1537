"""Where runs live: ``<root>/<name>/<YYYYmmdd-HHMMSS>-<id>``, one fresh directory per run.

The root is ``$EXPCTL_RUNS_DIR`` or ``./runs``. A run directory is created exclusively, so two
runs started in the same second (a SLURM array) never share one.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]+")


def runs_root(root: str | Path | None = None) -> Path:
    return Path(root or os.environ.get("EXPCTL_RUNS_DIR") or "runs")


def safe_name(name: str) -> str:
    """A run name usable as one path component (no separators, no ``..``)."""
    cleaned = _UNSAFE.sub("-", str(name)).strip("-.")
    return cleaned or "run"


def plan_run_dir(name: str, root: str | Path | None = None) -> Path:
    """The path a new run of ``name`` would get (nothing is created)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return runs_root(root) / safe_name(name) / f"{stamp}-{secrets.token_hex(3)}"


def create_run_dir(name: str, root: str | Path | None = None) -> Path:
    """Create and return a new, empty run directory (never reuses an existing one)."""
    for _ in range(100):
        path = plan_run_dir(name, root)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise RuntimeError(f"could not create a fresh run directory under {runs_root(root)}")


def latest_run_dir(
    root: str | Path | None = None, name: str | None = None, *, having: str | None = None
) -> Path | None:
    """The most recently started run (by directory name, which starts with its start time);
    with ``having``, the most recent one that holds that file (e.g. ``checkpoints/last.pt``)."""
    base = runs_root(root)
    parents = [base / safe_name(name)] if name else [p for p in base.glob("*") if p.is_dir()]
    candidates = [d for p in parents if p.is_dir() for d in p.iterdir() if d.is_dir()]
    if having is not None:
        candidates = [d for d in candidates if (d / having).is_file()]
    return max(candidates, key=lambda d: (d.name, d.stat().st_mtime), default=None)
