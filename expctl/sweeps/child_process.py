"""The program's process group, as W&B's agent treats it: the program dies with the agent
(even when the agent is SIGKILLed) and is ended by a signal to its whole group, then SIGKILL
after a grace period (``WANDB_AGENT_KILL_DELAY``, 30 s by default)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping

from expctl import signals

DEFAULT_KILL_GRACE = 30.0  # seconds, W&B's WANDB_AGENT_KILL_DELAY default
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def dies_with_agent() -> Callable[[], None] | None:
    """On Linux, the program gets SIGKILL when the agent dies (even by SIGKILL): a point the
    agent's death puts back in the queue must not also go on running here. Built before the
    fork, so the child only makes one system call."""
    import sys

    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the agent died before the line above
            os._exit(1)

    return arm


def kill_grace(kill_grace: float | None, env: Mapping[str, str]) -> float:
    if kill_grace is not None:
        return kill_grace
    with contextlib.suppress(KeyError, ValueError):
        return float(env["WANDB_AGENT_KILL_DELAY"])
    return DEFAULT_KILL_GRACE


def end_group(child: subprocess.Popen, signum: int, grace: float) -> None:
    """Send ``signum`` to the child's process group; SIGKILL whatever is left after ``grace``."""
    pgid = child.pid  # start_new_session: the child leads its own group
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)
    deadline = time.monotonic() + grace
    # the leader may be gone while its children (dataloader workers, ...) linger; a second
    # signal to the agent means "now"
    while group_alive(pgid) and time.monotonic() < deadline and not signals.repeated():
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    child.wait()


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
