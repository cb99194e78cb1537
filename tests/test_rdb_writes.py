"""An RDB storage writes a trial's claim and its finish in one transaction each (not two), all
or nothing, and falls back to Optuna's public calls where its helpers are missing."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import postgres_url_or_skip
from optuna.trial import TrialState
from sweep_helpers import agent, create

from expctl.sweeps.spec import parse_spec
from expctl.sweeps.storage import driver_sql, open_storage, rdb_writes

POINTS = 6


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 's.db'}"
    return postgres_url_or_skip()


def _grid(url: str) -> str:
    spec = parse_spec(
        {
            "method": "grid",
            "metric": {"name": "m"},
            "parameters": {"x": {"values": list(range(POINTS))}},
        }
    )
    return create(spec, url).id


@contextlib.contextmanager
def _writing_transactions() -> Iterator[list[int]]:
    """Counts the transactions that wrote and committed, on every SQLAlchemy engine, while the
    block runs. Asked of the database at each commit: expctl runs its statements between
    trials on the DBAPI cursor, which SQLAlchemy's statement events do not see."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    counted = [0]

    def committed(conn):
        if _wrote(conn.connection.dbapi_connection, conn.dialect.name):
            counted[0] += 1

    event.listen(Engine, "commit", committed)
    try:
        yield counted
    finally:
        event.remove(Engine, "commit", committed)


def _wrote(dbapi_connection, dialect: str) -> bool:
    """Whether the open transaction wrote: Python's sqlite3 opens one before a write statement
    only; PostgreSQL gives a transaction an id at its first write."""
    if dialect == "sqlite":
        return bool(dbapi_connection.in_transaction)
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SELECT txid_current_if_assigned()")
        return cursor.fetchone()[0] is not None
    finally:
        cursor.close()


def _run(url: str) -> int:
    sweep_id = _grid(url)
    with _writing_transactions() as counted:
        summary = agent(
            sweep_id, url, objective=lambda t: {"m": t.params["x"]}, handle_signals=False
        )
    assert summary.count("complete") == POINTS
    trials = open_storage(url).storage.get_all_trials(
        open_storage(url).storage.get_study_id_from_name(sweep_id), deepcopy=False
    )
    assert all("expctl:claim" in t.user_attrs and "expctl:result" in t.user_attrs for t in trials)
    assert sorted(t.params["x"] for t in trials) == list(range(POINTS))
    return counted[0]


def test_between_two_trials_an_agent_writes_one_transaction(url, monkeypatch):
    """The first claim is one transaction; each later one is written with the result of the
    trial before it (handoff: finish, state, pop); the last result alone. Through Optuna's
    public calls (another Optuna, without the helpers) each of those steps is two commits."""
    together = _run(url)
    monkeypatch.setattr(rdb_writes, "helpers", lambda storage: None)
    apart = _run(url)
    # apart: 2 for each claim and 2 for each finish; together: 1 per trial and the first claim
    assert apart - together == 4 * POINTS - (POINTS + 1), (apart, together)


def test_a_finish_is_all_or_nothing(url):
    storage = open_storage(url).storage
    study_id = storage.create_new_study([], f"s-{uuid.uuid4()}")  # one server for all tests
    trial_id = storage.create_new_trial(study_id)
    from optuna.exceptions import StorageInternalError

    with pytest.raises((TypeError, ValueError, StorageInternalError)):  # "x" is not a value
        rdb_writes.finish(
            storage, trial_id, {"expctl:result": {"m": 1}}, TrialState.COMPLETE, ["x"]
        )
    trial = storage.get_trial(trial_id)
    assert trial.state == TrialState.RUNNING and "expctl:result" not in trial.user_attrs


def test_a_trial_another_agent_finished_keeps_its_end(url):
    from optuna.exceptions import UpdateFinishedTrialError

    storage = open_storage(url).storage
    study_id = storage.create_new_study([], f"s-{uuid.uuid4()}")  # one server for all tests
    trial_id = storage.create_new_trial(study_id)
    storage.set_trial_state_values(trial_id, TrialState.FAIL)  # another agent: it looked dead
    with pytest.raises(UpdateFinishedTrialError):
        rdb_writes.finish(
            storage, trial_id, {"expctl:result": {"m": 1}}, TrialState.COMPLETE, [1.0]
        )
    trial = storage.get_trial(trial_id)
    assert trial.state == TrialState.FAIL and "expctl:result" not in trial.user_attrs


