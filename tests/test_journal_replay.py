"""expctl's fast journal replay and parse against Optuna's own: the same state, the same errors
(see expctl.sweeps.storage.journal_replay and journal.parse_lines)."""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.storages.journal._storage import JournalStorageReplayResult
from optuna.trial import TrialState

from expctl.sweeps.storage import journal
from expctl.sweeps.storage.journal_replay import FastReplay, local_naive


def _plain_journal(path: Path) -> tuple[JournalStorage, JournalStorage]:
    """Two workers on one journal, through Optuna's own storage (its own records)."""
    return tuple(JournalStorage(JournalFileBackend(str(path))) for _ in range(2))  # type: ignore[return-value]


def _every_kind_of_record(path: Path) -> list[str]:
    """A journal with each record kind, races lost and updates refused; the worker ids."""
    a, b = _plain_journal(path)
    study = a.create_new_study([optuna.study.StudyDirection.MINIMIZE], "s")
    other = b.create_new_study([optuna.study.StudyDirection.MAXIMIZE], "t")
    a.set_study_user_attr(study, "spec", {"method": "grid"})
    a.set_study_system_attr(study, "agent:x", {"at": 1.5})
    x = IntDistribution(0, 9)
    lr = FloatDistribution(1e-5, 1e-1, log=True)
    act = CategoricalDistribution(["relu", "gelu", None])
    queued = optuna.trial.create_trial(
        state=TrialState.WAITING,
        params={"x": 3},
        distributions={"x": x},
        user_attrs={"expctl:params": {"x": 3}},
        system_attrs={"fixed_params": {}},
    )
    waiting = [a.create_new_trial(study, queued) for _ in range(3)]
    for i, trial_id in enumerate(waiting):
        worker = (a, b)[i % 2]
        assert worker.set_trial_state_values(trial_id, TrialState.RUNNING)
        assert not (b, a)[i % 2].set_trial_state_values(trial_id, TrialState.RUNNING)  # lost
        worker.set_trial_param(trial_id, "lr", 10 ** -(i + 2), lr)
        worker.set_trial_param(trial_id, "act", 2 - i % 3, act)
        worker.set_trial_intermediate_value(trial_id, 0, 0.5)
        worker.set_trial_user_attr(trial_id, "expctl:claim", {"agent": f"h:{i}"})
        worker.set_trial_system_attr(trial_id, "heartbeat", i)
        final = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)[i]
        worker.set_trial_state_values(trial_id, final, [float(i)] if i == 0 else None)
        with pytest.raises(UpdateFinishedTrialError):
            worker.set_trial_user_attr(trial_id, "late", True)
    running = b.create_new_trial(other)
    b.set_trial_param(running, "x", 4, x)
    with pytest.raises(ValueError):  # incompatible with the study's first x: refused
        b.set_trial_param(b.create_new_trial(other), "x", 0.5, FloatDistribution(0, 1))
    a.delete_study(other)
    return [a._replay_result.worker_id, b._replay_result.worker_id]


def _state(replay: JournalStorageReplayResult) -> dict:
    return {
        "read": replay.log_number_read,
        "studies": {i: vars(s) for i, s in replay._studies.items()},
        "trials": {i: vars(t) for i, t in replay._trials.items()},
        "ids": replay._study_id_to_trial_ids,
        "owned": replay._worker_id_to_owned_trial_id,
        "next": replay._next_study_id,
    }


def _replay(kind: type, path: Path, worker_id: str) -> tuple[dict, type | None]:
    """Replay ``path`` as the worker ``worker_id`` (its own refused records raise, as in
    Optuna: replaying resumes after the record that raised)."""
    prefix = worker_id.rsplit("-", 1)[0] + "-"  # the writers' threads are this test's thread
    replay = kind(prefix)
    records = journal.parse_lines(
        enumerate(path.read_bytes().split(b"\n")[:-1], start=1), str(path)
    )
    raised = []
    while replay.log_number_read < len(records):
        try:
            replay.apply_logs(records[replay.log_number_read :])
        except Exception as e:  # an own record that Optuna refused when it was written
            raised.append(type(e))
    return _state(replay), raised


@pytest.mark.parametrize("as_worker", [None, 0, 1])
def test_the_fast_replay_leaves_the_state_optunas_replay_leaves(tmp_path, as_worker):
    path = tmp_path / "j.log"
    workers = _every_kind_of_record(path)
    worker = "someone-else-1" if as_worker is None else workers[as_worker]
    assert all(w.endswith(f"-{threading.get_ident()}") for w in workers)
    theirs, their_errors = _replay(JournalStorageReplayResult, path, worker)
    ours, our_errors = _replay(FastReplay, path, worker)
    assert ours == theirs
    assert our_errors == their_errors
    assert theirs["trials"] and theirs["read"] == len(path.read_bytes().splitlines())
    if as_worker is not None:
        assert their_errors  # its own late attr / incompatible param raise for it alone


def test_a_sweep_run_by_two_agents_replays_to_the_same_state(tmp_path):
    """The records expctl's agents write (claims, results, beats), both ways."""
    from sweep_helpers import agent, create

    from expctl.sweeps.spec import parse_spec

    url = str(tmp_path / "s.journal")
    spec = parse_spec(
        {
            "method": "grid",
            "metric": {"name": "loss"},
            "parameters": {"x": {"values": list(range(12))}, "y": {"values": ["a", "b"]}},
        }
    )
    info = create(spec, url)
    for _ in range(2):
        agent(info.id, url, objective=lambda ctx: float(ctx.params["x"]), count=12)
    path = Path(url)
    theirs, _ = _replay(JournalStorageReplayResult, path, "nobody-1")
    ours, _ = _replay(FastReplay, path, "nobody-1")
    assert ours == theirs
    assert sum(t["state"] == TrialState.COMPLETE for t in ours["trials"].values()) == 24


