"""A snapshot of a journal's replay, so that opening a journal of 10⁵ trials does not replay
10⁵–10⁶ records (Optuna's own journal took 23 s for 28k trials; ~45 s here for 100k).

``JOURNAL.snapshot`` is a *cache*, never the source of truth: the journal is never rewritten or
truncated by it, so exactly-once claims (log order) are untouched. It holds the state of Optuna's
``JournalStorageReplayResult`` after the first N records — studies and trials as plain values
(``marshal``: ~3× faster to load than pickling Optuna's objects, and it cannot run code), rebuilt
through Optuna's own constructors — with the byte offset of record N+1. An opener restores it and
replays only the records after it. It is used only when it provably belongs to this journal as
it is now:

* the same file (device and inode: ``sweep repair`` and copies replace the file, so a snapshot of
  the old one is ignored), at least ``offset`` bytes long, whose bytes just before ``offset``
  hash as recorded, and where a record starts at ``offset`` (or the file ends there);
* written by this user or the journal's owner, and not writable by others.

It is written to a temporary file, fsynced and renamed into place under a non-blocking lock
(one writer at a time; the others just skip), so a crash (SIGKILL) at any moment leaves the old
snapshot, the new one, or none — each of which opens to exactly the journal's contents. Anything
unexpected (unreadable, truncated, another Optuna's pickle) means: no snapshot, replay it all.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import marshal
import os
import stat
import sys
from pathlib import Path
from typing import Any

# A snapshot is (re)written once this many records were replayed past it: an opener replays
# at most about this many (~1-2 s), and the writer pays one dump (~1 s at 10⁵ trials) per
# this many records.
SNAPSHOT_EVERY = 20_000
_WINDOW = 1 << 20  # the bytes before the offset whose hash ties a snapshot to the journal
_VERSION = 1


# Every attribute of Optuna 5's JournalStorageReplayResult: another Optuna that keeps more (an
# index this module would not fill) gets no snapshot, and replays its journal whole.
_REPLAY_FIELDS = {
    "log_number_read",
    "_worker_id_prefix",
    "_studies",
    "_trials",
    "_study_id_to_trial_ids",
    "_trial_id_to_study_id",
    "_next_study_id",
    "_worker_id_to_owned_trial_id",
}


def _check_fields(replay: Any) -> None:
    fields = set(vars(replay)) - {"_last_created_trial_id_by_this_process"}  # batched_writes'
    if fields != _REPLAY_FIELDS:
        raise ValueError(f"unknown journal replay fields: {sorted(fields ^ _REPLAY_FIELDS)}")


def _plain(replay: Any) -> dict[str, Any]:
    """The replay's state as plain values (what :func:`restore` rebuilds it from)."""
    _check_fields(replay)
    from optuna.distributions import distribution_to_json

    dists: dict[str, int] = {}

    def dist_index(dist: Any) -> int:
        return dists.setdefault(distribution_to_json(dist), len(dists))

    def when(moment: Any) -> str | None:
        return None if moment is None else moment.isoformat()

    trials = [
        (
            t._trial_id,
            t.number,
            int(t.state.value),
            t.values,
            when(t.datetime_start),
            when(t.datetime_complete),
            _shared_keys(t.params),
            {name: dist_index(d) for name, d in t.distributions.items()},
            _shared_keys(t.user_attrs),
            _shared_keys(t.system_attrs),
            t.intermediate_values,
        )
        for t in replay._trials.values()
    ]
    studies = [
        (
            s._study_id,
            s.study_name,
            [int(d.value) for d in s.directions],
            s.user_attrs,
            s.system_attrs,
        )
        for s in replay._studies.values()
    ]
    return {
        "log_number_read": replay.log_number_read,
        "next_study_id": replay._next_study_id,
        "studies": studies,
        "study_trials": replay._study_id_to_trial_ids,
        "trials": trials,
        "distributions": list(dists),
    }


def _shared_keys(attrs: dict[str, Any]) -> dict[str, Any]:
    """The dict with its keys (and those of maps in it) interned: marshal writes a repeated
    object once, which made a snapshot of 10⁵ trials a quarter faster to load."""
    return {
        sys.intern(k): {sys.intern(a): b for a, b in v.items()} if type(v) is dict else v
        for k, v in attrs.items()
    }


# FrozenTrial's constructor arguments -> the attributes it stores them in (Optuna 5)
_TRIAL_ATTRS = {
    "number": "_number",
    "state": "state",
    "values": "_values",
    "datetime_start": "_datetime_start",
    "datetime_complete": "datetime_complete",
    "params": "_params",
    "user_attrs": "_user_attrs",
    "system_attrs": "_system_attrs",
    "intermediate_values": "intermediate_values",
    "distributions": "_distributions",
    "trial_id": "_trial_id",
}


def _trial_builder() -> Any:
    """FrozenTrial's constructor, or — when this Optuna stores its arguments as
    :data:`_TRIAL_ATTRS` says — the same object without re-validating trials that Optuna
    validated when it replayed them (a third of restoring 10⁵ trials)."""
    from optuna.distributions import IntDistribution
    from optuna.trial import FrozenTrial, TrialState

    probe: dict[str, Any] = {
        "number": 0,
        "state": TrialState.COMPLETE,
        "values": [1.0],
        "datetime_start": None,
        "datetime_complete": None,
        "params": {"p": 1},
        "user_attrs": {"u": 1},
        "system_attrs": {"s": 1},
        "intermediate_values": {0: 1.0},
        "distributions": {"p": IntDistribution(0, 2)},
        "trial_id": 7,
    }
    real = FrozenTrial(value=None, **probe)

    def fast(value: None = None, **kwargs: Any) -> Any:
        trial = FrozenTrial.__new__(FrozenTrial)
        trial.__dict__.update({_TRIAL_ATTRS[k]: v for k, v in kwargs.items()})
        return trial

    if real.__dict__ != fast(**probe).__dict__:
        return FrozenTrial
    return fast


