"""SQLite sweep storage on a local disk: WAL mode, write transactions queued on an flock (not
SQLite's sleep-and-retry), and a WAITING trial popped by one atomic statement."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from sweep_helpers import create, flock_held

from expctl.sweeps.spec import parse_spec
from expctl.sweeps.storage import open_storage, trial_index
from expctl.sweeps.storage.sqlite_writes import QueuedWritesConnection, writers_lock_path


def held(path: str) -> bool:
    return flock_held(writers_lock_path(path))


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


def test_a_local_sqlite_storage_is_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    open_storage(f"sqlite:///{path}")
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


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


@pytest.mark.parametrize("statement", ["insert into t values (1)", "  Replace INTO t VALUES (1)"])
def test_writes_are_recognised_whatever_their_case(tmp_path: Path, statement: str) -> None:
    path = str(tmp_path / "s.db")
    db = sqlite3.connect(path, factory=QueuedWritesConnection)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.execute(statement)
    assert held(path)
    db.commit()
    db.close()
