"""The reads an agent makes around every trial of an RDB storage, as SQLAlchemy Core statements
built once: the sweep's state (one study attr) and the ids of a study's trials in some states.

Through the ORM, building the query cost more than running it — Optuna's
``get_study_user_attrs`` loads every attr of the study (its spec among them) to read one, and
an ORM ``query()`` is built anew each time: together ~0.7 ms of a SQLite agent's 2.8 ms per
no-op trial (py-spy, one agent). With 8 agents on 2 cores that CPU is what bounds them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any, NamedTuple

from optuna.trial import TrialState

from expctl.sweeps.storage import driver_sql, rdb_writes

MISSING = object()  # no such attr (or no such study)


class Reads(NamedTuple):
    study_user_attr: Any  # :study, :key → value_json
    trial_ids: Any  # :study, :states, :after → ids, ascending
    first_trial_ids: Any  # the same, :limit of them


def study_user_attr(storage: Any, study_id: int, key: str) -> Any:
    """The study's user attr ``key``, ``MISSING`` where it has none (or the study is gone:
    ask Optuna then, which says so), ``NotImplemented`` for a storage that is not an RDB."""
    if rdb_writes.helpers(storage) is None:
        return NotImplemented
    compiled = rdb_writes.statements(storage)
    session = storage.scoped_session()  # Optuna's, as its own reads use it
    try:
        if compiled is None:  # MySQL, older libraries
            rows = session.execute(statements().study_user_attr, {"study": study_id, "key": key})
            rows = rows.all()
        else:
            with driver_sql.cursor(session) as db:
                rows = driver_sql.run(db, compiled.study_user_attr, study=study_id, key=key)
        session.commit()  # the read transaction ends (PostgreSQL)
    finally:
        session.close()
    return MISSING if not rows else json.loads(rows[0][0])


def trial_ids(
    storage: Any, study_id: int, states: Sequence[TrialState], after: int, limit: int | None
) -> list[int] | None:
    """Ids of the study's trials in ``states`` past ``after``, ascending (the first ``limit``);
    None for a storage that is not an RDB."""
    if rdb_writes.helpers(storage) is None:
        return None
    reads = statements()
    params: dict[str, Any] = {"study": study_id, "states": list(states), "after": after}
    statement = reads.trial_ids
    if limit is not None:
        statement, params["limit"] = reads.first_trial_ids, limit
    session = storage.scoped_session()
    try:
        ids = list(session.execute(statement, params).scalars())
        session.commit()
    finally:
        session.close()
    return ids


@functools.cache
def statements() -> Reads:
    import sqlalchemy
    from optuna.storages._rdb import models

    attrs = models.StudyUserAttributeModel.__table__
    trials = models.TrialModel.__table__
    ids = (
        sqlalchemy.select(trials.c.trial_id)
        .where(
            trials.c.study_id == sqlalchemy.bindparam("study"),
            trials.c.state.in_(sqlalchemy.bindparam("states", expanding=True)),
            trials.c.trial_id > sqlalchemy.bindparam("after"),
        )
        .order_by(trials.c.trial_id)
    )
    return Reads(
        study_user_attr=sqlalchemy.select(attrs.c.value_json).where(
            attrs.c.study_id == sqlalchemy.bindparam("study"),
            attrs.c.key == sqlalchemy.bindparam("key"),
        ),
        trial_ids=ids,
        first_trial_ids=ids.limit(sqlalchemy.bindparam("limit")),
    )
