"""Sweep agents on SLURM as one job array: ``expctl sweep agent ID --slurm N``.

Plain ``sbatch``, not submitit: submitit runs a pickled Python callable and handles preemption
by resubmitting that callable; an agent is a command, and its preemption protocol is already the
sweep's — on SIGTERM it re-queues its running trial in the sweep storage and exits 143, so
another task runs the point. The batch script is the one shipped as
``examples/slurm/sweep_array.sbatch`` (tested under a real SLURM): the agent runs in the
background so the batch shell can pass on SLURM's ``--signal=B:TERM@60``. It is written next to
the job's output under ``.expctl/slurm/`` and kept, so what ran can be read later.

Nothing written into the script becomes a command: the agent's command line is quoted with
``shlex`` (bash runs it), and ``#SBATCH`` values, which sbatch reads itself and which no shell
quoting reaches, are double-quoted (sbatch strips the quotes; ``%`` is doubled, SLURM's escape
for its own ``%A``/``%a`` patterns) after refusing what cannot be written there at all: a
newline or other control character (it would end the directive and start a command on the
compute node), a ``"`` or a ``\\`` (a backslash turns SLURM's patterns off).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from expctl.errors import RuntimeFailure, UsageError

SCRIPT_DIR = Path(".expctl") / "slurm"
SCRIPT = """#!/bin/bash
# {n} expctl sweep agents for sweep {sweep_id}, one per array task (written by expctl).
#SBATCH --job-name={job_name}
#SBATCH --array=0-{last}
#SBATCH --signal=B:TERM@60
#SBATCH --output={output}
set -uo pipefail

# In the background, so this shell can pass SLURM's SIGTERM on: the agent then re-queues its
# running trial in the sweep and exits 143, and another task runs the point.
{command} &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM INT
wait "$child"; rc=$?
if [ "$rc" -gt 128 ] && kill -0 "$child" 2>/dev/null; then
  wait "$child"; rc=$?
fi
exit "$rc"
"""


def sbatch_options(pairs: Sequence[str]) -> list[str]:
    """``partition=gpu``, ``time=4:00:00``, ``requeue`` → ``--partition=gpu`` ... (exit 2 for
    anything that is not one)."""
    options = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().lstrip("-")
        if not key or " " in key:
            raise UsageError(
                f"--slurm-opt {pair!r} is not KEY=VALUE",
                hint="e.g. --slurm-opt partition=gpu --slurm-opt time=4:00:00 (sbatch's long "
                "option names)",
            )
        if key in ("array", "signal", "output"):
            raise UsageError(
                f"--slurm-opt {key} is set by expctl (the array size is --slurm N)",
                hint="drop it: each task is one agent, and SIGTERM goes to the agent",
            )
        options.append(f"--{key}={value}" if sep else f"--{key}")
    return options


def submit_agents(
    sweep_id: str,
    tasks: int,
    agent_args: Sequence[str],
    *,
    slurm_options: Sequence[str] = (),
    storage_url: str | None = None,
) -> str:
    """Submit ``tasks`` agents of ``sweep_id`` as one array job; returns SLURM's job id.

    ``agent_args`` are the agent's own options (``--count 4``, ...). The storage reaches the
    tasks through the environment (sbatch exports it), never through the script file: a
    PostgreSQL URL may hold a password.
    """
    if tasks < 1:
        raise UsageError(f"--slurm {tasks}: give the number of agents (>= 1)")
    options = sbatch_options(slurm_options)
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise UsageError(
            "--slurm needs SLURM's sbatch, which is not on PATH here",
            hint="run this on a SLURM login node, or start agents yourself: "
            f"expctl sweep agent {sweep_id}",
        )
    script = _write_script(sweep_id, tasks, agent_args)
    env = dict(os.environ)
    if storage_url:
        env["EXPCTL_STORAGE"] = storage_url
    done = subprocess.run(
        [sbatch, "--parsable", *options, str(script)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        first = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[0]
        raise RuntimeFailure(
            f"sbatch refused the agent array: {first}",
            hint=f"check the --slurm-opt values; the script is {script}",
        )
    return done.stdout.strip().split(";", 1)[0]


def _write_script(sweep_id: str, tasks: int, agent_args: Sequence[str]) -> Path:
    script_dir = SCRIPT_DIR.resolve()
    # checked before anything is written: a refused value leaves no half-made script behind
    directive_safe(sweep_id, "the sweep id")
    directive_safe(str(script_dir), "the working directory")
    job_name = f'"expctl-{sweep_id}"'
    # %A, %a: SLURM's array job id and task id; a literal % is written %%
    output = f'"{script_dir}/agents-{sweep_id}-'.replace("%", "%%") + '%A_%a.out"'
    script_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = script_dir / f"agents-{sweep_id}-{stamp}.sbatch"
    # the interpreter that runs expctl here: the same environment on the nodes (shared FS)
    command = shlex.join([sys.executable, "-m", "expctl", "sweep", "agent", sweep_id, *agent_args])
    path.write_text(
        SCRIPT.format(
            n=tasks,
            sweep_id=sweep_id,
            job_name=job_name,
            last=tasks - 1,
            output=output,
            command=command,
        )
    )
    return path


_UNWRITABLE = re.compile(r'[\x00-\x1f\x7f"\\]')


def directive_safe(value: str, what: str) -> None:
    """Exit 2 unless ``value`` can be written, double-quoted, into an ``#SBATCH`` line (see
    the module doc)."""
    bad = _UNWRITABLE.search(value)
    if bad:
        char = bad.group()
        kind = "a newline" if char == "\n" else repr(char)
        raise UsageError(
            f"cannot submit agents: {what} {value!r} contains {kind}, which an #SBATCH line "
            "cannot carry (sbatch reads those lines itself; no shell quoting applies)",
            hint="run --slurm from a directory whose path has no newline, control character, "
            "double quote or backslash (or submit examples/slurm/sweep_array.sbatch yourself)",
        )
