"""A trial's steps written together: on an RDB storage one transaction each — a claim with its
``claim`` attr, a finish with its ``result`` attr (on a journal, one append: journal_writes).

Optuna's ``RDBStorage`` commits each call, so a claim (the pop, then the attr) and a finish (the
attr, then the state) were two commits each. On SQLite a commit is two fsyncs under the
database's one write lock, which every agent of the machine queues for: four per trial made the
lock the agents' bottleneck. Here each step is one transaction, written through Optuna's own
helpers (``_set_trial_attr_without_commit``, ``_set_trial_value_without_commit``: the upserts and
checks its public methods run); where they are missing (another Optuna), Optuna's public calls,
one commit each.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from optuna.trial import TrialState


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
    """``set_trial_user_attr`` for each of ``attrs``, inside the caller's ``session``."""
    models = helpers(storage)
    for key, value in attrs.items():
        storage._set_trial_attr_without_commit(
            session, models.TrialUserAttributeModel, trial_id, key, value
        )


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
        from optuna.storages._rdb.storage import _create_scoped_session

        try:
            with _create_scoped_session(storage.scoped_session) as session:
                # the row locked and checked before anything is written, as
                # set_trial_state_values does: an agent that failed the trial meanwhile wins,
                # and nothing of ours is kept (the check's error path commits the thread's
                # session: it must hold nothing yet)
                trial = models.TrialModel.find_or_raise_by_id(trial_id, session, for_update=True)
                storage.check_trial_is_updatable(trial_id, trial.state)
                write_user_attrs(storage, session, trial_id, user_attrs)
                for objective, value in enumerate(values or ()):
                    storage._set_trial_value_without_commit(session, trial, objective, value)
                trial.state = state
                trial.datetime_complete = datetime.now()
            return
        except sqlalchemy.exc.IntegrityError:  # Optuna's calls each ignore it: do as they do
            pass
    # Optuna's public calls, one commit each (one append on a journal)
    from expctl.sweeps.storage.journal_writes import batched_writes

    with batched_writes(storage):
        for key, value in user_attrs.items():
            storage.set_trial_user_attr(trial_id, key, value)
        storage.set_trial_state_values(trial_id, state, values)
