"""``trainer.devices=N`` outside torchrun: re-run ``expctl run`` in N processes under torchrun.

:func:`devices_of` reads N from the config; :func:`worker_cli_args` rebuilds the command each
worker runs. The launcher runs ``python -m torch.distributed.run --standalone --nproc-per-node
N -m expctl run ...`` and exits with **rank 0's** exit code: torchrun itself reports any worker
failure as exit 1, so each worker leaves its own code in ``$EXPCTL_LAUNCH_EXIT_DIR`` (see
:func:`run_leaving_exit_code`). Standard library only: the launcher never needs torch.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from expctl import signals
from expctl.errors import ConfigError, ExpctlError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from expctl.train.launch import RunRequest

LAUNCH_EXIT_DIR = "EXPCTL_LAUNCH_EXIT_DIR"


def devices_of(cfg: DictConfig) -> int:
    """``trainer.devices``: how many processes to train in (1 when unset)."""
    from omegaconf import OmegaConf

    value = OmegaConf.select(cfg, "trainer.devices", default=1)
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"trainer.devices must be an integer >= 1, got {value!r}",
            hint="trainer.devices=2 trains in 2 processes (one per GPU, or CPU processes)",
            where="trainer.devices",
        )
    return value


def worker_cli_args(request: RunRequest, resume_dir: Path | None) -> list[str]:
    """``expctl`` arguments that make each torchrun worker do this request, rebuilt from what was
    parsed (not from sys.argv, which a caller embedding the CLI may not have set)."""
    source = request.source
    args = ["run", "--config-name", source.config_name]
    if source.config_dir is not None:
        args += ["--config-dir", str(Path(source.config_dir).resolve())]
    if resume_dir is not None:
        args += ["--resume", str(resume_dir)]
    if request.init_from is not None:
        args += ["--init-from", request.init_from]
    args += [arg for tag in request.tags for arg in ("--tag", tag)]  # rank 0 writes them
    if request.notes is not None:
        args += ["--notes", request.notes]
    if request.runs_dir is not None:
        args += ["--runs-dir", str(Path(request.runs_dir).resolve())]
    if request.quiet:
        args.append("--quiet")
    return [*args, "--", *source.overrides]


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
