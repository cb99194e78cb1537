"""The tutorial's program, unchanged, shared by several `expctl sweep agent` processes, one of
them SIGKILLed together with its child mid-trial: every grid point still runs to completion once."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

GRID = """
program: examples/tutorial_sweep/train.py
name: tutorial-grid
method: grid
metric: {name: val_loss, goal: minimize}
parameters:
  lr: {values: [0.01, 0.05, 0.2]}
  batch_size: {values: [32, 128]}
  epochs: {value: 2}
"""


def children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the live children of ``pid``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] not in ("Z", "X"):
            found.append((int(stat.parent.name), cmdline))
    return found


def wait_for_program_child(agent: subprocess.Popen, deadline: float) -> int:
    while time.monotonic() < deadline:
        assert agent.poll() is None, "the agent ended before starting a trial"
        for pid, cmdline in children(agent.pid):
            if "tutorial_sweep/train.py" in cmdline:
                return pid
        time.sleep(0.02)
    raise AssertionError("no trial started within the deadline")


@pytest.mark.slow
def test_tutorial_program_under_three_agents_with_one_sigkilled(isolated: Path, expctl_exe):
    shutil.copytree(REPO / "configs", isolated / "configs")
    shutil.copytree(REPO / "examples" / "tutorial_sweep", isolated / "examples" / "tutorial_sweep")
    (isolated / "grid.yaml").write_text(GRID)
    env = dict(os.environ)
    sweep_id = subprocess.run(
        [*expctl_exe, "sweep", "create", "grid.yaml"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    agent_cmd = [*expctl_exe, "sweep", "agent", sweep_id, "--stale-after", "1"]

    doomed = subprocess.Popen(
        agent_cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    child = wait_for_program_child(doomed, time.monotonic() + 60)
    doomed.kill()  # kill -9 of the agent ...
    doomed.wait()
    os.killpg(child, signal.SIGKILL)  # ... and of its trial (its own process group)

    survivors = [
        subprocess.Popen(
            agent_cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    for agent in survivors:
        _, stderr = agent.communicate(timeout=180)
        assert agent.returncode == 0, stderr

    status = json.loads(
        subprocess.run(
            [*expctl_exe, "sweep", "status", sweep_id, "--format", "json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    complete = [t for t in status["trials"] if t["state"] == "complete"]
    points = sorted((t["params"]["lr"], t["params"]["batch_size"]) for t in complete)
    assert points == sorted((lr, bs) for lr in (0.01, 0.05, 0.2) for bs in (32, 128))
    assert all(t["value"] is not None for t in complete)
    # the killed agent's trial was detected as dead and its point re-run by a survivor
    by_number = {t["number"]: t for t in status["trials"]}
    retried = [t["retry_of"] for t in complete if t["retry_of"] is not None]
    assert retried, "no trial was re-run"
    assert all(by_number[n]["state"] != "complete" for n in retried)