def test_a_finish_locks_and_checks_its_trial_before_writing_anything(monkeypatch):
    """The row is locked (``FOR UPDATE``) before the result is written: an agent that fails the
    trial meanwhile (its agent looked dead) either wins before the lock — and nothing of this
    finish is kept — or waits for it. Written first, the result outlived a lost race."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    storage = open_storage(postgres_url_or_skip()).storage
    study_id = storage.create_new_study([], f"s-{uuid.uuid4()}")
    trial_id = storage.create_new_trial(study_id)
    statements: list[str] = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        statements.append(" ".join(statement.split()))

    run = driver_sql.run

    def seen_run(cursor, prepared, **values):  # the statements run on the DBAPI cursor
        statements.append(" ".join(prepared.sql.split()))
        return run(cursor, prepared, **values)

    monkeypatch.setattr(driver_sql, "run", seen_run)
    event.listen(Engine, "before_cursor_execute", seen)
    try:
        rdb_writes.finish(
            storage, trial_id, {"expctl:result": {"m": 1}}, TrialState.COMPLETE, [1.0]
        )
    finally:
        event.remove(Engine, "before_cursor_execute", seen)
    assert any(s.startswith("UPDATE trials") for s in statements), statements
    # the lock: Optuna's SELECT … FOR UPDATE, or the state's conditional UPDATE (one statement
    # that locks the row and checks its state)
    locked = next(
        i
        for i, s in enumerate(statements)
        if s.endswith("FOR UPDATE") or (s.startswith("UPDATE trials") and "WHERE" in s)
    )
    written = next(i for i, s in enumerate(statements) if s.startswith("INSERT INTO trial_user"))
    assert locked < written, statements
    assert storage.get_trial(trial_id).user_attrs["expctl:result"] == {"m": 1}


def test_a_finish_reads_back_through_optuna_as_optunas_own_calls_write_it(url):
    """The Core statements (SQLite, PostgreSQL) write what Optuna's calls write: the same trial
    read back by Optuna's ORM — infinities, several objectives, an attr written over."""
    storage = open_storage(url).storage
    study_id = storage.create_new_study([], f"s-{uuid.uuid4()}")
    ours, optunas = storage.create_new_trial(study_id), storage.create_new_trial(study_id)
    for trial_id in (ours, optunas):
        storage.set_trial_user_attr(trial_id, "expctl:result", "written over")
    attrs = {"expctl:result": {"m": [1, 2.5], "s": "é"}, "other": None}
    values = [float("inf"), -2.5, float("-inf")]
    assert rdb_writes.statements(storage) is not None  # the Core path is the one tested
    rdb_writes.finish(storage, ours, attrs, TrialState.COMPLETE, values)
    for key, value in attrs.items():
        storage.set_trial_user_attr(optunas, key, value)
    storage.set_trial_state_values(optunas, TrialState.COMPLETE, values)
    a, b = storage.get_trial(ours), storage.get_trial(optunas)
    assert (a.state, a.values, a.user_attrs) == (b.state, b.values, b.user_attrs)
    assert a.values == values and a.datetime_complete is not None


