"""The program's process group, as W&B's agent treats it: the program dies with the agent
(even when the agent is SIGKILLed) and is ended by a signal to its whole group, then SIGKILL
after a grace period (``WANDB_AGENT_KILL_DELAY``, 30 s by default).

Dying with the agent, for the whole tree: a SIGKILLed agent runs no code, so what ends its
trial must be enforced by the kernel. Two mechanisms, both armed for every trial:

* ``PR_SET_PDEATHSIG`` (Linux): the program itself gets SIGKILL when the agent dies. It reaches
  the direct child only: what that child started (``torchrun``'s workers, the python a shell
  wrapper runs in the background) would live on, re-parented to init, and finish a point that
  the agent's death has already put back in the queue.
* a guard (``GroupGuard``): a tiny ``/bin/sh`` started beside the program, in its own session
  (terminal and job signals do not end it) and ignoring SIGINT/SIGTERM/SIGHUP, that blocks
  reading a pipe whose only writer is the agent. The kernel closes that pipe when the agent
  dies, however it dies; the guard then sends SIGKILL to the program's whole process group.
  When the trial ends normally the agent writes one line first and the guard exits without
  killing. Portable (a pipe and a shell), no privileges, no cgroup needed.

What a process group cannot hold: a descendant that calls ``setsid``/``setpgid`` itself leaves
the group and is out of reach of both (a cgroup would catch it; expctl does not create one).
"""

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


GUARD_SCRIPT = """trap '' INT TERM HUP
if read -r _; then exit 0; fi
kill -s KILL -- -"$1" 2>/dev/null
"""


class GroupGuard:
    """Kill process group ``pgid`` with SIGKILL if this process dies before :meth:`release`."""

    def __init__(self, pgid: int):
        self._guard: subprocess.Popen | None = None
        self._write_end = -1
        try:
            read_end, self._write_end = os.pipe()  # close-on-exec: no other child holds them
        except OSError:
            return  # out of file descriptors: PR_SET_PDEATHSIG alone still ends the program
        try:
            self._guard = subprocess.Popen(
                ["/bin/sh", "-c", GUARD_SCRIPT, "expctl-trial-guard", str(pgid)],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError:
            pass  # no /bin/sh: likewise
        finally:
            os.close(read_end)

    def release(self) -> None:
        """The trial is over (or its group already ended): stand the guard down."""
        if self._write_end < 0:
            return
        with contextlib.suppress(OSError):
            os.write(self._write_end, b"done\n")
        os.close(self._write_end)
        self._write_end = -1
        if self._guard is not None:
            self._guard.wait()


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
