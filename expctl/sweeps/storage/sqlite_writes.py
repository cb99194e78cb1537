"""SQLite connections whose write transactions queue in the kernel instead of polling.

SQLite lets one writer in at a time; a connection that finds the database locked sleeps and
retries (Python's ``timeout``: 1, 2, 5, 10 … 100 ms naps). Agents write several short
transactions per trial, so with a few of them the lock was mostly free while they slept: 8
agents ran a grid at 0.58× the rate of one (``benchmarks/sweeps.py``). Here a connection takes
an ``flock`` on ``DATABASE.writers`` before its first write statement and drops it once the
transaction ends: a waiting writer sleeps in the kernel and wakes when the lock is released,
as the journal's agents do (:mod:`expctl.sweeps.storage.journal_lock`). The kernel drops the lock
of a process that dies. Each connection has its own descriptor: flocks of one open file are
shared, and two threads' connections must exclude each other. Other programs writing to the
database (Optuna's own tools) do not take it and are still excluded by SQLite's lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from typing import Any

_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


def writers_lock_path(database: str) -> str:
    return database + ".writers"


class QueuedWritesConnection(sqlite3.Connection):
    """``sqlite3.connect(..., factory=QueuedWritesConnection)``."""

    def __init__(self, database: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        self._writers_fd: int | None = None
        self._writing = False
        # a directory this user may only read: SQLite's own lock still excludes
        with contextlib.suppress(OSError):
            self._writers_fd = os.open(writers_lock_path(database), os.O_RDWR | os.O_CREAT, 0o644)
        _persist_the_rollback_journal(self)

    def cursor(self, factory: Any = None) -> Any:
        return super().cursor(factory or _QueuedWritesCursor)

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        return self.cursor().execute(sql, *args)

    def _before(self, sql: str) -> None:
        if not self._writing and self._writers_fd is not None and _writes(sql):
            try:
                fcntl.flock(self._writers_fd, fcntl.LOCK_EX)
            except OSError:  # a filesystem without flock (some NFS mounts): SQLite's lock only
                os.close(self._writers_fd)
                self._writers_fd = None
                return
            self._writing = True

    def _done(self) -> None:
        if self._writing and not self.in_transaction:
            self._writing = False
            fcntl.flock(self._writers_fd, fcntl.LOCK_UN)  # type: ignore[arg-type]

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._done()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._done()

    def close(self) -> None:
        try:
            super().close()
        finally:
            fd, self._writers_fd, self._writing = self._writers_fd, None, False
            if fd is not None:
                os.close(fd)


class _QueuedWritesCursor(sqlite3.Cursor):
    def execute(self, sql: str, *args: Any) -> Any:
        return self._queued(sqlite3.Cursor.execute, sql, args)

    def executemany(self, sql: str, *args: Any) -> Any:
        return self._queued(sqlite3.Cursor.executemany, sql, args)

    def _queued(self, run: Any, sql: str, args: tuple[Any, ...]) -> Any:
        connection: QueuedWritesConnection = self.connection  # type: ignore[assignment]
        connection._before(sql)
        try:
            return run(self, sql, *args)
        finally:
            connection._done()  # an autocommit statement: its transaction already ended


def _persist_the_rollback_journal(connection: sqlite3.Connection) -> None:
    """A commit zeroes the ``-journal`` file's header instead of deleting the file (SQLite's
    PERSIST mode, this connection only): one unlink and one create fewer per transaction, each
    a metadata update the filesystem journals (a commit took 1.7 ms, 0.9 with it, here). A file
    with a zeroed header is not a hot journal, so a reader who may not write still reads. Not
    WAL, which is faster again but needs ``-shm`` created beside the database even to read it.
    A database another program put in WAL (or any other) mode keeps it."""
    with contextlib.suppress(sqlite3.Error):
        if connection.execute("PRAGMA journal_mode").fetchone()[0] == "delete":
            connection.execute("PRAGMA journal_mode=PERSIST")


def _writes(sql: str) -> bool:
    return sql.lstrip()[:7].upper().startswith(_WRITES)
