"""A trial's steps written together: on an RDB storage one transaction each — a claim with its
``claim`` attr, a finish with its ``result`` attr (on a journal, one append: journal_writes).

Optuna's ``RDBStorage`` commits each call, so a claim (the pop, then the attr) and a finish (the
attr, then the state) were two commits each. On SQLite a commit is two fsyncs under the
database's one write lock, which every agent of the machine queues for: four per trial made the
lock the agents' bottleneck. Here each step is one transaction.

On SQLite and PostgreSQL the steps are SQLAlchemy Core statements, compiled once for the
database and run on the DBAPI cursor of the transaction (:func:`statements`,
:mod:`driver_sql`): a finish is one conditional ``UPDATE … RETURNING`` (the state checked and
the row locked by one statement) and an upsert per attr and value, as Optuna's helpers write
them. Every agent of a machine waits for these under SQLite's one write lock: through Optuna's
ORM helpers (``_set_trial_attr_without_commit``, ``_set_trial_value_without_commit``, still used
on MySQL) a finish held it ~1.8 ms, and with more agents than cores its holder was preempted
while the others queued. Where those helpers are missing (another Optuna), Optuna's public
calls, one commit each.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, NamedTuple

from optuna.trial import TrialState

from expctl.sweeps.storage import driver_sql


def helpers(storage: Any) -> Any:
    """Optuna's RDB models when ``storage`` is an ``RDBStorage`` with the helpers this module
    calls; None otherwise."""
    if getattr(storage, "scoped_session", None) is None:
        return None
    for name in ("_set_trial_attr_without_commit", "_set_trial_value_without_commit"):
        if not callable(getattr(storage, name, None)):
            return None
    try:
        from optuna.storages._rdb import models
    except ImportError:
        return None
    return models


def write_user_attrs(storage: Any, session: Any, trial_id: int, attrs: Mapping[str, Any]) -> None:
    """``set_trial_user_attr`` for each of ``attrs`` through Optuna's ORM helpers (where
    :func:`statements` has none: MySQL, older libraries; else :func:`upsert_user_attrs`), inside
    the caller's ``session``, which holds the trial: it popped it, or moved it to its final
    state, in this transaction."""
    models = helpers(storage)
    for key, value in attrs.items():
        storage._set_trial_attr_without_commit(
            session, models.TrialUserAttributeModel, trial_id, key, value
        )


def upsert_user_attrs(
    db: Any, statements: Statements, trial_id: int, attrs: Mapping[str, Any]
) -> None:
    """``set_trial_user_attr`` for each of ``attrs`` on the cursor ``db`` (:mod:`driver_sql`) of
    a transaction that holds the trial: it popped it, or moved it to its final state (the
    upsert does not check its state again)."""
    for key, value in attrs.items():
        row = {"trial_id": trial_id, "key": key, "value_json": json.dumps(value)}
        driver_sql.run(db, statements.upsert_user_attr, **row)


def finish(
    storage: Any,
    trial_id: int,
    user_attrs: Mapping[str, Any],
    state: TrialState,
    values: Sequence[float] | None,
) -> None:
    """``set_trial_user_attr`` for each of ``user_attrs``, then ``set_trial_state_values(trial_id,
    state, values)`` for a finished ``state``, on any storage: committed together (or not at all)
    on an RDB with :func:`helpers`, one append on a journal, else one commit each. Raises what
    Optuna's calls raise (``UpdateFinishedTrialError``: another agent finished it first)."""
    models = helpers(storage)
    if models is not None and state.is_finished():
        import sqlalchemy.exc

        found = statements(storage)
        try:
            if found is None:
                _finish_by_orm(storage, models, trial_id, user_attrs, state, values)
            else:
                _finish_by_statements(storage, found, trial_id, user_attrs, state, values)
            return
        except (sqlalchemy.exc.IntegrityError, storage.engine.dialect.dbapi.IntegrityError):
            pass  # Optuna's calls each ignore it: do as they do
    # Optuna's public calls, one commit each (one append on a journal)
    from expctl.sweeps.storage.journal_writes import batched_writes

    with batched_writes(storage):
        for key, value in user_attrs.items():
            storage.set_trial_user_attr(trial_id, key, value)
        storage.set_trial_state_values(trial_id, state, values)


