"""Several real agent processes sharing one sweep: exactly-once grids, a SIGKILLed agent's trial
re-run by another, SIGTERM re-queueing, run_cap — on the default storage, a journal file,
SQLite, and PostgreSQL when EXPCTL_TEST_POSTGRES_URL is set.

Agents are ``python -m expctl sweep agent ID --objective test_sweep_support:sleepy``; each trial
appends ``start``/``end`` lines to a shared log (O_APPEND) that the assertions read.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from agent_processes import Agents
from conftest import postgres_url_or_skip
from sweep_helpers import create

from expctl.sweeps.service import sweep_status
from expctl.sweeps.spec import parse_spec

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parent
STORAGES = ["default", "journal", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def storage_url(kind: str, tmp_path: Path) -> str | None:
    if kind == "default":
        return None  # agents find ./.expctl/sweeps.journal from their working directory
    if kind == "journal":
        return str(tmp_path / "shared" / "sweeps.journal")
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'sweeps.db'}"
    return postgres_url_or_skip()


@pytest.fixture(params=STORAGES)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    return storage_url(request.param, tmp_path)


def grid(n: int, **extra) -> dict:
    return {
        "method": "grid",
        "metric": {"name": "loss"},
        "parameters": {"x": {"values": list(range(n))}, "tag": {"value": "t"}},
        **extra,
    }


def completed_points(events: list[dict]) -> Counter:
    return Counter(e["params"]["x"] for e in events if e["event"] == "end")


def assert_exactly_once(sweep_id: str, url: str | None, n: int) -> dict:
    status = sweep_status(sweep_id, url)
    complete = [t for t in status["trials"] if t["state"] == "complete"]
    assert sorted(t["params"]["x"] for t in complete) == list(range(n))
    assert not [t for t in status["trials"] if t["state"] in ("running", "waiting")]
    assert status["state"] == "finished"
    return status


def test_three_agents_share_a_grid_exactly_once(url: str | None, tmp_path: Path) -> None:
    info = create(parse_spec(grid(12)), url)
    agents = Agents(info.id, url, tmp_path / "trials.log", sleep=0.05)
    agents.start(3)
    for code, err in agents.wait():
        assert code == 0, err
        assert "the sweep is finished (grid complete)" in err
    events = agents.events()
    assert completed_points(events) == Counter(range(12))  # every point, each exactly once
    assert len({e["pid"] for e in events}) >= 2  # the work really was shared
    status = assert_exactly_once(info.id, url, 12)
    assert len(status["trials"]) == 12  # nothing failed, nothing re-run


RACED = ["journal", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.mark.parametrize("kind", RACED)
def test_six_agents_racing_for_instant_trials_run_each_point_once(
    kind: str, tmp_path: Path
) -> None:
    """Trials that take no time: six agents decide their next point at the same instants — on a
    journal most decisions are overtaken before the lock is taken and must be made again; on
    SQLite and PostgreSQL they race through one ``UPDATE … RETURNING`` pop — no point may be
    run by two agents (the storage alone would not show it: the second result is discarded, so
    the log of what ran is checked)."""
    url = storage_url(kind, tmp_path)
    info = create(parse_spec(grid(300)), url)
    agents = Agents(info.id, url, tmp_path / "trials.log", sleep=0.0)
    agents.start(6)
    for code, err in agents.wait():
        assert code == 0, err
    assert completed_points(agents.events()) == Counter(range(300))
    assert len(assert_exactly_once(info.id, url, 300)["trials"]) == 300


def test_a_sigkilled_agents_trial_is_rerun_and_the_grid_completes(
    url: str | None, tmp_path: Path
) -> None:
    info = create(parse_spec(grid(6)), url)
    agents = Agents(info.id, url, tmp_path / "trials.log", sleep=0.6)
    victim = agents.start(1, "--stale-after", "2")[0]
    started = agents.wait_for(lambda e: e["event"] == "start" and e["pid"] == victim.pid)
    agents.start(2, "--stale-after", "2")
    time.sleep(0.2)
    victim.kill()  # SIGKILL mid-trial: no cleanup, its trial stays RUNNING until reaped
    victim.wait()
    survivors = [p for p in agents.procs if p is not victim]
    agents.procs = survivors
    for code, err in agents.wait():
        assert code == 0, err
    events = agents.events()
    assert completed_points(events) == Counter(range(6))
    status = assert_exactly_once(info.id, url, 6)
    dead = [t for t in status["trials"] if t["state"] == "fail"]
    assert [t["number"] for t in dead] == [started["number"]]
    rerun = [t for t in status["trials"] if t["retry_of"] == started["number"]]
    assert len(rerun) == 1 and rerun[0]["state"] == "complete"
    assert rerun[0]["params"] == started["params"]


@pytest.mark.parametrize("kind", RACED)
def test_agents_sigkilled_at_random_moments_lose_no_point_and_run_none_twice(
    kind: str, tmp_path: Path
) -> None:
    """Short trials, so most kills land between two trials — while an agent records a result
    and claims its next point (one journal append; on SQLite and PostgreSQL a transaction
    each) — and some mid-trial: whatever a kill interrupts, each point completes exactly once
    once the survivors have reaped the dead."""
    import random

    rng = random.Random(7)
    url = storage_url(kind, tmp_path)
    info = create(parse_spec(grid(300)), url)
    agents = Agents(info.id, url, tmp_path / "trials.log", sleep=0.01)
    live, killed = agents.start(3, "--stale-after", "1"), set()
    agents.wait_for(lambda e: e["event"] == "end")  # the agents are claiming and finishing
    for _ in range(12):
        time.sleep(rng.uniform(0.05, 0.4))
        victim = live.pop(rng.randrange(len(live)))
        victim.kill()  # SIGKILL: no cleanup, whatever it was doing
        victim.wait()
        killed.add(victim.pid)
        live += agents.start(1, "--stale-after", "1")
    agents.procs = live
    for code, err in agents.wait():
        assert code == 0, err
    status = assert_exactly_once(info.id, url, 300)
    assert all(t["state"] in ("complete", "fail") for t in status["trials"])
    # a point ran twice only when an agent was killed after running it, before recording it
    ends = [e for e in agents.events() if e["event"] == "end"]
    assert set(completed_points(ends)) == set(range(300))
    by_survivors = completed_points([e for e in ends if e["pid"] not in killed])
    assert max(by_survivors.values()) == 1


def test_sigterm_requeues_the_trial_and_exits_143(tmp_path: Path) -> None:
    url = str(tmp_path / "s.journal")
    info = create(parse_spec(grid(2)), url)
    agents = Agents(info.id, url, tmp_path / "trials.log", sleep=30)
    proc = agents.start(1)[0]
    started = agents.wait_for(lambda e: e["event"] == "start")
    proc.send_signal(signal.SIGTERM)
    [(code, err)] = agents.wait()
    assert code == 143, err
    assert f"trial {started['number']} re-queued as trial" in err
    status = sweep_status(info.id, url)
    states = {t["number"]: (t["state"], t["retry_of"]) for t in status["trials"]}
    assert states[started["number"]] == ("fail", None)
    assert ("waiting", started["number"]) in states.values()
    # another agent picks the point up and finishes the grid
    agents = Agents(info.id, url, tmp_path / "trials.log", sleep=0.01)
    agents.start(1)
    [(code, err)] = agents.wait()
    assert code == 0, err
    assert_exactly_once(info.id, url, 2)


def test_sigint_exits_130(tmp_path: Path) -> None:
    url = str(tmp_path / "s.journal")
    info = create(parse_spec(grid(1)), url)
    agents = Agents(info.id, url, tmp_path / "trials.log", sleep=30)
    proc = agents.start(1)[0]
    agents.wait_for(lambda e: e["event"] == "start")
    proc.send_signal(signal.SIGINT)
    [(code, err)] = agents.wait()
    assert code == 130, err


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_run_cap_is_never_exceeded_by_racing_agents(kind: str, tmp_path: Path) -> None:
    url = storage_url(kind, tmp_path)
    spec = parse_spec(
        {
            "method": "random",
            "run_cap": 7,
            "metric": {"name": "loss"},
            "parameters": {"x": {"min": 0.0, "max": 1.0}},
        }
    )
    info = create(spec, url)
    agents = Agents(info.id, url, tmp_path / "trials.log", sleep=0.0)
    agents.start(3)
    for code, err in agents.wait():
        assert code == 0, err
    status = sweep_status(info.id, url)
    assert status["counts"] == {"complete": 7}
    assert len([e for e in agents.events() if e["event"] == "end"]) == 7


def test_flapping_agent_exits_1_with_a_clear_message(tmp_path: Path) -> None:
    url = str(tmp_path / "s.journal")
    info = create(parse_spec(grid(5)), url)
    agents = Agents(info.id, url, tmp_path / "trials.log", sleep=0)
    agents.start(1, objective="test_sweep_support:failing")
    [(code, err)] = agents.wait()
    assert code == 1
    assert "agent stopped: 3 trials failed within 60 s" in err
    assert "RuntimeError: boom" in err
    assert "Traceback" not in err
