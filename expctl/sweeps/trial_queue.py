"""Which trial an agent claims next: the queue of WAITING trials (a grid's points, re-runs),
else a fresh trial. A collaborator of :class:`expctl.sweeps.engine.Sweep`."""

from __future__ import annotations

import contextlib
import random
from typing import TYPE_CHECKING

from expctl.sweeps.storage import StorageHandle, trial_index

if TYPE_CHECKING:
    import optuna

# How many of the oldest waiting trials an agent may claim (see TrialQueue.pop_waiting).
CLAIM_WINDOW = 8
_claim_order = random.Random()  # its own generator: a seeded global `random` stays unshared


class TrialQueue:
    """The WAITING trials of one sweep's study, as one agent claims them."""

    def __init__(self, handle: StorageHandle, study: optuna.Study, study_id: int):
        self.handle = handle
        self.study = study
        self.study_id = study_id
        self._claims_since_race = CLAIM_WINDOW + 1  # see pop_waiting

    def pop_waiting(self) -> int | None:
        """WAITING → RUNNING for the oldest queued trial we win (Optuna's pop protocol: write
        RUNNING, the log or the row lock decides).

        Agents that all try the oldest trial lose to one winner and retry, one journal append
        (and fsync, under the file lock) each: measured, that made 8 agents slower than 1. So an
        agent that lost a race in its last CLAIM_WINDOW claims tries the oldest CLAIM_WINDOW
        waiting trials in its own random order; an agent alone keeps the grid's exact order.
        """
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        storage = self.handle.storage
        popped = trial_index.pop_waiting(storage, self.study_id)  # PostgreSQL: SKIP LOCKED
        if popped is not NotImplemented:
            return popped
        self._claims_since_race += 1
        window = trial_index.waiting_ids(storage, self.study_id, CLAIM_WINDOW)
        while window:
            contended = self._claims_since_race <= CLAIM_WINDOW
            trial_id = window.pop(_claim_order.randrange(len(window)) if contended else 0)
            try:
                if storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                    return trial_id
            except UpdateFinishedTrialError:
                pass
            self._claims_since_race = 0  # another agent won it
            if not window:
                window = trial_index.waiting_ids(storage, self.study_id, CLAIM_WINDOW)
        return None

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
