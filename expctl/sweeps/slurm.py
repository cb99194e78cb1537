"""Sweep agents on SLURM as one job array: ``expctl sweep agent ID --slurm N``.

Plain ``sbatch``, not submitit: submitit runs a pickled Python callable and handles preemption
by resubmitting that callable; an agent is a command, and its preemption protocol is already the
sweep's — on SIGTERM it re-queues its running trial in the sweep storage and exits 143, so
another task runs the point. The batch script is the one shipped as
``examples/slurm/sweep_array.sbatch`` (tested under a real SLURM): the agent runs in the
background so the batch shell can pass on SLURM's ``--signal=B:TERM@60``. It is written next to
the job's output under ``.expctl/slurm/`` and kept, so what ran can be read later.

More agents than one array may hold (``MaxArraySize`` bounds an array's largest index + 1, and
``max_array_tasks`` its size; read from ``scontrol show config``) are split into several arrays
submitted with the same script: each uses indices ``0..size-1`` and gets the number of its first
agent as the script's argument, so ``EXPCTL_SLURM_TASK`` numbers the agents 0..N-1 across all
of them. ``--slurm-throttle K`` is sbatch's ``--array=0-M%K``; with several arrays, each waits
for the one before (``--dependency=afterany``), so at most K agents run at once in all. An agent
records its SLURM ids with its heartbeat (:func:`slurm_job`), and ``sweep status`` shows them.

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expctl.errors import RuntimeFailure, UsageError

SCRIPT_DIR = Path(".expctl") / "slurm"
# SLURM's own default MaxArraySize, for a cluster whose config cannot be read (no scontrol)
DEFAULT_MAX_ARRAY_SIZE = 1001
# More arrays than this is a mistake (agents are not trials: each runs trials until the sweep
# is done), and each is one sbatch call
MAX_ARRAYS = 100
# The agent's number among all the agents of one --slurm submission (0..N-1, across arrays)
TASK_VARIABLE = "EXPCTL_SLURM_TASK"
SCRIPT = """#!/bin/bash
# {n} expctl sweep agents for sweep {sweep_id}, one per array task (written by expctl).
# Submitted as {arrays}: sbatch --array=0-SIZE-1 THIS_SCRIPT FIRST, where FIRST is the number of
# the array's first agent (an array holds at most the cluster's MaxArraySize tasks).
#SBATCH --job-name={job_name}
#SBATCH --signal=B:TERM@60
#SBATCH --output={output}
set -uo pipefail
export {task_variable}=$(( ${{1:-0}} + ${{SLURM_ARRAY_TASK_ID:-0}} ))

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


@dataclass(frozen=True)
class AgentArray:
    """One job array of a submission: its agents are numbered ``first .. first + size - 1``."""

    job: str
    first: int
    size: int
    after: str | None = None  # the array it waits for (--slurm-throttle over several arrays)


def check_counts(tasks: int, throttle: int | None) -> None:
    """Exit 2 for an agent count or throttle that cannot be submitted."""
    if tasks < 1:
        raise UsageError(
            f"--slurm {tasks}: the number of agents must be 1 or more",
            hint="e.g. --slurm 8 submits 8 agents; each runs trials until the sweep is done",
        )
    if throttle is not None and throttle < 1:
        raise UsageError(
            f"--slurm-throttle {throttle}: the number of agents running at once must be 1 or more",
            hint=f"e.g. --slurm {max(tasks, 8)} --slurm-throttle 4; leave it out for no limit",
        )


def split_tasks(tasks: int, per_array: int) -> list[tuple[int, int]]:
    """``(first agent, size)`` of each array holding ``tasks`` agents, ``per_array`` at most."""
    return [(first, min(per_array, tasks - first)) for first in range(0, tasks, per_array)]


