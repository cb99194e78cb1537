"""Real ``expctl sweep agent`` processes on one sweep, for the tests that need several: each
trial of the objectives in :mod:`test_sweep_support` (and of others written the same way)
appends ``start``/``end`` lines to a shared log (O_APPEND) that the assertions read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


class Agents:
    """Start agent processes on one sweep and read the trial log they share."""

    def __init__(self, sweep_id: str, url: str | None, log: Path, sleep: float):
        self.sweep_id, self.url, self.log = sweep_id, url, log
        self.env = {
            **os.environ,
            "SWEEP_TEST_LOG": str(log),
            "SWEEP_TEST_SLEEP": str(sleep),
            "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        }
        self.procs: list[subprocess.Popen] = []

    def start(
        self, n: int, *extra: str, objective: str = "test_sweep_support:sleepy"
    ) -> list[subprocess.Popen]:
        cmd = [
            sys.executable,
            "-m",
            "expctl",
            "sweep",
            "agent",
            self.sweep_id,
            "--objective",
            objective,
            *extra,
        ]
        if self.url:
            cmd += ["--storage", self.url]
        new = [
            subprocess.Popen(
                cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for _ in range(n)
        ]
        self.procs += new
        return new

    def wait(self, timeout: float = 120) -> list[tuple[int, str]]:
        results = []
        for p in self.procs:
            try:
                _, err = p.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                _, err = p.communicate()
                pytest.fail(f"agent {p.pid} did not finish:\n{err}")
            results.append((p.returncode, err))
        return results

    def events(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]

    def wait_for(self, predicate, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events():
                if predicate(event):
                    return event
            time.sleep(0.05)
        pytest.fail("the expected trial event never came")
