"""The sweep agent: claim a trial → run it → record the result, until the sweep says stop.

Trials of sweeps without ``program`` run expctl's trainer **in this process**: a child process
would pay ~3 s to import torch (plus ~1 s for wandb) per trial, while the bookkeeping target is
≤ 50 ms per trial; isolation comes from a fresh run directory, a freshly composed config and the
trainer's own cleanup (``wandb.finish`` in ``finally``). Sweeps with ``program`` run the user's
script through :func:`expctl.sweeps.program.run_program_trial` (the next sweeps issue).

An *objective* is any ``Callable[[TrialContext], TrialOutcome | float | dict]``: tests and
benchmarks plug in pure-Python ones, and ``expctl sweep agent --objective module:function`` does
the same from the command line.

Signals: SIGTERM/SIGINT stop the running trial at its next step (``ctx.should_stop()``), the
trial is failed and its parameters re-queued for another agent, and :class:`Interrupted` is
raised (exit 143/130). A second signal interrupts at once (same re-queue).

``--trial-timeout`` (``ctx.timeout``): a program trial is killed (SIGTERM to its process group,
SIGKILL after the grace); a trainer trial stops at its next step boundary through the same hook
as a signal (``last.pt`` saved, W&B run finished) — it runs in this process, so it cannot be
killed, and a step that hangs inside torch is not interrupted. Either way the trial is failed
with a message saying it timed out, and nothing is re-queued. Custom objectives get
``ctx.timeout``/``ctx.timed_out()`` and may stop themselves.

W&B-hosted sweeps (``expctl sweep agent ENTITY/PROJECT/ID``): :func:`wandb_trial_function` wraps
the same objectives into the function W&B's agent calls once per trial.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import math
import signal
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from expctl import signals
from expctl.config import ConfigSource
from expctl.errors import ExpctlError, Interrupted, RuntimeFailure, UsageError
from expctl.secrets import redact_overrides
from expctl.status import (
    OUTCOME_STATUSES,
    PROGRAM_OUTCOME,
    VERDICT,
    OutcomeStatus,
    TrialRecordStatus,
    Verdict,
)
from expctl.sweeps.engine import Claim, Sweep, agent_name, open_sweep
from expctl.sweeps.spec import SweepSpec, to_overrides
from expctl.sweeps.spec_problems import is_number
from expctl.sweeps.storage import StorageHandle


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


# -- objectives -----------------------------------------------------------------------------------


def load_objective(dotted: str) -> Objective:
    """``package.module:function`` → the function (for ``--objective``)."""
    module_name, _, attr = dotted.partition(":")
    if not module_name or not attr:
        raise UsageError(
            f"--objective {dotted!r} is not MODULE:FUNCTION",
            hint="e.g. --objective mypkg.objectives:branin",
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UsageError(
            f"cannot import {module_name!r} for --objective: {e}",
            hint="put the module on PYTHONPATH",
        ) from e
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise UsageError(
            f"{module_name} has no function {attr!r}",
            hint="--objective MODULE:FUNCTION names a callable(ctx)",
        )
    return fn


def trainer_objective(ctx: TrialContext, *, quiet: bool = True) -> TrialOutcome:
    """Run expctl's trainer in-process on the composed config with the trial's overrides."""
    from expctl.config import compose_config
    from expctl.rundir import create_run_dir
    from expctl.train import train

    run_dir = create_run_dir(ctx.run_name)
    try:
        # A trial publishes its checkpoints with `latest` only: moving `best` would make it
        # mean "the last trial". The sweep's best run is the one `expctl sweep status` names.
        internal = ("++artifact.aliases=[]",)
        cfg = compose_config(
            ConfigSource(ctx.config_dir, ctx.config_name, (*ctx.overrides, *internal)),
            run_dir=run_dir,
        )
    except ExpctlError:
        run_dir.rmdir()  # still empty: leave no trace of a trial that never started
        raise
    pruned = False

    def on_epoch(epoch: int, metrics: dict[str, float]) -> bool:
        nonlocal pruned
        if ctx.metric and ctx.metric in metrics and ctx.report(epoch, metrics):
            pruned = True
        return pruned

    def should_stop() -> int | None:
        # the trainer's stop hook, checked after every step, also ends a trial past its timeout
        return ctx.should_stop() or (signal.SIGTERM if ctx.timed_out() else None)

    try:
        result = train(
            cfg,
            run_dir=run_dir,
            overrides=list(ctx.overrides),
            callbacks=[on_epoch],
            quiet=quiet,
            handle_signals=False,
            wandb_group=ctx.sweep_id,
            should_stop=should_stop,
        )
    except Interrupted as e:
        if ctx.should_stop() is not None or not ctx.timed_out():
            raise  # a real signal: the agent re-queues the trial and exits
        partial = getattr(e, "result", None)
        return TrialOutcome(
            "failed",
            metrics=_numbers(getattr(partial, "final_metrics", {})),
            run_dir=str(run_dir),
            message=f"{_timeout_message(ctx.timeout)}; stopped at the step boundary, "
            "checkpoints/last.pt saved",
        )
    except (
        ExpctlError
    ) as e:  # training failed (NaN loss, OOM, ...): a failed trial, not an agent crash
        partial = getattr(e, "result", None)
        return TrialOutcome(
            "failed",
            metrics=_numbers(getattr(partial, "final_metrics", {})),
            run_dir=str(run_dir),
            message=str(e).splitlines()[0],
        )
    status: OutcomeStatus = result.status if result.status != "running" else "failed"
    if pruned and status in ("stopped", "completed"):
        status = "pruned"
    return TrialOutcome(
        status=status, metrics=_numbers(result.final_metrics), run_dir=str(result.run_dir)
    )


def _timeout_message(timeout: float | None) -> str:
    return f"timed out after the trial timeout of {timeout:g} s (--trial-timeout)"


def _numbers(metrics: dict[str, Any] | None) -> dict[str, float]:
    return {k: float(v) for k, v in (metrics or {}).items() if is_number(v)}


def program_objective(ctx: TrialContext) -> TrialOutcome:
    """``program:`` sweeps: the user's script, unmodified, via :mod:`expctl.sweeps.program`."""
    from expctl.rundir import create_run_dir
    from expctl.sweeps.engine import new_sweep_id
    from expctl.sweeps.program import run_program_trial
    from expctl.sweeps.program_record import write_program_record

    run_dir = create_run_dir(ctx.run_name)
    metric = ctx.metric

    def on_metric(index: int, value: float) -> bool:
        return bool(metric) and ctx.report(index, {metric: value})  # type: ignore[dict-item]

    spec = ctx.spec
    started = datetime.now(timezone.utc)
    result = run_program_trial(
        spec.program or "",
        list(spec.command) if spec.command else None,
        ctx.params,
        metric=metric or "",
        sweep_id=ctx.sweep_id,
        run_id=new_sweep_id(),
        trial_dir=run_dir,
        on_metric=on_metric,
        should_stop=ctx.should_stop,
        parameters_spec=spec.raw.get("parameters"),
        project=spec.project,
        entity=spec.entity,
        timeout=ctx.timeout,
    )
    write_program_record(
        run_dir,
        result,
        name=ctx.run_name,
        sweep_id=ctx.sweep_id,
        trial=ctx.number,
        params=ctx.params,
        metric=metric,
        maximize=bool(spec.metric and spec.metric.maximize),
        started=started,
    )
    metrics = {metric: result.value} if metric and result.value is not None else {}
    message = result.message or None
    if result.status == "timeout":
        message = f"{_timeout_message(ctx.timeout)}; the program was killed ({result.message})"
    return TrialOutcome(
        PROGRAM_OUTCOME.get(result.status, "failed"),
        metrics=metrics,
        run_dir=str(run_dir),
        message=message,
        value=result.value,
    )


