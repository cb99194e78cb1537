"""Sweeps at scale: grids too large to queue at create are claimed by index — exactly once, by
real agent processes, one of them SIGKILLed — on every storage.

A grid larger than ``QUEUED_GRID_POINTS`` is never enumerated: ``sweep create`` writes the spec
only, and each claim takes the next index by creating a trial (see ``trial_queue.next_index``).
The in-process tests lower ``QUEUED_GRID_POINTS`` so that a 7-point grid takes that path too.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from agent_processes import Agents
from conftest import STORAGES, storage_url
from sweep_helpers import create, open_

from expctl.errors import SpecError
from expctl.sweeps.engine import Claim
from expctl.sweeps.methods import grid as grid_module
from expctl.sweeps.methods import method_for
from expctl.sweeps.service import sweep_status
from expctl.sweeps.spec import parse_spec


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


# -- the journal's snapshot ----------------------------------------------------------------------


def finished_trials(url: str, n: int) -> str:
    """A random sweep on the journal ``url`` with ``n`` finished trials (and one running)."""
    from optuna.trial import TrialState, create_trial

    from expctl.sweeps.storage.journal_writes import batched_writes

    info = create(parse_spec({**MILLION, "method": "random"}), url)
    sweep = open_(info.id, url)
    with batched_writes(sweep.handle.storage):
        for i in range(n):
            trial = create_trial(
                state=TrialState.COMPLETE,
                value=i / n,
                user_attrs={"expctl:params": {"a": i}, "expctl:result": {"metrics": {"m": i}}},
                intermediate_values={0: 1.0, 1: 0.5},
            )
            sweep.handle.storage.create_new_trial(sweep.study_id, trial)
    claim = sweep.claim("agent")  # a sampled trial: params with distributions, and RUNNING
    assert isinstance(claim, Claim)
    sweep.handle.close()
    return info.id


def replayed(path: Path, *, snapshots: bool) -> tuple[list[Any], Any]:
    """Every trial of every study, and the backend, as a fresh open of the journal sees them."""
    from expctl.sweeps.storage.journal import CheckedJournalFileBackend, CheckedJournalStorage

    backend = CheckedJournalFileBackend(str(path))
    storage = CheckedJournalStorage(backend, snapshots=snapshots)
    studies = storage.get_all_studies()
    trials = [storage.get_all_trials(s._study_id, deepcopy=False) for s in studies]
    return [
        (s.study_name, s.user_attrs, s.system_attrs, t)
        for s, t in zip(studies, trials, strict=True)
    ], (backend)


@pytest.fixture
def snapshot_every(monkeypatch: pytest.MonkeyPatch) -> None:
    from expctl.sweeps.storage import journal_snapshot

    monkeypatch.setattr(journal_snapshot, "SNAPSHOT_EVERY", 50)


def test_a_journal_opens_from_its_snapshot_to_exactly_its_records(
    tmp_path: Path, snapshot_every: None
) -> None:
    journal = tmp_path / "sweeps.journal"
    sweep_id = finished_trials(str(journal), 300)
    snapshot = Path(f"{journal}.snapshot")
    assert snapshot.exists()  # written by the replay that passed SNAPSHOT_EVERY records
    before = journal.read_bytes()
    whole, _ = replayed(journal, snapshots=False)
    restored, backend = replayed(journal, snapshots=True)
    assert 1 not in backend._log_number_offset  # read from the snapshot's offset on
    assert restored == whole
    assert journal.read_bytes() == before  # a cache: the journal is never rewritten
    # records appended after the snapshot are replayed on top of it; agents carry on
    sweep = open_(sweep_id, str(journal))
    claim = sweep.claim("agent")
    assert isinstance(claim, Claim) and claim.number == 301
    sweep.finish(claim, "complete", 0.5)
    assert replayed(journal, snapshots=True)[0] == replayed(journal, snapshots=False)[0]


def test_a_snapshot_of_another_journal_or_of_a_replaced_one_is_not_used(
    tmp_path: Path, snapshot_every: None
) -> None:
    journal = tmp_path / "sweeps.journal"
    finished_trials(str(journal), 200)
    other = tmp_path / "other.journal"
    finished_trials(str(other), 100)
    # the other journal's snapshot put beside this one: another file, never used
    Path(f"{journal}.snapshot").write_bytes(Path(f"{other}.snapshot").read_bytes())
    whole, _ = replayed(journal, snapshots=False)
    used, backend = replayed(journal, snapshots=True)
    assert used == whole and 1 in backend._log_number_offset
    # the journal replaced by a copy of itself with a line less (what `sweep repair` does)
    finished_trials(str(journal), 100)  # a fresh snapshot of the current file
    lines = journal.read_bytes().splitlines(keepends=True)
    copy = tmp_path / "copy"
    copy.write_bytes(b"".join(lines[:1] + lines[2:]))  # drops the first create_trial
    os.replace(copy, journal)
    fresh, backend = replayed(journal, snapshots=True)
    assert 1 in backend._log_number_offset  # replayed from the first record
    assert fresh == replayed(journal, snapshots=False)[0]


SNAPSHOT_WRITER = """
import sys
from expctl.sweeps.storage import journal_snapshot
from expctl.sweeps.storage.journal import CheckedJournalFileBackend, CheckedJournalStorage