def _finish_by_statements(
    storage: Any,
    statements: Statements,
    trial_id: int,
    user_attrs: Mapping[str, Any],
    state: TrialState,
    values: Sequence[float] | None,
) -> None:
    """The state moves first, and only from an unfinished one: an agent that failed the trial
    meanwhile wins, and the transaction is rolled back with nothing of ours in it."""
    from optuna.storages._rdb.storage import _create_scoped_session

    stored = _stored_values(values)
    session_scope = _create_scoped_session(storage.scoped_session)
    with session_scope as session, driver_sql.cursor(session) as db:
        found = _move_to_final_state(db, statements, trial_id, state)
        if found is not None:  # finished by another agent: say so as Optuna does
            storage.check_trial_is_updatable(trial_id, found)  # raises: it is finished
            raise AssertionError(f"trial {trial_id} is {found.name}, yet was not finished")
        _write_finish(db, statements, trial_id, user_attrs, stored)


def _move_to_final_state(
    db: Any, statements: Statements, trial_id: int, state: TrialState
) -> TrialState | None:
    """The trial → ``state`` if it is unfinished (one conditional statement); None when it
    moved, else the state another agent gave it first. ``KeyError`` (Optuna's) if it is gone."""
    from optuna.storages._rdb import models

    completed = statements.now()
    moved = driver_sql.run(
        db, statements.move_to_final_state, id=trial_id, final_state=state, completed=completed
    )
    if moved:
        return None
    found = driver_sql.run(db, statements.read_state, id=trial_id)
    if not found:
        raise KeyError(models.NOT_FOUND_MSG)
    return TrialState[found[0][0]]  # stored by name (SQLAlchemy's Enum)


def _stored_values(values: Sequence[float] | None) -> list[dict[str, Any]]:
    """Optuna's conversion (infinities); a value that is no number fails before any write."""
    from optuna.storages._rdb import models

    as_stored = models.TrialValueModel.value_to_stored_repr
    return [
        dict(zip(("value", "value_type"), as_stored(float(v)), strict=True)) for v in values or ()
    ]


def _write_finish(
    db: Any,
    statements: Statements,
    trial_id: int,
    user_attrs: Mapping[str, Any],
    stored: list[dict[str, Any]],
) -> None:
    upsert_user_attrs(db, statements, trial_id, user_attrs)
    for objective, value in enumerate(stored):
        driver_sql.run(db, statements.upsert_value, trial_id=trial_id, objective=objective, **value)


def finish_then_pop(
    storage: Any,
    trial_id: int,
    user_attrs: Mapping[str, Any],
    state: TrialState,
    values: Sequence[float] | None,
    next_claim: tuple[int, str, str, Mapping[str, Any]],
) -> tuple[bool, int | None] | Any:
    """:func:`finish`, then — while the study's ``state_key`` attr says ``"running"`` — the pop
    of its oldest WAITING trial with its ``claim_key`` attr, in one transaction: between two
    trials an agent takes SQLite's one write lock once and commits once (with 8 agents on 2
    cores the lock's hold, stretched by preemption, was what bounded them). ``next_claim`` is
    ``(study_id, state_key, claim_key, claim)``.

    Returns whether this finish won (False: another agent had finished or failed the trial, and
    nothing of it was written) and the popped trial's id (None: nothing queued, or the state
    is another or missing); ``NotImplemented`` where :func:`statements` has none (the caller
    finishes and claims apart)."""
    from optuna.storages._rdb.storage import _create_scoped_session

    found = statements(storage)
    if found is None or not state.is_finished():
        return NotImplemented
    study_id, state_key, claim_key, claim = next_claim
    stored = _stored_values(values)
    session_scope = _create_scoped_session(storage.scoped_session)
    with session_scope as session, driver_sql.cursor(session) as db:
        # read before the first write: on SQLite outside the write lock (a sweep stopped in
        # between pops one trial more, as a separate claim after it could)
        row = driver_sql.run(db, found.study_user_attr, study=study_id, key=state_key)
        won = _move_to_final_state(db, found, trial_id, state) is None
        if won:
            _write_finish(db, found, trial_id, user_attrs, stored)
        popped = None
        if row and json.loads(row[0][0]) == "running":
            rows = driver_sql.run(db, found.pop_waiting, study=study_id, started=found.now())
            if rows:
                popped = int(rows[0][0])
                upsert_user_attrs(db, found, popped, {claim_key: claim})
    return won, popped