def default_objective(spec: SweepSpec) -> Objective:
    return program_objective if spec.runs_own_command else trainer_objective


def _failed(e: Exception) -> TrialOutcome:
    """A trial whose objective raised: failed, with where it raised unless it is ours."""
    if isinstance(e, ExpctlError):
        return TrialOutcome("failed", message=str(e).splitlines()[0])
    last = traceback.extract_tb(e.__traceback__)[-1:]
    where = f" at {last[0].filename}:{last[0].lineno}" if last else ""
    return TrialOutcome("failed", message=f"{type(e).__name__}: {e}{where}")


def _as_outcome(raw: Any, metric: str | None) -> TrialOutcome:
    if isinstance(raw, TrialOutcome):
        return raw
    if isinstance(raw, dict):
        return TrialOutcome("completed", metrics={k: float(v) for k, v in raw.items()})
    if isinstance(raw, int | float):
        return TrialOutcome("completed", metrics={metric or "value": float(raw)}, value=float(raw))
    raise TypeError(
        f"an objective returns TrialOutcome, a float or a dict, not {type(raw).__name__}"
    )


# -- W&B-hosted sweeps ----------------------------------------------------------------------------


def wandb_trial_function(
    spec: SweepSpec,
    sweep_id: str,
    *,
    config_source: ConfigSource | None = None,
    objective: Objective | None = None,
    trial_timeout: float | None = None,
    on_event: Callable[[str], None] | None = None,
) -> Callable[[], None]:
    """The function W&B's agent calls once per trial of a W&B-hosted sweep without ``program``.

    It does what every W&B sweep function does — ``wandb.init()`` (W&B's agent has put the
    trial's parameters where init finds them) and read ``wandb.config`` — then runs the local
    agent's objective (expctl's trainer unless ``objective``) with those values as overrides,
    after ``config_source``'s. The trainer logs into that same run: :func:`expctl.tracking.
    start_tracker` reuses an active ``wandb.run``. Sampling and early termination are W&B's
    server's (it stops a run through W&B's agent), so ``report`` never asks to stop here.

    A failed trial raises :class:`RuntimeFailure` after finishing its run with exit code 1, so
    W&B's agent records the run as failed and applies its own flapping rule.
    """
    _check_timeout(trial_timeout)
    emit = on_event or (lambda message: None)
    run_objective = objective or trainer_objective
    numbers = itertools.count()
    base = list(config_source.overrides) if config_source else []
    config_dir = config_source.config_dir if config_source else None
    config_name = config_source.config_name if config_source else "config"

    def trial() -> None:
        import wandb

        run = wandb.run or wandb.init()
        number = next(numbers)
        params = sweep_values(dict(run.config), spec)
        sampled = to_overrides(params)
        ctx = TrialContext(
            sweep_id=sweep_id,
            number=number,
            params=params,
            overrides=[*base, *sampled],
            spec=spec,
            config_dir=config_dir,
            config_name=config_name,
            run_name=spec.name or f"sweep-{sweep_id}",
            report=lambda epoch, metrics: False,
            should_stop=lambda: None,
            timeout=trial_timeout,
        )
        shown = " ".join(redact_overrides(sampled)) or "(no parameters)"
        emit(f"trial {number} (W&B run {run.id}): {shown}")
        try:
            outcome = _as_outcome(run_objective(ctx), ctx.metric)
        except Interrupted:
            raise
        except Exception as e:
            outcome = _failed(e)
        if ctx.timed_out() and outcome.status in ("interrupted", "stopped"):
            outcome.status, outcome.message = "failed", _timeout_message(trial_timeout)
        final, value = _verdict(outcome, ctx.metric)
        if wandb.run is run:
            # still open: the objective did not log into it (the trainer finishes its run)
            if outcome.metrics:
                run.log(dict(outcome.metrics))
            run.finish(exit_code=0 if final != "failed" else 1)
        seconds = time.monotonic() - ctx.started
        shown = f" {ctx.metric}={value:.6g}" if (value is not None and ctx.metric) else ""
        extra = f": {outcome.message}" if final == "failed" and outcome.message else ""
        emit(f"trial {number}: {final}{shown} ({seconds:.1f} s){extra}")
        if final == "failed":
            raise RuntimeFailure(f"trial {number} failed: {outcome.message}")

    return trial


