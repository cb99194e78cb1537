"""The sweep engine's library calls, by storage URL: what the CLI's service layer does, for tests
and benchmarks that drive the engine directly."""

from __future__ import annotations

import fcntl
import os
from typing import Any

from expctl.sweeps.agent import AgentOptions, run_agent
from expctl.sweeps.engine import Sweep, open_sweep
from expctl.sweeps.service import opened
from expctl.sweeps.spec import SweepSpec
from expctl.sweeps.storage import open_storage
from expctl.sweeps.studies import SweepInfo, create_sweep
from expctl.sweeps.trial import AgentSummary, Objective

AGENT_OPTIONS = set(AgentOptions.__dataclass_fields__)


def create(spec: SweepSpec, url: str | None = None, **kwargs: Any) -> SweepInfo:
    with opened(url, create=True) as handle:
        return create_sweep(spec, handle, **kwargs)


def open_(sweep_id: str, url: str | None = None, **kwargs: Any) -> Sweep:
    """A sweep on its own storage handle (two of them behave like two agents)."""
    return open_sweep(sweep_id, open_storage(url, create=False), **kwargs)


def agent(
    sweep_id: str,
    url: str | None = None,
    *,
    objective: Objective | None = None,
    on_event: Any = None,
    config_source: Any = None,
    **options: Any,
) -> AgentSummary:
    """``run_agent`` with AgentOptions given as keywords (count=, handle_signals=, ...)."""
    unknown = set(options) - AGENT_OPTIONS
    assert not unknown, f"not agent options: {unknown}"
    with opened(url) as handle:
        sweep = open_sweep(sweep_id, handle, seed=options.get("seed"))
        return run_agent(
            sweep,
            AgentOptions(**options),
            objective=objective,
            on_event=on_event,
            config_source=config_source,
        )


def flock_held(lock_file: str) -> bool:
    """Whether some descriptor holds an flock on ``lock_file`` (tried from one of our own)."""
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # releases ours, if it was taken
    return False
