"""The objectives an agent runs a trial with: expctl's trainer, or the sweep's ``program``.

Trials of sweeps without ``program`` run expctl's trainer **in the agent's process**: a child
process would pay ~3 s to import torch (plus ~1 s for wandb) per trial, while the bookkeeping
target is milliseconds; isolation comes from a fresh run directory, a freshly composed config and
the trainer's own cleanup (``wandb.finish`` in ``finally``). Sweeps with ``program`` run the
user's script unmodified, as W&B's agent does (:mod:`expctl.sweeps.program.runner`), and leave
the same record as a trainer run (:mod:`expctl.sweeps.program.record`).

``--trial-timeout`` (``ctx.timeout``): a program trial is killed (SIGTERM to its process group,
SIGKILL after the grace); a trainer trial stops at its next step boundary through the same hook
as a signal (``last.pt`` saved, W&B run finished) — it runs in this process, so it cannot be
killed, and a step that hangs inside torch is not interrupted. Either way the trial is failed with
a message saying it timed out, and nothing is re-queued.
"""

from __future__ import annotations

import importlib
import signal
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from expctl.config import ConfigSource
from expctl.errors import ExpctlError, Interrupted, UsageError
from expctl.status import PROGRAM_OUTCOME, OutcomeStatus
from expctl.sweeps.spec import SweepSpec
from expctl.sweeps.trial import Objective, TrialContext, TrialOutcome, numbers, timeout_message


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
    """Run expctl's trainer in-process on the composed config with the trial's overrides
    (:func:`~expctl.train.launch.train_new_run`: the path ``expctl run`` takes)."""
    from expctl.train.launch import train_new_run
    from expctl.train.outcome import SweepTrial

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
        result = train_new_run(
            ConfigSource(ctx.config_dir, ctx.config_name, tuple(ctx.overrides)),
            name=ctx.run_name,
            # A trial publishes its checkpoints with `latest` only: moving `best` would make it
            # mean "the last trial". The sweep's best run is the one `expctl sweep status` names.
            extra_overrides=("++artifact.aliases=[]",),
            callbacks=[on_epoch],
            should_stop=should_stop,
            handle_signals=False,
            sweep=SweepTrial(ctx.sweep_id, ctx.number),
            quiet=quiet,
        )
    except Interrupted as e:
        if ctx.should_stop() is not None or not ctx.timed_out():
            raise  # a real signal: the agent re-queues the trial and exits
        return _failed(
            e,
            f"{timeout_message(ctx.timeout)}; stopped at the step boundary, "
            "checkpoints/last.pt saved",
        )
    except ExpctlError as e:
        # a bad config (no run dir is left) or a failed training (NaN loss, OOM, ...): a failed
        # trial, not an agent crash
        return _failed(e, str(e).splitlines()[0])
    status: OutcomeStatus = result.status if result.status != "running" else "failed"
    if pruned and status in ("stopped", "completed"):
        status = "pruned"
    return TrialOutcome(
        status=status, metrics=numbers(result.final_metrics), run_dir=str(result.run_dir)
    )


def _failed(e: ExpctlError, message: str) -> TrialOutcome:
    partial = getattr(e, "result", None)
    run_dir = getattr(e, "run_dir", None)
    return TrialOutcome(
        "failed",
        metrics=numbers(getattr(partial, "final_metrics", {})),
        run_dir=str(run_dir) if run_dir is not None else None,
        message=message,
    )


def program_objective(ctx: TrialContext) -> TrialOutcome:
    """``program:`` sweeps: the user's script, unmodified (:mod:`expctl.sweeps.program.runner`)."""
    from expctl.rundir import create_run_dir

    run_dir = create_run_dir(ctx.run_name)
    capture = _start_program_provenance(run_dir, ctx.spec.program)
    try:
        return _run_program_trial(ctx, run_dir)
    finally:
        capture.wait()  # never raises; a failed trial keeps its provenance too


def _start_program_provenance(run_dir: Path, program: str | None) -> Any:
    """The program trial's provenance: the *program's* repository, not the agent's."""
    import sys

    from expctl.provenance import start_capture

    repo = (Path.cwd() / (program or ".")).parent.resolve()
    return start_capture(run_dir, argv=sys.argv, cwd=Path.cwd(), repo_dir=repo)


def _run_program_trial(ctx: TrialContext, run_dir: Path) -> TrialOutcome:
    from expctl.sweeps.program.record import write_program_record
    from expctl.sweeps.program.runner import ProgramTrial
    from expctl.sweeps.studies import new_sweep_id

    # the metric the run's log is followed for (hyperband, the summary's final value): the
    # sweep's metric, or a multi-objective sweep's first objective (the others: their last
    # logged values, below)
    metric = ctx.metric or (ctx.objectives[0] if ctx.objectives else None)

    def on_metric(index: int, value: float) -> bool:
        return bool(metric) and ctx.report(index, {metric: value})  # type: ignore[dict-item]

    spec = ctx.spec
    started = datetime.now(timezone.utc)
    result = ProgramTrial(
        program=spec.program or "",
        command=list(spec.command) if spec.command else None,
        params=ctx.params,
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
    ).run()
    write_program_record(
        run_dir,
        result,
        name=ctx.run_name,
        sweep_id=ctx.sweep_id,
        trial=ctx.number,
        params=ctx.params,
        metric=metric,
        maximize=bool(spec.objectives and spec.objectives[0].maximize),
        started=started,
    )
    metrics = {metric: result.value} if metric and result.value is not None else {}
    if spec.multi_objective:
        metrics = {**_last_logged(result.rows, ctx.objectives), **metrics}
    message = result.message or None
    if result.status == "timeout":
        message = f"{timeout_message(ctx.timeout)}; the program was killed ({result.message})"
    return TrialOutcome(
        PROGRAM_OUTCOME.get(result.status, "failed"),
        metrics=metrics,
        run_dir=str(run_dir),
        message=message,
        value=result.value,
    )


def _last_logged(rows: list[dict[str, float]], names: tuple[str, ...]) -> dict[str, float]:
    """Each of ``names``' last value logged with ``wandb.log`` (W&B's summary default)."""
    last: dict[str, float] = {}
    for row in rows:
        last.update((k, v) for k, v in row.items() if k in names)
    return last


def default_objective(spec: SweepSpec) -> Objective:
    return program_objective if spec.runs_own_command else trainer_objective
