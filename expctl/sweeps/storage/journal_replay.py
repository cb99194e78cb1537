"""Optuna's journal replay, the same state at a third of the cost per record.

Every agent replays every record every other agent appends: with 8 agents a trial's records
are parsed and applied 8 times, and that replay was half of what 8 agents spent per trial
(measured, ``benchmarks/sweeps.py``). Optuna's ``JournalStorageReplayResult`` copies a trial
with :func:`copy.copy` (its generic reduce protocol) on every update, converts each timestamp
to local time through the time-zone database, and re-parses a parameter's distribution from
its JSON on every record. :class:`FastReplay` applies the frequent records — a trial's
parameter, state and attributes — with the same checks and errors in the same order, and
leaves every other record to Optuna. ``tests/test_journal_replay.py`` replays journals both
ways and compares the results field by field.
"""

from __future__ import annotations

import functools
import os
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from optuna.distributions import BaseDistribution, json_to_distribution
from optuna.storages.journal._storage import JournalOperation, JournalStorageReplayResult
from optuna.trial import FrozenTrial, TrialState

_RUNNING = TrialState.RUNNING
_STATES = {state.value: state for state in TrialState}


class FastReplay(JournalStorageReplayResult):
    """:class:`JournalStorageReplayResult` with fast paths for the records of a trial's life.

    It keeps no attribute Optuna's does not (snapshots check the set)."""

    def apply_logs(self, logs: Any) -> None:
        apply = _FAST
        for log in logs:
            handler = apply.get(log["op_code"])
            if handler is None:  # anything else: Optuna's own code (it counts the record)
                JournalStorageReplayResult.apply_logs(self, (log,))
                continue
            self.log_number_read += 1
            handler(self, log)

    def _apply_create_trial(self, log: dict[str, Any]) -> None:
        study_id = log["study_id"]
        if not self._study_exists(study_id, log):
            return
        trial_id = len(self._trials)
        distributions = {k: _distribution(v) for k, v in log.get("distributions", {}).items()}
        params = {k: distributions[k].to_external_repr(p) for k, p in log.get("params", {}).items()}
        start = log["datetime_start"]  # the times before the rest, as Optuna reads them
        datetime_start = None if start is None else local_naive(start)
        complete = local_naive(log["datetime_complete"]) if "datetime_complete" in log else None
        trial = FrozenTrial(
            trial_id=trial_id,
            number=len(self._study_id_to_trial_ids[study_id]),
            state=TrialState(log.get("state", TrialState.RUNNING.value)),
            params=params,
            distributions=distributions,
            user_attrs=log.get("user_attrs", {}),
            system_attrs=log.get("system_attrs", {}),
            value=log.get("value"),
            intermediate_values={int(k): v for k, v in log.get("intermediate_values", {}).items()},
            datetime_start=datetime_start,
            datetime_complete=complete,
            values=log.get("values"),
        )
        self._trials[trial_id] = trial
        self._study_id_to_trial_ids[study_id].append(trial_id)
        self._trial_id_to_study_id[trial_id] = study_id
        if self._is_issued_by_this_worker(log):
            self._last_created_trial_id_by_this_process = trial_id
            if trial.state == TrialState.RUNNING:
                self._worker_id_to_owned_trial_id[self.worker_id] = trial_id

    def _apply_set_trial_param(self, log: dict[str, Any]) -> None:
        trial_id = log["trial_id"]
        if not self._trial_exists_and_updatable(trial_id, log):
            return
        name = log["param_name"]
        internal = log["param_value_internal"]  # read in Optuna's order: a missing key first
        distribution = _distribution(log["distribution"])
        if not _compatible_with_first(self, trial_id, name, distribution, log):
            return
        trial = _copy(self._trials[trial_id])
        trial.params = {
            **trial.params,
            name: distribution.to_external_repr(internal),
        }
        trial.distributions = {**trial.distributions, name: distribution}
        self._trials[trial_id] = trial

    def _apply_set_trial_state_values(self, log: dict[str, Any]) -> None:
        trial_id = log["trial_id"]
        if not self._trial_exists_and_updatable(trial_id, log):
            return
        value = log["state"]
        state = _STATES.get(value) if type(value) is int else None
        if state is None:
            state = TrialState(value)  # raises as Optuna's would
        if state == _RUNNING and self._trials[trial_id].state == _RUNNING:
            return  # popped by another process first: this claim lost
        trial = _copy(self._trials[trial_id])
        if state == _RUNNING:
            trial.datetime_start = local_naive(log["datetime_start"])
            if self._is_issued_by_this_worker(log):
                self._worker_id_to_owned_trial_id[self.worker_id] = trial_id
        if state.is_finished():
            trial.datetime_complete = local_naive(log["datetime_complete"])
        trial.state = state
        if log["values"] is not None:
            trial.values = log["values"]
        self._trials[trial_id] = trial

    def _apply_set_trial_user_attr(self, log: dict[str, Any]) -> None:
        self._set_attr(log, "user_attr", "user_attrs")

    def _apply_set_trial_system_attr(self, log: dict[str, Any]) -> None:
        self._set_attr(log, "system_attr", "system_attrs")

    def _set_attr(self, log: dict[str, Any], key: str, attrs: str) -> None:
        trial_id = log["trial_id"]
        if self._trial_exists_and_updatable(trial_id, log):
            assert len(log[key]) == 1
            trial = _copy(self._trials[trial_id])
            setattr(trial, attrs, {**getattr(trial, attrs), **log[key]})
            self._trials[trial_id] = trial


