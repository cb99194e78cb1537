"""The W&B server backend: hand the sweep to W&B (``wandb.sweep`` / ``wandb.agent``) unchanged.

Deliberately thin: W&B's controller samples, W&B's agent runs the trials. Only what expctl
promises on top is here: ``entity/project/id`` paths, stdout kept for data (``wandb.sweep`` prints
"Create sweep with ID: ..." to stdout, which would break ``SWEEP_ID=$(expctl sweep create ...)``),
a clear error when W&B is switched off (``WANDB_MODE=offline``), and wandb's errors as ExpctlErrors.

Which trial function W&B's agent calls is decided by the caller (``expctl sweep agent``): for
sweeps without ``program`` the local agent's objective, wrapped by
:func:`expctl.sweeps.wandb.trial.wandb_trial_function`; for sweeps with ``program`` none, so W&B's
agent runs the program itself — exactly what ``wandb agent ENTITY/PROJECT/ID`` does.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from expctl.errors import NotFoundError, RuntimeFailure, UsageError

OFFLINE_MODES = {"offline", "disabled", "dryrun"}


def create_cloud_sweep(
    spec_dict: Mapping[str, Any], project: str | None = None, entity: str | None = None
) -> str:
    """Create the sweep on W&B's server; returns ``"entity/project/sweep_id"``.

    ``project``/``entity`` default to the spec's ``project``/``entity`` keys, then
    ``WANDB_PROJECT``/``WANDB_ENTITY``, then (entity only) the logged-in user's default entity.
    """
    import wandb

    _require_online("sweep create --backend wandb")
    project = project or spec_dict.get("project") or os.environ.get("WANDB_PROJECT")
    entity = entity or spec_dict.get("entity") or os.environ.get("WANDB_ENTITY")
    if not project:
        raise UsageError(
            "a W&B sweep needs a project",
            hint="pass --project NAME, or set `project:` in the sweep YAML, or WANDB_PROJECT",
        )
    with _wandb_errors("creating the sweep on W&B"), contextlib.redirect_stdout(sys.stderr):
        sweep_id = wandb.sweep(sweep=dict(spec_dict), project=project, entity=entity)
        if not entity:
            entity = wandb.Api().default_entity
    return f"{entity}/{project}/{sweep_id}"


def is_cloud_sweep_path(sweep_id: str) -> bool:
    """``entity/project/id`` (two slashes) names a W&B-hosted sweep; local ids have none."""
    parts = sweep_id.split("/")
    return len(parts) == 3 and all(parts)


def fetch_cloud_sweep_config(sweep_path: str) -> dict[str, Any]:
    """The sweep's YAML as W&B's server stores it (``wandb.Api().sweep(path).config``)."""
    import wandb

    _require_online("sweep agent on a W&B sweep")
    entity, project, sweep_id = parse_sweep_path(sweep_path)
    path = "/".join(p for p in (entity, project, sweep_id) if p)
    with _wandb_errors(f"reading sweep {sweep_path} from W&B"):
        try:
            config = wandb.Api().sweep(path).config
        except ValueError as e:  # the public API's "Could not find sweep ..."
            raise NotFoundError(
                f"no W&B sweep {sweep_path!r}: {e}",
                hint="use the ENTITY/PROJECT/SWEEP_ID printed by "
                "`expctl sweep create --backend wandb`, and check `wandb login`",
            ) from e
    if not isinstance(config, Mapping):
        raise RuntimeFailure(
            f"W&B returned no sweep config for {sweep_path}",
            hint="check the sweep in W&B's UI; `wandb agent` can still run it",
        )
    return dict(config)


def parse_sweep_path(sweep_path: str) -> tuple[str | None, str | None, str]:
    """``entity/project/id``, ``project/id`` or ``id`` -> (entity, project, id)."""
    parts = sweep_path.strip("/").split("/")
    if not 1 <= len(parts) <= 3 or not all(parts):
        raise UsageError(
            f"not a W&B sweep path: {sweep_path!r}",
            hint="use ENTITY/PROJECT/SWEEP_ID, as printed by `expctl sweep create --backend wandb`",
        )
    padded = [None] * (3 - len(parts)) + parts
    return padded[0], padded[1], parts[-1]


def run_cloud_agent(
    sweep_path: str, count: int | None = None, function: Callable[[], None] | None = None
) -> None:
    """Run W&B's agent on ``sweep_path`` for ``count`` trials (None: until the sweep ends).

    ``function`` is called by W&B once per trial, after W&B has put the trial's parameters where
    ``wandb.init()`` finds them (the same trial function expctl's own agent runs); ``None`` lets
    W&B's agent run the sweep's ``program``/``command`` itself.
    """
    import wandb

    _require_online("sweep agent on a W&B sweep")
    entity, project, sweep_id = parse_sweep_path(sweep_path)
    with _wandb_errors(f"running W&B's agent on {sweep_path}"):
        wandb.agent(sweep_id, function=function, entity=entity, project=project, count=count)


def _require_online(what: str) -> None:
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in OFFLINE_MODES:
        raise UsageError(
            f"{what} needs W&B's server, but WANDB_MODE={mode}",
            hint="unset WANDB_MODE (or set it to online), or use the serverless default backend",
        )


@contextlib.contextmanager
def _wandb_errors(doing: str) -> Iterator[None]:
    import wandb.errors

    try:
        yield
    except wandb.errors.UsageError as e:
        raise UsageError(f"{doing}: {e}", hint="check the sweep spec and `wandb login`") from e
    except wandb.errors.Error as e:
        raise RuntimeFailure(
            f"{doing}: {e}",
            hint="check `wandb login` and network access to W&B, "
            "or run without a server (the default backend)",
        ) from e