@pytest.mark.parametrize(
    "zone", ["UTC", "America/New_York", "Europe/Berlin", "Asia/Kathmandu", "Australia/Lord_Howe"]
)
def test_local_times_are_optunas_across_daylight_saving_changes(monkeypatch, zone):
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        # around 2026's changes in both hemispheres (Lord Howe moves by 30 minutes), every
        # 7 minutes 13 seconds, as UTC and as other offsets
        for start in (
            "2026-03-08T05:00",
            "2026-03-29T00:00",
            "2026-04-05T14:00",
            "2026-11-01T04:00",
        ):
            moment = datetime.fromisoformat(start).replace(tzinfo=timezone.utc)
            for step in range(48):
                at = moment + timedelta(seconds=433 * step, microseconds=step)
                for tz in (timezone.utc, timezone(timedelta(hours=5, minutes=45))):
                    text = at.astimezone(tz).isoformat()
                    expected = datetime.fromisoformat(text).astimezone().replace(tzinfo=None)
                    assert local_naive(text) == expected, text
        naive = "2026-03-08T02:30:00"  # no offset: local time, as Optuna reads it
        assert local_naive(naive) == datetime.fromisoformat(naive).astimezone().replace(tzinfo=None)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


@pytest.mark.parametrize(
    "line",
    [
        b'{"op_code":3,"worker_id":"w","study_id":0,"system_attr":{"k":1}}',
        b'  {"op_code": 3, "study_id": 0}  ',  # whitespace: json.loads takes it
        b'{"op_code":3,"v":NaN}',
        b'{"op_code":3}{"op_code":3}',
        b'{"op_code":true}',
        b'{"op_code":99}',
        b"[1, 2]",
        b"",
        b'{"op_code":3,"w":"\xff"}',
        b"[" * 100_000,
    ],
)
def test_parse_lines_reads_each_line_as_parse_record_does(line):
    try:
        expected = journal.parse_record(line, "j", 7)
    except journal.JournalDamaged as e:
        with pytest.raises(journal.JournalDamaged) as got:
            journal.parse_lines([(7, line)], "j")
        assert str(got.value) == str(e)
        assert e.line == 7
    else:
        assert journal.parse_lines([(7, line)], "j") == [expected]


def test_an_optuna_storage_reads_the_queued_points_expctl_writes(tmp_path):
    """A grid's WAITING trials carry their params: Optuna's own storage reads them so."""
    from sweep_helpers import create

    from expctl.sweeps.spec import parse_spec

    url = str(tmp_path / "s.journal")
    spec = parse_spec(
        {"method": "grid", "metric": {"name": "loss"}, "parameters": {"x": {"values": [1, 2]}}}
    )
    info = create(spec, url)
    study = optuna.load_study(study_name=info.id, storage=JournalStorage(JournalFileBackend(url)))
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert [t.params for t in waiting] == [{"x": 1}, {"x": 2}]
    assert [t.user_attrs["expctl:params"] for t in waiting] == [{"x": 1}, {"x": 2}]
    assert os.path.getsize(url) > 0


def test_a_journal_read_in_small_blocks_replays_the_same(tmp_path, monkeypatch):
    """A replay reads the journal by blocks (a 10⁶-record journal is not held whole): records
    cut across blocks, and lines longer than a block, replay as from one read."""
    from expctl.sweeps.storage.journal import CheckedJournalFileBackend, CheckedJournalStorage

    path = tmp_path / "j.log"
    _every_kind_of_record(path)
    whole = CheckedJournalStorage(CheckedJournalFileBackend(str(path)), snapshots=False)
    monkeypatch.setattr(journal, "_READ_BLOCK", 97)  # lines are 100–400 bytes
    blocks = CheckedJournalStorage(CheckedJournalFileBackend(str(path)), snapshots=False)
    assert _state(blocks._replay_result) == _state(whole._replay_result)
    assert blocks._replay_result.log_number_read == len(path.read_bytes().splitlines())


@pytest.mark.parametrize(
    ("first", "then"),
    [("America/Regina", "Asia/Shanghai"), ("America/Chicago", "America/Mexico_City")],
)
def test_local_times_follow_a_change_of_zone_with_the_same_names(monkeypatch, first, then):
    """Zones that share abbreviations (CST) or even offsets are told apart."""
    text = "2024-06-01T12:00:00+00:00"
    try:
        for zone in (first, then):
            monkeypatch.setenv("TZ", zone)
            time.tzset()
            assert local_naive(text) == datetime.fromisoformat(text).astimezone().replace(
                tzinfo=None
            ), zone
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_local_times_far_in_the_future_are_whole_seconds(monkeypatch):
    """1 µs before a daylight-saving change in 2520: a float timestamp rounds into the next
    second (and span); astimezone() does not."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        text = "2520-03-10T06:59:59.999999+00:00"
        assert local_naive(text) == datetime.fromisoformat(text).astimezone().replace(tzinfo=None)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
