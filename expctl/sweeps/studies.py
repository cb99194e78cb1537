"""Sweeps as Optuna studies: creating one, finding them, and what is stored about each.

Layout in the storage (study name = the 8-character sweep id, like W&B's):

* study user attrs ``expctl:*``: the sweep YAML as given (``spec``), ``state``
  (running | stopped | finished), config dir/name, planned run count, creation time;
* study system attrs ``expctl:agent:HOST:PID``: each agent's own heartbeat;
* trial user attrs: ``expctl:params`` (the W&B values; Optuna's own params hold the *latent*
  values, see :mod:`expctl.sweeps.distributions`), ``expctl:claim`` (which agent),
  ``expctl:retry_of`` (a re-queued trial), ``expctl:result`` (run dir, metrics, message);
* trial system attr ``expctl:heartbeat``: a timestamp the owning agent refreshes.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import string
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from expctl.errors import NotFoundError, SpecError, did_you_mean_hint
from expctl.sweeps.spec import SweepSpec, parse_spec
from expctl.sweeps.storage import StorageHandle, describe

PREFIX = "expctl:"
AGENT_PREFIX = PREFIX + "agent:"
STATES = ("running", "stopped", "finished")
_ID_ALPHABET = string.ascii_lowercase + string.digits


def new_sweep_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))


def agent_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class SweepInfo:
    id: str
    spec: SweepSpec
    state: str
    created: str
    config_dir: str | None
    config_name: str
    planned: int | None
    overrides: tuple[str, ...] = ()
    raw_keys: dict[str, str] = field(default_factory=dict)
    finished_reason: str | None = None

    @property
    def name(self) -> str | None:
        return self.spec.name

    @property
    def display_name(self) -> str:
        """The name to show: the spec's, else what it runs (W&B names sweeps itself)."""
        spec = self.spec
        if spec.name:
            return spec.name
        if spec.program:
            return Path(spec.program).name
        return " ".join(spec.command) if spec.command else f"{spec.method} over {self.config_name}"


def info_from_attrs(sweep_id: str, attrs: dict[str, Any]) -> SweepInfo:
    raw = attrs[PREFIX + "spec"]
    spec = parse_spec(raw, source=attrs.get(PREFIX + "source", sweep_id))
    return SweepInfo(
        id=sweep_id,
        spec=spec,
        state=attrs.get(PREFIX + "state", "running"),
        created=attrs.get(PREFIX + "created", ""),
        config_dir=attrs.get(PREFIX + "config_dir"),
        config_name=attrs.get(PREFIX + "config_name", "config"),
        planned=attrs.get(PREFIX + "planned"),
        overrides=tuple(attrs.get(PREFIX + "overrides", ())),
        raw_keys=dict(attrs.get(PREFIX + "raw_keys", {})),
        finished_reason=attrs.get(PREFIX + "finished_reason"),
    )


def create_sweep(
    spec: SweepSpec,
    handle: StorageHandle,
    *,
    config_dir: Path | str | None = None,
    config_name: str = "config",
    overrides: tuple[str, ...] | list[str] = (),
    raw_keys: dict[str, str] | None = None,
    sweep_id: str | None = None,
) -> SweepInfo:
    """Create the study, store the spec, and enqueue the method's points (a grid's every
    point). Returns the new sweep."""
    import optuna

    from expctl.sweeps.methods import method_for
    from expctl.sweeps.storage.journal_writes import batched_writes

    method = method_for(spec)
    points = method.points_to_enqueue()
    planned = method.planned()
    sweep_id = sweep_id or new_sweep_id()
    study = optuna.create_study(
        study_name=sweep_id,
        storage=handle.storage,
        directions=spec.directions,  # one per objective: `metrics` makes a multi-objective study
    )
    attrs: dict[str, Any] = {
        "spec": json.loads(json.dumps(spec.raw, default=str)),
        "source": spec.source,
        "state": "running",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config_dir": str(config_dir) if config_dir is not None else None,
        "config_name": config_name,
        "planned": planned,
        "overrides": list(overrides),
        "raw_keys": raw_keys or {},
    }
    try:
        with batched_writes(handle.storage):  # the journal: one append for every point
            for point in points:
                handle.storage.create_new_trial(study._study_id, method.queued_trial(point))
        # the spec last: a sweep without it is not listed, so a failed create leaves no sweep
        for key, value in attrs.items():
            study.set_user_attr(PREFIX + key, value)
    except BaseException:
        with contextlib.suppress(Exception):
            handle.storage.delete_study(study._study_id)
        raise
    return info_from_attrs(sweep_id, study.user_attrs)


def known_sweeps(handle: StorageHandle) -> list[SweepInfo]:
    """Every expctl sweep in the storage (studies without expctl's attrs are skipped)."""
    result = []
    for frozen in handle.storage.get_all_studies():
        if PREFIX + "spec" not in frozen.user_attrs:
            continue
        try:
            result.append(info_from_attrs(frozen.study_name, frozen.user_attrs))
        except SpecError:
            continue
    return sorted(result, key=lambda info: info.created)


def not_found(sweep_id: str, handle: StorageHandle) -> NotFoundError:
    known = [info.id for info in known_sweeps(handle)]
    listing = ", ".join(known[-10:]) if known else "none"
    hint = f"known sweeps in {describe(handle.url)}: {listing}"
    close = did_you_mean_hint(sweep_id, known, shown=str)
    hint = close + hint
    if not known:
        hint += " (create one with `expctl sweep create SWEEP.yaml`, or pass the --storage it used)"
    elif not close:  # it may live in another storage
        hint += "; a sweep created with --storage (or EXPCTL_STORAGE) is found with the same"
    return NotFoundError(f"no sweep {sweep_id!r}", hint=hint)
