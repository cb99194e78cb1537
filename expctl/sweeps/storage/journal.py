"""Optuna's journal file, strict about damage and self-healing about torn tails.

A journal is one JSON record per line, appended under a lock. What can go wrong on a cluster:

* a node dies (or the disk fills) **mid-append**: the last line is torn — no newline, maybe NUL
  bytes. That is the only damage a crash produces. It is ignored on read (the record never
  happened: its writer died before finishing it), and the next append, holding the lock, first
  moves those bytes to ``JOURNAL.torn`` and truncates them, so the journal heals instead of
  gluing the next record onto garbage;
* anything else — garbage in the middle, an unknown ``op_code``, a record that cannot be
  applied — is damage that no crash makes (a copy gone wrong, an edit, two tools writing).
  Reading it raises :class:`JournalDamaged` naming the file and line (exit 1, with the
  ``expctl sweep repair`` hint), and no append is made to a journal whose records could not
  all be parsed: a half-read journal would be made worse by every writer.

:func:`expctl.sweeps.storage.repair.repair_journal` is that repair: it drops (or salvages) damaged
lines, keeps a backup, and only replaces the journal if the result replays cleanly.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._file import BaseJournalFileLock
from optuna.storages.journal._storage import JournalOperation

from expctl.errors import RuntimeFailure
from expctl.sweeps.storage.filesystems import fsync_or_defer, fsync_under_lock

OP_CODES = frozenset(int(op) for op in JournalOperation)
RECORD_START = b'{"op_code":'


class JournalDamaged(RuntimeFailure):
    """A complete journal line that is not a valid record (exit 1)."""

    def __init__(self, path: str | Path, line: int, reason: str):
        self.path, self.line = str(path), line
        super().__init__(
            f"{path}:{line}: the sweep journal is damaged ({reason})",
            hint=f"stop every agent using it, then run `expctl sweep repair --storage {path}` "
            "(it keeps a backup and checks the result); or restore the file from a backup",
        )


def parse_record(line: bytes, path: str | Path, number: int) -> dict[str, Any]:
    """One complete line → a journal record, or :class:`JournalDamaged` saying why not."""
    try:
        record = json.loads(line)
    except (UnicodeDecodeError, ValueError) as e:
        raise JournalDamaged(path, number, f"not JSON: {str(e).splitlines()[0]}") from None
    if not isinstance(record, dict):
        raise JournalDamaged(path, number, "not a JSON object")
    op = record.get("op_code")
    if not isinstance(op, int) or isinstance(op, bool) or op not in OP_CODES:
        raise JournalDamaged(path, number, f"unknown op_code {op!r}")
    return record


def not_a_journal(path: str | Path) -> str | None:
    """Why the existing file at ``path`` is not a sweep journal, or None when it is one.

    A journal is a regular file that is empty, or whose first bytes — after any NUL bytes a
    full disk left in a first append — are ``{"op_code":``, the start of every record Optuna
    and expctl write. A torn or damaged first record still starts so (``sweep repair`` mends
    it); a copy of ``/etc/passwd``, a SQLite database, a device or a directory does not, and
    expctl never appends to, truncates or "repairs" it. Reads at most 64 bytes.
    """
    import stat

    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file (a device?)"
            return f"it is {kind}"
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as e:
        return f"it cannot be read ({e.strerror or e})"
    rest = head.lstrip(b"\0")
    if not rest or RECORD_START.startswith(rest[: len(RECORD_START)]):
        return None
    shown = head[:24].decode("utf-8", "replace").encode("unicode_escape").decode()
    return f"its first line is not an Optuna journal record (it starts {shown!r})"


class CheckedJournalFileBackend(JournalFileBackend):
    """:class:`JournalFileBackend` with the damage rules of this module."""

    def __init__(self, file_path: str, lock_obj: BaseJournalFileLock | None = None) -> None:
        super().__init__(file_path, lock_obj)
        self._validated = 0  # byte offset up to which every line has been parsed
        self._validated_lines = 0  # how many lines that is
        self._advancing = threading.Lock()  # reads, appends and the heartbeat thread move them
        self._damage: JournalDamaged | None = None
        self._batches = threading.local()  # per thread: the heartbeat thread writes at once
        self._skip_reads = False  # while the storage restores a snapshot first
        self._fsync_under_lock = fsync_under_lock(file_path)  # else after: group commit
        # by line number: records an append's check parsed ahead of the replay, which takes them
        self._parsed: dict[int, dict[str, Any]] = {}

    def start_at(self, lines: int, offset: int) -> None:
        """Reading resumes after the first ``lines`` records, which end at byte ``offset`` (a
        snapshot has them): those are taken as checked, as a replay would have left them."""
        self._log_number_offset[lines] = offset
        self._validated, self._validated_lines = offset, lines

    def offset_of(self, lines: int) -> int | None:
        """The byte offset where record ``lines + 1`` starts, when this backend has read there."""
        return self._log_number_offset.get(lines)

    def read_logs(self, log_number_from: int) -> Generator[dict[str, Any], None, None]:
        if self._damage is not None:
            raise self._damage
        if self._skip_reads:
            return
        offsets = self._log_number_offset
        if self._nothing_new(offsets.get(log_number_from)):
            return
        parsed = self._parsed
        while parsed and next(iter(parsed)) <= log_number_from:  # read meanwhile by this replay
            parsed.pop(next(iter(parsed)), None)
        with open(self._file_path, "rb") as f:
            start = log_number_from if log_number_from in offsets else 0
            f.seek(offsets[start])
            end = os.fstat(f.fileno()).st_size  # what another writer appends meanwhile waits
            position = offsets[start]
            for number, line in enumerate(f, start=start):
                if position + len(line) > end or not line.endswith(b"\n"):
                    break  # a torn last line, or one being appended: not a record (yet)
                position += len(line)
                offsets.setdefault(number + 1, position)
                if number < log_number_from:
                    continue
                record = parsed.pop(number + 1, None)
                if record is None:
                    try:
                        record = parse_record(line, self._file_path, number + 1)
                    except JournalDamaged as damage:
                        self._damage = damage
                        raise
                if position > self._validated:
                    self._advance(position, number + 1)
                yield record

    def _nothing_new(self, offset: int | None) -> bool:
        """Whether the journal ends at ``offset`` (where the replay stands): a dozen reads a trial
        find nothing, and a ``stat`` is a fifth of an open, fstat and close. Local disks only:
        an NFS ``stat`` may come from a cache seconds old (an open revalidates)."""
        if offset is None or self._fsync_under_lock:
            return False
        try:
            return os.stat(self._file_path).st_size == offset
        except OSError:
            return False  # let the read say what is wrong

    @contextlib.contextmanager
    def batched(self) -> Iterator[None]:
        """Write the records appended inside the block in one locked append (one fsync): queueing
        10,000 grid points takes a second, not a minute. Reads inside the block do not see
        them: use it only for writes nothing in the block reads back (``enqueue_trial``)."""
        if getattr(self._batches, "logs", None) is not None:
            yield  # nested: the outer block writes
            return
        self._batches.logs = []
        try:
            yield
            pending, self._batches.logs = self._batches.logs, None
            if pending:
                self.append_logs(pending)
        finally:
            self._batches.logs = None

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        if self._damage is not None:
            raise self._damage
        batch = getattr(self._batches, "logs", None)
        if batch is not None:
            batch.extend(logs)
            return
        with self._locked() as f:
            write(f, logs)

    @contextlib.contextmanager
    def held_back(self) -> Iterator[list[dict[str, Any]]]:
        """Collect the records appended inside the block (for :func:`exclusive_writes` to write
        under the lock) and read nothing new meanwhile: what the block decides on is the replay
        as it was when the block began."""
        if getattr(self._batches, "logs", None) is not None:
            raise RuntimeError("held_back() inside a batch: the batch would take its records")
        held: list[dict[str, Any]] = []
        self._batches.logs, self._skip_reads = held, True
        try:
            yield held
        finally:
            self._batches.logs, self._skip_reads = None, False

    @contextlib.contextmanager
    def locked(self) -> Iterator[Any]:
        """The journal open for appending (:func:`write`), under the lock, every record checked;
        what the block appends is on disk when it returns."""
        with self._locked() as f:
            yield f

    def records_after(self, lines: int) -> list[dict[str, Any]]:
        """The complete records after the first ``lines`` (read up to there): under the lock,
        what others appended since this process's replay."""
        checked = range(lines + 1, self._validated_lines + 1)
        if all(number in self._parsed for number in checked):  # the usual case under the lock
            return [self._parsed[number] for number in checked]
        with open(self._file_path, "rb") as f:
            f.seek(self._log_number_offset[lines])
            tail = f.read()
        return [json.loads(line) for line in tail[: tail.rfind(b"\n") + 1].splitlines()]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[Any]:
        """The journal open for appending, under the lock, every record in it checked."""
        from optuna.storages.journal._file import get_lock_file

        if self._damage is not None:
            raise self._damage
        after_unlock: list[int] = []  # a descriptor of the journal to fsync once the lock is free
        try:
            try:
                self._check_complete_lines()  # before the lock: under it, only what came since
                with get_lock_file(self._lock), open(self._file_path, "r+b") as f:
                    end = self._check_unread_tail(f)  # holding the lock: nobody else appends
                    try:
                        yield f
                    finally:  # what was appended is made durable, even if the block raised
                        if os.fstat(f.fileno()).st_size != end:  # see storage.filesystems
                            fsync_or_defer(f.fileno(), self._fsync_under_lock, after_unlock)
            finally:
                for fd in after_unlock:
                    try:
                        os.fsync(fd)
                    finally:
                        os.close(fd)
        except OSError as e:  # a full disk, a quota, a read-only mount: say which, where
            from expctl.sweeps.storage import storage_write_error

            raise storage_write_error(self._file_path, e) from None

    def _advance(self, position: int, lines: int) -> None:
        with self._advancing:
            if position > self._validated:
                self._validated, self._validated_lines = position, lines

    def _check_complete_lines(self) -> None:
        """Parse the complete lines others appended since our last read, without the lock.

        Done under the lock, this parse made every append wait for the records of every other
        agent: with 8 agents, the lock was held for ~20 records' parsing per append. Complete
        lines never change (only a torn last line is ever truncated, under the lock), so what is
        checked here stays checked."""
        with open(self._file_path, "rb") as f:
            self._check_tail(f)

    def _check_unread_tail(self, f: Any) -> int:
        """Parse what others appended since our last read; heal a torn last line. Returns the
        journal's size after that."""
        start, tail = self._check_tail(f)
        torn = tail[tail.rfind(b"\n") + 1 :]
        if torn:
            keep = start + len(tail) - len(torn)
            _set_aside(Path(self._file_path), torn)
            f.truncate(keep)
            os.fsync(f.fileno())
            return keep
        return start + len(tail)

    def _check_tail(self, f: Any) -> tuple[int, bytes]:
        """Parse the complete lines after the checked ones (a damaged one is kept as the
        backend's damage, and raised); returns where the unchecked tail started, and the tail
        (its last, unfinished line included)."""
        # one snapshot: a batch's append runs outside the storage's thread lock, so another
        # thread's read may move these meanwhile
        validated, validated_lines = self._validated, self._validated_lines
        f.seek(validated)
        tail = f.read()
        complete = tail[: tail.rfind(b"\n") + 1]
        lines = complete.splitlines(keepends=True)
        for number, line in enumerate(lines, start=validated_lines + 1):
            try:
                self._parsed[number] = parse_record(line, self._file_path, number)
            except JournalDamaged as damage:
                self._damage = damage
                raise
        if lines:
            self._advance(validated + len(complete), validated_lines + len(lines))
        return validated, tail


def write(f: Any, logs: list[dict[str, Any]]) -> None:
    """Append ``logs`` to the journal open in ``f`` by :meth:`CheckedJournalFileBackend.locked`
    (which fsyncs them before the block returns)."""
    f.seek(0, os.SEEK_END)
    f.write("".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs).encode())
    f.flush()


