"""Byte-level file work shared by publishing and pulling: hash-while-copying, durable temp
files installed by link or rename, and walking a tree without following links."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from expctl.artifacts.locking import temp_name
from expctl.fsutil import fsync_dir

CHUNK_SIZE = 1 << 20
Progress = Callable[[int], None]
T = TypeVar("T")

# The hash used for every file; a module attribute so a fault-injection test can slow it down.
_new_hasher = hashlib.sha256


def _write_all(fd: int, chunk: memoryview) -> None:
    while chunk:
        chunk = chunk[os.write(fd, chunk) :]


def copy_hashing(
    src: Path, dst_fd: int | None = None, progress: Progress | None = None
) -> tuple[str, int]:
    """sha256 and size of ``src``, copying it to ``dst_fd`` in the same single read pass."""
    hasher = _new_hasher()
    size = 0
    buf = bytearray(CHUNK_SIZE)
    view = memoryview(buf)
    with open(src, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            chunk = view[:n]
            hasher.update(chunk)
            if dst_fd is not None:
                _write_all(dst_fd, chunk)
            size += n
            if progress:
                progress(n)
    return hasher.hexdigest(), size


@contextlib.contextmanager
def durable_temp(tmp_dir: Path, suffix: str, write: Callable[[int], T]) -> Iterator[tuple[Path, T]]:
    """A new owner-named temp file in ``tmp_dir``, filled by ``write(fd)`` and fsync'ed, so
    whatever the body links or renames into place is complete on disk. The temp name is
    removed on exit; a link made from it keeps the data."""
    tmp = tmp_dir / temp_name(suffix)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            result = write(fd)
            os.fsync(fd)
        finally:
            os.close(fd)
        yield tmp, result
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_atomic(path: Path, data: bytes, tmp_dir: Path, *, exclusive: bool = False) -> None:
    """Write ``data`` durably, then rename it into place (or link it: fails if ``path`` exists)."""
    with durable_temp(tmp_dir, ".json", lambda fd: _write_all(fd, memoryview(data))) as (tmp, _):
        if exclusive:
            os.link(tmp, path)
        else:
            os.replace(tmp, path)
    fsync_dir(path.parent)


def iter_tree(directory: Path) -> Iterator[tuple[str, Path, int]]:
    """``(relative posix path, path, lstat mode)`` of every entry under ``directory`` but the
    directories themselves, in a stable (sorted, top-down) order; links are not followed."""
    for current, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(dirs + files):
            full = Path(current, name)
            mode = full.lstat().st_mode
            if not stat.S_ISDIR(mode):
                yield full.relative_to(directory).as_posix(), full, mode
