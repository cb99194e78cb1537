"""Journal writes held back and appended as one: batched (one fsync for many records) and
exclusive (decided under the lock). No-ops — or ``None`` — on other storages, so callers write
one code path for every storage."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from optuna.storages.journal._storage import JournalOperation

from expctl.sweeps.storage.journal import CheckedJournalFileBackend, CheckedJournalStorage, write

T = TypeVar("T")


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
        _sync_every_record(storage, replay)


def _sync_every_record(storage: Any, replay: Any) -> None:
    """Replay the journal to its end, raising the first error of a record of this process's
    only once every record is applied. The replay raises at such a record (a result for a
    trial another agent failed meanwhile) and stops there: the block's next record (its final
    state) would have raised from the next unrelated read — an agent whose finish had just
    returned False died at its next claim."""
    first: BaseException | None = None
    while True:
        read = replay.log_number_read
        try:
            storage._sync_with_backend()
            break
        except Exception as e:
            if replay.log_number_read == read:  # not a record's verdict: nothing was applied
                raise
            first = first or e
    if first is not None:
        raise first


class Exclusive:
    """What a decision under :func:`exclusive_writes` read, for the check that it still holds,
    and what it may know that Optuna's API cannot tell while its records are held back: the ids
    the next trial will get."""

    # records that may change what a claim decides, whatever trial they name: a new trial (a
    # re-queued point, an index taken), the sweep's state, the studies themselves
    _ANY_CHANGES = frozenset(
        {
            JournalOperation.CREATE_STUDY,
            JournalOperation.DELETE_STUDY,
            JournalOperation.SET_STUDY_USER_ATTR,
            JournalOperation.CREATE_TRIAL,
        }
    )

    def __init__(self, storage: CheckedJournalStorage, *, again: bool = False):
        self._replay = storage._replay_result
        self._read: set[int] = set()  # trials whose state the decision depends on
        #: decided again under the lock: what it reads can no longer change (the first
        #: decision was overtaken — another agent took its point, say)
        self.again = again

    def depends_on(self, trial_id: int) -> None:
        """The decision read this trial's state (the trial it finishes, the point it takes)."""
        self._read.add(trial_id)

    def next_trial(self, study_id: int) -> tuple[int, int]:
        """The id and the number the next trial created in ``study_id`` gets (replay order:
        Optuna numbers a journal's trials as its records create them). Only for the decision's
        first create: the held-back ones are not counted."""
        return len(self._replay._trials), len(self._replay._study_id_to_trial_ids[study_id])

    def still_holds(self, records: list[dict[str, Any]]) -> bool:
        """Whether records appended after the decision leave it as it was: none creates a trial
        or changes a study, and none changes the state of a trial it read. (Others' params,
        attrs, heartbeats and the states of other trials do not matter to it.)"""
        for record in records:
            op = record.get("op_code")
            if op in self._ANY_CHANGES:
                return False
            if op == JournalOperation.SET_TRIAL_STATE_VALUES and record["trial_id"] in self._read:
                return False
        return True


def exclusive_writes(storage: Any, decide: Callable[[Exclusive], T]) -> T:
    """``decide(exclusive)``'s answer, its records written in one append under the journal
    lock only if nothing they depend on changed before the lock was taken; ``NotImplemented``
    for other storages (the caller takes its usual path).

    ``decide`` reads the storage (replayed, then frozen: nothing new is read while it runs) and
    writes records, which are held back. Then, holding the lock — nobody else can append — the
    records others appended since the replay are scanned: if none touches what the decision
    read (:meth:`Exclusive.still_holds`), its records are written as they are; otherwise it is
    decided again, on a replay of everything there is, still under the lock, and that answer's
    records are written. Either way what a decision read is what its records apply to: a claim
    made so always wins (no race to lose, no retry, no losing writer whose records a replay
    would apply anyway) and costs one append. Deciding before the lock keeps its hold short:
    replaying, under it, what a queue of agents appended while one waited made every hold as
    long as the queue.

    Lock order: the storage's thread lock, then the journal lock, as Optuna's own writes take
    them (the heartbeat thread's write then waits for this instead of deadlocking it).
    """
    backend = getattr(storage, "_backend", None)
    if not isinstance(backend, CheckedJournalFileBackend):
        return NotImplemented
    replay = storage._replay_result
    if not hasattr(replay, "_last_created_trial_id_by_this_process"):
        replay._last_created_trial_id_by_this_process = -1
    with storage._thread_lock:
        storage._sync_with_backend()
        exclusive = Exclusive(storage)
        with backend.held_back() as held:
            answer = decide(exclusive)
        with backend.locked() as f:
            if not exclusive.still_holds(backend.records_after(replay.log_number_read)):
                storage._sync_with_backend()
                with backend.held_back() as held:
                    answer = decide(Exclusive(storage, again=True))
            if held:
                write(f, held)
        storage._sync_with_backend()
    return answer
