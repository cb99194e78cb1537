"""The journal's write lock: kernel-queued between expctl agents, compatible with Optuna's.

Optuna's ``JournalFileSymlinkLock`` (atomic on every NFS version) makes waiters *sleep* with
exponential backoff from 1 ms up to 1 s. With a second agent the sleeps dominate: measured with
a no-op objective, one agent ran ~700 trials/s and two ~80 (``benchmarks/sweeps.py``). A holder
that dies keeps the lock for the 30 s grace period, and every agent waits that long.

This lock takes two locks, in order:

1. an ``flock`` on ``JOURNAL.flock``: waiting agents block in the kernel and wake the moment the
   holder releases — no sleeping, no polling — and the kernel drops it when its process dies;
2. Optuna's own symlink lock file (``JOURNAL.lock``), so Optuna itself (optuna-dashboard, a
   script using ``JournalFileBackend``) is still excluded. Among expctl processes it is never
   contended (they already hold the flock), so it costs three system calls.

The symlink's target names its owner (``expctl:HOST:PID:TOKEN``); holding the flock, an agent that
finds the symlink left by a dead process of its own host removes it at once instead of waiting
out the grace period. Where ``flock`` is not available (some NFS mounts answer ENOLCK) the
symlink lock alone is used, with a short, capped backoff.
"""

from __future__ import annotations

import errno
import os
import random
import socket
import time
import uuid

from optuna.storages.journal._file import BaseJournalFileLock

GRACE_PERIOD_S = 30.0  # Optuna's default: a lock untouched this long is considered abandoned
_MAX_BACKOFF_S = 0.05


class AgentJournalLock(BaseJournalFileLock):
    def __init__(self, journal: str, grace_period: float = GRACE_PERIOD_S) -> None:
        self._flock_path = journal + ".flock"
        self._symlink = journal + ".lock"  # the name Optuna's symlink lock uses
        self._grace = grace_period
        self._host = socket.gethostname()
        self._flock_fd: int | None = None
        self._use_flock = True

    # -- BaseJournalFileLock --------------------------------------------------------------------

    def acquire(self) -> bool:
        self._acquire_flock()
        try:
            self._acquire_symlink()
        except BaseException:
            self._release_flock()
            raise
        return True

    def release(self) -> None:
        try:
            _remove_link(self._symlink)
        finally:
            self._release_flock()

    # -- the flock ------------------------------------------------------------------------------

    def _acquire_flock(self) -> None:
        import fcntl

        if not self._use_flock:
            return
        fd = os.open(self._flock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.ENOLCK, errno.EINVAL, errno.ENOTSUP):
                self._use_flock = False  # this filesystem has no flock: symlinks only
                return
            raise
        self._flock_fd = fd

    def _release_flock(self) -> None:
        fd, self._flock_fd = self._flock_fd, None
        if fd is not None:
            os.close(fd)  # closing releases the flock

    # -- the symlink ----------------------------------------------------------------------------

    def _acquire_symlink(self) -> None:
        owner = f"expctl:{self._host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        delay = 0.0005
        seen: tuple[str, float] | None = None  # (target, when first seen) for the grace period
        while True:
            try:
                os.symlink(owner, self._symlink)
                return
            except FileExistsError:
                pass
            try:
                target = os.readlink(self._symlink)
            except OSError:
                continue  # released meanwhile: try again at once
            if self._holder_is_dead(target):
                _remove_link(self._symlink)
                continue
            now = time.monotonic()
            if seen is None or seen[0] != target:
                seen = (target, now)
            elif now - seen[1] > self._grace:
                _remove_link(self._symlink)  # abandoned on another host: Optuna's rule
                seen = None
                continue
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, _MAX_BACKOFF_S)

    def _holder_is_dead(self, target: str) -> bool:
        """A symlink left by a process of this host that no longer exists. Only decided while
        holding the flock: no other expctl process can be taking the symlink meanwhile."""
        if self._flock_fd is None:
            return False
        parts = target.split(":")
        if len(parts) != 4 or parts[0] != "expctl" or parts[1] != self._host:
            return False
        try:
            os.kill(int(parts[2]), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, ValueError):
            return False
        return False


def _remove_link(path: str) -> None:
    """Remove the lock symlink the way Optuna does (rename first: atomic on NFS)."""
    moved = f"{path}.{uuid.uuid4().hex}.rename"
    try:
        os.rename(path, moved)
    except FileNotFoundError:
        return
    os.unlink(moved)
