"""Pure-Python objectives for sweep agents started as real processes in the tests.

Agents load them with ``expctl sweep agent ID --objective test_sweep_support:NAME`` (the tests
put this directory on PYTHONPATH). Each trial appends JSON lines to ``$SWEEP_TEST_LOG`` —
``start`` and ``end`` with the agent's pid and the trial's params — with O_APPEND writes, so the
tests can check exactly-once execution across processes and find an agent that is mid-trial.
This module holds no tests.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from expctl.sweeps.trial import TrialContext, TrialOutcome


def _log(event: str, ctx: TrialContext, **extra: Any) -> None:
    path = os.environ.get("SWEEP_TEST_LOG")
    if not path:
        return
    line = json.dumps(
        {"event": event, "pid": os.getpid(), "number": ctx.number, "params": ctx.params, **extra},
        sort_keys=True,
    )
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def score(params: dict[str, Any]) -> float:
    """A deterministic value per point: the sum of its numeric parameters."""
    return float(sum(v for v in params.values() if isinstance(v, int | float)))


def sleepy(ctx: TrialContext) -> TrialOutcome:
    """Sleep $SWEEP_TEST_SLEEP seconds (stopping early when asked), then return :func:`score`."""
    _log("start", ctx)
    deadline = time.monotonic() + float(os.environ.get("SWEEP_TEST_SLEEP", "0.1"))
    while time.monotonic() < deadline:
        if ctx.should_stop() is not None:
            _log("interrupted", ctx)
            return TrialOutcome("interrupted")
        time.sleep(0.02)
    value = score(ctx.params)
    _log("end", ctx, value=value)
    return TrialOutcome("completed", metrics={ctx.metric or "value": value})


def epochs(ctx: TrialContext) -> TrialOutcome:
    """Report ``x + 1/epoch`` for 9 epochs; stop when the agent's pruner says so."""
    x = float(ctx.params["x"])
    value = x
    for epoch in range(1, 10):
        value = x + 1.0 / epoch
        if ctx.report(epoch, {ctx.metric or "value": value}):
            return TrialOutcome("pruned", metrics={ctx.metric or "value": value}, value=value)
    return TrialOutcome("completed", metrics={ctx.metric or "value": value})


def failing(ctx: TrialContext) -> TrialOutcome:
    raise RuntimeError("boom")


def branin(ctx: TrialContext) -> TrialOutcome:
    """Branin-Hoo on x1 in [-5, 10], x2 in [0, 15]; minimum 0.397887."""
    import math

    x1, x2 = float(ctx.params["x1"]), float(ctx.params["x2"])
    _log("start", ctx)
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    value = (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10
    _log("end", ctx, value=value)
    return TrialOutcome("completed", metrics={ctx.metric or "value": value})
