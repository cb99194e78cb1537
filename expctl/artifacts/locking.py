"""Coordination between writers that may be concurrent or killed at any moment.

Two mechanisms: a per-name ``flock`` (the kernel releases it when its holder dies, so it never
goes stale), and temp names that record their owner (``PID@HOST.TOKEN.suffix``), so the next
writer can tell a dead writer's leftovers from a live one's work in progress.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

# Another host's PIDs cannot be checked, so its leftovers are trusted to be dead only this late.
STALE_AFTER_S = 24 * 3600
HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
TEMP_RE = re.compile(r"(?P<pid>\d+)@(?P<host>[A-Za-z0-9-]+)\.[0-9a-f]{12}\.\w+")


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """flock on ``path``: released by the kernel if the holder dies, so it can never go stale."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def temp_name(suffix: str) -> str:
    """A temp file name that says which process owns it (see :func:`remove_stale_temp`)."""
    return f"{os.getpid()}@{HOST}.{secrets.token_hex(6)}{suffix}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's process
        return True
    return True


def _is_stale(name: str, path: str, now: float) -> bool:
    """A temp entry whose owner died on this host, or that nobody touched for a day."""
    m = TEMP_RE.fullmatch(name)
    if not m:
        return False
    pid = int(m["pid"])
    if m["host"] == HOST and pid != os.getpid() and not _pid_alive(pid):
        return True
    try:
        return now - os.lstat(path).st_mtime > STALE_AFTER_S
    except OSError:
        return False


def remove_path(path: Path) -> None:
    """Remove a file, symlink or directory tree; already gone is fine."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def remove_stale_temp(directory: Path, prefix: str = "") -> list[Path]:
    """Remove leftovers of killed writers in ``directory`` (named ``prefix`` + temp_name)."""
    removed = []
    now = time.time()
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            name = entry.name
            if name.startswith(prefix) and _is_stale(name[len(prefix) :], entry.path, now):
                remove_path(Path(entry.path))
                removed.append(Path(entry.path))
    return removed
