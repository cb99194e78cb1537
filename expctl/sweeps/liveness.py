"""Liveness: heartbeats, and re-queueing the trial of an agent that stopped beating.

Uniform on every storage (Optuna's own heartbeats exist only for RDB storages): the owning agent
refreshes a trial system attr from a background thread; any agent fails a RUNNING trial whose
heartbeat is older than ``stale_after``, and only the agent whose RUNNING → FAIL transition wins
re-queues its point — exactly once. A collaborator of :class:`expctl.sweeps.engine.Sweep`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from expctl.sweeps.storage import rdb_writes, trial_index
from expctl.sweeps.studies import AGENT_PREFIX, PREFIX

if TYPE_CHECKING:
    import optuna

    from expctl.sweeps.storage import StorageHandle


class Liveness:
    """Heartbeats of one sweep's trials and agents, and the reaping of stale trials."""

    def __init__(
        self,
        handle: StorageHandle,
        study_id: int,
        finish_from_run: Callable[[optuna.trial.FrozenTrial], str | None],
        point_of: Callable[[optuna.trial.FrozenTrial], dict[str, Any] | None] | None = None,
    ):
        self.handle = handle
        self.study_id = study_id
        # the engine's: records a stale trial from its run dir when the run ended
        self.finish_from_run = finish_from_run
        # a grid claimed by index: the point of a trial whose agent died before recording it
        self.point_of = point_of

    def heartbeat(self, trial_id: int) -> bool:
        """Refresh a running trial's heartbeat; False once it is finished (maybe by others)."""
        from optuna.exceptions import UpdateFinishedTrialError

        try:
            self.handle.storage.set_trial_system_attr(trial_id, PREFIX + "heartbeat", time.time())
        except (UpdateFinishedTrialError, KeyError):
            return False
        return True

    def agent_beat(self, agent: str, stale_after: float, *, exited: bool = False) -> None:
        """The agent's own heartbeat (a study attr per agent): alive, or gone."""
        from expctl.sweeps.slurm import slurm_job

        beat: dict[str, Any] = {"at": time.time(), "stale_after": stale_after, "exited": exited}
        if job := slurm_job():  # an agent on SLURM says which job it is, for `sweep status`
            beat["slurm"] = job
        self.handle.storage.set_study_system_attr(self.study_id, AGENT_PREFIX + agent, beat)

    def agents(self) -> dict[str, dict[str, Any]]:
        """Each agent that ever joined: ``{"alive": bool, "last_beat_s": seconds ago,
        "slurm": its SLURM job (expctl.sweeps.slurm.slurm_job) or None}``."""
        now = time.time()
        found = {}
        attrs = self.handle.storage.get_study_system_attrs(self.study_id)
        for key, beat in attrs.items():
            if not key.startswith(AGENT_PREFIX) or not isinstance(beat, dict):
                continue
            age = now - float(beat.get("at", 0))
            alive = not beat.get("exited") and age <= float(beat.get("stale_after", 60))
            found[key[len(AGENT_PREFIX) :]] = {
                "alive": alive,
                "last_beat_s": round(age, 1),
                "slurm": beat.get("slurm"),
            }
        return found

    def reap_stale(self, stale_after: float) -> list[tuple[int, int]]:
        """Fail RUNNING trials whose agent stopped heartbeating; re-queue each exactly once.

        A stale trial whose run directory says the run ended (its agent died while recording
        the result) is recorded from that run instead: a finished point never runs twice.
        Returns ``(failed trial number, new trial number)`` for each trial this agent re-queued.
        """
        from optuna.trial import TrialState

        now = time.time()
        requeued = []
        running = trial_index.unfinished(self.handle.storage, self.study_id, (TrialState.RUNNING,))
        for t in running:
            last = t.system_attrs.get(PREFIX + "heartbeat")
            if last is None and t.datetime_start is not None:
                last = t.datetime_start.timestamp()
            if last is None or now - float(last) <= stale_after:
                continue
            if self.finish_from_run(t) is not None:
                continue
            params = t.user_attrs.get(PREFIX + "params")
            if params is None and self.point_of is not None:
                params = self.point_of(t)
                if params is None:  # created past the grid's end: nothing to re-run
                    self._discard(t._trial_id)
                    continue
            new = self.fail_and_requeue(t._trial_id, t.number, t.params, params)
            if new is not None:
                requeued.append((t.number, new))
        return requeued

    def _discard(self, trial_id: int) -> None:
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        discarded = {PREFIX + "discarded": True}
        with contextlib.suppress(UpdateFinishedTrialError), self.handle.transition_lock():
            rdb_writes.finish(self.handle.storage, trial_id, discarded, TrialState.FAIL, None)

    def fail_and_requeue(
        self, trial_id: int, number: int, latent: dict[str, Any], params: dict[str, Any] | None
    ) -> int | None:
        """Only the agent whose RUNNING → FAIL transition succeeds re-enqueues the parameters,
        in the same step (one transaction; one journal append checked under its lock): a point
        failed for a re-run that was never created would be lost, with every agent waiting for
        it. Returns the re-run's number, None where the trial was finished by another."""
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState, create_trial

        user_attrs: dict[str, Any] = {PREFIX + "retry_of": number}
        if params is not None:
            user_attrs[PREFIX + "params"] = params
        # what Study.enqueue_trial does, but we need the new trial's number back
        template = create_trial(
            state=TrialState.WAITING, system_attrs={"fixed_params": latent}, user_attrs=user_attrs
        )
        requeue = {PREFIX + "requeue": True}  # with the FAIL: `sweep status` shows why
        storage = self.handle.storage
        try:
            with self.handle.transition_lock():
                new = rdb_writes.fail_and_requeue(
                    storage, trial_id, requeue, self.study_id, template
                )
                if new is NotImplemented:
                    new = _fail_and_requeue_by_journal(
                        storage, trial_id, requeue, self.study_id, template
                    )
                if new is NotImplemented:  # MySQL, older libraries: two steps, as before
                    rdb_writes.finish(storage, trial_id, requeue, TrialState.FAIL, None)
                    new_id = storage.create_new_trial(self.study_id, template_trial=template)
                    new = storage.get_trial(new_id).number
        except UpdateFinishedTrialError:
            return None
        return new


def _fail_and_requeue_by_journal(
    storage: Any, trial_id: int, requeue: dict[str, Any], study_id: int, template: Any
) -> int | Any | None:
    """:meth:`Liveness.fail_and_requeue` on a journal: the FAIL and the re-run in one append,
    decided on the replay and checked under the lock; ``NotImplemented`` elsewhere."""
    from optuna.trial import TrialState

    from expctl.sweeps.storage.journal_writes import Exclusive, exclusive_writes

    def decide(exclusive: Exclusive) -> int | None:
        exclusive.depends_on(trial_id)
        if storage.get_trial(trial_id).state.is_finished():
            return None  # its agent finished it, or another failed it first
        _, number = exclusive.next_trial(study_id)
        for key, value in requeue.items():
            storage.set_trial_user_attr(trial_id, key, value)
        storage.set_trial_state_values(trial_id, TrialState.FAIL)
        storage.create_new_trial(study_id, template_trial=template)
        return number

    return exclusive_writes(storage, decide)