def submit_agents(
    sweep_id: str,
    tasks: int,
    agent_args: Sequence[str],
    *,
    throttle: int | None = None,
    slurm_options: Sequence[str] = (),
    storage_url: str | None = None,
) -> list[AgentArray]:
    """Submit ``tasks`` agents of ``sweep_id`` as job arrays (one unless the cluster's
    ``MaxArraySize`` is smaller); returns them in order.

    ``agent_args`` are the agent's own options (``--count 4``, ...). The storage reaches the
    tasks through the environment (sbatch exports it), never through the script file: a
    PostgreSQL URL may hold a password. When sbatch refuses an array, those already submitted
    are cancelled: a second try must not find half of the agents queued.
    """
    check_counts(tasks, throttle)
    options = sbatch_options(slurm_options)
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise UsageError(
            "--slurm needs SLURM's sbatch, which is not on PATH here",
            hint="run this on a SLURM login node, or start agents yourself: "
            f"expctl sweep agent {sweep_id}",
        )
    per_array = array_limit()
    parts = split_tasks(tasks, per_array)
    if len(parts) > MAX_ARRAYS:
        raise UsageError(
            f"--slurm {tasks} needs {len(parts)} job arrays here (this cluster's arrays hold "
            f"at most {per_array} tasks: MaxArraySize); expctl submits at most {MAX_ARRAYS}",
            hint="ask for fewer agents: each runs trials until the sweep is done, so a few "
            "hundred keep a cluster busy",
        )
    script = _write_script(sweep_id, tasks, agent_args, len(parts))
    env = dict(os.environ)
    if storage_url:
        env["EXPCTL_STORAGE"] = storage_url
    arrays: list[AgentArray] = []
    for first, size in parts:
        spec = f"0-{size - 1}" + (f"%{throttle}" if throttle else "")
        chained = arrays[-1].job if throttle and arrays else None
        extra = [f"--dependency=afterany:{chained}"] if chained else []
        if chained:  # the first array waits for what the user asked; the others, for it
            options = [o for o in options if not o.startswith("--dependency=")]
        # the script's argument: the number of the array's first agent (EXPCTL_SLURM_TASK)
        command = [
            sbatch,
            "--parsable",
            *options,
            f"--array={spec}",
            *extra,
            str(script),
            str(first),
        ]
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            _cancel([a.job for a in arrays])
            first_line = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()
            cancelled = f" (cancelled the {len(arrays)} submitted before it)" if arrays else ""
            raise RuntimeFailure(
                f"sbatch refused the agent array {spec}: {first_line[0]}{cancelled}",
                hint=f"check the --slurm-opt values; the script is {script}",
            )
        job = done.stdout.strip().split(";", 1)[0]
        arrays.append(AgentArray(job, first, size, chained))
    return arrays


def _cancel(jobs: list[str]) -> None:
    if jobs:
        subprocess.run(["scancel", *jobs], capture_output=True, check=False)


def array_limit() -> int:
    """How many tasks one job array may hold on this cluster (``scontrol show config``)."""
    scontrol = shutil.which("scontrol")
    if scontrol is None:
        return DEFAULT_MAX_ARRAY_SIZE
    done = subprocess.run([scontrol, "show", "config"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        first = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[0]
        raise RuntimeFailure(
            f"cannot read the cluster's MaxArraySize: scontrol show config: {first}",
            hint="check that the SLURM controller answers (`scontrol ping`)",
        )
    limit = parse_array_limit(done.stdout)
    if limit < 1:
        raise UsageError(
            "this SLURM cluster does not allow job arrays (MaxArraySize=0), which --slurm submits",
            hint="submit agents as single jobs yourself: sbatch --wrap 'expctl sweep agent ID'",
        )
    return limit


def parse_array_limit(config: str) -> int:
    """``MaxArraySize`` (the largest index + 1: indices start at 0), or ``max_array_tasks`` of
    ``SchedulerParameters`` when lower, from ``scontrol show config``'s text."""
    values = dict(re.findall(r"^(\w+)\s*=\s*(.*?)\s*$", config, re.MULTILINE))
    size = values.get("MaxArraySize", "")
    limit = int(size) if size.isdigit() else DEFAULT_MAX_ARRAY_SIZE
    tasks = re.search(r"(?:^|,)max_array_tasks=(\d+)", values.get("SchedulerParameters", ""))
    return min(limit, int(tasks.group(1))) if tasks else limit


def slurm_job(environ: Mapping[str, str] = os.environ) -> dict[str, Any] | None:
    """The SLURM job this process runs in, as ``sweep status`` shows it (None outside one):
    ``job`` as squeue and scancel name it (``ARRAYJOB_TASK`` for an array task), ``job_id``
    (the task's own id), ``task`` (the agent's number in its ``--slurm`` submission)."""
    job_id = environ.get("SLURM_JOB_ID")
    if not job_id:
        return None
    array_job, array_task = environ.get("SLURM_ARRAY_JOB_ID"), environ.get("SLURM_ARRAY_TASK_ID")
    job = f"{array_job}_{array_task}" if array_job and array_task else job_id
    task = environ.get(TASK_VARIABLE, "")
    return {"job": job, "job_id": job_id, "task": int(task) if task.isdigit() else None}


def job_ranges(jobs: Sequence[str]) -> str:
    """``["7_0", "7_1", "7_3", "9"]`` → ``"7_[0-1,3], 9"``: squeue's own short form."""
    tasks: dict[str, list[int]] = {}
    for job in jobs:
        array, sep, task = job.partition("_")
        tasks.setdefault(array, [])
        if sep and task.isdigit():
            tasks[array].append(int(task))
    parts = []
    for array, numbers in sorted(tasks.items(), key=lambda kv: (len(kv[0]), kv[0])):
        if not numbers:
            parts.append(array)
            continue
        runs: list[list[int]] = []
        for n in sorted(set(numbers)):
            if runs and n == runs[-1][1] + 1:
                runs[-1][1] = n
            else:
                runs.append([n, n])
        text = ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
        parts.append(f"{array}_{text}" if len(numbers) == 1 else f"{array}_[{text}]")
    return ", ".join(parts)


def _write_script(sweep_id: str, tasks: int, agent_args: Sequence[str], arrays: int) -> Path:
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
            arrays="one job array" if arrays == 1 else f"{arrays} job arrays",
            job_name=job_name,
            output=output,
            task_variable=TASK_VARIABLE,
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
