"""What passes between the agent and an objective: one trial's context, outcome and record.

An *objective* is any ``Callable[[TrialContext], TrialOutcome | float | dict]``: expctl's trainer
and the user's ``program`` (:mod:`expctl.sweeps.objectives`), or a pure-Python function (tests,
benchmarks, ``expctl sweep agent --objective module:function``). :func:`verdict` is the rule
every agent — local or on W&B's server — applies to an outcome.
"""

from __future__ import annotations

import json
import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expctl.errors import ExpctlError, UsageError
from expctl.status import OUTCOME_STATUSES, VERDICT, OutcomeStatus, TrialRecordStatus, Verdict
from expctl.sweeps.spec import SweepSpec, to_overrides
from expctl.sweeps.spec.problems import is_number

if TYPE_CHECKING:
    import optuna


@dataclass
class Claim:
    """A trial this agent claimed: what it runs, and the steps it reported."""

    trial_id: int
    number: int
    params: dict[str, Any]
    retry_of: int | None
    study: optuna.Study | None = None  # where :attr:`trial` is made from, when first asked
    started: float = field(default_factory=time.time)
    reported: set[int] = field(default_factory=set)
    _trial: optuna.Trial | None = field(default=None, repr=False)

    @classmethod
    def of(cls, trial: optuna.Trial, params: dict[str, Any], retry_of: int | None) -> Claim:
        """The claim of an Optuna trial already made (one that sampled its params)."""
        claim = cls(trial._trial_id, trial.number, params, retry_of)
        claim._trial = trial
        return claim

    @property
    def trial(self) -> optuna.Trial:
        """The Optuna trial, for reports and pruning, made on the first report: making one reads
        the trial back (on a journal, a replay of what other agents appended meanwhile) and asks
        the sampler about it, and a grid's trials need none unless they report."""
        if self._trial is None:
            from optuna.trial import Trial

            assert self.study is not None, "a claim made without its study or trial"
            self._trial = Trial(self.study, self.trial_id)
        return self._trial

    def overrides(self, raw_keys: dict[str, str] | None = None) -> list[str]:
        return to_overrides(self.params, raw_keys)


@dataclass
class TrialContext:
    """Everything an objective needs to run one trial."""

    sweep_id: str
    number: int
    params: dict[str, Any]  # the sampled W&B values, by dotted name
    overrides: list[str]  # Hydra overrides: the agent's base overrides, then the sampled ones
    spec: SweepSpec
    config_dir: Path | None
    config_name: str
    run_name: str  # run directories go under runs/<run_name>/
    report: Callable[[int, dict[str, float]], bool]  # (epoch, metrics) -> True: stop (pruned)
    should_stop: Callable[[], int | None]  # a signal number once the agent must stop
    retry_of: int | None = None
    timeout: float | None = None  # --trial-timeout: seconds of wall time, from `started`
    started: float = field(default_factory=time.monotonic)

    @property
    def metric(self) -> str | None:
        return self.spec.metric.name if self.spec.metric else None

    @property
    def objectives(self) -> tuple[str, ...]:
        """The names of every objective (``metrics``, else ``metric``)."""
        return tuple(m.name for m in self.spec.objectives)

    def timed_out(self) -> bool:
        return self.timeout is not None and time.monotonic() - self.started > self.timeout


@dataclass
class TrialOutcome:
    """What a trial produced. ``value`` defaults to ``metrics[metric.name]``."""

    status: OutcomeStatus
    metrics: dict[str, float] = field(default_factory=dict)
    run_dir: str | None = None
    message: str | None = None
    value: float | None = None


Objective = Callable[[TrialContext], "TrialOutcome | float | dict[str, float]"]


@dataclass
class TrialRecord:
    number: int
    status: TrialRecordStatus
    params: dict[str, Any]
    overrides: list[str]
    value: float | None
    run_dir: str | None
    seconds: float
    message: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class AgentSummary:
    sweep_id: str
    reason: str = ""
    trials: list[TrialRecord] = field(default_factory=list)
    recovered: list[tuple[int, int]] = field(default_factory=list)  # (dead trial, its re-run)

    def count(self, status: str) -> int:
        return sum(1 for t in self.trials if t.status == status)


def failed_outcome(e: Exception) -> TrialOutcome:
    """A trial whose objective raised: failed, with where it raised unless it is ours."""
    if isinstance(e, ExpctlError):
        return TrialOutcome("failed", message=str(e).splitlines()[0])
    last = traceback.extract_tb(e.__traceback__)[-1:]
    where = f" at {last[0].filename}:{last[0].lineno}" if last else ""
    return TrialOutcome("failed", message=f"{type(e).__name__}: {e}{where}")


