"""SQLite sweep storage: write transactions queued on an flock (not SQLite's sleep-and-retry),
a WAITING trial popped by one atomic statement, WAL mode on a local filesystem and a rollback
journal on any other (kept, PERSIST, where only its owner writes it), and a database readable by
whoever may only read it."""

from __future__ import annotations

import fcntl
import gc
import json
import os
import random
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState
from sweep_helpers import agent, create, flock_held

from expctl.sweeps.spec import parse_spec
from expctl.sweeps.storage import open_storage, rdb_writes, sqlite_writes, trial_index
from expctl.sweeps.storage.sqlite_writes import (
    QueuedWritesConnection,
    _open_writers_lock,
    writers_lock_path,
)


def held(path: str) -> bool:
    return flock_held(writers_lock_path(path))


@pytest.fixture
def network_filesystem(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on NFS or Lustre, where WAL's shared-memory index is not shared between hosts."""
    monkeypatch.setattr(sqlite_writes, "is_local", lambda path: False)


def test_a_database_on_a_local_filesystem_is_put_in_wal_mode(tmp_path: Path) -> None:
    """New or made by an earlier release in rollback mode: one fsync per commit, and readers
    do not wait on a writer's commit."""
    new = str(tmp_path / "new.db")
    db = sqlite3.connect(new, factory=QueuedWritesConnection)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    db.close()
    old = str(tmp_path / "old.db")
    sqlite3.connect(old).execute("CREATE TABLE t (x)").connection.commit()
    db = sqlite3.connect(old, factory=QueuedWritesConnection)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    reader = sqlite3.connect(old)  # SQLite's own connection: the mode is the file's
    db.execute("INSERT INTO t VALUES (1)")
    assert reader.execute("SELECT count(*) FROM t").fetchone() == (0,)  # reads during a write
    db.commit()
    assert reader.execute("SELECT count(*) FROM t").fetchone() == (1,)
    db.close()
    reader.close()


def test_a_switch_to_wal_does_not_wait_on_a_transaction_in_progress(tmp_path: Path) -> None:
    path = str(tmp_path / "busy.db")
    other = sqlite3.connect(path, timeout=30)
    other.execute("CREATE TABLE t (x)")
    other.commit()
    other.execute("INSERT INTO t VALUES (1)")  # a rollback-mode write transaction, open
    started = time.monotonic()
    db = sqlite3.connect(path, factory=QueuedWritesConnection, timeout=30)
    assert time.monotonic() - started < 5
    assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # not now
    assert db.execute("PRAGMA busy_timeout").fetchone() == (30000,)  # restored
    db.close()
    other.commit()
    other.close()
    db = sqlite3.connect(path, factory=QueuedWritesConnection)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)  # the next one does
    db.close()


def test_a_write_transaction_holds_the_writers_lock_until_it_ends(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    db = sqlite3.connect(path, factory=QueuedWritesConnection)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.execute("SELECT * FROM t").fetchall()
    assert not held(path)  # a read takes nothing
    db.execute("INSERT INTO t VALUES (1)")
    assert held(path)
    db.commit()
    assert not held(path)
    db.execute("UPDATE t SET x = 2")
    assert held(path)
    db.rollback()
    assert not held(path)
    assert db.execute("SELECT x FROM t").fetchall() == [(1,)]
    db.close()


def test_a_second_writer_waits_for_the_first_and_does_not_fail(tmp_path: Path) -> None:
    """With a 0 s busy timeout SQLite itself would raise 'database is locked' at once."""
    path = str(tmp_path / "s.db")
    first = sqlite3.connect(path, factory=QueuedWritesConnection, timeout=0)
    first.execute("CREATE TABLE t (x)")
    first.commit()
    first.execute("INSERT INTO t VALUES (1)")  # holds the write lock
    second_done = threading.Event()

    def second() -> None:
        db = sqlite3.connect(path, factory=QueuedWritesConnection, timeout=0)
        db.execute("INSERT INTO t VALUES (2)")
        db.commit()
        db.close()
        second_done.set()

    thread = threading.Thread(target=second)
    thread.start()
    assert not second_done.wait(0.3)  # queued behind the first
    first.commit()
    thread.join(5)
    assert second_done.is_set()
    assert sorted(first.execute("SELECT x FROM t").fetchall()) == [(1,), (2,)]
    first.close()


def test_a_commit_keeps_the_rollback_journal_file(tmp_path: Path, network_filesystem) -> None:
    path = str(tmp_path / "s.db")
    db = sqlite3.connect(path, factory=QueuedWritesConnection)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.close()
    db = sqlite3.connect(path, factory=QueuedWritesConnection)  # the file exists now
    assert db.execute("PRAGMA journal_mode").fetchone() == ("persist",)
    db.execute("INSERT INTO t VALUES (1)")
    db.commit()
    assert Path(path + "-journal").exists()  # zeroed, not deleted: no unlink per commit
    db.close()


def test_a_wal_database_leaves_wal_once_no_one_else_has_it_open(
    tmp_path: Path, network_filesystem
) -> None:
    """On a network filesystem a database in WAL mode (copied there, or made by a release
    that used WAL everywhere) goes back to a rollback journal: the next connection that is
    alone converts it, and one that is not goes on at once (no wait on the busy timeout)."""
    path = str(tmp_path / "old.db")
    other = sqlite3.connect(path, timeout=30)
    assert other.execute("PRAGMA journal_mode=WAL").fetchone() == ("wal",)
    other.execute("CREATE TABLE t (x)")
    other.commit()
    started = time.monotonic()
    db = sqlite3.connect(path, factory=QueuedWritesConnection, timeout=30)
    assert time.monotonic() - started < 5
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)  # another has it open
    assert db.execute("PRAGMA busy_timeout").fetchone() == (30000,)  # restored
    db.close()
    other.close()
    db = sqlite3.connect(path, factory=QueuedWritesConnection)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("persist",)
    db.close()
    assert not Path(path + "-wal").exists()