def fail_and_requeue(
    storage: Any, trial_id: int, user_attrs: Mapping[str, Any], study_id: int, template: Any
) -> int | Any | None:
    """The trial → FAIL with ``user_attrs``, and ``template`` created as a new trial of the
    study, in one transaction: apart, a SIGKILL between the two left a point failed for a
    re-run nobody created (the point lost, and every agent waiting for it). Returns the new
    trial's number; None where another agent finished the trial first (nothing written);
    ``NotImplemented`` where :func:`statements` has none or Optuna's trial builder moved."""
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    found = statements(storage)
    prepare = getattr(storage, "_get_prepared_new_trial", None)  # Optuna's, in a session
    if found is None or not callable(prepare):
        return NotImplemented
    with _create_scoped_session(storage.scoped_session) as session:
        with driver_sql.cursor(session) as db:
            if _move_to_final_state(db, found, trial_id, TrialState.FAIL) is not None:
                return None
            upsert_user_attrs(db, found, trial_id, user_attrs)
        # what create_new_trial does in its own transaction: the study row locked for the number
        models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
        number = int(prepare(study_id, template, session).number)
    return number


def _finish_by_orm(
    storage: Any,
    models: Any,
    trial_id: int,
    user_attrs: Mapping[str, Any],
    state: TrialState,
    values: Sequence[float] | None,
) -> None:
    from optuna.storages._rdb.storage import _create_scoped_session

    with _create_scoped_session(storage.scoped_session) as session:
        # the row locked and checked before anything is written, as set_trial_state_values
        # does: an agent that failed the trial meanwhile wins, and nothing of ours is kept (the
        # check's error path commits the thread's session: it must hold nothing yet)
        trial = models.TrialModel.find_or_raise_by_id(trial_id, session, for_update=True)
        storage.check_trial_is_updatable(trial_id, trial.state)
        write_user_attrs(storage, session, trial_id, user_attrs)  # through the ORM here
        for objective, value in enumerate(values or ()):
            storage._set_trial_value_without_commit(session, trial, objective, value)
        trial.state = state
        trial.datetime_complete = datetime.now()


class Statements(NamedTuple):
    """Each compiled for the storage's database (:mod:`driver_sql`)."""

    now: Callable[[], datetime]  # the time as Optuna's models store it (see _stored_now)
    pop_waiting: driver_sql.Prepared  # :study, :started → the oldest WAITING trial's id, RUNNING
    move_to_final_state: driver_sql.Prepared  # :id, :final_state, :completed → the id, or no row
    read_state: driver_sql.Prepared  # :id → the state's name
    upsert_user_attr: driver_sql.Prepared  # :trial_id, :key, :value_json
    upsert_value: driver_sql.Prepared  # :trial_id, :objective, :value, :value_type
    study_user_attr: driver_sql.Prepared  # :study, :key → value_json


def statements(storage: Any) -> Statements | None:
    """The statements for ``storage``'s database: SQLite ≥ 3.35 (``RETURNING``) and
    PostgreSQL, with SQLAlchemy 2 (Optuna allows 1.4). None elsewhere — not an RDB storage with
    Optuna's models, MySQL, older libraries: Optuna's ORM helpers then."""
    import sqlite3

    import sqlalchemy

    if helpers(storage) is None or int(sqlalchemy.__version__.split(".")[0]) < 2:
        return None
    dialect = storage.engine.dialect
    if dialect.name == "postgresql" or (
        dialect.name == "sqlite" and sqlite3.sqlite_version_info >= (3, 35)
    ):
        key = (dialect.name, dialect.driver, dialect.paramstyle)
        if key not in _COMPILED:  # compiling an upsert cost more than running it
            _COMPILED[key] = _statements(dialect)
        return _COMPILED[key]
    return None