def as_outcome(raw: Any, metric: str | None) -> TrialOutcome:
    if isinstance(raw, TrialOutcome):
        return raw
    if isinstance(raw, dict):
        return TrialOutcome("completed", metrics={k: float(v) for k, v in raw.items()})
    if isinstance(raw, int | float):
        return TrialOutcome("completed", metrics={metric or "value": float(raw)}, value=float(raw))
    raise TypeError(
        f"an objective returns TrialOutcome, a float or a dict, not {type(raw).__name__}"
    )


def verdict(outcome: TrialOutcome, metric: str | None) -> tuple[Verdict, float | None]:
    """The trial's final state (complete | pruned | failed) and value, by the rules every agent
    applies (local or W&B-hosted); ``outcome.message`` is set to why a trial failed."""
    value = outcome.value
    if value is None and metric is not None:
        value = outcome.metrics.get(metric)
    status: str = outcome.status
    if status not in OUTCOME_STATUSES:
        status, outcome.message = "failed", f"objective returned unknown status {status!r}"
    if status == "completed" and metric is not None and value is None:
        logged = ", ".join(sorted(outcome.metrics)) or "nothing"
        status, outcome.message = "failed", f"metric {metric!r} was never logged (logged: {logged})"
    elif status == "completed" and value is not None and not math.isfinite(value):
        status, outcome.message = "failed", f"metric {metric!r} is {value}"
    if status in ("interrupted", "stopped"):
        status = "failed"
        outcome.message = outcome.message or f"trial ended as {outcome.status}"
    return VERDICT[status], value


def verdict_objectives(
    outcome: TrialOutcome, names: tuple[str, ...]
) -> tuple[Verdict, list[float] | None]:
    """:func:`verdict` for a multi-objective sweep: a completed trial must have logged every
    objective as a finite number (else it fails, saying which one); its values in ``names``'
    order."""
    final, _ = verdict(outcome, None)
    if final != "complete":
        return final, None
    values: list[float] = []
    for name in names:
        value = outcome.metrics.get(name)
        if value is None:
            logged = ", ".join(sorted(outcome.metrics)) or "nothing"
            outcome.message = (
                f"objective {name!r} was never logged (logged: {logged}); a multi-objective "
                f"trial must log every one of {', '.join(names)}"
            )
            return "failed", None
        if not math.isfinite(value):
            outcome.message = f"objective {name!r} is {value}"
            return "failed", None
        values.append(float(value))
    return final, values


def judge(outcome: TrialOutcome, spec: SweepSpec) -> tuple[Verdict, float | list[float] | None]:
    """The verdict of a trial of ``spec``: one value per objective of a multi-objective sweep
    (:func:`verdict_objectives`), else :func:`verdict`'s single value."""
    if spec.multi_objective:
        return verdict_objectives(outcome, tuple(m.name for m in spec.objectives))
    return verdict(outcome, spec.metric.name if spec.metric else None)


def timeout_message(timeout: float | None) -> str:
    return f"timed out after the trial timeout of {timeout:g} s (--trial-timeout)"


def numbers(metrics: dict[str, Any] | None) -> dict[str, float]:
    return {k: float(v) for k, v in (metrics or {}).items() if is_number(v)}


def check_timeout(trial_timeout: float | None) -> None:
    if trial_timeout is not None and not trial_timeout > 0:
        raise UsageError(
            f"--trial-timeout must be a positive number of seconds, got {trial_timeout!r}",
            hint="e.g. --trial-timeout 3600 (one hour per trial)",
        )


def jsonable(value: Any) -> Any:
    """``value`` as it reads back from JSON (what a storage keeps of a result)."""
    return json.loads(json.dumps(value, default=str, allow_nan=True))


def final_values(
    state: str, value: float | list[float] | None, result: dict[str, Any] | None
) -> tuple[Any, list[float] | None, dict[str, Any]]:
    """How a trial that ended ``state`` with ``value`` is stored: Optuna's final state, the
    values it records and the result attr (a NaN metric fails the trial; a completed trial
    without a metric is stored with 0.0 and says so)."""
    from optuna.trial import TrialState

    result = dict(result or {})
    target = {
        "complete": TrialState.COMPLETE,
        "pruned": TrialState.PRUNED,
        "failed": TrialState.FAIL,
    }[state]
    values: list[float] | None = None
    if isinstance(value, list):  # multi-objective: every value checked by verdict_objectives
        values = value if target == TrialState.COMPLETE else None
    elif target == TrialState.COMPLETE:
        if value is None:
            result["no_metric"] = True
            values = [0.0]
        elif math.isnan(value):
            target, result["message"] = TrialState.FAIL, "the metric is NaN"
        else:
            values = [float(value)]
    elif target == TrialState.PRUNED:
        values = [float(value)] if value is not None and math.isfinite(value) else None
    return target, values, result