def _set_aside(journal: Path, torn: bytes) -> None:
    """Keep a torn record's bytes (forensics; nothing silently vanishes)."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    mode = journal.stat().st_mode & 0o666
    fd = os.open(f"{journal}.torn", os.O_WRONLY | os.O_APPEND | os.O_CREAT, mode)
    with open(fd, "ab") as f:
        if os.fstat(fd).st_size == 0:  # new: as writable as the journal (a group-shared one)
            with contextlib.suppress(OSError):
                os.fchmod(fd, mode)
        f.write(f"# {stamp}: torn last line removed by pid {os.getpid()}\n".encode())
        f.write(torn + b"\n")


class CheckedJournalStorage(JournalStorage):
    """A record that parses but cannot be applied (a missing field, say) is damage too."""

    def __init__(self, backend: CheckedJournalFileBackend, *, snapshots: bool = True) -> None:
        self._checked_backend = backend
        self._snapshots = snapshots
        self._snapshot_lines = 0  # the records the last snapshot seen or written holds
        backend._skip_reads = snapshots  # Optuna's own __init__ would replay everything
        try:
            super().__init__(backend)
        finally:
            backend._skip_reads = False
        # reentrant: exclusive_writes holds it across storage calls that take it again
        self._thread_lock = threading.RLock()  # type: ignore[assignment]
        with self._thread_lock:
            if snapshots:
                self._restore_snapshot()
            self._sync_with_backend()

    def _restore_snapshot(self) -> None:
        """Start from ``JOURNAL.snapshot`` when it is valid for this journal (see
        :mod:`expctl.sweeps.storage.journal_snapshot`)."""
        from expctl.sweeps.storage import journal_snapshot

        found = journal_snapshot.load(self._checked_backend._file_path)
        if found is None:
            return
        state, lines, offset = found
        replay = type(self._replay_result)(self._worker_id_prefix)
        try:
            journal_snapshot.restore(replay, state)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            return  # not a state this Optuna reads: replay the journal whole
        self._replay_result = replay
        self._checked_backend.start_at(lines, offset)
        self._snapshot_lines = lines

    def _maybe_snapshot(self) -> None:
        """Write a snapshot once SNAPSHOT_EVERY records were replayed past the last one."""
        from expctl.sweeps.storage import journal_snapshot

        lines = self._replay_result.log_number_read
        if not self._snapshots or lines - self._snapshot_lines < journal_snapshot.SNAPSHOT_EVERY:
            return
        if getattr(self._checked_backend._batches, "logs", None) is not None:
            return  # inside a batch: records of this process are held back
        offset = self._checked_backend.offset_of(lines)
        if offset is None:
            return
        self._snapshot_lines = lines  # tried: whoever writes it, not again for a while
        with contextlib.suppress(OSError, ValueError):  # a cache: never fail a write for it
            journal_snapshot.save(
                self._checked_backend._file_path, self._replay_result, lines, offset
            )

    def catch_up(self) -> None:
        """Replay what other processes appended since the last read."""
        with self._thread_lock:
            self._sync_with_backend()

    def _sync_with_backend(self) -> None:
        try:
            super()._sync_with_backend()
        except JournalDamaged:
            raise
        except (KeyError, TypeError, ValueError, IndexError, AssertionError) as e:
            line = self._replay_result.log_number_read
            damage = JournalDamaged(
                self._checked_backend._file_path, line, f"cannot apply record: {e!r}"
            )
            self._checked_backend._damage = damage
            raise damage from None
        self._maybe_snapshot()
