"""Many nodes, one sweep: 4 agent processes, each in its own working directory (a "node"),
sharing a sweep through a database server (PostgreSQL) or a journal file on a shared
filesystem. Exactly-once grids, a SIGKILLed node's trial re-run, bayes with parallel agents.

The sweep is created with the real CLI (`expctl sweep create`) and agents are real
`expctl sweep agent` processes; objectives are the pure functions in tests/test_sweep_support.py.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import postgres_url_or_skip

from expctl.sweeps.service import sweep_status

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parent
NODES = 4


@pytest.fixture(params=["postgres", "journal"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return postgres_url_or_skip()
    shared = tmp_path / "nfs"
    shared.mkdir()
    return str(shared / "sweeps.journal")


class Cluster:
    """`expctl` processes on NODES nodes (working directories), sharing one storage."""

    def __init__(self, root: Path, storage: str, nodes: int = NODES):
        self.root, self.storage = root, storage
        self.log = root / "trials.log"
        self.env = {
            **os.environ,
            "EXPCTL_STORAGE": storage,
            "SWEEP_TEST_LOG": str(self.log),
            "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        }
        self.nodes = [root / f"node{i}" for i in range(nodes)]
        for node in self.nodes:
            node.mkdir(parents=True)
        self.procs: list[subprocess.Popen] = []

    def create(self, spec: dict) -> str:
        path = self.root / "sweep.yaml"
        path.write_text(yaml.safe_dump(spec))
        # The project config the parameters are checked against (the objectives read params).
        conf = self.root / "conf"
        conf.mkdir(exist_ok=True)
        (conf / "config.yaml").write_text("x: 0\nx1: 0.0\nx2: 0.0\n")
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "expctl",
                "sweep",
                "create",
                str(path),
                "--config-dir",
                str(conf),
            ],
            cwd=self.nodes[0],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    def agent(self, node: Path, sweep_id: str, objective: str, sleep: float, *extra: str):
        env = {**self.env, "SWEEP_TEST_SLEEP": str(sleep)}
        cmd = [
            sys.executable,
            "-m",
            "expctl",
            "sweep",
            "agent",
            sweep_id,
            "--objective",
            f"test_sweep_support:{objective}",
            *extra,
        ]
        proc = subprocess.Popen(
            cmd, cwd=node, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.procs.append(proc)
        return proc

    def wait(self, timeout: float = 180) -> None:
        for proc in self.procs:
            _, err = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, err

    def events(self) -> list[dict]:
        text = self.log.read_text() if self.log.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line]


def grid(n: int) -> dict:
    return {
        "method": "grid",
        "metric": {"name": "loss"},
        "parameters": {"x": {"values": list(range(n))}},
    }


def test_four_nodes_share_a_grid_exactly_once(storage: str, tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, storage)
    sweep_id = cluster.create(grid(16))
    for node in cluster.nodes:
        cluster.agent(node, sweep_id, "sleepy", 0.05)
    cluster.wait()
    ends = [e for e in cluster.events() if e["event"] == "end"]
    assert Counter(e["params"]["x"] for e in ends) == Counter(range(16))
    assert len({e["pid"] for e in ends}) >= 2
    status = sweep_status(sweep_id, storage)
    assert status["state"] == "finished" and status["counts"] == {"complete": 16}
    assert not any((node / ".expctl").exists() for node in cluster.nodes)  # nothing node-local


def test_a_killed_nodes_trial_is_rerun_by_another_node(storage: str, tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, storage)
    sweep_id = cluster.create(grid(8))
    victim = cluster.agent(cluster.nodes[0], sweep_id, "sleepy", 0.8, "--stale-after", "2")
    deadline = time.monotonic() + 60
    while not any(e["event"] == "start" for e in cluster.events()):
        assert time.monotonic() < deadline, "the first agent never started a trial"
        time.sleep(0.05)
    started = next(e for e in cluster.events() if e["event"] == "start")
    for node in cluster.nodes[1:]:
        cluster.agent(node, sweep_id, "sleepy", 0.3, "--stale-after", "2")
    victim.kill()  # a lost node: no cleanup at all
    victim.communicate()
    cluster.procs.remove(victim)
    cluster.wait()
    status = sweep_status(sweep_id, storage)
    complete = sorted(t["params"]["x"] for t in status["trials"] if t["state"] == "complete")
    assert complete == list(range(8))  # every point exactly once
    failed = [t for t in status["trials"] if t["state"] == "fail"]
    assert [t["number"] for t in failed] == [started["number"]]
    rerun = [t for t in status["trials"] if t["retry_of"] == started["number"]]
    assert len(rerun) == 1 and rerun[0]["state"] == "complete"


def test_bayes_with_parallel_agents_on_four_nodes(storage: str, tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, storage)
    spec = {
        "method": "bayes",
        "run_cap": 16,
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {"x1": {"min": -5.0, "max": 10.0}, "x2": {"min": 0.0, "max": 15.0}},
    }
    sweep_id = cluster.create(spec)
    for node in cluster.nodes:
        cluster.agent(node, sweep_id, "branin", 0.0)
    cluster.wait()
    status = sweep_status(sweep_id, storage)
    complete = [t for t in status["trials"] if t["state"] == "complete"]
    assert len(complete) == 16  # run_cap holds across nodes
    points = {(t["params"]["x1"], t["params"]["x2"]) for t in complete}
    assert len(points) == 16  # parallel suggestions did not collapse onto one point
    assert status["best"]["value"] == min(t["value"] for t in complete)
    assert len({e["pid"] for e in cluster.events()}) >= 2


def test_soak_sixteen_agents_on_postgres_with_three_killed(tmp_path: Path) -> None:
    """16 agent processes on one PostgreSQL sweep of 200 points; 3 of them SIGKILLed mid-trial
    at random moments and started again on their node. Every point completes exactly once,
    each killed trial is re-run once, and nothing is left running."""
    storage = postgres_url_or_skip()
    seed = int(os.environ.get("EXPCTL_SOAK_SEED", time.time_ns() % 10_000))
    rng = random.Random(seed)
    cluster = Cluster(tmp_path, storage, nodes=16)
    sweep_id = cluster.create(grid(200))
    stale = ("--stale-after", "3")
    by_pid = {
        cluster.agent(node, sweep_id, "sleepy", 0.1, *stale).pid: node for node in cluster.nodes
    }
    killed: list[int] = []  # trial numbers that were running in a killed agent
    # Kill when the sweep has got this far (random moments, but always while trials remain: on a
    # fast machine the whole sweep takes a few seconds, and a wall-clock schedule could miss it).
    kill_at = sorted(rng.sample(range(10, 150), 3))
    progress, stalled_since = -1, time.monotonic()
    while len(killed) < 3:
        time.sleep(rng.uniform(0.01, 0.1))
        events = cluster.events()
        ended = {e["number"] for e in events if e["event"] == "end"}
        if len(ended) > progress:
            progress, stalled_since = len(ended), time.monotonic()
        assert time.monotonic() - stalled_since < 60, (
            f"seed {seed}: no trial ended for 60 s ({progress} ended, {len(killed)} killed): "
            f"{_agent_errors(cluster)}"
        )
        if len(ended) < kill_at[len(killed)]:
            continue
        running = {e["pid"]: e["number"] for e in events if e["event"] == "start"}
        mid_trial = [
            (pid, number)
            for pid, number in running.items()
            if number not in ended and pid in by_pid and number not in killed
        ]
        if not mid_trial:
            continue
        pid, number = rng.choice(sorted(mid_trial))
        victim = next(p for p in cluster.procs if p.pid == pid)
        os.kill(pid, signal.SIGKILL)  # a lost node: no cleanup at all
        victim.communicate()
        cluster.procs.remove(victim)
        killed.append(number)
        node = by_pid.pop(pid)
        by_pid[cluster.agent(node, sweep_id, "sleepy", 0.1, *stale).pid] = node
    cluster.wait(timeout=120)
    status = sweep_status(sweep_id, storage)
    complete = Counter(t["params"]["x"] for t in status["trials"] if t["state"] == "complete")
    assert complete == Counter(range(200)), f"seed {seed}"  # every point exactly once
    assert not [t for t in status["trials"] if t["state"] == "running"], f"seed {seed}"
    failed = sorted(t["number"] for t in status["trials"] if t["state"] == "fail")
    assert failed == sorted(killed), f"seed {seed}"
    reruns = Counter(t["retry_of"] for t in status["trials"] if t["retry_of"] is not None)
    assert reruns == Counter(killed), f"seed {seed}"
    assert status["state"] == "finished"


def _agent_errors(cluster: Cluster) -> str:
    """The stderr of agents that have exited, for a failure message."""
    done = [p for p in cluster.procs if p.poll() is not None]
    return "; ".join(f"pid {p.pid} exit {p.returncode}: {p.communicate()[1][-500:]}" for p in done)
