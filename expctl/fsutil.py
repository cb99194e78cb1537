"""Atomic file writes: write to a temporary sibling, fsync, then ``os.replace`` into place.

A reader (or a resumed run after SIGKILL) sees either the old file or the new one, never half a
file. The temporary file lives in the same directory so the rename never crosses filesystems.
Cheap to import: no torch, no yaml at module level.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from expctl.errors import RuntimeFailure

# errno -> (what happened, how to fix it): the disk problems a run can hit on a shared cluster
_WRITE_ERRORS = {
    errno.ENOSPC: (
        "no space left on device {mount}",
        "free space there, or write runs to another disk with --runs-dir / EXPCTL_RUNS_DIR",
    ),
    errno.EDQUOT: (
        "disk quota exceeded on {mount}",
        "free space in your quota, or write runs to another disk with --runs-dir / EXPCTL_RUNS_DIR",
    ),
    errno.EROFS: (
        "read-only file system {mount}",
        "write runs to a writable directory with --runs-dir / EXPCTL_RUNS_DIR",
    ),
    errno.EFBIG: (
        "file size limit exceeded",
        "raise the limit (ulimit -f unlimited) or write smaller files",
    ),
    errno.EACCES: (
        "permission denied",
        "check the directory's permissions, or choose another with --runs-dir / EXPCTL_RUNS_DIR",
    ),
    errno.EPERM: ("operation not permitted", "check the directory's permissions"),
    errno.EIO: ("I/O error on {mount}", "the disk or network file system failed; check it"),
}


@contextlib.contextmanager
def atomic_path(path: str | Path, *, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on error it is removed.

    For writers that want a path rather than a file object (``torch.save``, ``np.savez``).
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        import tempfile  # here: its import (random, hashlib's sha512) is ~1 ms of every start-up

        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as e:
        raise write_error(target, e) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if fsync:
            _fsync_file(tmp)
        os.replace(tmp, target)
        if fsync:
            fsync_dir(target.parent)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise write_error(target, e) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes, *, fsync: bool = True) -> None:
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str, *, fsync: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)


def atomic_write_json(path: str | Path, obj: Any, *, fsync: bool = True) -> None:
    text = json.dumps(obj, indent=2, sort_keys=False, default=str, allow_nan=True) + "\n"
    atomic_write_text(path, text, fsync=fsync)


class WriteError(RuntimeFailure):
    """Writing a file failed for a reason of the disk, not of the program (exit 1)."""

    def __init__(self, path: Path, error: OSError, message: str, hint: str):
        super().__init__(message, hint=hint)
        self.path = path
        self.errno = error.errno


def write_error(path: str | Path, error: OSError) -> RuntimeFailure:
    """``no space left on device /mnt/data writing runs/x/metrics.jsonl`` (with a hint) for the
    disk's errors; other OSErrors keep their own text."""
    if isinstance(error, WriteError):
        return error
    target = Path(path)
    what, hint = _WRITE_ERRORS.get(error.errno or 0, ("{strerror}", "check the path"))
    reason = what.format(mount=_mount_point(target), strerror=error.strerror or error)
    return WriteError(target, error, f"{reason} writing {target}", hint)


def _mount_point(path: Path) -> str:
    """The mount point holding ``path`` (the 'device' a user can look at with df)."""
    current = path.absolute()
    while not current.exists() and current != current.parent:
        current = current.parent
    with contextlib.suppress(OSError):
        while not os.path.ismount(current) and current != current.parent:
            current = current.parent
    return str(current)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a rename or link inside ``path`` durable (best effort where unsupported)."""
    # Makes the rename itself durable; not supported everywhere (e.g. Windows), so best effort.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
