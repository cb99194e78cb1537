"""Journal writes held back and appended as one: batched (one fsync for many records) and
exclusive (decided under the lock). No-ops — or ``None`` — on other storages, so callers write
one code path for every storage."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from expctl.sweeps.storage.journal import CheckedJournalFileBackend, CheckedJournalStorage


@contextlib.contextmanager
def batched_writes(storage: Any) -> Iterator[None]:
    """:meth:`CheckedJournalFileBackend.batched` for a storage, a no-op for other storages.

    For writes whose answer nothing in the block needs: queueing grid points, a trial's
    parameters with its claim, a result with its final state (one append and one fsync each
    instead of one per record). Errors about the held-back records (a trial another agent
    finished meanwhile: ``UpdateFinishedTrialError``) surface when the block ends. Optuna's
    ``create_new_trial`` returns the id of the trial it just replayed; with the write held back
    there is none yet, so the replay's marker gets its initial value (-1, as Optuna's own
    ``restore_replay_result`` sets it); ``enqueue_trial`` ignores the id.
    """
    backend = getattr(storage, "_backend", None)
    if not isinstance(backend, CheckedJournalFileBackend):
        yield
        return
    replay = storage._replay_result
    if not hasattr(replay, "_last_created_trial_id_by_this_process"):
        replay._last_created_trial_id_by_this_process = -1
    with backend.batched():
        yield
    # now see them — under the storage's thread lock, as Optuna's own methods sync: two threads
    # replaying at once (the heartbeat thread's write) both count the records they apply, and
    # the records in between are never applied in this process
    with storage._thread_lock:
        storage._sync_with_backend()


class Exclusive:
    """What a block under :func:`exclusive_writes` may know that Optuna's API cannot tell it
    while the block's records are held back: the ids the next records will create."""

    def __init__(self, storage: CheckedJournalStorage):
        self._replay = storage._replay_result

    def next_trial(self, study_id: int) -> tuple[int, int]:
        """The id and the number the next trial created in ``study_id`` gets (replay order:
        Optuna numbers a journal's trials as its records create them). Only for the block's
        first create: the held-back ones are not counted."""
        return len(self._replay._trials), len(self._replay._study_id_to_trial_ids[study_id])


@contextlib.contextmanager
def exclusive_writes(storage: Any) -> Iterator[Exclusive | None]:
    """Decide and write under one hold of the journal lock; yields None for other storages.

    Inside the block the storage has replayed every record there is, and no other process can
    append until the block's own records — held back, as in :func:`batched_writes` — are
    written at its end: what the block read is what its records apply to. A claim made so
    always wins (no race, no retry, no losing writer whose records replay would apply anyway)
    and costs one append. Keep the block short: every agent waits for it.

    Lock order: the storage's thread lock, then the journal lock, as Optuna's own writes take
    them (the heartbeat thread's write then waits for the block instead of deadlocking it).
    """
    backend = getattr(storage, "_backend", None)
    if not isinstance(backend, CheckedJournalFileBackend):
        yield None
        return
    if backend.in_exclusive():
        yield Exclusive(storage)  # nested: the outer block holds the lock and writes
        return
    replay = storage._replay_result
    if not hasattr(replay, "_last_created_trial_id_by_this_process"):
        replay._last_created_trial_id_by_this_process = -1
    with storage._thread_lock:
        storage._sync_with_backend()  # most of what others appended, before taking the lock
        with backend.exclusive():
            storage._sync_with_backend()
            backend._skip_reads = True  # nothing more can come until the block appends
            try:
                yield Exclusive(storage)
            finally:
                backend._skip_reads = False
        storage._sync_with_backend()