def test_threads_popping_waiting_trials_each_get_their_own(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    spec = parse_spec(
        {"method": "grid", "metric": {"name": "m"}, "parameters": {"x": {"values": [*range(60)]}}}
    )
    study_id = open_storage(url).storage.get_study_id_from_name(create(spec, url).id)
    popped: list[int | None] = []

    def pop_all() -> None:
        storage = open_storage(url).storage  # a connection pool of its own
        while (trial_id := trial_index.pop_waiting(storage, study_id)) is not None:
            assert trial_id is not NotImplemented
            popped.append(trial_id)

    threads = [threading.Thread(target=pop_all) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    storage = open_storage(url).storage
    running = storage.get_all_trials(study_id, deepcopy=False)
    assert sorted(popped) == sorted(t._trial_id for t in running)  # each once, none missed
    assert len(popped) == 60
    assert {t.state.name for t in running} == {"RUNNING"}
    assert all(t.datetime_start is not None for t in running)


@pytest.mark.parametrize(
    "statement",
    [
        "insert into t values (1)",
        "  Replace INTO t VALUES (1)",
        "-- a comment\n/* another */ UPDATE t SET x = 2",
        "BEGIN IMMEDIATE",
    ],
)
def test_writes_are_recognised_whatever_their_case(tmp_path: Path, statement: str) -> None:
    path = str(tmp_path / "s.db")
    db = sqlite3.connect(path, factory=QueuedWritesConnection)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.execute(statement)
    assert held(path)
    db.commit()
    db.close()


def test_a_sqlite_sweep_on_a_read_only_disk_can_still_be_read(tmp_path: Path, cli) -> None:
    """A colleague's `sweep status` or `report` on a mount (or directory) they may only read.
    In WAL mode SQLite must create ``-shm`` beside the database even to read it, and such a
    read failed with 'unable to open database file': once no agent has it open, the file
    holds every commit and is read as immutable."""
    from disks import tmpfs

    with tmpfs(tmp_path / "disk", "8m") as disk:
        url = f"sqlite:///{disk / 's.db'}"
        spec = parse_spec(
            {"method": "grid", "metric": {"name": "m"}, "parameters": {"x": {"values": [1, 2]}}}
        )
        sweep_id = create(spec, url).id
        agent(sweep_id, url, objective=lambda trial: {"m": trial.params["x"]}, handle_signals=False)
        assert (disk / "s.db").read_bytes()[18:20] == b"\x02\x02"  # in WAL mode
        gc.collect()  # the agent's connections, closed as its process's would be at exit
        assert not Path(f"{disk / 's.db'}-shm").exists()  # the last one's close removed it
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        # the queue's lock opens read-only where it may not be written (another user's file)
        writers = _open_writers_lock(writers_lock_path(str(disk / "s.db")))
        assert writers is not None
        fcntl.flock(writers, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(writers)
        status = cli("sweep", "status", sweep_id, "--storage", url)
        best = cli("sweep", "best", sweep_id, "--storage", url)
    assert status.exit_code == 0, status.stderr
    assert "2" in status.stdout
    assert best.exit_code == 0, best.stderr
    assert "x" in best.stdout


def test_a_shared_database_deletes_its_rollback_journal(tmp_path: Path, network_filesystem) -> None:
    """A kept journal belongs to its first writer: a group member could not write it."""
    path = tmp_path / "shared.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.commit()
    os.chmod(path, 0o664)
    db = sqlite3.connect(path, factory=QueuedWritesConnection)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    db.execute("INSERT INTO t VALUES (1)")
    db.commit()
    assert not Path(f"{path}-journal").exists()
    db.close()


def test_a_connection_dropped_mid_transaction_releases_the_queue(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    db = sqlite3.connect(path, factory=QueuedWritesConnection)
    db.execute("CREATE TABLE t (x)")
    db.execute("INSERT INTO t VALUES (1)")
    assert held(path)
    del db  # never closed: a leaked connection
    gc.collect()
    assert not held(path)


def test_a_transaction_begun_unseen_does_not_wait_on_the_queue(tmp_path: Path) -> None:
    """A transaction opened by a bare BEGIN may hold SQLite's write lock already (a write the
    queue missed): its next write must not wait for a queue whose holder waits on SQLite."""
    path = str(tmp_path / "s.db")
    first = sqlite3.connect(path, factory=QueuedWritesConnection, isolation_level=None)
    first.execute("CREATE TABLE t (x)")
    first.execute("BEGIN")
    first.execute("INSERT INTO t VALUES (1)")  # queued: the flock is taken (not in a tx before)
    assert held(path)
    second = sqlite3.connect(
        path, factory=QueuedWritesConnection, timeout=0.1, check_same_thread=False
    )
    second.execute("BEGIN")  # not a write: no flock
    outcome: list[str] = []

    def write() -> None:
        try:
            second.execute("INSERT INTO t VALUES (2)")
            outcome.append("wrote")
        except sqlite3.OperationalError as e:
            outcome.append(str(e))

    thread = threading.Thread(target=write)
    thread.start()
    thread.join(5)
    assert outcome == ["database is locked"]  # SQLite's answer at once, not a wait forever
    first.execute("COMMIT")
    second.rollback()
    assert not held(path)
    first.close()
    second.close()


def test_without_returning_sqlite_pops_through_optuna(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLAlchemy 1.4 (which Optuna allows) cannot compile UPDATE … RETURNING for SQLite: the
    claim falls back to Optuna's own pop instead of failing."""
    import sqlalchemy

    url = f"sqlite:///{tmp_path / 's.db'}"
    spec = parse_spec(
        {"method": "grid", "metric": {"name": "m"}, "parameters": {"x": {"values": [1, 2, 3]}}}
    )
    sweep_id = create(spec, url).id
    storage = open_storage(url).storage
    monkeypatch.setattr(sqlalchemy, "__version__", "1.4.54")
    assert trial_index.pop_waiting(storage, storage.get_study_id_from_name(sweep_id)) is (
        NotImplemented
    )
    summary = agent(sweep_id, url, objective=lambda t: {"m": t.params["x"]}, handle_signals=False)
    assert summary.count("complete") == 3


def test_the_transition_lock_is_taken_only_where_optuna_changes_states(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With RETURNING every state change is one conditional statement and the lock only made
    the other agents queue behind a holder that was often preempted; SQLAlchemy 1.4 changes
    states through Optuna's ORM (read, then write), which needs it."""
    import sqlalchemy

    handle = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    assert handle.lock_path is not None
    with handle.transition_lock():
        assert not flock_held(str(handle.lock_path))
    monkeypatch.setattr(sqlalchemy, "__version__", "1.4.54")
    with handle.transition_lock():
        assert flock_held(str(handle.lock_path))
    handle.close()


def _finish_each(url: str, ids: list[int], state: str, go: str, out: str) -> None:
    """One side of the race: every trial moved to ``state`` with an attr saying who did it."""
    from optuna.exceptions import UpdateFinishedTrialError

    storage = open_storage(url).storage
    warm_up = storage.create_new_trial(storage.get_study_id_from_name("warm-up"))
    rdb_writes.finish(storage, warm_up, {"by": state}, TrialState[state], None)
    won = []
    while not os.path.exists(go):
        time.sleep(0.001)
    random.Random(state).shuffle(ids)  # each side its own order: some trials taken by each
    for trial_id in ids:
        values = [1.0] if state == "COMPLETE" else None
        try:
            rdb_writes.finish(storage, trial_id, {"by": state}, TrialState[state], values)
            won.append(trial_id)
        except UpdateFinishedTrialError:
            pass
    Path(out).write_text(json.dumps(won))


def test_a_finish_and_a_fail_racing_without_the_lock_leave_one_winner(tmp_path: Path) -> None:
    """An agent finishing its trial and another failing it as dead (reap, discard), in two
    processes with no transition lock: each trial ends in exactly one of the two states, with
    that side's attr only — the loser wrote nothing."""
    import multiprocessing

    url = f"sqlite:///{tmp_path / 's.db'}"
    storage = open_storage(url).storage
    study_id = storage.create_new_study([], "race")
    ids = [storage.create_new_trial(study_id) for _ in range(150)]  # RUNNING
    storage.create_new_study([], "warm-up")  # each side's first finish, before the race
    go = str(tmp_path / "go")
    spawn = multiprocessing.get_context("spawn")
    sides = {
        state: spawn.Process(target=_finish_each, args=(url, ids, state, go, str(tmp_path / state)))
        for state in ("COMPLETE", "FAIL")
    }
    for side in sides.values():
        side.start()
    time.sleep(1.0)  # both imported and waiting
    Path(go).touch()
    for side in sides.values():
        side.join(120)
        assert side.exitcode == 0
    won = {state: set(json.loads((tmp_path / state).read_text())) for state in sides}
    assert won["COMPLETE"] | won["FAIL"] == set(ids)
    assert not won["COMPLETE"] & won["FAIL"]
    for trial in open_storage(url).storage.get_all_trials(study_id, deepcopy=False):
        winner = "COMPLETE" if trial._trial_id in won["COMPLETE"] else "FAIL"
        assert trial.state == TrialState[winner]
        assert trial.user_attrs == {"by": winner}
        assert trial.values == ([1.0] if winner == "COMPLETE" else None)