_FAST = {
    JournalOperation.CREATE_TRIAL.value: FastReplay._apply_create_trial,
    JournalOperation.SET_TRIAL_PARAM.value: FastReplay._apply_set_trial_param,
    JournalOperation.SET_TRIAL_STATE_VALUES.value: FastReplay._apply_set_trial_state_values,
    JournalOperation.SET_TRIAL_USER_ATTR.value: FastReplay._apply_set_trial_user_attr,
    JournalOperation.SET_TRIAL_SYSTEM_ATTR.value: FastReplay._apply_set_trial_system_attr,
}


def _copy(trial: FrozenTrial) -> FrozenTrial:
    """``copy.copy(trial)`` (a new instance with the same ``__dict__``), without the reduce
    protocol's detour."""
    new = FrozenTrial.__new__(FrozenTrial)
    new.__dict__.update(trial.__dict__)
    return new


# A sweep's records name a handful of distributions, each thousands of times. Distributions
# are never mutated once built (Optuna's own copies share them), so one instance serves all.
_distribution = functools.lru_cache(maxsize=1024)(json_to_distribution)


def _compatible_with_first(
    replay: JournalStorageReplayResult,
    trial_id: int,
    name: str,
    distribution: BaseDistribution,
    log: dict[str, Any],
) -> bool:
    """Optuna's check: the first trial of the study with this parameter must have a compatible
    distribution; an incompatible one raises for its own writer and is skipped for others."""
    from optuna.distributions import check_distribution_compatibility

    trials = replay._trials
    for earlier in replay._study_id_to_trial_ids[replay._trial_id_to_study_id[trial_id]]:
        if name not in trials[earlier].params:
            continue
        first = trials[earlier].distributions[name]
        if first is distribution:
            return True
        try:
            check_distribution_compatibility(first, distribution)
        except Exception:
            if replay._is_issued_by_this_worker(log):
                raise
            return False
        return True
    return True


# -- timestamps ------------------------------------------------------------------------------

_OFFSET_SPAN_S = 900  # no time zone changes its offset twice within 15 minutes
_offsets: dict[int, timedelta] = {}
_offsets_zone: tuple[Any, ...] = ()  # the zone they are for (time.tzset() may change it)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_SECOND = timedelta(seconds=1)


def local_naive(text: str) -> datetime:
    """``datetime.fromisoformat(text).astimezone().replace(tzinfo=None)``, as Optuna stores a
    record's time, with the local offset looked up once per 15 minutes instead of per record
    (``astimezone`` asks the C library's time-zone code each time: half of a state record's
    cost)."""
    moment = datetime.fromisoformat(text)
    offset = moment.utcoffset()
    if offset is not None:  # a naive time is taken as local time: astimezone() below
        try:
            # whole seconds, as astimezone() takes them (a float rounds .999999 up by 2500)
            local = _local_offset((moment - _EPOCH) // _SECOND)
            if local is not None:
                return moment.replace(tzinfo=None) - offset + local
        except (OverflowError, OSError, ValueError):
            pass  # at the ends of datetime's range: astimezone() says what it says
    return moment.astimezone().replace(tzinfo=None)


def _local_offset(timestamp: int) -> timedelta | None:
    """The local UTC offset at ``timestamp``, None where it changes within its 15 minutes."""
    global _offsets_zone
    # zones can share names and offsets and differ in their rules: TZ tells them apart
    zone = (os.environ.get("TZ"), time.timezone, time.altzone, time.tzname)
    if zone != _offsets_zone:
        _offsets.clear()
        _offsets_zone = zone
    span = int(timestamp // _OFFSET_SPAN_S)
    known = _offsets.get(span)
    if known is not None:
        return known
    try:
        start = time.localtime(span * _OFFSET_SPAN_S).tm_gmtoff
        end = time.localtime((span + 1) * _OFFSET_SPAN_S - 1).tm_gmtoff
    except (OverflowError, OSError, ValueError):
        return None
    if start != end:
        return None  # a daylight-saving change inside: each time asks for itself
    if len(_offsets) > 4096:
        _offsets.clear()
    _offsets[span] = known = timedelta(seconds=start)
    return known
