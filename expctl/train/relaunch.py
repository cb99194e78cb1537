"""``trainer.devices=N`` outside torchrun: re-run ``expctl run`` in N processes under torchrun.

The launcher runs ``python -m torch.distributed.run --standalone --nproc-per-node N -m expctl
run ...`` and exits with **rank 0's** exit code: torchrun itself reports any worker failure as
exit 1, so each worker leaves its own code in ``$EXPCTL_LAUNCH_EXIT_DIR`` (see
:func:`leave_exit_code_for_launcher`). Standard library only: the launcher never needs torch.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from expctl import signals
from expctl.errors import ExpctlError

LAUNCH_EXIT_DIR = "EXPCTL_LAUNCH_EXIT_DIR"


def launch_command(nproc: int, cli_args: Sequence[str]) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc-per-node N -m expctl <args>``."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={int(nproc)}",
        "-m",
        "expctl",
        *cli_args,
    ]


def run_under_torchrun(nproc: int, cli_args: Sequence[str]) -> int:
    """Run ``expctl <cli_args>`` in ``nproc`` processes under torchrun; rank 0's exit code.

    torchrun runs in its own session so a terminal's Ctrl-C reaches it once, from here; it
    forwards SIGINT/SIGTERM to every worker, which stop at an agreed step and save last.pt.
    """
    with tempfile.TemporaryDirectory(prefix="expctl-launch-") as exit_dir:
        env = {**os.environ, LAUNCH_EXIT_DIR: exit_dir}
        proc = subprocess.Popen(launch_command(nproc, cli_args), env=env, start_new_session=True)

        def forward(signum: int) -> None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)

        # every signal goes on to torchrun; this process waits for rank 0's verdict
        with signals.deferred(escalate=False), signals.forwarded_to(forward):
            returncode = proc.wait()
        codes = {
            int(f.name.removeprefix("rank-")): int(f.read_text() or 1)
            for f in Path(exit_dir).glob("rank-*")
        }
    if 0 in codes:
        return codes[0]
    return max(codes.values()) if codes else (returncode if returncode > 0 else 1)


def run_leaving_exit_code(body: Callable[[], int]) -> int:
    """Run a worker's ``body`` (returns its exit code) and leave that code where the
    ``trainer.devices`` launcher finds it; a no-op outside such a launch.

    An :class:`ExpctlError` leaves its ``exit_code``, Ctrl-C 130, anything else 1.
    """
    code = 1
    try:
        code = body()
        return code
    except ExpctlError as e:
        code = e.exit_code
        raise
    except KeyboardInterrupt:
        code = 130
        raise
    finally:
        _leave_exit_code(code)


def _leave_exit_code(code: int) -> None:
    exit_dir = os.environ.get(LAUNCH_EXIT_DIR)
    if exit_dir and os.path.isdir(exit_dir):
        rank = os.environ.get("RANK", "0")
        with contextlib.suppress(OSError):
            Path(exit_dir, f"rank-{rank}").write_text(str(code))