_COMPILED: dict[tuple[str, str, str], Statements] = {}


def _statements(dialect: Any) -> Statements:
    import sqlalchemy
    from optuna.storages._rdb import models
    from sqlalchemy.dialects import postgresql, sqlite

    from expctl.sweeps.storage import rdb_reads

    insert: Any = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
    # the tables, not the ORM classes: plain Core statements, no ORM synchronisation
    trials = models.TrialModel.__table__
    oldest = (
        sqlalchemy.select(trials.c.trial_id)
        .where(
            trials.c.study_id == sqlalchemy.bindparam("study"),
            trials.c.state == TrialState.WAITING,
        )
        .order_by(trials.c.trial_id)
        .limit(1)
    )
    if dialect.name == "postgresql":  # the job-queue claim: agents skip a row another is taking
        oldest = oldest.with_for_update(skip_locked=True)
    pop = (
        sqlalchemy.update(trials)
        .where(trials.c.trial_id == oldest.scalar_subquery())
        .values(
            state=TrialState.RUNNING,
            datetime_start=sqlalchemy.bindparam("started", type_=trials.c.datetime_start.type),
        )
        .returning(trials.c.trial_id)
    )
    unfinished = sqlalchemy.or_(  # not IN (…): its list is expanded at each execution
        trials.c.state == TrialState.RUNNING, trials.c.state == TrialState.WAITING
    )
    move = (
        sqlalchemy.update(trials)
        .where(trials.c.trial_id == sqlalchemy.bindparam("id"), unfinished)
        .values(
            state=sqlalchemy.bindparam("final_state", type_=trials.c.state.type),
            datetime_complete=sqlalchemy.bindparam(
                "completed", type_=trials.c.datetime_complete.type
            ),
        )
        .returning(trials.c.trial_id)
    )
    read = sqlalchemy.select(trials.c.state).where(trials.c.trial_id == sqlalchemy.bindparam("id"))
    attr = insert(models.TrialUserAttributeModel.__table__)
    attr = attr.on_conflict_do_update(
        index_elements=["trial_id", "key"], set_={"value_json": attr.excluded.value_json}
    )
    value = insert(models.TrialValueModel.__table__)
    value = value.on_conflict_do_update(
        index_elements=["trial_id", "objective"],
        set_={"value": value.excluded.value, "value_type": value.excluded.value_type},
    )
    prepare = functools.partial(driver_sql.prepare, dialect=dialect)
    return Statements(
        now=_stored_now(models),
        pop_waiting=prepare(pop),
        move_to_final_state=prepare(move),
        read_state=prepare(read),
        upsert_user_attr=prepare(attr, keys=("trial_id", "key", "value_json")),
        upsert_value=prepare(value, keys=("trial_id", "objective", "value", "value_type")),
        study_user_attr=prepare(rdb_reads.statements().study_user_attr),
    )


def _stored_now(models: Any) -> Callable[[], datetime]:
    """What a trial's ``datetime_*`` columns hold: naive UTC since Optuna 5.1 (its models'
    properties convert, and Core statements bypass them), naive local time before. Written in
    local time, a claim read back hours old west of UTC — reaped at once by another agent — and
    hours ahead east of it, never reaped."""
    if stores_utc(models):
        return lambda: datetime.now(timezone.utc).replace(tzinfo=None)
    return datetime.now


def stores_utc(models: Any) -> bool:
    """Whether Optuna's ``models`` keep a trial's times in naive UTC (5.1 on) or local time."""
    return hasattr(models.TrialModel, "_datetime_start_utc")
