"""Which trial an agent claims next: the queue of WAITING trials (a grid's points, re-runs),
else a fresh trial — for a grid claimed by index, the next index. A collaborator of
:class:`expctl.sweeps.engine.Sweep`."""

from __future__ import annotations

import bisect
import contextlib
import random
from typing import TYPE_CHECKING, Any, NamedTuple

from expctl.sweeps.storage import StorageHandle, trial_index
from expctl.sweeps.storage.journal_writes import Exclusive, exclusive_writes
from expctl.sweeps.studies import PREFIX

if TYPE_CHECKING:
    import optuna

    from expctl.sweeps.methods import Method

# How many of the oldest waiting trials an agent may claim (see TrialQueue.pop_waiting).
CLAIM_WINDOW = 8
# The same for a claim decided before the journal lock (TrialQueue.take): its decision is
# overtaken by every claim made while it waits for the lock, not only by those racing it.
CONTENDED_WINDOW = 64
_claim_order = random.Random()  # its own generator: a seeded global `random` stays unshared


class TrialQueue:
    """The WAITING trials of one sweep's study, as one agent claims them."""

    def __init__(self, handle: StorageHandle, study: optuna.Study, study_id: int):
        self.handle = handle
        self.study = study
        self.study_id = study_id
        self._claims_since_race = CLAIM_WINDOW + 1  # see pop_waiting
        # what this agent has read of the trials' creation (see next_index)
        self._last_id, self._last_number = -1, -1
        self._enqueued: list[int] = []  # numbers of the trials created WAITING, ascending

    def take_point(self, method: Method, claim: dict[str, Any]) -> Taken | None:
        """On a journal, a method that runs given points (a grid): the next point — the oldest
        waiting trial, else the next index — moved to RUNNING with its params and ``claim`` in
        one append, decided with the journal lock's guarantee (:func:`exclusive_writes`): no
        race to lose, one fsync per claim instead of three. None when nothing is left to take;
        ``NotImplemented`` on other storages (:meth:`pop_waiting` and :meth:`next_index`)."""
        return exclusive_writes(self.handle.storage, lambda ex: self.take(ex, method, claim))

    def take(self, exclusive: Exclusive, method: Method, claim: dict[str, Any]) -> Taken | None:
        """:meth:`take_point`'s decision, for a caller that decides more in the same append."""
        from optuna.trial import TrialState

        storage = self.handle.storage
        waiting = trial_index.unfinished(
            storage, self.study_id, (TrialState.WAITING,), limit=CONTENDED_WINDOW
        )
        if waiting:
            # agents deciding at once all see the same oldest point and all but one decide
            # again under the lock (measured: 9 in 10 decisions with 8 agents); an agent that
            # was overtaken lately picks among the oldest CONTENDED_WINDOW instead
            self._claims_since_race = 0 if exclusive.again else self._claims_since_race + 1
            contended = not exclusive.again and self._claims_since_race <= CLAIM_WINDOW
            window = min(len(waiting), CONTENDED_WINDOW) if contended else 1
            trial = waiting[_claim_order.randrange(window)]
            exclusive.depends_on(trial._trial_id)
            point = trial.user_attrs.get(PREFIX + "params") or {}
            storage.set_trial_state_values(trial._trial_id, TrialState.RUNNING)
            method.record_params(trial._trial_id, trial.params, point, storage)
            storage.set_trial_user_attr(trial._trial_id, PREFIX + "claim", claim)
            retry_of = trial.user_attrs.get(PREFIX + "retry_of")
            return Taken(trial._trial_id, trial.number, point, retry_of)
        if not method.claims_by_index:
            return None
        trial_id, number = exclusive.next_trial(self.study_id)
        point = method.point(self.index_of(number))
        if point is None:
            return None
        storage.create_new_trial(self.study_id, _running(method, point, claim))
        return Taken(trial_id, number, point, None)

    def pop_waiting(self, claim: dict[str, Any]) -> tuple[int | None, bool]:
        """WAITING → RUNNING for the oldest queued trial we win (Optuna's pop protocol: write
        RUNNING, the log or the row lock decides), and whether its ``claim`` attr was written
        with it (an RDB storage: one transaction; else the caller writes it).

        Agents that all try the oldest trial lose to one winner and retry, one journal append
        (and fsync, under the file lock) each: measured, that made 8 agents slower than 1. So an
        agent that lost a race in its last CLAIM_WINDOW claims tries the oldest CLAIM_WINDOW
        waiting trials in its own random order; an agent alone keeps the grid's exact order.
        """
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        storage = self.handle.storage
        popped = trial_index.pop_waiting(storage, self.study_id, claim)  # SKIP LOCKED, …
        if popped is not NotImplemented:
            return popped, popped is not None and trial_index.claim_written(storage)
        self._claims_since_race += 1
        window = trial_index.waiting_ids(storage, self.study_id, CLAIM_WINDOW)
        while window:
            contended = self._claims_since_race <= CLAIM_WINDOW
            trial_id = window.pop(_claim_order.randrange(len(window)) if contended else 0)
            try:
                if storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                    return trial_id, False
            except UpdateFinishedTrialError:
                pass
            self._claims_since_race = 0  # another agent won it
            if not window:
                window = trial_index.waiting_ids(storage, self.study_id, CLAIM_WINDOW)
        return None, False

    def new_trial(self) -> optuna.Trial:
        """``study.ask()`` without its own pop of the queue, which :meth:`pop_waiting` just
        found empty (Optuna's pop reads every waiting trial whole: ~15 ms a trial on
        PostgreSQL). A trial queued in between is claimed next time."""
        from optuna.trial import Trial

        with contextlib.suppress(AttributeError):  # what ask() does first: a fresh trial cache
            self.study._thread_local.cached_all_trials = None
        # the study's own storage: for RDBs Optuna wraps ours in a cache that must see the trial
        storage = getattr(self.study, "_storage", self.handle.storage)
        return Trial(self.study, storage.create_new_trial(self.study_id))

    # -- a grid claimed by index ------------------------------------------------------------

    def next_index(self, planned: int | None) -> tuple[optuna.Trial, int] | None:
        """A new RUNNING trial and the grid index it runs, or None when every index is taken.

        The index of a trial created by a claim is the number of such trials before it: its
        number less the trials *enqueued* before it (re-runs, queued points). Trial numbers are
        allocated atomically on every storage, so two claims never get one index and no index
        is skipped; nothing is enumerated, whatever the grid's size. A trial whose index is past
        the end (agents racing for the last points) is the caller's to discard.
        """
        if self.index_exhausted(planned):
            return None
        trial = self.new_trial()
        return trial, self.index_of(trial.number)

    def index_exhausted(self, planned: int | None) -> bool:
        """Every index has a trial (some may still be running)."""
        self._read_created()
        return self.index_of(self._last_number + 1) >= (planned or 0)

    def index_of(self, number: int) -> int:
        """The grid index of the claimed (not enqueued) trial ``number``."""
        if number - 1 > self._last_number:
            self._read_created()
        return number - bisect.bisect_left(self._enqueued, number)

    def _read_created(self) -> None:
        storage = self.handle.storage
        for row in trial_index.created_after(
            storage, self.study_id, self._last_id, self._last_number
        ):
            if row.enqueued:
                self._enqueued.append(row.number)
            self._last_id, self._last_number = row.trial_id, row.number


class Taken(NamedTuple):
    """A point claimed by :meth:`TrialQueue.take_point`."""

    trial_id: int
    number: int
    point: dict[str, Any]
    retry_of: int | None


def _running(method: Method, point: dict[str, Any], claim: dict[str, Any]) -> Any:
    """A RUNNING trial of ``point``, claimed: Optuna's template for one create record."""
    from datetime import datetime

    from optuna.trial import FrozenTrial, TrialState

    params = method.optuna_params(point)
    return FrozenTrial(
        number=-1,  # numbered by the storage
        state=TrialState.RUNNING,
        value=None,
        datetime_start=datetime.now(),
        datetime_complete=None,
        params={name: dist.to_external_repr(internal) for name, (internal, dist) in params.items()},
        distributions={name: dist for name, (_, dist) in params.items()},
        user_attrs={PREFIX + "params": point, PREFIX + "claim": claim},
        system_attrs={},
        intermediate_values={},
        trial_id=-1,
    )
