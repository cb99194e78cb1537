"""Claiming and finishing trials: one Optuna study made exactly-once and crash-proof on any storage.

Where things are stored: :mod:`expctl.sweeps.studies`.

Guarantees and how they are kept:

* **Grid points run exactly once.** Every point is enqueued (WAITING) at create time; an agent
  claims one by moving it WAITING → RUNNING, which is atomic on the journal (log order decides),
  PostgreSQL/MySQL (``SELECT … FOR UPDATE``) and SQLite (one ``UPDATE … RETURNING`` under its
  write lock; without ``RETURNING``, under :meth:`StorageHandle.transition_lock`). Optuna's
  GridSampler is not used: under concurrent workers it repeats and misses points.
* **Dead agents are detected and their trial re-run, on every storage.** Before claiming, agents
  fail RUNNING trials whose heartbeat is older than ``stale_after`` seconds. Finishing a trial is
  atomic too: when two agents race to fail the same trial, exactly one succeeds (the other gets
  ``UpdateFinishedTrialError``), and only that one re-enqueues its parameters.
* **run_cap**: grids enqueue at most run_cap points; random/bayes keep the first run_cap fresh
  trials by trial number (trial numbers are allocated atomically) and discard any extra one
  created by a race, so the cap is never exceeded. Re-queued trials do not count twice.
* **metric.target**: the agent that completes a trial reaching it marks the sweep finished.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import TYPE_CHECKING, Any

from expctl.errors import UsageError
from expctl.sweeps.liveness import Liveness
from expctl.sweeps.methods import method_for
from expctl.sweeps.run_cap import RunCap
from expctl.sweeps.storage import StorageHandle, rdb_reads, rdb_writes, trial_index
from expctl.sweeps.storage.journal_writes import batched_writes
from expctl.sweeps.studies import (
    PREFIX,
    STATES,
    SweepInfo,
    agent_name,
    info_from_attrs,
    not_found,
)
from expctl.sweeps.trial import Claim, final_values, jsonable
from expctl.sweeps.trial_queue import Taken, TrialQueue

if TYPE_CHECKING:
    import optuna


class Sweep:
    """One sweep opened for an agent or for inspection."""

    def __init__(self, handle: StorageHandle, study: optuna.Study, info: SweepInfo, study_id: int):
        self.handle = handle
        self.study = study
        self.study_id = study_id
        self.info = info
        self.spec = info.spec
        self.method = method_for(info.spec)  # what the sweep's method decides
        self.id = info.id
        self.queue = TrialQueue(handle, study, study_id)  # which trial an agent claims next
        self.run_cap = RunCap(handle, study, study_id, info.spec)  # random/bayes: run_cap
        point_of = self._point_of if self.method.claims_by_index else None  # see reap_stale
        self.liveness = Liveness(handle, study_id, self.finish_from_run, point_of)  # heartbeats

    def _point_of(self, trial: optuna.trial.FrozenTrial) -> dict[str, Any] | None:
        """A grid trial claimed by index whose agent died before recording its point: the point
        of its index (None past the end)."""
        return self.method.point(self.queue.index_of(trial.number))

    # -- state --------------------------------------------------------------------------------

    def state(self) -> str:
        found = rdb_reads.study_user_attr(self.handle.storage, self.study_id, PREFIX + "state")
        if found is NotImplemented or found is rdb_reads.MISSING:  # Optuna's answer (or error)
            attrs = self.handle.storage.get_study_user_attrs(self.study_id)
            found = attrs.get(PREFIX + "state", "running")
        return str(found)

    def finished_reason(self) -> str | None:
        attrs = self.handle.storage.get_study_user_attrs(self.study_id)
        return attrs.get(PREFIX + "finished_reason")

    def current_info(self) -> SweepInfo:
        """The sweep as stored now (its state moves; the spec, parsed once, does not)."""
        from dataclasses import replace

        return replace(self.info, state=self.state(), finished_reason=self.finished_reason())

    def stop(self) -> SweepInfo:
        """No new trials: agents finish their current trial and exit."""
        if self.state() == "running":
            self.set_state("stopped")
        return self.current_info()

    def set_state(self, state: str, reason: str | None = None) -> None:
        assert state in STATES
        with batched_writes(self.handle.storage):  # a journal: one append
            if reason:  # first: an agent that sees the new state then reads why
                self.study.set_user_attr(PREFIX + "finished_reason", reason)
            self.study.set_user_attr(PREFIX + "state", state)

    def trials(self) -> list[optuna.trial.FrozenTrial]:
        return self.study.get_trials(deepcopy=False)

    # -- claiming -----------------------------------------------------------------------------

    def claim(self, agent: str | None = None, *, _attempt: int = 0) -> Claim | str:
        """Claim the next trial, or say why there is none.

        Returns a :class:`Claim`, or one of ``"stopped"``, ``"finished"`` (grid done, run_cap
        reached or target met), ``"wait"`` (nothing to claim now, but trials of other agents are
        still running: if one of them dies its trial comes back).
        """
        from optuna.trial import Trial

        state = self.state()
        if state != "running":
            return state
        self.handle.check_space()  # a disk that is full would take the claim, not the result
        agent = agent or agent_name()
        claim_info = {"agent": agent, "time": time.time()}
        if not self.method.samples_on_claim:
            taken = self.queue.take_point(self.method, claim_info)
            if taken is None:
                return self.idle()
            if taken is not NotImplemented:
                return self.claim_taken(taken)
        index = None  # a grid claimed by index: the point's index
        with self.handle.transition_lock():
            # a popped trial is ours: read after the lock (on SQLite, other agents wait for it)
            trial_id, claimed = self.queue.pop_waiting(claim_info)
            if trial_id is None and self.method.claims_by_index:
                indexed = self.queue.next_index(self.method.planned())
                if indexed is None:
                    return self.idle()
                trial, index = indexed
            elif trial_id is None and (not self.method.samples_on_claim or self.run_cap.reached()):
                return self.idle()
            elif trial_id is None:
                trial = self.queue.new_trial()
        if trial_id is not None:
            if self.method.samples_on_claim:
                # a re-run, created on the raw storage: Optuna's RDB cache must learn of it
                # before the sampler writes the params through it (else KeyError: its id)
                storage = getattr(self.study, "_storage", self.handle.storage)
                storage.get_all_trials(self.study_id, deepcopy=False)
            trial = Trial(self.study, trial_id)
        return self.start_claimed(trial, index, claimed, claim_info, agent, _attempt)

    def start_claimed(
        self,
        trial: optuna.Trial,
        index: int | None,
        claimed: bool,
        claim_info: dict[str, Any],
        agent: str,
        _attempt: int,
    ) -> Claim | str:
        """A trial just made ours (popped, or created for a grid ``index``): its point and
        params written (and its claim, unless ``claimed`` with the pop), or given up."""
        frozen_attrs = trial.user_attrs
        if index is not None and self.method.point(index) is None:
            self.run_cap.discard(trial)  # past the grid's end: another agent took the last
            return self.idle()
        retry_of = frozen_attrs.get(PREFIX + "retry_of")
        capped = retry_of is None and self.method.samples_on_claim
        if capped and self.run_cap.over_cap(trial.number):
            self.run_cap.discard(trial)
            return self.idle()
        try:
            # the sampled params, their W&B values and the claim in one journal append: this
            # agent owns the trial, nothing here needs to read them back
            with batched_writes(self.handle.storage):
                queued = frozen_attrs.get(PREFIX + "params")
                if index is not None:
                    queued = self.method.point(index)
                    self.handle.storage.set_trial_user_attr(
                        trial._trial_id, PREFIX + "params", queued
                    )
                params = self.method.trial_values(trial, queued, self.handle.storage)
                if not claimed:  # else written with the pop (one transaction)
                    self.handle.storage.set_trial_user_attr(
                        trial._trial_id, PREFIX + "claim", claim_info
                    )
        except BaseException as e:  # never leave a trial RUNNING that nobody will run
            self._fail_unstarted(trial._trial_id, f"could not sample its parameters: {e!r}")
            raise
        repeats = self.method.repeats_a_point
        if retry_of is None and _attempt < 3 and repeats(trial, params, self.study):
            # Two agents that ask at the same instant see the same history, and the GP's
            # acquisition optimiser can land both on the very same point (or on a corner it
            # already tried); give this one up and ask again, now that the other point is
            # visible. After a few tries the point is accepted, as W&B's bayes would.
            self.run_cap.discard(trial)
            return self.claim(agent, _attempt=_attempt + 1)
        return Claim.of(trial, params, retry_of)

    def _fail_unstarted(self, trial_id: int, message: str) -> None:
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        result = {PREFIX + "result": {"message": message}}
        with contextlib.suppress(UpdateFinishedTrialError), self.handle.transition_lock():
            rdb_writes.finish(self.handle.storage, trial_id, result, TrialState.FAIL, None)

    def idle(self) -> str:
        if self._unfinished():
            return "wait"
        reason = self.method.exhausted_reason
        if self.state() == "running":
            self.set_state("finished", reason)
        return "finished"

    # -- reporting and finishing --------------------------------------------------------------

    def report(self, claim: Claim, step: int, value: float) -> bool:
        """Record the metric after ``step`` (an epoch); True when hyperband says stop."""
        if value is None or math.isnan(value) or math.isinf(value):
            return False
        if step in claim.reported:
            return False
        claim.reported.add(step)
        claim.trial.report(float(value), step)
        return self.spec.early_terminate is not None and claim.trial.should_prune()

    def finish(
        self,
        claim: Claim,
        state: str,
        value: float | list[float] | None = None,
        result: dict[str, Any] | None = None,
    ) -> bool:
        """Move the claimed trial to complete | pruned | failed. False if another agent already
        finished it (it was considered dead and re-queued): the result is then discarded."""
        return self._finish(claim.trial_id, claim.number, state, value, result)

    def finish_from_run(self, trial: optuna.trial.FrozenTrial) -> str | None:
        """Record a stale RUNNING trial from its run directory when that run ended: its agent
        died while recording the result (a torn last journal record), and the point must not
        run twice. Returns the state recorded, or None (no ended run: fail and re-queue it)."""
        from expctl.sweeps.trial_runs import outcome_from_run

        found = outcome_from_run(self.id, trial.number, self.spec)
        if found is None:
            return None
        state, value, result = found
        if not self._finish(trial._trial_id, trial.number, state, value, result):
            return None
        return state

    def _finish(
        self,
        trial_id: int,
        number: int,
        state: str,
        value: float | list[float] | None = None,
        result: dict[str, Any] | None = None,
    ) -> bool:
        from optuna.exceptions import UpdateFinishedTrialError

        target, values, result = final_values(state, value, result)
        storage = self.handle.storage
        try:  # whoever reads the final state reads the result with it
            with self.handle.transition_lock():
                attrs = {PREFIX + "result": jsonable(result)}
                rdb_writes.finish(storage, trial_id, attrs, target, values)
        except UpdateFinishedTrialError:
            return False
        self.after_finish(target, value, number)
        return True

    def finish_then_claim(
        self,
        claim: Claim,
        state: str,
        value: float | list[float] | None,
        result: dict[str, Any] | None,
        agent: str,
        *,
        stale_after: float | None = None,
    ) -> tuple[bool, Claim | str | None]:
        """:meth:`finish`, and claim this agent's next trial in the same storage step where the
        method runs given points (a grid) — with the agent's beat, given ``stale_after``
        (:mod:`expctl.sweeps.handoff`). Returns what ``finish`` returns and the next claim (a
        :meth:`claim` answer), or None where the claim is not made here."""
        from expctl.sweeps import handoff

        return handoff.finish_then_claim(self, claim, (state, value, result), agent, stale_after)

    def claim_taken(self, taken: Taken) -> Claim:
        return Claim(taken.trial_id, taken.number, taken.point, taken.retry_of, self.study)

    def after_finish(
        self, target: Any, value: Any, number: int, *, drained: bool | None = None
    ) -> None:
        """The sweep ends with the trial that reaches ``metric.target``, or with the last
        point (said now, not when some agent next asks for a trial: agents that stop on
        ``--count`` never would)."""
        from optuna.trial import TrialState

        if target == TrialState.COMPLETE and self.spec.target_reached(value):
            self.set_state("finished", f"metric.target reached by trial {number}")
        elif self.method.finishes_when_drained and drained is not False and not self._unfinished():
            self.set_state("finished", self.method.exhausted_reason)

    def _unfinished(self) -> bool:
        """A trial is queued or running — or being re-queued: failed for a re-run whose new
        trial another agent is creating this instant (it marks the old one first)."""
        from optuna.trial import TrialState

        states = (TrialState.WAITING, TrialState.RUNNING)
        if trial_index.exists(self.handle.storage, self.study_id, states):
            return True
        if self.method.claims_by_index and not self.queue.index_exhausted(self.method.planned()):
            return True
        trials = self.handle.storage.get_all_trials(self.study_id, deepcopy=False)
        retried = {t.user_attrs.get(PREFIX + "retry_of") for t in trials}
        return any(
            t.state == TrialState.FAIL
            and t.user_attrs.get(PREFIX + "requeue")
            and t.number not in retried
            for t in trials
        )

    def requeue(self, claim: Claim, result: dict[str, Any] | None = None) -> int | None:
        """Give a claimed trial back (agent interrupted): failed here, re-run by another agent."""
        from optuna.exceptions import UpdateFinishedTrialError

        try:
            self.handle.storage.set_trial_user_attr(
                claim.trial_id,
                PREFIX + "result",
                jsonable({**(result or {}), "message": "interrupted; re-queued"}),
            )
        except UpdateFinishedTrialError:
            return None
        frozen = self.handle.storage.get_trial(claim.trial_id)
        requeue = self.liveness.fail_and_requeue
        return requeue(claim.trial_id, claim.number, frozen.params, claim.params)


def open_sweep(
    sweep_id: str,
    handle: StorageHandle,
    *,
    seed: int | None = None,
    sampler: optuna.samplers.BaseSampler | None = None,
) -> Sweep:
    """Open an existing sweep (NotFoundError listing the known ids when there is none)."""
    import optuna

    from expctl.sweeps.methods.hyperband import make_pruner

    try:
        study_id = handle.storage.get_study_id_from_name(sweep_id)
    except KeyError:
        raise not_found(sweep_id, handle) from None
    attrs = handle.storage.get_study_user_attrs(study_id)
    if PREFIX + "spec" not in attrs:
        raise UsageError(
            f"study {sweep_id!r} was not created by expctl",
            hint="create sweeps with `expctl sweep create SWEEP.yaml`",
        )
    info = info_from_attrs(sweep_id, attrs)
    study = optuna.load_study(
        study_name=sweep_id,
        storage=handle.storage,
        sampler=sampler or method_for(info.spec).make_sampler(seed),
        pruner=make_pruner(info.spec),
    )
    return Sweep(handle, study, info, study_id)