def sweep_values(config: Mapping[str, Any], spec: SweepSpec) -> dict[str, Any]:
    """Each spec parameter's value in ``wandb.config``, by expctl's flat dotted name.

    W&B keeps a flat dotted name (``optim.lr``) as one key and re-nests nested ``parameters:``
    blocks (``{"optim": {"lr": ...}}``); both forms, and mixtures, are found.
    """
    values: dict[str, Any] = {}
    for p in spec.parameters:
        found, value = _lookup(config, p.name.split("."))
        if not found:
            raise RuntimeFailure(
                f"W&B's agent gave no value for sweep parameter {p.name!r} "
                f"(wandb.config has: {', '.join(sorted(map(str, config))) or 'nothing'})",
                hint="was the sweep changed on W&B after this agent started? restart the agent",
            )
        values[p.name] = value
    return values


def _lookup(node: Any, parts: list[str]) -> tuple[bool, Any]:
    if not isinstance(node, Mapping):
        return False, None
    for j in range(len(parts), 0, -1):  # the longest dotted key at this level first
        key = ".".join(parts[:j])
        if key in node:
            if j == len(parts):
                return True, node[key]
            found, value = _lookup(node[key], parts[j:])
            if found:
                return True, value
    return False, None


# -- heartbeats -----------------------------------------------------------------------


