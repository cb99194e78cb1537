"""Sweeps at scale: grids too large to queue at create are claimed by index — exactly once, by
real agent processes, one of them SIGKILLed — on every storage.

A grid larger than ``QUEUED_GRID_POINTS`` is never enumerated: ``sweep create`` writes the spec
only, and each claim takes the next index by creating a trial (see ``trial_queue.next_index``).
The in-process tests lower ``QUEUED_GRID_POINTS`` so that a 7-point grid takes that path too.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import postgres_url_or_skip
from sweep_helpers import create, open_
from test_sweep_agents import Agents

from expctl.errors import SpecError
from expctl.sweeps.engine import Claim
from expctl.sweeps.methods import grid as grid_module
from expctl.sweeps.methods import method_for
from expctl.sweeps.service import sweep_status
from expctl.sweeps.spec import parse_spec

STORAGES = ["journal", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def storage_url(kind: str, tmp_path: Path) -> str:
    if kind == "journal":
        return str(tmp_path / "sweeps.journal")
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'sweeps.db'}"
    return postgres_url_or_skip()


@pytest.fixture(params=STORAGES)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return storage_url(request.param, tmp_path)


@pytest.fixture
def by_index(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every grid is claimed by index (none is queued at create)."""
    monkeypatch.setattr(grid_module, "QUEUED_GRID_POINTS", 0)


def small_grid(n: int = 7) -> Any:
    return parse_spec(
        {"method": "grid", "metric": {"name": "loss"}, "parameters": {"x": {"values": [*range(n)]}}}
    )


MILLION = {
    "method": "grid",
    "metric": {"name": "loss"},
    "parameters": {
        "a": {"distribution": "int_uniform", "min": 0, "max": 999},
        "b": {"values": list("abcdefghij")},
        "c": {"distribution": "int_uniform", "min": 1, "max": 100},
    },
}


def million_index(params: dict[str, Any]) -> int:
    """The grid index of a point of MILLION (the last parameter varies fastest)."""
    return params["a"] * 1000 + "abcdefghij".index(params["b"]) * 100 + params["c"] - 1


def drain(sweep: Any) -> list[Any]:
    """Claim and complete trials until there is none; the x of each, then why it stopped."""
    done: list[Any] = []
    while isinstance(claim := sweep.claim(), Claim):
        done.append(claim.params["x"])
        sweep.finish(claim, "complete", 1.0)
    return [*done, claim]


def completed(sweep_id: str, url: str) -> list[Any]:
    status = sweep_status(sweep_id, url)
    return sorted(t["params"]["x"] for t in status["trials"] if t["state"] == "complete")


def test_a_grid_claimed_by_index_runs_each_point_once_and_finishes(
    url: str, by_index: None
) -> None:
    info = create(small_grid(7), url)
    assert info.planned == 7
    a, b = open_(info.id, url), open_(info.id, url)
    first, second = a.claim("a"), b.claim("b")
    assert isinstance(first, Claim) and isinstance(second, Claim)
    assert (first.params, second.params) == ({"x": 0}, {"x": 1})
    b.finish(second, "complete", 1.0)
    a.finish(first, "complete", 1.0)
    assert drain(b)[-1] == "finished"
    assert a.claim("a") == "finished"  # past the end: nothing claimed, nothing created
    assert completed(info.id, url) == list(range(7))
    status = sweep_status(info.id, url)
    assert status["state"] == "finished" and status["finished_reason"] == "grid complete"
    assert status["counts"] == {"complete": 7}


def test_a_dead_agents_indexed_trial_is_rerun_with_its_point(url: str, by_index: None) -> None:
    info = create(small_grid(5), url)
    a, b = open_(info.id, url), open_(info.id, url)
    dead = a.claim("a")
    assert isinstance(dead, Claim)
    time.sleep(0.3)
    assert [old for old, _ in b.liveness.reap_stale(0.2)] == [dead.number]
    assert drain(b) == [dead.params["x"], 1, 2, 3, 4, "finished"]
    assert completed(info.id, url) == list(range(5))


def test_an_agent_killed_before_recording_its_point_loses_nothing(url: str, by_index: None) -> None:
    """The trial exists (RUNNING) but its agent died before writing which point it runs: the
    reaper computes the point from the trial's number and re-runs exactly that point."""
    info = create(small_grid(4), url)
    a, b = open_(info.id, url), open_(info.id, url)
    trial, index = a.queue.next_index(a.method.planned())  # type: ignore[misc]
    assert index == 0 and trial.user_attrs == {}  # the claim's own writes never happened
    time.sleep(0.3)
    assert [old for old, _ in b.liveness.reap_stale(0.2)] == [trial.number]
    assert drain(b) == [0, 1, 2, 3, "finished"]
    assert completed(info.id, url) == list(range(4))


