"""W&B-hosted sweeps (``expctl sweep agent ENTITY/PROJECT/ID``): the trial function W&B's agent
calls once per trial, wrapping the same objectives as the local agent (see
:mod:`expctl.sweeps.wandb.cloud` for the protocol)."""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Mapping
from typing import Any

from expctl.config import ConfigSource
from expctl.errors import Interrupted, RuntimeFailure
from expctl.secrets import redact_overrides
from expctl.sweeps.objectives import trainer_objective
from expctl.sweeps.spec import SweepSpec, to_overrides
from expctl.sweeps.trial import (
    Objective,
    TrialContext,
    as_outcome,
    check_timeout,
    failed_outcome,
    timeout_message,
    verdict,
)


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
    after ``config_source``'s. The trainer logs into that same run: :func:`expctl.trackers.wandb.
    start_tracker` reuses an active ``wandb.run``. Sampling and early termination are W&B's
    server's (it stops a run through W&B's agent), so ``report`` never asks to stop here.

    A failed trial raises :class:`RuntimeFailure` after finishing its run with exit code 1, so
    W&B's agent records the run as failed and applies its own flapping rule.
    """
    # One function on purpose: the closure W&B's agent calls is the whole trial, and splitting it
    # would thread its eight settings through every piece.
    check_timeout(trial_timeout)
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
            outcome = as_outcome(run_objective(ctx), ctx.metric)
        except Interrupted:
            raise
        except Exception as e:
            outcome = failed_outcome(e)
        if ctx.timed_out() and outcome.status in ("interrupted", "stopped"):
            outcome.status, outcome.message = "failed", timeout_message(trial_timeout)
        final, value = verdict(outcome, ctx.metric)
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
            if outcome.run_dir:  # the run dir says failed too (`runs list`)
                from expctl.sweeps.trial_runs import fail_run_record

                with contextlib.suppress(OSError, RuntimeFailure):
                    fail_run_record(outcome.run_dir, outcome.message)
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
