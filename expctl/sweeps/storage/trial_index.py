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


def waiting_ids(storage: Any, study_id: int, limit: int) -> list[int]:
    """The ids of the (at most ``limit``) oldest WAITING trials."""
    rows = _rdb_ids(storage, study_id, (TrialState.WAITING,), -1, limit=limit)
    if rows is not None:
        return rows
    waiting = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,))
    return [t._trial_id for t in waiting[:limit]]


def pop_waiting(storage: Any, study_id: int) -> int | None:
    """WAITING → RUNNING for the oldest waiting trial no other agent is taking right now; its
    id, or None when there is none. Returns ``NotImplemented`` for storages it cannot ask.

    On PostgreSQL/MySQL this is one ``SELECT … FOR UPDATE SKIP LOCKED`` (the standard job-queue
    claim): Optuna's own pop makes every agent lock the same oldest row and all but one retry,
    which cost eight agents more than one (measured with ``benchmarks/sweeps.py``).
    """
    session_factory = getattr(storage, "scoped_session", None)
    engine = getattr(storage, "engine", None)
    if session_factory is None or engine is None or engine.dialect.name not in _SKIP_LOCKED:
        return NotImplemented
    try:
        from optuna.storages._rdb.models import TrialModel
    except ImportError:
        return NotImplemented
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
        session.commit()
    return trial_id


_SKIP_LOCKED = ("postgresql", "mysql")


def count(storage: Any, study_id: int, states: tuple[TrialState, ...]) -> int:
    rows = _rdb_ids(storage, study_id, states, -1, limit=None)
    if rows is not None:
        return len(rows)
    return len(storage.get_all_trials(study_id, deepcopy=False, states=states))


def _rdb_ids(
    storage: Any, study_id: int, states: tuple[TrialState, ...], after: int, limit: int | None
) -> list[int] | None:  # after: only ids greater than this
    """Trial ids straight from an RDB storage's ``trials`` table; None for other storages."""
    session_factory = getattr(storage, "scoped_session", None)
    if session_factory is None:
        return None
    try:
        from optuna.storages._rdb.models import TrialModel
    except ImportError:  # Optuna moved its internals: the public API still answers
        return None
    with contextlib.closing(session_factory()) as session:
        query = (
            session.query(TrialModel.trial_id)
            .filter(TrialModel.study_id == study_id, TrialModel.state.in_(states))
            .filter(TrialModel.trial_id > after)
            .order_by(TrialModel.trial_id)
        )
        if limit is not None:
            query = query.limit(limit)
        ids = [row[0] for row in query.all()]
        session.commit()  # end the read transaction (the session is reused by Optuna)
    return ids


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
    session_factory = getattr(storage, "scoped_session", None)
    if session_factory is None:
        return None
    try:
        from optuna.storages._rdb.models import TrialModel, TrialSystemAttributeModel
    except ImportError:
        return None
    from sqlalchemy import and_

    attr = TrialSystemAttributeModel
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
