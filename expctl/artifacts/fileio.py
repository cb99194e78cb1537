"""Byte-level file work shared by publishing and pulling: verified copies, durable temp files
installed by link or rename, and walking a tree without following links.

A verified copy (:func:`copy_hashing` with a destination) lets the kernel move the bytes, as
``cp`` does (``copy_file_range``, else ``sendfile``: no trip through Python, and a reflink or a
server-side copy where the filesystem offers one), then hashes what the destination holds, read
back from the page cache (for a large file on a second thread, right behind the copy), so the
digest is of the very bytes that will be linked or renamed into place. Where the kernel cannot
copy between the two files (another filesystem on an older kernel, FUSE, some network
filesystems: ``EXDEV``, ``ENOSYS``, ``EOPNOTSUPP``, ``EINVAL``, ...), one userspace pass copies
and hashes each buffer as it writes it, as expctl always did.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from expctl.artifacts.locking import temp_name
from expctl.fsutil import fsync_dir

# The userspace read/hash/write buffer: small enough to stay in a core's L2 between the read,
# the hash and the write of one chunk (a 1 MiB one made the one-pass copy ~3x slower here).
CHUNK_SIZE = 256 << 10
KERNEL_CHUNK = 8 << 20  # bytes per copy_file_range/sendfile call (how far hashing may lag)
OVERLAP_MIN_SIZE = 4 * KERNEL_CHUNK  # from this size on, hashing runs alongside the copy
Progress = Callable[[int], None]
T = TypeVar("T")

# The hash used for every file; a module attribute so a fault-injection test can slow it down.
_new_hasher = hashlib.sha256

# What copy_file_range/sendfile answer where they cannot copy between these two files (not a
# disk problem: ENOSPC, EIO, EDQUOT and the rest are raised as they are).
_NO_KERNEL_COPY = frozenset(
    {
        errno.EXDEV,  # another filesystem (before Linux 5.3, and again for some since 5.19)
        errno.ENOSYS,  # no such syscall (old kernel, seccomp, gVisor)
        errno.EOPNOTSUPP,
        errno.ENOTSUP,
        errno.EINVAL,  # this filesystem or file type does not support it
        errno.EBADF,  # e.g. an O_APPEND destination
        errno.ENOTSOCK,  # sendfile to a non-socket (macOS)
        errno.EPERM,
        errno.ETXTBSY,
    }
)


def _write_all(fd: int, chunk: memoryview) -> None:
    while chunk:
        chunk = chunk[os.write(fd, chunk) :]


def _tick(progress: Progress | None, n: int) -> None:
    if progress:
        progress(n)


def _hash_stream(
    f: io.FileIO, dst_fd: int | None = None, progress: Progress | None = None
) -> tuple[str, int]:
    """sha256 and size of what is left in ``f`` (unbuffered), copied to ``dst_fd`` on the way."""
    hasher = _new_hasher()
    size = 0
    buf = bytearray(CHUNK_SIZE)
    view = memoryview(buf)
    while n := f.readinto(buf):
        chunk = view[:n]
        hasher.update(chunk)
        if dst_fd is not None:
            _write_all(dst_fd, chunk)
        size += n
        _tick(progress, n)
    return hasher.hexdigest(), size


def _pread_into(fd: int, view: memoryview, offset: int) -> int:
    if hasattr(os, "preadv"):
        return os.preadv(fd, [view], offset)
    data = os.pread(fd, len(view), offset)
    view[: len(data)] = data
    return len(data)


def _hash_range(
    hasher: Any, fd: int, view: memoryview, offset: int, end: int | None, progress: Progress | None
) -> int:
    """Feed ``hasher`` the bytes of ``fd`` from ``offset`` to ``end`` (None: to EOF), read
    with pread (the fd's position is left alone); returns the offset reached."""
    while end is None or offset < end:
        want = len(view) if end is None else min(len(view), end - offset)
        n = _pread_into(fd, view[:want], offset)
        if not n:
            break
        hasher.update(view[:n])
        offset += n
        _tick(progress, n)
    return offset


def hash_fd(fd: int, progress: Progress | None = None) -> tuple[str, int]:
    """sha256 and size of the whole file open (readable) at ``fd``."""
    hasher = _new_hasher()
    size = _hash_range(hasher, fd, memoryview(bytearray(CHUNK_SIZE)), 0, None, progress)
    return hasher.hexdigest(), size


def _kernel_methods() -> list[Callable[[int, int, int], int]]:
    """Ways to copy ``count`` bytes between the current positions of two fds in the kernel."""
    methods: list[Callable[[int, int, int], int]] = []
    if hasattr(os, "copy_file_range"):
        methods.append(lambda src, dst, count: os.copy_file_range(src, dst, count))
    if hasattr(os, "sendfile"):
        methods.append(lambda src, dst, count: os.sendfile(dst, src, None, count))
    return methods


def kernel_copy(src_fd: int, dst_fd: int, on_chunk: Progress | None = None) -> bool:
    """Copy the rest of ``src_fd`` to ``dst_fd`` (both at their file positions, which advance)
    in the kernel, calling ``on_chunk(bytes copied)`` after every chunk (it may raise to stop).
    True once it reached the end of ``src_fd``; False where no kernel method works here or one
    stopped short of the size ``fstat`` gives (the caller copies the rest)."""
    size = os.fstat(src_fd).st_size
    for method in _kernel_methods():
        try:
            while n := method(src_fd, dst_fd, KERNEL_CHUNK):
                _tick(on_chunk, n)
        except OSError as e:
            if e.errno not in _NO_KERNEL_COPY:
                raise
            continue  # nothing was copied by the failed call: try the next way
        if os.lseek(src_fd, 0, os.SEEK_CUR) >= size:
            return True
        # a premature 0 (some filesystems report nothing to copy): try the next way
    return False


class _CopyStopped(Exception):
    pass


class _Copier(threading.Thread):
    """:func:`kernel_copy` on its own thread, telling how many bytes are in the copy so far."""

    def __init__(self, src_fd: int, dst_fd: int):
        super().__init__(name="expctl-copy", daemon=True)
        self.fds = (src_fd, dst_fd)
        self.cond = threading.Condition()
        self.copied = 0
        self.done = self.stop = self.reached_end = False
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.reached_end = kernel_copy(*self.fds, on_chunk=self._advance)
        except BaseException as e:  # handed to the hashing thread, which raises it
            self.error = e
        finally:
            with self.cond:
                self.done = True
                self.cond.notify_all()

    def _advance(self, n: int) -> None:
        with self.cond:
            if self.stop:
                raise _CopyStopped
            self.copied += n
            self.cond.notify_all()

    def wait_past(self, offset: int) -> tuple[int, bool]:
        """Wait until more than ``offset`` bytes are copied, or the copy ended."""
        with self.cond:
            while self.copied <= offset and not self.done:
                self.cond.wait()
            return self.copied, self.done

    def finish(self) -> None:
        with self.cond:
            self.stop = True
        self.join()


def _copy_overlapped(f: io.FileIO, dst_fd: int, progress: Progress | None) -> tuple[str, int]:
    """The kernel copies ``f`` to ``dst_fd`` on a helper thread while this one hashes the copy
    right behind it (from the page cache): a large file takes about as long as its hash."""
    copier = _Copier(f.fileno(), dst_fd)
    copier.start()
    hasher = _new_hasher()
    view = memoryview(bytearray(CHUNK_SIZE))
    offset = 0
    try:
        done = False
        while not done:
            copied, done = copier.wait_past(offset)
            offset = _hash_range(hasher, dst_fd, view, offset, copied, progress)
    finally:
        copier.finish()
    if copier.error is not None:
        raise copier.error
    if not copier.reached_end:  # the kernel cannot copy these files (all or part)
        if offset == 0 and os.lseek(dst_fd, 0, os.SEEK_CUR) == 0:
            return _hash_stream(f, dst_fd, progress)  # one userspace pass, as ever
        _hash_stream(f, dst_fd)  # copy the rest; it is hashed below
        offset = _hash_range(hasher, dst_fd, view, offset, None, progress)
    return hasher.hexdigest(), offset


def copy_hashing(
    src: Path, dst_fd: int | None = None, progress: Progress | None = None
) -> tuple[str, int]:
    """sha256 and size of ``src``; with ``dst_fd`` (a new, empty, *readable* file: O_RDWR),
    those of the copy of ``src`` written there: the kernel copies where it can and the copy
    is hashed from the page cache (overlapping the copy for large files); elsewhere one
    userspace pass copies and hashes. ``progress(n)`` gets every byte hashed, once."""
    with open(src, "rb", buffering=0) as f:
        if dst_fd is None:
            return _hash_stream(f, progress=progress)
        if os.fstat(f.fileno()).st_size >= OVERLAP_MIN_SIZE:
            return _copy_overlapped(f, dst_fd, progress)
        if kernel_copy(f.fileno(), dst_fd):
            return hash_fd(dst_fd, progress)
        if os.lseek(dst_fd, 0, os.SEEK_CUR) == 0:  # the kernel copied nothing: one pass
            return _hash_stream(f, dst_fd, progress)
        _hash_stream(f, dst_fd)  # the rest after a partial kernel copy; then hash it all
        return hash_fd(dst_fd, progress)


@contextlib.contextmanager
def durable_temp(tmp_dir: Path, suffix: str, write: Callable[[int], T]) -> Iterator[tuple[Path, T]]:
    """A new owner-named temp file in ``tmp_dir`` (open read-write, so a copy written to it can
    be hashed back), filled by ``write(fd)`` and fsync'ed, so
    whatever the body links or renames into place is complete on disk. The temp name is
    removed on exit; a link made from it keeps the data."""
    tmp = tmp_dir / temp_name(suffix)
    try:
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
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
