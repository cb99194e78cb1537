"""Where runs live: ``<root>/<name>/<YYYYmmdd-HHMMSS>-<id>``, one fresh directory per run.

The root is ``$EXPCTL_RUNS_DIR`` or ``./runs``. A run directory is created exclusively, so two
runs started in the same second (a SLURM array) never share one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

from expctl.errors import UsageError
from expctl.fsutil import write_error
from expctl.record.files import LOCK_FILE, STAMP_FORMAT, run_dir_name

_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]+")


def runs_root(root: str | Path | None = None) -> Path:
    return Path(root or os.environ.get("EXPCTL_RUNS_DIR") or "runs")


def safe_name(name: str) -> str:
    """A run name usable as one path component (no separators, no ``..``)."""
    cleaned = _UNSAFE.sub("-", str(name)).strip("-.")
    return cleaned or "run"


def plan_run_dir(name: str, root: str | Path | None = None) -> Path:
    """The path a new run of ``name`` would get (nothing is created)."""
    stamp = time.strftime(STAMP_FORMAT)
    # os.urandom(3).hex() is secrets.token_hex(3), without `secrets` loading OpenSSL (~10 ms)
    return runs_root(root) / safe_name(name) / run_dir_name(stamp, os.urandom(3).hex())


def create_run_dir(name: str, root: str | Path | None = None) -> Path:
    """Create and return a new, empty run directory (never reuses an existing one)."""
    base = runs_root(root)
    if base.exists() and not base.is_dir():
        raise UsageError(
            f"the runs directory {base} is a file, not a directory",
            hint="pass a directory with --runs-dir (or EXPCTL_RUNS_DIR); it is created if missing",
        )
    for _ in range(100):
        path = plan_run_dir(name, root)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.mkdir()
        except FileExistsError:
            continue
        except NotADirectoryError:
            raise UsageError(
                f"cannot create a run directory under {base}: part of that path is a file",
                hint="pass a directory with --runs-dir (or EXPCTL_RUNS_DIR)",
            ) from None
        except OSError as e:
            raise write_error(path, e) from None
        return path
    raise RuntimeError(f"could not create a fresh run directory under {base}")


@contextlib.contextmanager
def holding_run_dir(run_dir: Path) -> Iterator[None]:
    """Hold the run directory's lock while this process writes the run.

    Two processes writing one run (two ``--resume`` of it at once) would interleave its
    metrics, W&B runs and artifact versions; the second one is refused (exit 2) naming the
    holder. The lock is an ``flock``: the kernel releases it when the process dies, so a
    SIGKILLed run never stays locked.
    """
    import fcntl

    path = Path(run_dir) / LOCK_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise write_error(path, e) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise UsageError(
                f"run {run_dir} is being written by {holder}",
                hint="wait for it to finish or stop it (its last.pt stays resumable), then "
                "resume; a run dir is written by one process at a time",
            ) from None
        try:  # who holds it, for the refusal above (a full disk fails here: say so)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {os.uname().nodename}\n".encode(), 0)
        except OSError as e:
            raise write_error(path, e) from None
        yield
    finally:
        os.close(fd)  # releases the lock


def run_dir_is_held(run_dir: Path) -> bool:
    """Whether a live process holds the run's lock (``running`` vs ``crashed``)."""
    import fcntl

    try:
        fd = os.open(Path(run_dir) / LOCK_FILE, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO: no hang
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False
