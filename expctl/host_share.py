"""How many expctl trainers share this machine's CPUs right now.

``trainer.num_threads: auto`` gives a run the CPUs it is allotted. Two runs on the same CPUs —
two sweep agents, or a second ``expctl run`` in another terminal — would each take all of them,
and oversubscribed intra-op threads are disastrous: two concurrent runs on 2 cores took 15–18 s
of training each with 2 threads, 0.29 s each with 1. So each training process registers itself
here for as long as it trains: a file per process under a per-user directory, ``flock``'ed (the
kernel drops the lock when the process dies, so a crashed run never counts), holding the CPUs it
may use. A trainer counts the live trainers whose CPUs overlap its own (SLURM jobs pinned to
disjoint CPUs do not share) and takes its part of them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def registry_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"expctl-trainers-{os.getuid()}"


@contextlib.contextmanager
def registered(cpus: set[int]) -> Iterator[None]:
    """Count this process as a trainer on ``cpus`` while the block runs (best effort: a
    registry that cannot be written only means no sharing is known)."""
    path = registry_dir() / f"pid-{os.getpid()}"
    fd = None
    try:
        path.parent.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, ",".join(map(str, sorted(cpus))).encode())
    except OSError:
        if fd is not None:
            os.close(fd)
            fd = None
    try:
        yield
    finally:
        if fd is not None:
            with contextlib.suppress(OSError):
                path.unlink()
            os.close(fd)


def sharing(cpus: set[int]) -> int:
    """Live registered trainers (this one included, if registered) whose CPUs overlap ``cpus``."""
    count = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(registry_dir()):
            if entry.name.startswith("pid-") and _live_and_overlapping(Path(entry.path), cpus):
                count += 1
    return count


def _live_and_overlapping(path: Path, cpus: set[int]) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:  # held: a live trainer
            text = os.pread(fd, 65536, 0).decode(errors="replace")
            theirs = {int(c) for c in text.split(",") if c.strip().isdigit()}
            return not theirs or bool(theirs & cpus)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False  # its process is gone (the file is cleaned up by whoever finds it)
    finally:
        os.close(fd)