class _Heartbeat(threading.Thread):
    """Refreshes the running trial's heartbeat so other agents know this one is alive, and the
    agent's own (``sweep status`` shows which agents are alive, also those waiting)."""

    def __init__(self, sweep: Sweep, interval: float, agent: str, stale_after: float):
        super().__init__(name="expctl-heartbeat", daemon=True)
        self.sweep = sweep
        self.interval = interval
        self.agent, self.stale_after = agent, stale_after
        self.trial_id: int | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        while True:
            trial_id = self.trial_id
            # a storage hiccup must not kill the trial; the next beat retries
            with contextlib.suppress(Exception):
                if trial_id is not None:
                    self.sweep.heartbeat(trial_id)
                self.sweep.agent_beat(self.agent, self.stale_after)
            if self._stop_event.wait(self.interval):
                return

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)
        with contextlib.suppress(Exception):
            self.sweep.agent_beat(self.agent, self.stale_after, exited=True)


# -- the loop -------------------------------------------------------------------------------------


class _FlapGuard:
    """W&B's rule: stop after ``burst`` failures within ``window`` s, or when failures reach
    ``initial`` without outnumbering successes."""

    def __init__(self, burst: int = 3, window: float = 60.0, initial: int = 5):
        self.burst, self.window, self.initial = burst, window, initial
        self.failures: list[float] = []
        self.successes = 0

    def record(self, ok: bool) -> str | None:
        if ok:
            self.successes += 1
            return None
        now = time.monotonic()
        self.failures.append(now)
        recent = [t for t in self.failures if now - t <= self.window]
        if len(recent) >= self.burst:
            return f"{len(recent)} trials failed within {self.window:g} s"
        if len(self.failures) >= self.initial and len(self.failures) >= self.successes:
            return f"{len(self.failures)} trials failed and only {self.successes} succeeded"
        return None