backend = CheckedJournalFileBackend(sys.argv[1])
storage = CheckedJournalStorage(backend, snapshots=False)
lines = storage._replay_result.log_number_read
print("ready", flush=True)
while True:
    journal_snapshot.save(sys.argv[1], storage._replay_result, lines, backend.offset_of(lines))
"""


@pytest.mark.slow
def test_a_snapshot_writer_sigkilled_at_any_moment_loses_nothing(tmp_path: Path) -> None:
    """Writers SIGKILLed at random moments of writing a snapshot: every open afterwards sees
    exactly the journal's records, and the journal's bytes never change."""
    import random
    import subprocess
    import sys

    journal = tmp_path / "sweeps.journal"
    finished_trials(str(journal), 3000)
    before = journal.read_bytes()
    whole, _ = replayed(journal, snapshots=False)
    rng = random.Random(23)
    for _ in range(12):
        writer = subprocess.Popen(
            [sys.executable, "-c", SNAPSHOT_WRITER, str(journal)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert writer.stdout is not None and writer.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0.0, 0.4))
        writer.kill()
        writer.wait()
        assert replayed(journal, snapshots=True)[0] == whole
        assert journal.read_bytes() == before
    assert Path(f"{journal}.snapshot").exists()


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_status_reads_rdb_trials_in_set_queries_exactly_as_optuna_builds_them(
    kind: str, tmp_path: Path
) -> None:
    """``sweep status`` on an RDB reads rows, values, attrs and step counts in four queries
    (Optuna's get_all_trials took 60 s for 100,000 trials); every row is what the FrozenTrial
    gave."""
    from expctl.sweeps.overview import _ROW_ATTRS, trial_row
    from expctl.sweeps.storage import trial_index

    url = storage_url(kind, tmp_path)
    info = create(small_grid(6), url)
    sweep = open_(info.id, url)
    claims = [sweep.claim("agent") for _ in range(5)]
    assert all(isinstance(c, Claim) for c in claims)
    sweep.report(claims[0], 1, 0.5)  # type: ignore[arg-type]
    sweep.report(claims[0], 2, 0.25)  # type: ignore[arg-type]
    sweep.finish(claims[0], "complete", 0.25)  # type: ignore[arg-type]
    sweep.finish(claims[1], "pruned", 0.75)  # type: ignore[arg-type]
    sweep.finish(claims[2], "failed", result={"message": "boom"})  # type: ignore[arg-type]
    sweep.requeue(claims[3])  # type: ignore[arg-type]
    found = trial_index.records(sweep.handle.storage, sweep.study_id, _ROW_ATTRS)
    assert found is not None
    by_optuna = sweep.trials()

    def rows(trials: list[Any]) -> list[Any]:  # a running trial's duration is "until now"
        shown = [trial_row(t) for t in trials]
        return [replace(r, duration=None) if r.state == "running" else r for r in shown]

    assert rows(found) == rows(by_optuna)
    assert {t.state.name for t in found} == {"COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING"}


def test_a_report_of_many_trials_draws_the_best_and_an_even_sample_and_says_so() -> None:
    from expctl.runs.report import KEEP_BEST, MAX_DRAWN, _drawn
    from expctl.runs.sweep_results import SweepResults, Trial

    n = 3 * MAX_DRAWN
    trials = [Trial(i, "complete", float((i * 7919) % n), {"x": i}, None) for i in range(n)]
    results = SweepResults({"id": "s", "metric": {"name": "loss", "goal": "minimize"}}, trials)
    drawn, why = _drawn(results)
    assert len(drawn.trials) == MAX_DRAWN
    assert drawn.ranked()[:KEEP_BEST] == results.ranked()[:KEEP_BEST]  # the best are all there
    numbers = [t.number for t in drawn.trials]
    assert numbers == sorted(set(numbers)) and numbers[-1] > n * 0.9  # spread over the sweep
    assert (
        why
        == f"drawn from 5,000 of the sweep's {n:,} trials: the best 1,000 and an even sample of the rest"
    )
    small = SweepResults(results.status, trials[:MAX_DRAWN])
    assert _drawn(small) == (small, None)


def test_the_journals_unfinished_trials_follow_every_change(tmp_path: Path) -> None:
    """Claims on a journal ask only the trials unfinished when last seen and the newer ones
    (Optuna filters every trial: 16 ms a call at 10⁵ trials): the answer is Optuna's."""
    from optuna.trial import TrialState

    from expctl.sweeps.storage import trial_index

    url = str(tmp_path / "sweeps.journal")
    info = create(small_grid(6), url)
    a, b = open_(info.id, url), open_(info.id, url)
    storage = a.handle.storage

    def check() -> None:
        for states in ((TrialState.WAITING,), (TrialState.RUNNING,), trial_index._UNFINISHED):
            optuna = storage.get_all_trials(a.study_id, deepcopy=False, states=states)
            # a limit looks at the head only; a call without one after it still sees every
            # trial (the head is pruned of finished ones, the rest kept as it was)
            for limit in (1, 2, None):
                ours = trial_index.unfinished(storage, a.study_id, states, limit=limit)
                assert ours == optuna[:limit]
            assert trial_index.exists(storage, a.study_id, states) is bool(optuna)

    check()
    first, second = a.claim("a"), b.claim("b")  # b's changes reach a's storage by its journal
    check()
    b.finish(second, "complete", 1.0)  # type: ignore[arg-type]
    a.requeue(first)  # type: ignore[arg-type]
    check()
    drain(b)
    check()
    assert trial_index.unfinished(storage, a.study_id, trial_index._UNFINISHED) == []


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_rdb_storages_index_trials_by_state_for_claims(kind: str, tmp_path: Path) -> None:
    """Claims ask for a study's WAITING/RUNNING trials: indexed, not a scan of the study."""
    import sqlalchemy

    from expctl.sweeps.storage import open_storage

    handle = open_storage(storage_url(kind, tmp_path))
    try:
        indexes = sqlalchemy.inspect(handle.storage.engine).get_indexes("trials")  # type: ignore[attr-defined]
        by_name = {index["name"]: index["column_names"] for index in indexes}
        assert by_name["ix_expctl_trials_study_state"] == ["study_id", "state", "trial_id"]
    finally:
        handle.close()
    open_storage(storage_url(kind, tmp_path)).close()  # found: opened again without error


def test_status_of_many_trials_shows_the_best_and_the_running_and_json_lists_all(
    tmp_path: Path, cli: Any
) -> None:
    """Past LEADERBOARD_ROWS trials the table shows the best ones and every running trial and
    says how many it left out; --format json still lists every trial (one per line)."""
    from expctl.cli.sweep import LEADERBOARD_ROWS
    from expctl.record.jsonpolicy import LONG_LIST

    n = LONG_LIST + 200
    path = tmp_path / "s.journal"
    sweep_id = finished_trials(str(path), n)
    table = cli("sweep", "status", sweep_id, "--storage", str(path))
    assert table.exit_code == 0, table.stderr
    rows = [line for line in table.stdout.splitlines() if line[:1].isdigit()]  # trial rows
    assert len(rows) == LEADERBOARD_ROWS + 1  # the best 50 and the one running trial
    assert rows[0].split()[0] == "0"  # trial 0 has the lowest value: first
    assert any("running" in line for line in rows)
    assert (
        f"... {n + 1 - len(rows):,} more trials (--format json lists every trial)" in table.stdout
    )
    listed = cli("sweep", "status", sweep_id, "--storage", str(path), "--format", "json")
    trials = json.loads(listed.stdout)["trials"]
    assert len(trials) == n + 1 and {t["number"] for t in trials} == set(range(n + 1))
    assert listed.stdout.count("\n") < 3 * n  # one line per trial, not one per field
