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
import itertools
import json
import operator
import os
import threading
import time
from collections.abc import Generator, Iterable, Iterator
from pathlib import Path
from typing import Any, cast

from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._file import BaseJournalFileLock

from expctl.sweeps.storage.filesystems import fsync_or_defer, fsync_under_lock
from expctl.sweeps.storage.journal_records import (  # noqa: F401 (the journal's public names)
    OP_CODES,
    RECORD_START,
    JournalDamaged,
    not_a_journal,
    parse_lines,
    parse_record,
)
from expctl.sweeps.storage.journal_replay import FastReplay

_READ_BLOCK = 4 << 20  # bytes a replay reads, parses and applies at a time (~20,000 records)


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
        start = log_number_from if log_number_from in offsets else 0
        with open(self._file_path, "rb") as f:
            f.seek(offsets[start])
            # up to the size now: what another writer appends meanwhile waits for the next read
            left = os.fstat(f.fileno()).st_size - offsets[start]
            number, carry = start, b""
            while left > 0:  # by blocks: a replay of 10⁶ records holds one block's, not all
                block = f.read(min(_READ_BLOCK, left))
                if not block:
                    break  # truncated meanwhile (a repair): the next read starts over
                left -= len(block)
                block = carry + block
                cut = block.rfind(b"\n") + 1
                # complete lines only: a torn last line, or one being appended, is not a record
                lines, carry = block[:cut].split(b"\n")[:-1], block[cut:]
                yield from self._records(lines, number, log_number_from)
                number += len(lines)

    def _records(
        self, lines: list[bytes], start: int, log_number_from: int
    ) -> list[dict[str, Any]]:
        """The records of ``lines`` (records ``start + 1`` on) past ``log_number_from``: parsed by
        an append's check under the lock, else parsed now."""
        offsets, parsed = self._log_number_offset, self._parsed
        # where each line ends (its newline counted), in C: this runs for every record
        lengths = itertools.accumulate(map(len, lines))
        ends = map(operator.add, lengths, itertools.count(offsets[start] + 1))
        offsets.update(zip(itertools.count(start + 1), ends))
        skip = max(log_number_from - start, 0)  # lines before the one asked for
        if len(lines) <= skip:
            return []
        first = start + skip + 1
        records = [parsed.pop(number, None) for number in range(first, start + len(lines) + 1)]
        unparsed = [i for i, record in enumerate(records) if record is None]
        if unparsed:  # others' records this process has not checked under the lock yet
            fresh = self._parse([(first + i, lines[skip + i]) for i in unparsed])
            for i, record in zip(unparsed, fresh, strict=True):
                records[i] = record
        end = offsets[start + len(lines)]
        if end > self._validated:
            self._advance(end, start + len(lines))
        return cast("list[dict[str, Any]]", records)  # every None was filled

    def _parse(self, numbered: Iterable[tuple[int, bytes]]) -> list[dict[str, Any]]:
        """:func:`parse_lines`; damage found is kept as this backend's (no append after it)."""
        try:
            return parse_lines(numbered, self._file_path)
        except JournalDamaged as damage:
            self._damage = damage
            raise

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
        return [json.loads(line) for line in tail[: tail.rfind(b"\n") + 1].split(b"\n")[:-1]]

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
        lines = complete.split(b"\n")[:-1]
        records = self._parse(enumerate(lines, start=validated_lines + 1))
        self._parsed.update(enumerate(records, start=validated_lines + 1))
        if lines:
            self._advance(validated + len(complete), validated_lines + len(lines))
        return validated, tail


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while a journal is replayed whole: every record
    allocates, and each full collection rescans every object the replay has built so far (and
    all of Optuna's): half of opening a 1,000-trial sweep (measured). Records make no cycles
    (refcounting frees what they replace); collection resumes as it was after the replay."""
    import gc

    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


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
        backend._skip_reads = True  # Optuna's own __init__ would replay everything, slowly
        try:
            super().__init__(backend)
        finally:
            backend._skip_reads = False
        self._replay_result = FastReplay(self._worker_id_prefix)
        # reentrant: exclusive_writes holds it across storage calls that take it again
        self._thread_lock = threading.RLock()  # type: ignore[assignment]
        with self._thread_lock, _collector_paused():
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