def test_a_trial_created_past_the_end_is_discarded_not_rerun(url: str, by_index: None) -> None:
    """Two agents racing for the last point both create a trial; the one past the end is
    discarded — also when its agent died before discarding it."""
    info = create(small_grid(1), url)
    a, b = open_(info.id, url), open_(info.id, url)
    last = a.claim("a")
    assert isinstance(last, Claim)
    late, index = b.queue.new_trial(), None  # b lost the race: created after the last index
    index = b.queue.index_of(late.number)
    assert index == 1 and b.method.point(index) is None
    a.finish(last, "complete", 1.0)
    time.sleep(0.3)
    assert b.liveness.reap_stale(0.2) == []  # b "died": its trial is discarded, not re-queued
    assert a.claim("a") == "finished"
    status = sweep_status(info.id, url)
    assert status["counts"] == {"complete": 1} and status["state"] == "finished"


def test_small_grids_are_still_queued_whole_at_create(url: str) -> None:
    method = method_for(small_grid(3))
    assert not method.claims_by_index
    assert method.points_to_enqueue() == [{"x": 0}, {"x": 1}, {"x": 2}]


def test_a_million_point_grid_is_created_without_enumerating_it(tmp_path: Path) -> None:
    url = str(tmp_path / "sweeps.journal")
    method = method_for(parse_spec(MILLION))
    assert method.claims_by_index and method.points_to_enqueue() == []
    info = create(parse_spec(MILLION), url)
    assert info.planned == 1_000_000
    assert os.path.getsize(url) < 10_000  # the spec, not a million points
    # a point is a pure function of its index, in W&B's order (itertools.product)
    for index in (0, 1, 99, 100, 123_456, 999_999):
        assert million_index(method.point(index)) == index  # type: ignore[arg-type]
    assert method.point(1_000_000) is None


def test_a_grid_larger_than_storage_holds_is_refused_with_its_size(tmp_path: Path) -> None:
    raw = {**MILLION, "parameters": {**MILLION["parameters"]}}
    raw["parameters"]["d"] = {"distribution": "int_uniform", "min": 1, "max": 10**9}
    spec = parse_spec(raw)
    with pytest.raises(SpecError) as e:
        method_for(spec).check_size()
    assert "1,000,000,000,000,000 points" in str(e.value.problems)
    assert "d 1,000,000,000" in str(e.value.problems)


@pytest.mark.slow
@pytest.mark.parametrize("kind", STORAGES)
def test_agents_share_a_million_point_grid_exactly_once_with_one_sigkilled(
    kind: str, tmp_path: Path
) -> None:
    """Real agent processes on a budget (--count), one SIGKILLed mid-trial: the claimed indices
    are exactly the first N of the grid, each completed once, the victim's point re-run."""
    url = storage_url(kind, tmp_path)
    info = create(parse_spec(MILLION), url)
    agents = Agents(info.id, url, tmp_path / "trials.log", sleep=0.3)
    victim = agents.start(1, "--stale-after", "1")[0]
    started = agents.wait_for(lambda e: e["event"] == "start" and e["pid"] == victim.pid)
    agents.start(2, "--stale-after", "1", "--count", "8")
    victim.kill()  # SIGKILL mid-trial: its trial stays RUNNING until reaped
    victim.wait()
    agents.procs = [p for p in agents.procs if p is not victim]
    for code, err in agents.wait():
        assert code == 0, err
    time.sleep(1.2)  # the victim's trial is stale now, whoever reaps it
    agents.procs = []
    agents.start(1, "--stale-after", "1", "--count", "2")
    for code, err in agents.wait():
        assert code == 0, err

    status = sweep_status(info.id, url)
    trials = status["trials"]
    done = Counter(million_index(t["params"]) for t in trials if t["state"] == "complete")
    assert max(done.values()) == 1  # no point ran twice
    claimed = {million_index(t["params"]) for t in trials if t["params"]}
    assert sorted(done) == sorted(claimed) == list(range(len(claimed)))  # no point skipped
    assert million_index(started["params"]) in done  # the victim's point was re-run
    failed = [t for t in trials if t["state"] == "fail"]
    assert [t["number"] for t in failed] == [started["number"]]
    assert status["state"] == "running" and status["planned"] == 1_000_000
