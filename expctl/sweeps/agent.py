"""The sweep agent: claim a trial → run it → record the result, until the sweep says stop.

What a trial *is* lives elsewhere: the objectives (expctl's trainer, the user's ``program``) in
:mod:`expctl.sweeps.objectives`, the context/outcome types and the verdict rule in
:mod:`expctl.sweeps.trial`, the claiming/finishing on the storage in :mod:`expctl.sweeps.engine`.
This module is the loop; its heartbeat, polling and W&B's flapping rule are in
:mod:`expctl.sweeps.agent_pacing`.

Signals: the agent holds SIGTERM/SIGINT for its whole life (:mod:`expctl.signals`); the running
trial stops at its next step (``ctx.should_stop()``), is failed and its parameters re-queued for
another agent, and :class:`Interrupted` is raised (exit 143/130). A second signal never raises
mid-way (it could cut a storage write in half): it only makes a program trial's kill immediate.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from expctl import signals
from expctl.config import ConfigSource
from expctl.errors import Interrupted, RuntimeFailure
from expctl.secrets import redact_overrides
from expctl.sweeps.agent_pacing import Backoff, FlapGuard, Heartbeat
from expctl.sweeps.engine import Claim, Sweep, agent_name
from expctl.sweeps.objectives import default_objective
from expctl.sweeps.trial import (
    AgentSummary,
    Objective,
    TrialContext,
    TrialOutcome,
    TrialRecord,
    as_outcome,
    check_timeout,
    failed_outcome,
    judge,
    timeout_message,
)

Emit = Callable[[str], None]


@dataclass(frozen=True)
class AgentOptions:
    """How an agent runs (``expctl sweep agent``'s options, passed through unchanged).

    ``stale_after``: seconds without a heartbeat after which another agent's RUNNING trial is
    considered dead, failed and re-queued. ``wait``: when nothing is left to claim but other
    agents still run trials, keep polling (a trial whose agent dies is re-run here) instead of
    exiting. ``trial_timeout``: seconds of wall time per trial (see
    :mod:`expctl.sweeps.objectives` for how each kind of trial is stopped). ``flap_guard``:
    W&B's rule (burst, window s, initial), see :class:`FlapGuard`.
    """

    count: int | None = None
    stale_after: float = 60.0
    heartbeat_interval: float | None = None
    wait: bool = True
    handle_signals: bool = True
    seed: int | None = None
    flap_guard: tuple[int, float, int] = (3, 60.0, 5)
    trial_timeout: float | None = None

    @property
    def beat_every(self) -> float:
        return self.heartbeat_interval or max(0.1, min(5.0, self.stale_after / 4))

    @property
    def poll_every(self) -> float:
        return max(0.1, min(2.0, self.stale_after / 4))


def run_agent(
    sweep: Sweep,
    options: AgentOptions = AgentOptions(),
    *,
    config_source: ConfigSource | None = None,
    objective: Objective | None = None,
    on_event: Emit | None = None,
) -> AgentSummary:
    """Run trials of ``sweep`` until ``options.count`` trials ran here, or it is done/stopped.

    ``config_source`` overrides the config dir/name stored with the sweep and adds base
    overrides (the sampled ones come after and win). Raises :class:`Interrupted` on
    SIGTERM/SIGINT (after re-queueing the trial) and :class:`RuntimeFailure` when the flapping
    guard trips; :class:`UsageError` before claiming anything when the sweep's program is not
    here (no trial is burnt on it).
    """
    check_timeout(options.trial_timeout)
    if objective is None:
        sweep.spec.check_program_here(sweep.id)
    loop = _AgentLoop(sweep, options, config_source, objective or default_objective(sweep.spec))
    with contextlib.ExitStack() as held:
        if options.handle_signals:
            held.enter_context(signals.deferred(escalate=False))
        held.callback(loop.heart.stop)
        loop.heart.start()
        return loop.run(on_event or (lambda message: None))


class _AgentLoop:
    def __init__(
        self,
        sweep: Sweep,
        options: AgentOptions,
        config_source: ConfigSource | None,
        objective: Objective,
    ):
        self.sweep, self.options = sweep, options
        self.config_source, self.objective = config_source, objective
        self.agent = agent_name()
        self.summary = AgentSummary(sweep.id)
        self.guard = FlapGuard(*options.flap_guard)
        self.heart = Heartbeat(sweep, options.beat_every, self.agent, options.stale_after)
        self._reaped_at = -math.inf
        # the next trial, claimed with the last one's result (Sweep.finish_then_claim)
        self._next: Claim | str | None = None

    def run(self, emit: Emit) -> AgentSummary:
        try:
            return self._loop(emit)
        except BaseException:
            # a trial claimed with the last result and never started (a signal, the flapping
            # guard, a storage error): back to the queue now, not after --stale-after
            if isinstance(self._next, Claim):
                with contextlib.suppress(Exception):
                    self.sweep.requeue(self._next)
            raise

    def _loop(self, emit: Emit) -> AgentSummary:
        count, summary, waiting_said = self.options.count, self.summary, False
        idle = Backoff(self.options.poll_every)
        while count is None or len(summary.trials) < count:
            self._stop_if_signalled("between trials (no trial was running)")
            self._recover_dead_agents(emit)
            claim, self._next = self._next or self.sweep.claim(self.agent), None
            if claim == "wait":
                if not self.options.wait:
                    summary.reason = "nothing left to claim (other agents are still running trials)"
                    return summary
                if not waiting_said:
                    emit(
                        "nothing left to claim; waiting for the running trials of other agents "
                        "(their trials come back here if an agent dies)"
                    )
                    waiting_said = True
                idle.sleep()
                continue
            if isinstance(claim, str):
                summary.reason = _reason(claim, self.sweep)
                return summary
            waiting_said = False
            idle.reset()
            record = self._run_trial(claim, emit)
            summary.trials.append(record)
            if record.status == "requeued":
                self._stop_if_signalled(record.message or "", force=True)
            trip = self.guard.record(record.status != "failed")
            if trip:
                raise RuntimeFailure(
                    f"agent stopped: {trip} (last: trial {record.number}: {record.message})",
                    hint="fix the failure above (see the trial's run dir), then restart the agent",
                )
        summary.reason = f"ran --count {count} trials"
        return summary

    def _stop_if_signalled(self, why: str, *, force: bool = False) -> None:
        signum = signals.pending()
        if signum is None and not force:
            return
        signum = signum or signal.SIGTERM
        raise Interrupted(
            signum,
            f"agent interrupted by {signals.signal_name(signum)}; {why}",
            hint=f"start an agent again to continue: {self._agent_command()}",
        )

    def _recover_dead_agents(self, emit: Emit) -> None:
        # a heartbeat goes stale in stale_after seconds: looking more often than a beat is waste
        now = time.monotonic()
        if now - self._reaped_at < self.options.beat_every:
            return
        self._reaped_at = now
        stale_after = self.options.stale_after
        for dead, rerun in self.sweep.liveness.reap_stale(stale_after):
            self.summary.recovered.append((dead, rerun))
            emit(
                f"trial {dead}: its agent stopped heartbeating for > {stale_after:g} s; "
                f"re-queued as trial {rerun}"
            )

    # -- one trial --------------------------------------------------------------------------

    def _agent_command(self) -> str:
        import shlex

        from expctl.sweeps.storage import agent_command

        return shlex.join(agent_command(self.sweep.id, self.sweep.handle.url))

    def _context(self, claim: Claim) -> TrialContext:
        sweep, source, info = self.sweep, self.config_source, self.sweep.info
        # the sweep's stored overrides (multirun), then the agent's --set ones, then the sampled
        base = [*info.overrides, *(source.overrides if source else ())]
        config_dir = (
            source.config_dir
            if source and source.config_dir
            else (Path(info.config_dir) if info.config_dir else None)
        )
        config_name = (
            source.config_name if source and source.config_name != "config" else info.config_name
        )

        def report(epoch: int, metrics: dict[str, float]) -> bool:
            metric = sweep.spec.metric.name if sweep.spec.metric else None
            value = metrics.get(metric) if metric else None
            return value is not None and sweep.report(claim, int(epoch), float(value))

        return TrialContext(
            sweep_id=sweep.id,
            number=claim.number,
            params=claim.params,
            overrides=[*base, *claim.overrides(info.raw_keys)],
            spec=sweep.spec,
            config_dir=config_dir,
            config_name=config_name,
            run_name=sweep.spec.name or f"sweep-{sweep.id}",
            report=report,
            should_stop=signals.pending,
            retry_of=claim.retry_of,
            timeout=self.options.trial_timeout,
        )

    def _run_trial(self, claim: Claim, emit: Emit) -> TrialRecord:
        ctx = self._context(claim)
        shown = " ".join(redact_overrides(claim.overrides(self.sweep.info.raw_keys)))
        retry = f" (re-run of trial {claim.retry_of})" if claim.retry_of is not None else ""
        emit(f"trial {claim.number}{retry}: {shown or '(no parameters)'}")
        self.heart.trial_id = claim.trial_id
        started = time.monotonic()
        try:
            try:
                outcome = as_outcome(self.objective(ctx), ctx.metric)
            finally:
                self.heart.trial_id = None
        except (Interrupted, KeyboardInterrupt) as e:
            self._requeue_interrupted(claim, e, emit)
        except Exception as e:
            outcome = failed_outcome(e)
        except BaseException:
            self.sweep.requeue(claim)  # SystemExit & co: never leave the point RUNNING
            raise
        stopped = outcome.status in ("interrupted", "stopped")
        if ctx.timed_out() and stopped and not signals.pending():
            # a custom objective that honoured ctx.timeout
            outcome.status, outcome.message = "failed", timeout_message(ctx.timeout)
        return self._record(claim, ctx, outcome, time.monotonic() - started, emit)

    def _requeue_interrupted(self, claim: Claim, e: BaseException, emit: Emit) -> None:
        """The trainer stopped at a step boundary and raised: back in the queue, and stop."""
        signum = getattr(e, "signum", signal.SIGINT)
        partial_dir = getattr(getattr(e, "result", None), "run_dir", None)
        rerun = self.sweep.requeue(claim, {"run_dir": str(partial_dir) if partial_dir else None})
        emit(f"trial {claim.number}: interrupted; re-queued as trial {rerun}")
        raise Interrupted(
            signum,
            f"agent interrupted by {signal.Signals(signum).name}; "
            f"trial {claim.number} re-queued as trial {rerun}",
            hint=f"start an agent again to continue: {self._agent_command()}",
        ) from None

    def _record(
        self, claim: Claim, ctx: TrialContext, outcome: TrialOutcome, seconds: float, emit: Emit
    ) -> TrialRecord:
        """Tell the storage how the trial ended; the agent's own record of it."""
        if outcome.run_dir:
            outcome.run_dir = str(Path(outcome.run_dir).resolve())
        result = {"run_dir": outcome.run_dir, "metrics": outcome.metrics}
        result["message"] = outcome.message

        def record(status: str, value: float | None, message: str | None) -> TrialRecord:
            return TrialRecord(
                claim.number,
                status,  # type: ignore[arg-type]
                claim.params,
                ctx.overrides,
                value,
                outcome.run_dir,
                seconds,
                message,
                outcome.metrics,
            )

        if outcome.status in ("interrupted", "stopped") and signals.pending() is not None:
            rerun = self.sweep.requeue(claim, result)
            emit(f"trial {claim.number}: interrupted; re-queued as trial {rerun}")
            return record("requeued", None, f"trial {claim.number} re-queued as trial {rerun}")
        final, value = judge(outcome, ctx.spec)
        result["message"] = outcome.message
        if final == "failed" and outcome.run_dir:
            self._fail_run_record(outcome.run_dir, outcome.message, emit)
        if self._may_claim_next(final):
            beat = self.heart.beat_due()
            stale_after = self.options.stale_after if beat else None
            finished, self._next = self.sweep.finish_then_claim(
                claim, final, value, result, self.agent, stale_after=stale_after
            )
            if beat and isinstance(self._next, Claim):
                self.heart.beaten()
        else:
            finished = self.sweep.finish(claim, final, value, result)
        if not finished:
            emit(
                f"trial {claim.number}: another agent had already re-queued it (this agent "
                "looked dead); result discarded"
            )
            return record(
                "lost", None if isinstance(value, list) else value, "re-queued by another agent"
            )
        if isinstance(value, list):  # a multi-objective trial: every objective's value
            shown = "".join(f" {n}={v:.6g}" for n, v in zip(ctx.objectives, value, strict=True))
            value = None
        else:
            shown = f" {ctx.metric}={value:.6g}" if (value is not None and ctx.metric) else ""
        extra = f": {outcome.message}" if final == "failed" and outcome.message else ""
        emit(f"trial {claim.number}: {final}{shown} ({seconds:.1f} s){extra}")
        return record(final, value, outcome.message)

    def _may_claim_next(self, final: str) -> bool:
        """Whether the loop will run another trial after this one (then it is claimed with this
        one's result): not past ``--count``, no signal, the flapping guard not tripping."""
        count = self.options.count
        if count is not None and len(self.summary.trials) + 1 >= count:
            return False
        return signals.pending() is None and not self.guard.would_trip(final != "failed")

    @staticmethod
    def _fail_run_record(run_dir: str, message: str | None, emit: Emit) -> None:
        """A run that ended well but whose trial failed (metric never logged, NaN, timeout)
        says ``failed`` in its summary.json too: ``runs list`` must agree with the sweep."""
        from expctl.errors import ExpctlError
        from expctl.sweeps.trial_runs import fail_run_record

        try:
            fail_run_record(run_dir, message)
        except (ExpctlError, OSError) as e:  # the storage still records the failure
            emit(f"warning: could not mark {run_dir} failed: {str(e).splitlines()[0]}")


def _reason(claim: str, sweep: Sweep) -> str:
    if claim == "stopped":
        return "the sweep was stopped (expctl sweep stop)"
    return f"the sweep is finished ({sweep.finished_reason() or 'done'})"