def test_a_finish_stores_the_rows_optunas_own_calls_store(url):
    """The statements run on the DBAPI cursor (``driver_sql``: compiled once, values converted
    by SQLAlchemy's own bind processors) leave the rows Optuna's ORM leaves, column by column:
    the state by name, the values and their kinds, the attrs' JSON, the time in the column's
    stored form (SQLite: text) — only the instants differ."""
    import re

    import sqlalchemy

    storage = open_storage(url).storage
    study_id = storage.create_new_study([], f"s-{uuid.uuid4()}")
    ours, optunas = storage.create_new_trial(study_id), storage.create_new_trial(study_id)
    attrs = {"expctl:result": {"m": 1.5}}
    values = [float("-inf"), 2.5]
    rdb_writes.finish(storage, ours, attrs, TrialState.PRUNED, values)
    storage.set_trial_user_attr(optunas, "expctl:result", attrs["expctl:result"])
    storage.set_trial_state_values(optunas, TrialState.PRUNED, values)

    def rows(trial_id: int) -> list[tuple]:
        queries = (
            "SELECT state, datetime_complete FROM trials WHERE trial_id = :t",
            "SELECT objective, value, value_type FROM trial_values WHERE trial_id = :t"
            " ORDER BY objective",
            "SELECT key, value_json FROM trial_user_attributes WHERE trial_id = :t",
        )
        with storage.engine.connect() as db:
            return [
                tuple(row)
                for query in queries
                for row in db.execute(sqlalchemy.text(query), {"t": trial_id})
            ]

    a, b = rows(ours), rows(optunas)
    (state_a, at_a), (state_b, at_b) = a[0], b[0]
    assert state_a == state_b == "PRUNED"
    assert type(at_a) is type(at_b)
    if isinstance(at_a, str):  # SQLite keeps SQLAlchemy's text form
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}", at_a), at_a
    assert a[1:] == b[1:] and len(a) == 4


def test_finishing_a_trial_that_is_not_there_raises_as_optuna_does(url):
    storage = open_storage(url).storage
    storage.create_new_study([], f"s-{uuid.uuid4()}")
    with pytest.raises(KeyError):
        rdb_writes.finish(storage, 10**9, {"expctl:result": {}}, TrialState.FAIL, None)


def test_the_core_pop_claims_each_waiting_trial_once_in_order(url):
    """The pop is one UPDATE … RETURNING: the oldest WAITING trial, RUNNING with its claim."""
    from expctl.sweeps.storage import trial_index

    storage = open_storage(url).storage
    study_id = storage.create_new_study([], f"s-{uuid.uuid4()}")
    from optuna.trial import create_trial

    waiting = [
        storage.create_new_trial(study_id, create_trial(state=TrialState.WAITING)) for _ in range(3)
    ]
    claim = {"agent": "a", "time": 1.0}
    popped = [trial_index.pop_waiting(storage, study_id, claim) for _ in range(4)]
    assert popped == [*waiting, None]
    for trial_id in waiting:
        trial = storage.get_trial(trial_id)
        assert trial.state == TrialState.RUNNING and trial.datetime_start is not None
        assert trial.user_attrs["expctl:claim"] == claim


@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Tokyo"])
def test_claim_and_finish_times_read_back_as_optunas_own_calls_write_them(url, zone, monkeypatch):
    """Optuna ≥ 5.1 stores a trial's times in UTC (its models convert; Core statements bypass
    them): written in local time, a claim read back hours old west of UTC — reaped at once by
    another agent as dead — and hours ahead east of it."""
    import time

    from optuna.trial import create_trial

    from expctl.sweeps.storage import trial_index

    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        storage = open_storage(url).storage
        study_id = storage.create_new_study([], f"s-{uuid.uuid4()}")
        ours = storage.create_new_trial(study_id, create_trial(state=TrialState.WAITING))
        assert trial_index.pop_waiting(storage, study_id, {"agent": "a"}) == ours
        rdb_writes.finish(storage, ours, {"expctl:result": {}}, TrialState.COMPLETE, [1.0])
        optunas = storage.create_new_trial(study_id, create_trial(state=TrialState.WAITING))
        storage.set_trial_state_values(optunas, TrialState.RUNNING)
        storage.set_trial_state_values(optunas, TrialState.COMPLETE, [1.0])
        a, b = storage.get_trial(ours), storage.get_trial(optunas)
        for ours_at, optunas_at in (
            (a.datetime_start, b.datetime_start),
            (a.datetime_complete, b.datetime_complete),
        ):
            assert abs((ours_at - optunas_at).total_seconds()) < 60, (ours_at, optunas_at)
        assert a.datetime_complete >= a.datetime_start
    finally:
        monkeypatch.undo()
        time.tzset()
