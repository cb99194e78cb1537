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

Where the database lives on a local filesystem it is put in WAL mode (one fsync per commit,
readers never wait on a commit), elsewhere it keeps a rollback journal: see
:func:`_choose_journal_mode`, and :func:`read_only_url` for whoever may only read it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import sqlite3
import urllib.parse
import weakref
from typing import Any

from expctl.sweeps.storage.filesystems import is_local

_WRITES = {"INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER"}
_FIRST_WORDS = re.compile(r"([A-Za-z]+)(?:\s+([A-Za-z]+))?")


def writers_lock_path(database: str) -> str:
    return database + ".writers"


class QueuedWritesConnection(sqlite3.Connection):
    """``sqlite3.connect(..., factory=QueuedWritesConnection)``."""

    def __init__(self, database: str | bytes | os.PathLike[str], *args: Any, **kwargs: Any) -> None:
        super().__init__(database, *args, **kwargs)
        database = os.fsdecode(database)  # a str, bytes or Path, as sqlite3.connect takes
        self._writers_fd = _open_writers_lock(writers_lock_path(database))
        # a connection dropped without close() must not keep the queue's lock
        self._close_writers = weakref.finalize(self, _close, self._writers_fd)
        self._writing = False
        _choose_journal_mode(self, database)

    def cursor(self, factory: Any = None) -> Any:
        return super().cursor(factory or _QueuedWritesCursor)

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        return self.cursor().execute(sql, *args)

    def _before(self, sql: str) -> None:
        if self._writing or self._writers_fd is None or not _writes(sql):
            return
        # inside a transaction begun by a statement not seen as a write (a deferred BEGIN or
        # a SAVEPOINT, then a write the detector missed), SQLite may already hold its write
        # lock for this connection: waiting for ours there could wait on a writer waiting on us
        flags = fcntl.LOCK_EX | (fcntl.LOCK_NB if self.in_transaction else 0)
        try:
            fcntl.flock(self._writers_fd, flags)
        except BlockingIOError:
            return  # SQLite's own lock decides, as without the queue
        except OSError:  # a filesystem without flock (some NFS mounts): SQLite's lock only
            self._close_writers()
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
            self._writers_fd, self._writing = None, False
            self._close_writers()


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


def _open_writers_lock(path: str) -> int | None:
    """The queue's lock file, created beside the database; read-only where this user may not
    write it (another user's file: an flock needs no write access). None where it cannot be
    opened at all: SQLite's own lock still excludes."""
    for flags in (os.O_RDWR | os.O_CREAT, os.O_RDONLY):
        with contextlib.suppress(OSError):
            return os.open(path, flags, 0o644)
    return None


def _close(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)


def _choose_journal_mode(connection: sqlite3.Connection, database: str) -> None:
    """WAL on a local filesystem: a commit is one fsync instead of three or four, and readers
    read while a writer commits (in rollback mode they waited for each commit, 1 ms at least in
    SQLite's busy handler): 8 agents' no-op trials ran 1.3-1.5x faster (docs/design.md).
    A reader who may not write the directory opens it by :func:`read_only_url`.

    On any other filesystem (NFS, Lustre …) WAL's shared-memory index cannot be shared between
    hosts: a rollback journal there, a WAL database going back to it once no one else has it
    open, and in PERSIST mode where only its owner may write the database (a commit zeroes the
    ``-journal`` header instead of deleting the file: one unlink and one create fewer; the
    kept journal belongs to its first writer, which a group member could not write).

    Each switch is tried once, without waiting, so a connection never stalls on it."""
    if database in ("", ":memory:") or database.startswith("file:"):
        return
    local = is_local(database)
    with contextlib.suppress(sqlite3.Error):
        mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
        if local:
            if mode != "wal":
                _switch_journal_mode(connection, "WAL")
            return
        if mode == "wal":
            mode = _switch_journal_mode(connection, "DELETE")
        try:
            shared = os.stat(database).st_mode & 0o022
        except OSError:  # not there yet: its creator decides next time
            return
        if mode == "delete" and not shared:
            connection.execute("PRAGMA journal_mode=PERSIST")


def _switch_journal_mode(connection: sqlite3.Connection, mode: str) -> str:
    waits = connection.execute("PRAGMA busy_timeout").fetchone()[0]
    connection.execute("PRAGMA busy_timeout = 0")
    try:
        return str(connection.execute(f"PRAGMA journal_mode={mode}").fetchone()[0])
    finally:
        connection.execute(f"PRAGMA busy_timeout = {int(waits)}")


def read_only_url(database: str) -> str | None:
    """The URL a reader opens a WAL database with where SQLite cannot: no agent has it open (no
    ``-shm``) and this user may not create one beside it (another user's directory, a
    read-only mount). Opened ``immutable``: no locks, no ``-shm`` — what the file holds is the
    whole database, every commit having been written back by the last connection to close.
    None where a plain open reads it (or where ``-wal`` still holds commits: SQLite's error
    then says what is wrong)."""
    directory = os.path.dirname(database) or "."
    try:
        with open(database, "rb") as f:
            header = f.read(20)
    except OSError:
        return None
    in_wal = header.startswith(b"SQLite format 3\x00") and header[18:20] == b"\x02\x02"
    if not in_wal or os.path.exists(database + "-shm") or os.access(directory, os.W_OK):
        return None
    with contextlib.suppress(OSError):
        if os.path.getsize(database + "-wal") > 0:
            return None
    return f"sqlite:///file:{urllib.parse.quote(database)}?immutable=1&uri=true"


def _writes(sql: str) -> bool:
    """Whether a statement writes (over-matching is safe: the lock is dropped as soon as no
    transaction is open). Leading comments are skipped, as SQLite skips them."""
    rest = sql.lstrip()
    while rest.startswith(("--", "/*")):
        close = "\n" if rest.startswith("--") else "*/"
        end = rest.find(close)
        rest = "" if end < 0 else rest[end + len(close) :].lstrip()
    words = _FIRST_WORDS.match(rest)
    if words is None:
        return False
    first, second = words[1].upper(), (words[2] or "").upper()
    return first in _WRITES or (first == "BEGIN" and second in ("IMMEDIATE", "EXCLUSIVE"))