def restore(replay: Any, state: dict[str, Any]) -> None:
    """Fill an empty ``JournalStorageReplayResult`` from :func:`_plain`'s values."""
    _check_fields(replay)
    from datetime import datetime

    from optuna.distributions import json_to_distribution
    from optuna.study import StudyDirection
    from optuna.study._frozen import FrozenStudy
    from optuna.trial import TrialState

    dists = [json_to_distribution(text) for text in state["distributions"]]
    moment = datetime.fromisoformat
    for study_id, name, directions, user_attrs, system_attrs in state["studies"]:
        replay._studies[study_id] = FrozenStudy(
            study_name=name,
            direction=None,
            directions=[StudyDirection(d) for d in directions],
            user_attrs=user_attrs,
            system_attrs=system_attrs,
            study_id=study_id,
        )
    states = {int(s.value): s for s in TrialState}
    build = _trial_builder()
    for row in state["trials"]:
        trial_id, number, st, values, start, complete, params, dist_ids, ua, sa, iv = row
        replay._trials[trial_id] = build(
            number=number,
            state=states[st],
            value=None,
            values=values,
            datetime_start=None if start is None else moment(start),
            datetime_complete=None if complete is None else moment(complete),
            params=params,
            distributions={name: dists[i] for name, i in dist_ids.items()},
            user_attrs=ua,
            system_attrs=sa,
            intermediate_values=iv,
            trial_id=trial_id,
        )
    replay._study_id_to_trial_ids = {int(k): list(v) for k, v in state["study_trials"].items()}
    replay._trial_id_to_study_id = {
        t: study for study, ids in replay._study_id_to_trial_ids.items() for t in ids
    }
    replay._next_study_id = int(state["next_study_id"])
    replay.log_number_read = int(state["log_number_read"])
    replay._last_created_trial_id_by_this_process = -1  # as Optuna's own restore sets it


def snapshot_path(journal: str | Path) -> Path:
    return Path(f"{journal}.snapshot")


def load(journal: str | Path) -> tuple[dict[str, Any], int, int] | None:
    """(the replay's state, record count, byte offset) of a snapshot valid for ``journal`` now,
    or None."""
    path = snapshot_path(journal)
    try:
        with open(path, "rb") as f:
            info = os.fstat(f.fileno())
            if not _trusted(info, journal):
                return None
            header = json.loads(f.readline())
            data = f.read()
        if header.get("version") != _VERSION or len(data) != header["size"]:
            return None
        if not _matches(journal, header):
            return None
        state = marshal.loads(data)
        if not isinstance(state, dict) or state.get("log_number_read") != header["lines"]:
            return None
        return state, int(header["lines"]), int(header["offset"])
    except (OSError, ValueError, KeyError, TypeError, EOFError):
        return None


def _trusted(info: os.stat_result, journal: str | Path) -> bool:
    if not stat.S_ISREG(info.st_mode) or info.st_mode & stat.S_IWOTH:
        return False
    try:
        owner = os.stat(journal).st_uid
    except OSError:
        return False
    return info.st_uid in (os.geteuid(), owner)


def _matches(journal: str | Path, header: dict[str, Any]) -> bool:
    offset = int(header["offset"])
    with open(journal, "rb") as f:
        info = os.fstat(f.fileno())
        if (info.st_dev, info.st_ino) != (header["dev"], header["ino"]):
            return False
        if info.st_size < offset:
            return False
        start = max(0, offset - _WINDOW)
        f.seek(start)
        window = f.read(offset - start)
        after = f.read(len(b'{"op_code":'))
    if hashlib.sha256(window).hexdigest() != header["window_sha256"]:
        return False
    return after in (b"", b'{"op_code":') or b'{"op_code":'.startswith(after)


def save(journal: str | Path, replay: Any, lines: int, offset: int) -> bool:
    """Write a snapshot of ``replay`` (the state after ``lines`` records, which end at byte
    ``offset``). False when another process is writing one (this one is then not needed)."""
    import fcntl

    path = snapshot_path(journal)
    lock_fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        with open(journal, "rb") as f:
            info = os.fstat(f.fileno())
            start = max(0, offset - _WINDOW)
            f.seek(start)
            window = f.read(offset - start)
        if len(window) != offset - start:
            return False  # the journal is shorter than what was replayed: replaced meanwhile
        data = marshal.dumps(_plain(replay))
        header = {
            "version": _VERSION,
            "lines": lines,
            "offset": offset,
            "dev": info.st_dev,
            "ino": info.st_ino,
            "window_sha256": hashlib.sha256(window).hexdigest(),
            "size": len(data),
        }
        for stale in path.parent.glob(f"{path.name}.tmp-*"):  # a writer killed mid-write
            with contextlib.suppress(OSError):
                stale.unlink()
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as out:
                out.write(json.dumps(header).encode() + b"\n")
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            with contextlib.suppress(OSError):
                os.chmod(tmp, os.stat(journal).st_mode & 0o644)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return True
    finally:
        os.close(lock_fd)
