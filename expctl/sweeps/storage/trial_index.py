"""Which trials are in which state, cheaply: the questions an agent asks on every trial.

Optuna answers "the waiting trials" with whole FrozenTrials (every param and attr): on the
journal that is an in-memory replay, but on PostgreSQL a 200-point grid cost ~45 ms per call
(measured, ``benchmarks/sweeps.py``), three calls per trial, and was what kept an agent at 16
trials/s whatever the number of agents. For RDB storages these ask the database only for ids
and counts (one indexed query each, on Optuna's own ``trials`` table); for any other storage
(or if Optuna's internals ever move) they fall back to Optuna's public API.
"""

from __future__ import annotations

import contextlib
from typing import Any, NamedTuple

from optuna.trial import TrialState

from expctl.sweeps.storage import driver_sql, rdb_reads, rdb_writes
from expctl.sweeps.studies import PREFIX


def waiting_ids(storage: Any, study_id: int, limit: int) -> list[int]:
    """The ids of the (at most ``limit``) oldest WAITING trials."""
    rows = rdb_reads.trial_ids(storage, study_id, (TrialState.WAITING,), -1, limit=limit)
    if rows is not None:
        return rows
    waiting = unfinished(storage, study_id, (TrialState.WAITING,), limit=limit)
    return [t._trial_id for t in waiting]


_UNFINISHED = (TrialState.WAITING, TrialState.RUNNING)


def unfinished(
    storage: Any, study_id: int, states: tuple[TrialState, ...], *, limit: int | None = None
) -> list[Any]:
    """The (frozen, not copied) WAITING and/or RUNNING trials, oldest first (the oldest
    ``limit`` of them, given one).

    On a journal, Optuna filters every trial of the study by state on each call (16 ms per call
    at 10⁵ trials, several calls per claim). A finished trial never changes state again, so the
    journal's replay is asked only about the trials that were unfinished when last seen and those
    created since (:class:`_Unfinished`); other storages answer through Optuna's API.
    """
    assert set(states) <= set(_UNFINISHED)
    replay = getattr(storage, "_replay_result", None)
    lock = getattr(storage, "_thread_lock", None)
    if replay is None or lock is None or not hasattr(replay, "_study_id_to_trial_ids"):
        trials = storage.get_all_trials(study_id, deepcopy=False, states=states)
        return trials if limit is None else trials[:limit]
    with lock:
        storage._sync_with_backend()
        return _Unfinished.of(storage, replay, study_id).refresh(states, limit)


class _Unfinished:
    """One journal storage's unfinished trials of one study, kept up to date incrementally."""

    def __init__(self, replay: Any, study_id: int):
        self.replay, self.study_id = replay, study_id
        self.seen = 0  # how many of the study's trials (in creation order) were looked at
        self.ids: list[int] = []  # those of them that were unfinished then

    @classmethod
    def of(cls, storage: Any, replay: Any, study_id: int) -> _Unfinished:
        caches = storage.__dict__.setdefault("_expctl_unfinished", {})
        cache = caches.get(study_id)
        if cache is None or cache.replay is not replay:  # a replay restored anew
            cache = caches[study_id] = cls(replay, study_id)
        return cache

    def refresh(self, states: tuple[TrialState, ...], limit: int | None) -> list[Any]:
        """The unfinished trials in ``states``, oldest first, at most ``limit``. Trials are
        claimed and finished near the head of the queue: with a limit, only the head is looked
        at (and pruned of finished trials), not a whole 10,000-point queue per claim."""
        ids = self.replay._study_id_to_trial_ids[self.study_id]
        trials = self.replay._trials
        self.ids.extend(ids[self.seen :])
        self.seen = len(ids)
        kept: list[int] = []
        found = []
        looked_at = len(self.ids)
        for position, trial_id in enumerate(self.ids):
            state = trials[trial_id].state
            if state not in _UNFINISHED:
                continue  # finished: never unfinished again, dropped
            kept.append(trial_id)
            if state in states:
                found.append(trials[trial_id])
                if limit is not None and len(found) >= limit:
                    looked_at = position + 1
                    break
        # the rest, not looked at, stays as it is: one memmove, not a copy of the whole queue
        self.ids[:looked_at] = kept
        return found