def run_agent(
    sweep_id: str,
    *,
    storage: str | StorageHandle | None = None,
    count: int | None = None,
    config_source: ConfigSource | None = None,
    objective: Objective | None = None,
    stale_after: float = 60.0,
    heartbeat_interval: float | None = None,
    wait: bool = True,
    handle_signals: bool = True,
    on_event: Callable[[str], None] | None = None,
    seed: int | None = None,
    flap_guard: tuple[int, float, int] = (3, 60.0, 5),
    trial_timeout: float | None = None,
    on_open: Callable[[], None] | None = None,
) -> AgentSummary:
    """Run trials of ``sweep_id`` until ``count`` trials ran here, or the sweep is done/stopped.

    ``config_source`` overrides the config dir/name stored with the sweep and adds base
    overrides (the sampled ones come after and win). ``stale_after``: seconds without a heartbeat
    after which another agent's RUNNING trial is considered dead, failed and re-queued.
    ``wait``: when nothing is left to claim but other agents still run trials, keep polling (so a
    trial whose agent dies is re-run here) instead of exiting.
    ``trial_timeout``: seconds of wall time per trial, after which the trial is stopped and
    failed (see the module docstring for how each kind of trial is stopped).
    ``on_open`` is called once the sweep is found (so "agent started" is never said of a typo).
    Raises :class:`Interrupted` on SIGTERM/SIGINT (after re-queueing the trial) and
    :class:`RuntimeFailure` when the flapping guard trips.
    """
    _check_timeout(trial_timeout)
    emit = on_event or (lambda message: None)
    sweep = open_sweep(sweep_id, storage, seed=seed)
    spec = sweep.spec
    missing = spec.missing_program() if objective is None else None
    if missing is not None:  # before claiming anything: no trial is burnt on it
        raise UsageError(
            f"sweep {sweep_id} runs program {spec.program!r}, which does not exist here: {missing}",
            hint="start the agent in the directory the program path is relative to (the "
            "project's root, as with `wandb agent`)",
        )
    if on_open is not None:
        on_open()
    objective = objective or default_objective(spec)
    interval = heartbeat_interval or max(0.1, min(5.0, stale_after / 4))
    poll = max(0.1, min(2.0, stale_after / 4))
    agent = agent_name()
    summary = AgentSummary(sweep_id)
    guard = _FlapGuard(*flap_guard)
    held = contextlib.ExitStack()
    if handle_signals:
        # noted, never raised mid-way: a storage write cut in half would lose the point
        held.enter_context(signals.deferred(escalate=False))
    heart = _Heartbeat(sweep, interval, agent, stale_after)
    heart.start()
    waiting_said = False
    try:
        while count is None or len(summary.trials) < count:
            if signals.pending() is not None:
                name = signals.signal_name(signals.pending())
                raise Interrupted(
                    signals.pending() or signal.SIGTERM,
                    f"agent interrupted by {name} between trials (no trial was running)",
                    hint=f"start an agent again to continue: expctl sweep agent {sweep.id}",
                )
            for dead, rerun in sweep.reap_stale(stale_after):
                summary.recovered.append((dead, rerun))
                emit(
                    f"trial {dead}: its agent stopped heartbeating for > {stale_after:g} s; "
                    f"re-queued as trial {rerun}"
                )
            claim = sweep.claim(agent)
            if claim == "wait":
                if not wait:
                    summary.reason = "nothing left to claim (other agents are still running trials)"
                    break
                if not waiting_said:
                    emit(
                        "nothing left to claim; waiting for the running trials of other agents "
                        "(their trials come back here if an agent dies)"
                    )
                    waiting_said = True
                time.sleep(poll)
                continue
            if isinstance(claim, str):
                summary.reason = _reason(claim, sweep)
                break
            waiting_said = False
            record = _run_trial(sweep, claim, objective, config_source, heart, emit, trial_timeout)
            summary.trials.append(record)
            if record.status == "requeued":
                signum = signals.pending() or signal.SIGTERM
                raise Interrupted(
                    signum,
                    f"agent interrupted by {signal.Signals(signum).name}; {record.message}",
                    hint=f"start an agent again to continue: expctl sweep agent {sweep.id}",
                )
            trip = guard.record(record.status != "failed")
            if trip:
                raise RuntimeFailure(
                    f"agent stopped: {trip} (last: trial {record.number}: {record.message})",
                    hint="fix the failure above (see the trial's run dir), then restart the agent",
                )
        else:
            summary.reason = f"ran --count {count} trials"
    finally:
        heart.stop()
        held.close()
    return summary


def _check_timeout(trial_timeout: float | None) -> None:
    if trial_timeout is not None and not trial_timeout > 0:
        raise UsageError(
            f"--trial-timeout must be a positive number of seconds, got {trial_timeout!r}",
            hint="e.g. --trial-timeout 3600 (one hour per trial)",
        )


def _reason(claim: str, sweep: Sweep) -> str:
    if claim == "stopped":
        return "the sweep was stopped (expctl sweep stop)"
    attrs = sweep.handle.storage.get_study_user_attrs(sweep.study_id)
    return f"the sweep is finished ({attrs.get('expctl:finished_reason') or 'done'})"


