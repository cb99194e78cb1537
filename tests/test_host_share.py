"""num_threads: auto shares the CPUs among the trainers running on them (real processes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from expctl import host_share
from expctl.device import cpu_set

HOLDER = """
import sys, time
from expctl import host_share
with host_share.registered({int(c) for c in sys.argv[1].split(",")}):
    print("registered", flush=True)
    time.sleep(60)
"""


def holder(cpus: set[int]) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, ",".join(map(str, sorted(cpus)))],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "registered"
    return proc


@pytest.fixture(autouse=True)
def private_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # tests see only their own trainers
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)


def test_live_trainers_on_overlapping_cpus_are_counted_and_dead_ones_are_not():
    mine = {0, 1}
    assert host_share.sharing(mine) == 0
    same, disjoint = holder({0, 1}), holder({7, 8})
    try:
        with host_share.registered(mine):
            assert host_share.sharing(mine) == 2  # this one and `same`; not the pinned-away one
        os.kill(same.pid, signal.SIGKILL)  # a crashed trainer stops counting at once
        same.wait()
        assert host_share.sharing(mine) == 0
    finally:
        for p in (same, disjoint):
            p.kill()
            p.wait()


@pytest.mark.slow
def test_two_concurrent_runs_take_half_the_cpus_each(project: Path, expctl_exe):
    # the first trains far longer than the second needs to start (it is stopped by SIGTERM
    # once the second is done): with 40 epochs a quiet machine finished it before the second
    # had imported torch, and the second rightly took every CPU
    args = ["run", "trainer.epochs=100000", "data=synthetic", "data.num_samples=2048", "--quiet"]
    first = subprocess.Popen([*expctl_exe, *args], stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(project.glob("runs/*/*/metrics.jsonl")):
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.1)
    second = subprocess.run(
        [*expctl_exe, *args[:1], "trainer.epochs=1", *args[2:]], capture_output=True, text=True
    )
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=60)
    assert second.returncode == 0, second.stderr
    summary = json.loads((Path(second.stdout.strip()) / "summary.json").read_text())
    assert summary["num_threads"] == max(1, len(cpu_set()) // 2)