def pop_waiting(storage: Any, study_id: int, claim: dict[str, Any] | None = None) -> int | None:
    """WAITING → RUNNING for the oldest waiting trial no other agent is taking right now; its
    id, or None when there is none. Returns ``NotImplemented`` for storages it cannot ask.
    Given ``claim``, the trial's ``claim`` attr is written in the same transaction (where
    :func:`rdb_writes.helpers` finds Optuna's helpers: see :func:`claim_written`).

    On SQLite and PostgreSQL this is one ``UPDATE … RETURNING`` (:mod:`rdb_writes`' statement):
    on SQLite a statement that writes takes the database's write lock before it reads, so two
    agents never get one trial; on PostgreSQL its subquery is the standard job-queue claim,
    ``SELECT … FOR UPDATE SKIP LOCKED`` — Optuna's own pop makes every agent lock the same oldest
    row and all but one retry, which cost eight agents more than one (``benchmarks/sweeps.py``).
    Optuna's pop, a read then a write in an ORM session, also took ~2 ms of CPU under SQLite's
    lock, which 8 agents waited for most of the time. MySQL: the same claim through the ORM.
    """
    rdb = _rdb(storage)
    engine = getattr(storage, "engine", None)
    if rdb is None or engine is None:
        return NotImplemented
    statements = rdb_writes.statements(storage)
    if statements is not None:
        return _pop_by_statement(storage, statements, study_id, claim)
    if engine.dialect.name not in _SKIP_LOCKED:
        return NotImplemented
    session_factory, TrialModel = rdb[0], rdb[1].TrialModel
    from datetime import datetime

    with contextlib.closing(session_factory()) as session:
        trial = (
            session.query(TrialModel)
            .filter(TrialModel.study_id == study_id, TrialModel.state == TrialState.WAITING)
            .order_by(TrialModel.trial_id)
            .limit(1)
            .with_for_update(skip_locked=True)
            .one_or_none()
        )
        if trial is None:
            session.commit()
            return None
        trial.state = TrialState.RUNNING
        trial.datetime_start = datetime.now()  # as Optuna's set_trial_state_values does
        trial_id = int(trial.trial_id)
        _write_claim(storage, session, trial_id, claim)
        session.commit()
    return trial_id


def claim_written(storage: Any) -> bool:
    """Whether :func:`pop_waiting` writes the claim it is given on this storage."""
    return rdb_writes.helpers(storage) is not None


def _write_claim(storage: Any, session: Any, trial_id: int, claim: dict[str, Any] | None) -> None:
    if claim is not None and claim_written(storage):
        rdb_writes.write_user_attrs(storage, session, trial_id, {PREFIX + "claim": claim})


_SKIP_LOCKED = ("postgresql", "mysql")


def _pop_by_statement(
    storage: Any, statements: rdb_writes.Statements, study_id: int, claim: dict[str, Any] | None
) -> int | None:
    with contextlib.closing(storage.scoped_session()) as session:
        with driver_sql.cursor(session) as db:  # no ORM or Core layer per statement
            started = statements.now()
            rows = driver_sql.run(db, statements.pop_waiting, study=study_id, started=started)
            trial_id = int(rows[0][0]) if rows else None
            if trial_id is not None and claim is not None:
                rdb_writes.upsert_user_attrs(db, statements, trial_id, {PREFIX + "claim": claim})
        session.commit()
    return trial_id


def _rdb(storage: Any) -> tuple[Any, Any] | None:
    """An RDB storage's session factory and Optuna's table models; None for other storages, or
    when Optuna moved its internals (the public API still answers then)."""
    session_factory = getattr(storage, "scoped_session", None)
    if session_factory is None:
        return None
    try:
        from optuna.storages._rdb import models
    except ImportError:
        return None
    return session_factory, models


def exists(storage: Any, study_id: int, states: tuple[TrialState, ...]) -> bool:
    """Whether some trial is in one of ``states`` (WAITING, RUNNING)."""
    rows = rdb_reads.trial_ids(storage, study_id, states, -1, limit=1)
    if rows is not None:
        return bool(rows)
    return bool(unfinished(storage, study_id, states, limit=1))


def count(storage: Any, study_id: int, states: tuple[TrialState, ...]) -> int:
    rows = rdb_reads.trial_ids(storage, study_id, states, -1, limit=None)
    if rows is not None:
        return len(rows)
    if set(states) <= set(_UNFINISHED):
        return len(unfinished(storage, study_id, states))
    return len(storage.get_all_trials(study_id, deepcopy=False, states=states))


def created_after(storage: Any, study_id: int, trial_id: int, number: int) -> list[Created]:
    """The trials created after the one with ``trial_id``/``number`` (-1, -1: all), in creation
    order, each with whether it was *enqueued* (Optuna's ``fixed_params`` system attr, set when a
    trial is created WAITING: a re-run or a queued point) rather than created by a claim.

    Trial creation is atomic and numbered in order on every storage (the journal's log order,
    the RDB study row lock), and that attr is written with the trial, so the answer for a trial
    never changes: callers keep what they read and ask only for what is newer.
    """
    rows = _rdb_created_after(storage, study_id, trial_id)
    if rows is not None:
        return rows
    trials = storage.get_all_trials(study_id, deepcopy=False)
    # a study's trials come in number order (number == position): read only the new tail
    tail = trials[number + 1 :] if len(trials) > number + 1 else []
    return [
        Created(t._trial_id, t.number, "fixed_params" in t.system_attrs)
        for t in tail
        if t.number > number
    ]