def _run_trial(
    sweep: Sweep,
    claim: Claim,
    objective: Objective,
    config_source: ConfigSource | None,
    heart: _Heartbeat,
    emit: Callable[[str], None],
    trial_timeout: float | None = None,
) -> TrialRecord:
    spec = sweep.spec
    info = sweep.info
    # the sweep's stored overrides (multirun), then the agent's --set ones, then the sampled ones
    base = [*info.overrides, *(config_source.overrides if config_source else ())]
    overrides = [*base, *claim.overrides(info.raw_keys)]
    config_dir = (
        config_source.config_dir
        if config_source and config_source.config_dir
        else (Path(info.config_dir) if info.config_dir else None)
    )
    config_name = (
        config_source.config_name
        if config_source and config_source.config_name != "config"
        else info.config_name
    )
    metric = spec.metric.name if spec.metric else None

    def report(epoch: int, metrics: dict[str, float]) -> bool:
        value = metrics.get(metric) if metric else None
        if value is None:
            return False
        return sweep.report(claim, int(epoch), float(value))

    ctx = TrialContext(
        sweep_id=sweep.id,
        number=claim.number,
        params=claim.params,
        overrides=overrides,
        spec=spec,
        config_dir=config_dir,
        config_name=config_name,
        run_name=spec.name or f"sweep-{sweep.id}",
        report=report,
        should_stop=signals.pending,
        retry_of=claim.retry_of,
        timeout=trial_timeout,
    )
    shown = " ".join(redact_overrides(claim.overrides(info.raw_keys))) or "(no parameters)"
    retry = f" (re-run of trial {claim.retry_of})" if claim.retry_of is not None else ""
    emit(f"trial {claim.number}{retry}: {shown}")
    heart.trial_id = claim.trial_id
    started = time.monotonic()
    try:
        try:
            outcome = _as_outcome(objective(ctx), metric)
        finally:
            heart.trial_id = None
    except (Interrupted, KeyboardInterrupt) as e:
        # the trainer stops at a step boundary and raises; a second signal lands here directly
        signum = getattr(e, "signum", signal.SIGINT)
        partial_dir = getattr(getattr(e, "result", None), "run_dir", None)
        run_dir = str(partial_dir) if partial_dir else None
        rerun = sweep.requeue(claim, {"run_dir": run_dir})
        emit(f"trial {claim.number}: interrupted; re-queued as trial {rerun}")
        raise Interrupted(
            signum,
            f"agent interrupted by {signal.Signals(signum).name}; "
            f"trial {claim.number} re-queued as trial {rerun}",
            hint=f"start an agent again to continue: expctl sweep agent {sweep.id}",
        ) from None
    except Exception as e:
        outcome = _failed(e)
    except BaseException:
        sweep.requeue(claim)  # SystemExit & co: never leave the point RUNNING
        raise
    seconds = time.monotonic() - started
    if ctx.timed_out() and outcome.status in ("interrupted", "stopped") and not signals.pending():
        # a custom objective that honoured ctx.timeout
        outcome.status, outcome.message = "failed", _timeout_message(trial_timeout)
    return _record(sweep, claim, outcome, overrides, seconds, emit)


def _verdict(outcome: TrialOutcome, metric: str | None) -> tuple[Verdict, float | None]:
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


def _record(
    sweep: Sweep,
    claim: Claim,
    outcome: TrialOutcome,
    overrides: list[str],
    seconds: float,
    emit: Callable[[str], None],
) -> TrialRecord:
    metric = sweep.spec.metric.name if sweep.spec.metric else None
    if outcome.run_dir:
        outcome.run_dir = str(Path(outcome.run_dir).resolve())
    if outcome.status in ("interrupted", "stopped") and signals.pending() is not None:
        result = {
            "run_dir": outcome.run_dir,
            "metrics": outcome.metrics,
            "message": outcome.message,
        }
        rerun = sweep.requeue(claim, result)
        message = f"trial {claim.number} re-queued as trial {rerun}"
        emit(f"trial {claim.number}: interrupted; re-queued as trial {rerun}")
        return TrialRecord(
            claim.number,
            "requeued",
            claim.params,
            overrides,
            None,
            outcome.run_dir,
            seconds,
            message,
            outcome.metrics,
        )
    final, value = _verdict(outcome, metric)
    result = {"run_dir": outcome.run_dir, "metrics": outcome.metrics, "message": outcome.message}
    if not sweep.finish(claim, final, value, result):
        emit(
            f"trial {claim.number}: another agent had already re-queued it (this agent looked "
            "dead); result discarded"
        )
        return TrialRecord(
            claim.number,
            "lost",
            claim.params,
            overrides,
            value,
            outcome.run_dir,
            seconds,
            "re-queued by another agent",
            outcome.metrics,
        )
    shown = f" {metric}={value:.6g}" if (value is not None and metric) else ""
    extra = f": {outcome.message}" if final == "failed" and outcome.message else ""
    emit(f"trial {claim.number}: {final}{shown} ({seconds:.1f} s){extra}")
    return TrialRecord(
        claim.number,
        final,
        claim.params,
        overrides,
        value,
        outcome.run_dir,
        seconds,
        outcome.message,
        outcome.metrics,
    )
