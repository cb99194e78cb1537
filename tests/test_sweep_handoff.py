"""Between two trials of a grid an agent records the result and claims its next point in one
step (``Sweep.finish_then_claim``): on a journal one append, decided under the journal lock; on
SQLite and PostgreSQL one transaction. What that must never change, on every storage: a point
claimed by nobody else, a result never lost, a claimed point never left RUNNING when the agent
stops (signal, ``--count``, the flapping guard), the agent seen alive.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
from sweep_helpers import agent, create, open_

from expctl.errors import Interrupted
from expctl.sweeps.engine import Claim
from expctl.sweeps.service import sweep_status
from expctl.sweeps.spec import parse_spec
from expctl.sweeps.storage import journal, journal_writes


def grid(n: int) -> Any:
    return parse_spec(
        {
            "method": "grid",
            "metric": {"name": "loss"},
            "parameters": {"x": {"values": list(range(n))}},
        }
    )


def states(sweep_id: str, url: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in sweep_status(sweep_id, url)["trials"]:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    return counts


def sleepy_trials_seeing_the_agents(sweep_id: str, url: str, at: int) -> tuple[Any, list[bool]]:
    """An objective of 20 ms trials, and the list in which trial ``at`` notes whether each agent
    looks alive (``sweep status``'s view) while it runs."""
    import time

    seen: list[bool] = []

    def objective(ctx: Any) -> float:
        time.sleep(0.02)
        if ctx.number == at:
            seen.extend(a["alive"] for a in open_(sweep_id, url).liveness.agents().values())
        return 1.0

    return objective, seen


def while_waiting_for_the_lock(
    monkeypatch: pytest.MonkeyPatch, sweep: Any, meanwhile: Any
) -> list[Any]:
    """Run ``meanwhile()`` the first time ``sweep``'s agent waits for the journal lock (it has
    decided, its records are held back); returns its decisions (``TrialQueue.take`` calls) as
    they are made."""
    from expctl.sweeps.trial_queue import TrialQueue

    backend = sweep.handle.storage._backend
    locked, take, decisions, done = backend.locked, TrialQueue.take, [], []

    def interleaved() -> Any:
        if not done:
            done.append(meanwhile())
        return locked()

    def counted(queue: TrialQueue, *args: Any) -> Any:
        if queue is sweep.queue:
            decisions.append(queue)
        return take(queue, *args)

    monkeypatch.setattr(backend, "locked", interleaved)
    monkeypatch.setattr(TrialQueue, "take", counted)
    return decisions


def test_each_result_and_the_next_claim_are_one_append(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = str(tmp_path / "s.journal")
    info = create(grid(6), url)
    appends: list[list[dict[str, Any]]] = []
    write = journal.write

    def counted(f: Any, logs: list[dict[str, Any]]) -> None:
        appends.append(logs)
        write(f, logs)

    monkeypatch.setattr(journal, "write", counted)
    monkeypatch.setattr(journal_writes, "write", counted)
    summary = agent(info.id, url, objective=lambda ctx: 1.0, handle_signals=False)
    assert [t.status for t in summary.trials] == ["complete"] * 6
    completes = [i for i, logs in enumerate(appends) for log in logs if log.get("state") == 1]
    runnings = [i for i, logs in enumerate(appends) for log in logs if log.get("state") == 0]
    assert len(completes) == len(runnings) == 6
    # trial k's result is written with trial k+1's claim: the same append
    assert completes[:5] == runnings[1:]
    # the agent's two beats, the first claim, one append per trial, the sweep finished
    assert len(appends) <= 6 + 4, [len(a) for a in appends]


def test_handoffs_carry_the_agents_beat_only_when_it_is_due(tmp_path: Path) -> None:
    """Trials of milliseconds: a beat per hand-off would be a record per trial that every agent
    replays; it goes out when the last is half an interval old, and `sweep status` still sees
    the agent alive while it runs."""

    from expctl.sweeps.studies import AGENT_PREFIX

    url = str(tmp_path / "s.journal")
    info = create(grid(40), url)
    objective, seen = sleepy_trials_seeing_the_agents(info.id, url, at=30)
    summary = agent(info.id, url, objective=objective, heartbeat_interval=0.2, handle_signals=False)
    assert summary.count("complete") == 40
    assert seen == [True]
    lines = Path(url).read_text().splitlines()
    beats = [line for line in lines if AGENT_PREFIX in line and '"op_code":3' in line]
    # ~0.9 s of trials, a beat every 0.1-0.2 s, plus the first and the last (exited): not 40
    assert 4 <= len(beats) <= 14, len(beats)


def test_a_signal_after_the_handoff_gives_the_claimed_point_back(url: str) -> None:
    info = create(grid(4), url)

    def on_event(message: str) -> None:
        # said once trial 0's result and the next claim are written: the next point is ours
        if message.startswith("trial 0: complete"):
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(Interrupted):
        agent(info.id, url, objective=lambda ctx: 1.0, on_event=on_event, handle_signals=True)
    counts = states(info.id, url)
    assert counts.get("running", 0) == 0, counts  # nothing claimed is left to nobody
    summary = agent(info.id, url, objective=lambda ctx: 1.0, handle_signals=False)
    ran = [t.params["x"] for t in summary.trials]
    assert sorted(ran) == [1, 2, 3]  # the given-back point runs once, every other point too
    assert states(info.id, url)["complete"] == 4


def test_count_claims_no_trial_past_it(url: str) -> None:
    info = create(grid(5), url)
    summary = agent(info.id, url, objective=lambda ctx: 1.0, handle_signals=False, count=2)
    assert len(summary.trials) == 2
    assert states(info.id, url) == {"complete": 2, "waiting": 3}


def test_a_grid_claimed_by_index_hands_off_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from expctl.sweeps.methods import grid as grid_module

    monkeypatch.setattr(grid_module, "QUEUED_GRID_POINTS", 2)  # 5 points: claimed by index
    url = str(tmp_path / "s.journal")
    info = create(grid(5), url)
    a, b = open_(info.id, url), open_(info.id, url)
    first = a.claim("a")
    assert isinstance(first, Claim) and first.params == {"x": 0}
    second = b.claim("b")
    assert isinstance(second, Claim) and second.params == {"x": 1}
    _, third = a.finish_then_claim(first, "complete", 0.0, {}, "a")
    assert isinstance(third, Claim) and third.params == {"x": 2}
    trial = a.study.get_trials()[third.number]
    assert trial.params == {"x": 2} and trial.user_attrs["expctl:claim"]["agent"] == "a"
    summary = agent(info.id, url, objective=lambda ctx: 1.0, handle_signals=False, wait=False)
    assert sorted(t.params["x"] for t in summary.trials) == [3, 4]


def test_the_heartbeat_thread_writes_while_agents_hand_off(tmp_path: Path) -> None:
    """The heartbeat thread takes the storage's thread lock, then the journal lock, as the
    hand-off does: beating every few milliseconds through 40 trials never deadlocks."""
    url = str(tmp_path / "s.journal")
    info = create(grid(40), url)
    summary = agent(
        info.id, url, objective=lambda ctx: 1.0, handle_signals=False, heartbeat_interval=0.001
    )
    assert len(summary.trials) == 40 and states(info.id, url) == {"complete": 40}


def test_the_journal_lock_excludes_the_threads_of_one_process(tmp_path: Path) -> None:
    """The heartbeat thread and the agent share one lock object: holding it must exclude the
    other thread too (a flock shared through one open file would let both in, and then the
    symlink lock deadlocks them — seen once when the flock's file was kept open)."""
    import threading
    import time

    from expctl.sweeps.storage.journal_lock import AgentJournalLock

    lock = AgentJournalLock(str(tmp_path / "s.journal"))
    inside: list[int] = []
    overlaps: list[int] = []

    def hold(n: int) -> None:
        for _ in range(20):
            lock.acquire()
            try:
                inside.append(n)
                if len(inside) > 1:
                    overlaps.append(n)
                time.sleep(0.001)
                inside.remove(n)
            finally:
                lock.release()

    threads = [threading.Thread(target=hold, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert not any(t.is_alive() for t in threads) and overlaps == []


@pytest.mark.parametrize("by_index", [False, True], ids=["queued", "by-index"])
def test_a_claim_decided_before_the_lock_is_decided_again_when_another_agent_took_its_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, by_index: bool
) -> None:
    """Agent a decides on its replay, then waits for the lock; meanwhile b takes the same
    point. Holding the lock, a sees b's record and decides again: a different point, and b's
    trial keeps b's claim (a's first records are never written)."""
    from expctl.sweeps.methods import grid as grid_module

    if by_index:
        monkeypatch.setattr(grid_module, "QUEUED_GRID_POINTS", 2)
    url = str(tmp_path / "s.journal")
    info = create(grid(5), url)
    a, b = open_(info.id, url), open_(info.id, url)
    decisions = while_waiting_for_the_lock(monkeypatch, a, lambda: b.claim("b"))
    claim = a.claim("a")
    assert isinstance(claim, Claim) and claim.params == {"x": 1}
    assert len(decisions) == 2  # decided again, under the lock
    trials = {t.params["x"]: t for t in a.study.get_trials() if t.params}
    assert trials[0].user_attrs["expctl:claim"]["agent"] == "b"
    assert trials[1].user_attrs["expctl:claim"]["agent"] == "a"
    assert len(a.study.get_trials()) == (2 if by_index else 5)  # nothing created twice


def test_a_claim_decided_before_the_lock_stands_when_others_wrote_only_what_it_did_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = str(tmp_path / "s.journal")
    info = create(grid(3), url)
    a, b = open_(info.id, url), open_(info.id, url)
    running = b.claim("b")  # b runs point 0, then beats while a decides
    assert isinstance(running, Claim)

    def b_beats() -> None:
        b.liveness.heartbeat(running.trial_id)
        b.liveness.agent_beat("b", 60.0)

    decisions = while_waiting_for_the_lock(monkeypatch, a, b_beats)
    claim = a.claim("a")
    assert isinstance(claim, Claim) and claim.params == {"x": 1}
    assert decisions == [a.queue]  # decided once: b's beats change nothing a read
    trial = a.study.get_trials()[claim.number]
    assert trial.state.name == "RUNNING" and trial.user_attrs["expctl:claim"]["agent"] == "a"


def reaped_while_running(url: str) -> tuple[str, Any, Any, Claim]:
    """A 3-point grid whose owner claimed point 0, its ``reap()`` (the owner looked dead:
    another agent fails and re-queues its trial), and the owner and its claim."""
    info = create(grid(3), url)
    owner, reaper = open_(info.id, url), open_(info.id, url)
    first = owner.claim("owner")
    assert isinstance(first, Claim)

    def reap() -> None:
        trial = reaper.study.get_trials()[first.number]
        assert reaper.liveness.fail_and_requeue(
            trial._trial_id, trial.number, trial.params, first.params
        )

    return info.id, reap, owner, first


def finish_loses_and_claims_the_next(sweep_id: str, url: str, owner: Any, first: Claim) -> Claim:
    """The owner's hand-off after the reap: its result discarded, the failure kept, the oldest
    waiting point claimed."""
    finished, after = owner.finish_then_claim(first, "complete", 1.0, {"message": "mine"}, "owner")
    assert finished is False  # the result is discarded, the failure stays
    assert isinstance(after, Claim) and after.params == {"x": 1}  # the oldest waiting point
    rows = {r["number"]: r for r in sweep_status(sweep_id, url)["trials"]}
    assert rows[first.number]["state"] == "fail" and rows[first.number]["message"] != "mine"
    assert rows[after.number]["state"] == "running"
    assert [r["state"] for r in rows.values()].count("waiting") == 2  # point 2 and the re-run
    return after


def test_a_trial_failed_while_its_agent_waits_for_the_lock_keeps_its_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The journal's decision made before the lock, overtaken by the reap (decided again)."""
    url = str(tmp_path / "s.journal")
    sweep_id, reap, owner, first = reaped_while_running(url)
    while_waiting_for_the_lock(monkeypatch, owner, reap)
    finish_loses_and_claims_the_next(sweep_id, url, owner, first)


def test_an_error_after_the_handoff_gives_the_claimed_point_back(url: str) -> None:
    """Whatever stops the agent between two trials (here its event callback raising) leaves no
    claimed point RUNNING for --stale-after seconds."""
    info = create(grid(3), url)

    def on_event(message: str) -> None:
        if message.startswith("trial 0: complete"):
            raise RuntimeError("the caller gave up")

    with pytest.raises(RuntimeError, match="gave up"):
        agent(info.id, url, objective=lambda ctx: 1.0, on_event=on_event, handle_signals=False)
    counts = states(info.id, url)
    assert counts.get("running", 0) == 0 and counts["complete"] == 1, counts


def test_a_trial_failed_by_another_agent_meanwhile_keeps_its_failure_on_every_storage(
    url: str,
) -> None:
    sweep_id, reap, owner, first = reaped_while_running(url)
    reap()
    after = finish_loses_and_claims_the_next(sweep_id, url, owner, first)
    finished, last = owner.finish_then_claim(after, "complete", 2.0, {}, "owner")
    assert finished is True and isinstance(last, Claim) and last.params["x"] in (0, 2)


def test_a_stopped_sweep_hands_off_no_claim(url: str) -> None:
    """The result is kept and nothing is claimed with it: the agent's next ask says stopped."""
    from expctl.sweeps.service import stop_sweep

    info = create(grid(3), url)
    sweep = open_(info.id, url)
    first = sweep.claim("a")
    assert isinstance(first, Claim)
    stop_sweep(info.id, url)
    finished, after = sweep.finish_then_claim(first, "complete", 1.0, {}, "a")
    assert finished is True and after in (None, "stopped")
    assert sweep.claim("a") == "stopped"
    assert states(info.id, url) == {"complete": 1, "waiting": 2}


def test_an_agent_handing_off_stays_alive_on_every_storage(url: str) -> None:
    """A hand-off that claims counts as the agent's beat when one is due: it must write it."""
    info = create(grid(30), url)
    objective, seen = sleepy_trials_seeing_the_agents(info.id, url, at=25)
    summary = agent(
        info.id,
        url,
        objective=objective,
        heartbeat_interval=0.1,
        stale_after=0.3,
        handle_signals=False,
    )
    assert summary.count("complete") == 30
    assert seen == [True]
