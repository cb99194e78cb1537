"""One job per file on a few threads, for publishing and pulling.

Copying and hashing spend their time outside the GIL (``copy_file_range``/``sendfile``/``read``
release it, and so does hashlib on buffers over 2 KiB), so files are copied and verified side by
side: one file's copy overlaps another's hash, and a second core hashes too.

The first job to fail stops the others at their next chunk (they call ``progress``, which raises
once stopping); all threads have finished before :func:`map_files` returns or raises, so a
caller that removes its staging directory afterwards removes everything the jobs wrote.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import TypeVar

from expctl.artifacts.fileio import Progress

Item = TypeVar("Item")
Result = TypeVar("Result")

MAX_WORKERS = 8


class _Stopped(Exception):
    """Raised inside a job that is asked to stop because another one failed."""


def default_workers(jobs: int) -> int:
    """Two threads even on one core (a copy waits on the disk while a hash computes), one per
    core up to :data:`MAX_WORKERS` beyond that, never more than there are jobs."""
    return max(1, min(jobs, max(2, min(MAX_WORKERS, os.cpu_count() or 1))))


def map_files(
    job: Callable[[Item, Progress], Result],
    items: Sequence[Item],
    progress: Progress | None = None,
    workers: int | None = None,
) -> list[Result]:
    """``[job(item, tick) for item in items]``, run on ``workers`` threads (default:
    :func:`default_workers`). ``tick(n)`` forwards ``n`` to ``progress`` (serialised: the
    callback need not be thread-safe) and raises in the other jobs once one has failed.

    The exception raised is the failed job's that comes first in ``items``."""
    workers = workers or default_workers(len(items))
    if workers <= 1:
        return [job(item, progress or _no_progress) for item in items]
    stop = threading.Event()
    lock = threading.Lock()

    def tick(n: int) -> None:
        if stop.is_set():
            raise _Stopped
        if progress and n:
            with lock:
                progress(n)

    with ThreadPoolExecutor(workers, thread_name_prefix="expctl-files") as pool:
        futures = [pool.submit(job, item, tick) for item in items]
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
        finally:  # a failure, or KeyboardInterrupt/SIGTERM here: stop the rest promptly
            stop.set()
            for future in futures:
                future.cancel()
    # the pool has joined its threads: nothing writes any more
    for future in futures:
        error = None if future.cancelled() else future.exception()
        if error is not None and not isinstance(error, _Stopped):
            raise error
    return [future.result() for future in futures]


def _no_progress(n: int) -> None:
    pass