class Created(NamedTuple):
    trial_id: int
    number: int
    enqueued: bool


def _rdb_created_after(storage: Any, study_id: int, after: int) -> list[Created] | None:
    rdb = _rdb(storage)
    if rdb is None:
        return None
    session_factory, models = rdb
    from sqlalchemy import and_

    TrialModel, attr = models.TrialModel, models.TrialSystemAttributeModel
    with contextlib.closing(session_factory()) as session:
        query = (
            session.query(TrialModel.trial_id, TrialModel.number, attr.trial_id)
            .outerjoin(attr, and_(attr.trial_id == TrialModel.trial_id, attr.key == "fixed_params"))
            .filter(TrialModel.study_id == study_id, TrialModel.trial_id > after)
            .order_by(TrialModel.trial_id)
        )
        rows = [Created(int(tid), int(num), fixed is not None) for tid, num, fixed in query.all()]
        session.commit()
    return rows


class TrialRecord(NamedTuple):
    """What ``sweep status`` reads of a trial, without the rest of a FrozenTrial."""

    number: int
    state: TrialState
    values: list[float] | None
    datetime_start: Any
    datetime_complete: Any
    user_attrs: dict[str, Any]
    intermediate_values: dict[int, float]  # only its length is read: {step: 0.0} per step

    @property
    def value(self) -> float | None:
        return self.values[0] if self.values else None


def records(storage: Any, study_id: int, keys: tuple[str, ...]) -> list[TrialRecord] | None:
    """Every trial of an RDB study with the user attrs ``keys``, in four set queries; None for
    other storages. Optuna's ``get_all_trials`` builds whole FrozenTrials through the ORM: 60 s
    and 2.4 GB for 100,000 trials on PostgreSQL."""
    rdb = _rdb(storage)
    if rdb is None:
        return None
    session_factory, models = rdb
    import json

    from sqlalchemy import func, select

    # Core statements on the mapped tables (types still converted: enums, datetimes): the ORM's
    # row machinery cost ~1.5 s more over the 400,000 rows of a 100,000-trial study
    trial, value, attr, step = (
        models.TrialModel.__table__.c,
        models.TrialValueModel.__table__.c,
        models.TrialUserAttributeModel.__table__.c,
        models.TrialIntermediateValueModel.__table__.c,
    )
    in_study = select(trial.trial_id).where(trial.study_id == study_id)
    # Long on purpose: one query per table (trials, values, attrs, step counts) in one session;
    # split apart, the pieces would only pass the session and the study filter around.
    with contextlib.closing(session_factory()) as session:
        connection = session.connection()
        rows = connection.execute(
            select(
                trial.trial_id,
                trial.number,
                trial.state,
                trial.datetime_start,  # as stored: see _local
                trial.datetime_complete,
            )
            .where(trial.study_id == study_id)
            .order_by(trial.trial_id)
        ).all()
        values: dict[int, list[float]] = {}
        for trial_id, _objective, number, kind in connection.execute(
            select(value.trial_id, value.objective, value.value, value.value_type)
            .where(value.trial_id.in_(in_study))
            .order_by(value.trial_id, value.objective)
        ):
            values.setdefault(trial_id, []).append(
                models.TrialValueModel.stored_repr_to_value(number, kind)
            )
        attrs: dict[int, dict[str, Any]] = {}
        for trial_id, key, text in connection.execute(
            select(attr.trial_id, attr.key, attr.value_json).where(
                attr.trial_id.in_(in_study), attr.key.in_(keys)
            )
        ):
            attrs.setdefault(trial_id, {})[key] = json.loads(text)
        steps = dict(
            connection.execute(
                select(step.trial_id, func.count())
                .where(step.trial_id.in_(in_study))
                .group_by(step.trial_id)
            ).all()
        )
        session.commit()
    in_utc = rdb_writes.stores_utc(models)
    return [
        TrialRecord(
            number,
            state,
            values.get(trial_id),
            _local(start, in_utc),
            _local(complete, in_utc),
            attrs.get(trial_id, {}),
            dict.fromkeys(range(steps.get(trial_id, 0)), 0.0),
        )
        for trial_id, number, state, start, complete in rows
    ]


def _local(stored: Any, in_utc: bool) -> Any:
    """A time from Optuna's tables as the naive local time its FrozenTrials hold: stored in
    naive UTC since Optuna 5.1 (``in_utc``: its models' properties convert), local before."""
    from datetime import timezone

    if stored is None or not in_utc:
        return stored
    return stored.replace(tzinfo=timezone.utc).astimezone().replace(tzinfo=None)
