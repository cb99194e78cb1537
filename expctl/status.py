"""The words for how runs and trials end: one vocabulary, and the two translations it needs.

* A **run** (a run directory's ``summary.json``, :class:`~expctl.train.loop.RunResult`, a program
  trial's record) is ``running`` → ``completed`` | ``stopped`` (a callback or the pruner ended it
  early) | ``interrupted`` (a signal; resumable) | ``failed``. A reader that finds ``running``
  with no live process holding the run calls it ``crashed``.
* A **trial** in the sweep storage is an Optuna state, shown lower-case: ``waiting``,
  ``running``, ``complete``, ``pruned``, ``fail``.
* What the agent did with a trial (:class:`~expctl.sweeps.trial.TrialRecord`) is the state it
  recorded — ``complete``, ``pruned``, ``failed`` — or ``requeued`` (interrupted: back in the
  queue) or ``lost`` (another agent had re-queued it meanwhile).
"""

from __future__ import annotations

from typing import Literal, get_args

RunStatus = Literal["running", "completed", "stopped", "interrupted", "failed"]
ShownRunStatus = Literal["running", "completed", "stopped", "interrupted", "failed", "crashed"]
# What an objective says of a trial: a run status, or pruned (stopped by hyperband)
OutcomeStatus = Literal["completed", "stopped", "interrupted", "failed", "pruned"]
Verdict = Literal["complete", "pruned", "failed"]
TrialRecordStatus = Literal["complete", "pruned", "failed", "requeued", "lost"]
ProgramStatus = Literal["completed", "failed", "interrupted", "stopped", "timeout"]

RUN_STATUSES: tuple[str, ...] = get_args(ShownRunStatus)
OUTCOME_STATUSES: tuple[str, ...] = get_args(OutcomeStatus)

# how a program trial's end reads as a run (`stopped` is the pruner's: a pruned trial)
PROGRAM_RUN_STATUS: dict[str, RunStatus] = {
    "completed": "completed",
    "failed": "failed",
    "interrupted": "interrupted",
    "stopped": "stopped",
    "timeout": "failed",
}
PROGRAM_OUTCOME: dict[str, OutcomeStatus] = {
    "completed": "completed",
    "failed": "failed",
    "interrupted": "interrupted",
    "stopped": "pruned",
    "timeout": "failed",
}
# an outcome, once its metric is checked, as the trial state the agent records
VERDICT: dict[str, Verdict] = {"completed": "complete", "pruned": "pruned", "failed": "failed"}
