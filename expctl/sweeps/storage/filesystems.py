"""Which filesystem a journal lives on: it decides where an append's fsync may go.

On a local filesystem every process of the host reads the one page cache: a record is visible to
the next lock holder the moment ``write()`` returns, and an fsync of the file writes back every
record appended before it, whoever appended it. So an agent may release the journal lock first
and fsync after (before it acts on its own record): the fsyncs of agents that appended one after
the other overlap, one disk flush serving several (a database's group commit), and the lock is
held for a write, not for a disk round trip.

On a network filesystem (NFS, Lustre, GPFS, CephFS, …) another host sees a record only once the
writer has flushed it to the server: there the fsync must come before the lock is released, or
the next holder could decide on a journal that lacks it. A filesystem not known to be local is
treated so; so is every filesystem where ``/proc/self/mountinfo`` cannot be read (not Linux).
"""

from __future__ import annotations

import functools
import os

# Linux filesystem types whose data every process of the host reads through one page cache
LOCAL_TYPES = frozenset(
    {"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "f2fs", "zfs", "bcachefs", "jfs", "overlay"}
)


def fsync_under_lock(path: str) -> bool:
    """Whether appends to the file at ``path`` must be fsynced before the lock is released."""
    return not is_local(path)


def is_local(path: str) -> bool:
    """Whether every process using the file at ``path`` shares this host's page cache (and a
    memory map of it: what SQLite's WAL index needs)."""
    return filesystem_type(path) in LOCAL_TYPES


def fsync_or_defer(fd: int, under_lock: bool, after_unlock: list[int]) -> None:
    """Flush ``fd`` now (a network filesystem), or queue a duplicate of it in ``after_unlock``
    for the caller to fsync and close once the lock is free. Out of descriptors: now."""
    if not under_lock:
        try:
            after_unlock.append(os.dup(fd))
            return
        except OSError:
            pass
    os.fsync(fd)


def filesystem_type(path: str) -> str | None:
    """The type of the filesystem holding ``path`` (its directory's mount), None if unknown."""
    directory = os.path.dirname(os.path.realpath(path)) or "/"
    mounts = _mounts()
    best = None
    for mount_point, fs_type in mounts:
        inside = directory == mount_point or directory.startswith(mount_point.rstrip("/") + "/")
        if inside and (best is None or len(mount_point) >= len(best[0])):
            best = (mount_point, fs_type)  # the last of equal mount points is the one on top
    return best[1] if best else None


@functools.cache
def _mounts() -> tuple[tuple[str, str], ...]:
    """(mount point, filesystem type) of each mount, in mount order; empty when unknown."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return ()
    mounts = []
    for line in lines:
        # ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER_OPTIONS
        fields, _, rest = line.partition(" - ")
        parts, after = fields.split(), rest.split()
        if len(parts) >= 5 and after:
            mounts.append((_unescape(parts[4]), after[0]))
    return tuple(mounts)


def _unescape(field: str) -> str:
    """mountinfo writes a space, tab, newline and backslash in a path as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field
