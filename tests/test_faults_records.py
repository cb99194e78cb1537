"""A run's record under hostile disks and concurrent writers: full, read-only, size-limited,
a file where the runs dir should be, two resumes of one run. Real processes, real mounts."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import time
from pathlib import Path

import pytest
from disks import fill, tmpfs

pytestmark = pytest.mark.slow

QUICK = ["trainer.epochs=2", "trainer.device=cpu", "--quiet"]
# LONG runs are stopped by a signal: far more epochs than any machine finishes before it
LONG = ["trainer.epochs=100000", "trainer.device=cpu", "data=synthetic", "data.num_samples=512"]


def run(expctl_exe, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*expctl_exe, "run", *args], capture_output=True, text=True, check=False, **kwargs
    )


def test_full_disk_is_exit_1_naming_the_device_and_file_and_the_run_is_marked_failed(
    project: Path, expctl_exe
):
    with tmpfs(project / "small", "120k") as small:
        result = run(expctl_exe, "--runs-dir", str(small), *QUICK)
        assert result.returncode == 1, result.stderr
        assert f"no space left on device {small} writing {small}" in result.stderr
        assert "hint:" in result.stderr
        assert "unexpected" not in result.stderr and "Traceback" not in result.stderr
        (summary_path,) = small.glob("*/*/summary.json")
        summary = json.loads(summary_path.read_text())
        assert summary["status"] == "failed"
        assert "no space left" in summary["error"]
        rows = (summary_path.parent / "metrics.jsonl").read_text().splitlines()
        assert rows, "the rows logged before the disk filled are on disk"


def test_read_only_runs_dir_is_exit_1_saying_so(project: Path, expctl_exe):
    with tmpfs(project / "ro", "1m", read_only=True) as ro:
        result = run(expctl_exe, "--runs-dir", str(ro), *QUICK)
    assert result.returncode == 1, result.stderr
    assert f"read-only file system {ro} writing {ro}" in result.stderr
    assert "unexpected" not in result.stderr and "hint:" in result.stderr


def test_file_size_limit_is_named_not_blamed_on_model_shapes(project: Path, expctl_exe):
    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    result = run(expctl_exe, *QUICK, preexec_fn=limit_file_size)
    assert result.returncode == 1, result.stderr
    assert "file size limit exceeded writing" in result.stderr
    assert "ulimit -f" in result.stderr and "shapes" not in result.stderr
    (summary_path,) = (project / "runs").glob("*/*/summary.json")
    assert json.loads(summary_path.read_text())["status"] == "failed"


def test_runs_dir_that_is_a_file_is_bad_input(project: Path, expctl_exe):
    (project / "not_a_dir").write_text("x")
    result = run(expctl_exe, "--runs-dir", "not_a_dir", *QUICK)
    assert result.returncode == 2, result.stderr
    assert "is a file" in result.stderr and "--runs-dir" in result.stderr


def test_two_resumes_of_one_run_at_once_the_second_is_refused(project: Path, expctl_exe):
    first = subprocess.Popen(
        [*expctl_exe, "run", *LONG, "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = lambda: list((project / "runs").glob("*/*/metrics.jsonl"))  # noqa: E731
    deadline = time.monotonic() + 60
    while not (metrics() and metrics()[0].stat().st_size > 0):
        assert time.monotonic() < deadline and first.poll() is None, first.stderr
        time.sleep(0.1)
    first.send_signal(signal.SIGTERM)
    out, err = first.communicate(timeout=60)
    assert first.returncode == 143, err
    run_dir = out.strip()

    resumed = subprocess.Popen(
        [*expctl_exe, "run", "--resume", run_dir, "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lock = Path(run_dir) / ".lock"
    deadline = time.monotonic() + 60
    while f"pid {resumed.pid} " not in (lock.read_text() if lock.exists() else ""):
        assert time.monotonic() < deadline and resumed.poll() is None, resumed.stderr
        time.sleep(0.05)
    second = run(expctl_exe, "--resume", run_dir, "--quiet")
    assert second.returncode == 2, second.stderr
    assert f"is being written by pid {resumed.pid} on {os.uname().nodename}" in second.stderr
    resumed.send_signal(signal.SIGTERM)
    resumed.communicate(timeout=60)
    assert resumed.returncode == 143
    rows = Path(run_dir, "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in rows]
    twice = sorted(s for s in set(steps) if steps.count(s) > 1)
    assert not twice, f"steps written twice: {twice} in {steps}"
    # the lock died with its process: the run resumes again
    third = run(expctl_exe, "--resume", run_dir, "trainer.epochs=1", "--quiet")
    assert "is being written" not in third.stderr


def test_disk_with_0_bytes_free_is_exit_1_naming_it_and_leaves_no_run_behind(
    project: Path, expctl_exe
):
    with tmpfs(project / "full", "64k") as full:
        (full / "runs").mkdir()
        fill(full)
        result = run(expctl_exe, "--runs-dir", str(full / "runs"), *QUICK)
        assert result.returncode == 1, result.stderr
        assert f"no space left on device {full} writing {full / 'runs'}" in result.stderr
        assert "hint:" in result.stderr
        assert "unexpected" not in result.stderr and "Traceback" not in result.stderr
        left = [p for p in (full / "runs").rglob("*") if p.is_file()]
        assert not left, f"a run that never started was left behind: {left}"
