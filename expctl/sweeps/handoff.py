"""Between two trials: one trial's result and the agent's next claim in one storage step.

An agent that finishes a trial and will run another records the result and claims its next
point together, where the method runs given points (a grid):

* on a journal, one append, decided against the agent's replay and checked under the file
  lock (:func:`expctl.sweeps.storage.journal_writes.exclusive_writes`), with the agent's beat
  riding along when one is due;
* on SQLite and PostgreSQL, one transaction (:func:`expctl.sweeps.storage.rdb_writes.
  finish_then_pop`): on SQLite one take of the write lock and one commit instead of two — with
  8 agents on 2 cores the lock's hold, stretched by preemption, was what bounded them.

Anything else (random and bayes, which sample at the claim; a result that reaches
``metric.target``; a full disk; MySQL) finishes here and leaves the claim to
:meth:`Sweep.claim`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from expctl.errors import ExpctlError
from expctl.sweeps.storage import rdb_writes
from expctl.sweeps.storage.journal_writes import Exclusive, exclusive_writes
from expctl.sweeps.studies import PREFIX
from expctl.sweeps.trial import Claim, final_values, jsonable

if TYPE_CHECKING:
    from expctl.sweeps.engine import Sweep
    from expctl.sweeps.trial_queue import Taken

Outcome = tuple[str, Any, "dict[str, Any] | None"]  # the final state, value(s) and result


def finish_then_claim(
    sweep: Sweep, claim: Claim, outcome: Outcome, agent: str, stale_after: float | None
) -> tuple[bool, Claim | str | None]:
    """:meth:`Sweep.finish_then_claim`."""
    from optuna.trial import TrialState

    state, value, result = outcome
    final = final_values(state, value, result)
    try:
        sweep.handle.check_space()  # no space: the result is written, the claim refused next
    except ExpctlError:
        return sweep.finish(claim, state, value, result), None
    target = final[0]
    if sweep.method.samples_on_claim or (
        target == TrialState.COMPLETE and sweep.spec.target_reached(value)
    ):
        return sweep.finish(claim, state, value, result), None
    agent_claim = {"agent": agent, "time": time.time()}
    handed = _by_journal(sweep, claim, final, value, agent_claim, stale_after)
    if handed is NotImplemented:
        handed = _by_transaction(sweep, claim, final, value, agent_claim, stale_after)
    if handed is NotImplemented:
        return sweep.finish(claim, state, value, result), None
    return handed


def _by_journal(
    sweep: Sweep,
    claim: Claim,
    final: tuple[Any, list[float] | None, dict[str, Any]],
    value: Any,
    agent_claim: dict[str, Any],
    stale_after: float | None,
) -> Any:
    target, values, result = final
    storage = sweep.handle.storage

    def decide(exclusive: Exclusive) -> tuple[bool, str, Taken | None]:
        exclusive.depends_on(claim.trial_id)
        finished = not storage.get_trial(claim.trial_id).state.is_finished()
        if finished:  # else another agent failed it meanwhile: it looked dead
            storage.set_trial_user_attr(claim.trial_id, PREFIX + "result", jsonable(result))
            storage.set_trial_state_values(claim.trial_id, target, values)
        sweep_state = sweep.state()
        taken = None
        if sweep_state == "running":
            taken = sweep.queue.take(exclusive, sweep.method, agent_claim)
        if taken is not None and stale_after is not None:  # the agent's beat rides along
            sweep.liveness.agent_beat(agent_claim["agent"], stale_after)
        return finished, sweep_state, taken

    decided = exclusive_writes(storage, decide)
    if decided is NotImplemented:
        return NotImplemented
    finished, sweep_state, taken = decided
    if finished:
        sweep.after_finish(target, value, claim.number, drained=taken is None)
    if sweep_state != "running":
        return finished, sweep_state
    if taken is None:
        return finished, sweep.idle()
    return finished, sweep.claim_taken(taken)


def _by_transaction(
    sweep: Sweep,
    claim: Claim,
    final: tuple[Any, list[float] | None, dict[str, Any]],
    value: Any,
    agent_claim: dict[str, Any],
    stale_after: float | None,
) -> Any:
    """Nothing popped (stopped, finished, a grid claimed by index): the loop's claim says what
    next."""
    from optuna.trial import Trial

    target, values, result = final
    attrs = {PREFIX + "result": jsonable(result)}
    next_claim = (sweep.study_id, PREFIX + "state", PREFIX + "claim", agent_claim)
    storage = sweep.handle.storage
    done = rdb_writes.finish_then_pop(storage, claim.trial_id, attrs, target, values, next_claim)
    if done is NotImplemented:
        return NotImplemented
    finished, popped = done
    if finished:
        sweep.after_finish(target, value, claim.number, drained=popped is None)
    if popped is None:
        return finished, None
    agent = agent_claim["agent"]
    if stale_after is not None:  # the loop counts the beat as written with the claim
        sweep.liveness.agent_beat(agent, stale_after)
    trial = Trial(sweep.study, popped)
    return finished, sweep.start_claimed(trial, None, True, agent_claim, agent, 0)
