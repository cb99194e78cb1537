"""``run_cap`` for random and bayes sweeps: the first run_cap fresh trials by trial number count;
an extra one created by a race is discarded (failed, excluded from counts and status); re-runs
of failed trials do not count twice. A collaborator of :class:`expctl.sweeps.engine.Sweep`, asked
only for methods that sample on claim (:attr:`~expctl.sweeps.methods.base.Method.samples_on_claim`);
a grid's run_cap cut its points at create time."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from expctl.sweeps.storage import rdb_writes, trial_index
from expctl.sweeps.studies import PREFIX

if TYPE_CHECKING:
    import optuna

    from expctl.sweeps.spec import SweepSpec
    from expctl.sweeps.storage import StorageHandle


class RunCap:
    """The run_cap of one sweep's study."""

    def __init__(self, handle: StorageHandle, study: optuna.Study, study_id: int, spec: SweepSpec):
        self.handle = handle
        self.study = study
        self.study_id = study_id
        self.spec = spec

    def _counts_toward_cap(self, t: optuna.trial.FrozenTrial) -> bool:
        return PREFIX + "retry_of" not in t.user_attrs and not t.user_attrs.get(
            PREFIX + "discarded"
        )

    def reached(self) -> bool:
        from optuna.trial import TrialState

        cap = self.spec.run_cap
        if cap is None:
            return False
        # fewer trials than the cap in all: not reached, without reading every trial's attrs
        # (on PostgreSQL a whole read was ~20 ms, twice per trial)
        if trial_index.count(self.handle.storage, self.study_id, tuple(TrialState)) < cap:
            return False
        counted = [t for t in self.study.get_trials(deepcopy=False) if self._counts_toward_cap(t)]
        return len(counted) >= cap

    def over_cap(self, number: int) -> bool:
        cap = self.spec.run_cap
        if cap is None or number < cap:  # at most `number` trials come before this one
            return False
        trials = self.study.get_trials(deepcopy=False)
        before = sum(1 for t in trials if t.number < number and self._counts_toward_cap(t))
        return before >= cap

    def discard(self, trial: optuna.Trial) -> None:
        """A trial created past run_cap by a race: failed and excluded from counts and status."""
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        storage, discarded = self.handle.storage, {PREFIX + "discarded": True}
        with contextlib.suppress(UpdateFinishedTrialError), self.handle.transition_lock():
            rdb_writes.finish(storage, trial._trial_id, discarded, TrialState.FAIL, None)
