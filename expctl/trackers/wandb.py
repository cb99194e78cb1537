"""Weights & Biases tracking as a thin wrapper: online, offline or disabled.

* ``wandb.mode: auto`` is online only when credentials exist (``WANDB_API_KEY`` or a netrc entry
  for the W&B host), offline otherwise — a compute node without network never waits on one.
  ``WANDB_MODE`` in the environment wins over the config, as it does for wandb itself.
* wandb is imported only when the mode is not ``disabled`` (the import alone costs ~1 s).
* The run is always finished with the process's exit code (also on crash and interrupt); an
  offline run hands back the ``wandb sync`` command that uploads it later.

Library code: nothing here prints. Notes for the user (a fallback to offline, say) are collected
in :attr:`Tracker.notes` for the CLI to show.
"""

from __future__ import annotations

import contextlib
import netrc
import os
import re
import shlex
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from expctl.errors import ConfigError
from expctl.secrets import redact, scrub
from expctl.trackers.base import Guarded, NullTracker, Tracker
from expctl.trackers.base import first_line as _first_line
from expctl.trackers.base import jsonable as _jsonable

MODES = ("auto", "online", "offline", "disabled")
# WANDB_MODE values wandb itself accepts, mapped to what they mean here.
_ENV_MODES = {
    "online": "online",
    "run": "online",
    "shared": "online",
    "offline": "offline",
    "dryrun": "offline",
    "disabled": "disabled",
}
DEFAULT_HOST = "api.wandb.ai"
ONLINE_INIT_TIMEOUT_S = 30.0  # wandb's own default is 90 s; WANDB_INIT_TIMEOUT overrides both
# auto mode falls back to offline when the server is unreachable: give up sooner
AUTO_INIT_TIMEOUT_S = 15.0
# The W&B summary keeps W&B's default for each metric, its last value (what the runs table, the
# sweep controller and summary.json's final_metrics show); the best epoch's values go beside it
# under this prefix (best/val_loss, best/epoch: summary.json's best_metrics).
BEST_PREFIX = "best/"


# -- mode ---------------------------------------------------------------------------------------


def has_credentials(env: Mapping[str, str] | None = None, netrc_file: Path | None = None) -> bool:
    """An API key in the environment, or a netrc login for the W&B host."""
    env = os.environ if env is None else env
    if env.get("WANDB_API_KEY"):
        return True
    host = urlparse(env.get("WANDB_BASE_URL") or f"https://{DEFAULT_HOST}").hostname or DEFAULT_HOST
    path = netrc_file or Path(env.get("NETRC") or Path.home() / ".netrc")
    try:
        entry = netrc.netrc(str(path)).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return False
    return bool(entry and entry[2])


def resolve_mode(
    configured: Any, env: Mapping[str, str] | None = None, credentials: bool | None = None
) -> str:
    """``online``, ``offline`` or ``disabled``: WANDB_MODE, then the config, then credentials."""
    env = os.environ if env is None else env
    if str(env.get("WANDB_DISABLED", "")).lower() in {"1", "true", "yes"}:
        return "disabled"
    env_mode = env.get("WANDB_MODE", "").strip().lower()
    if env_mode:
        if env_mode not in _ENV_MODES:
            raise ConfigError(
                f"WANDB_MODE={env_mode!r} is not a W&B mode",
                hint=f"use one of {', '.join(sorted(_ENV_MODES))}, or unset WANDB_MODE",
            )
        return _ENV_MODES[env_mode]
    mode = str(configured if configured is not None else "auto").strip().lower()
    if mode not in MODES:
        raise ConfigError(
            f"unknown W&B mode {configured!r}",
            hint=f"use one of {', '.join(MODES)}",
            where="wandb.mode",
        )
    if mode == "auto":
        has = has_credentials(env) if credentials is None else credentials
        return "online" if has else "offline"
    return mode


# -- trackers -----------------------------------------------------------------------------------


class WandbTracker(Guarded):
    """A wandb run that can never stop the training: if W&B fails mid-run (its service process
    killed by a job-wide SIGTERM, a full disk, a network error online), the failure is noted
    once and the run goes on without it — the local record is complete either way."""

    backend = "wandb"
    label = "W&B"

    def __init__(self, run: Any, mode: str, notes: list[str]):
        self.run = run
        self.mode = mode
        self.run_id: str | None = run.id
        self.path: str | None = "/".join(p for p in (run.entity, run.project, run.id) if p)
        self.notes = notes
        sync_dir = getattr(run.settings, "sync_dir", None)
        self.sync_dir: Path | None = (
            Path(sync_dir).resolve() if sync_dir and mode == "offline" else None
        )
        self._finished = False
        self.broken = False

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        self._guarded("log", lambda: self.run.log(dict(metrics), step=step))

    def log_checkpoints(
        self, name: str, files: Sequence[Path], best: Path | None, metadata: Mapping[str, Any]
    ) -> None:
        """One ``model`` artifact holding the kept checkpoints; aliases latest and best."""
        if not files:
            return

        def log() -> None:
            import wandb

            meta = {**metadata, "best_file": best.name if best else None}
            artifact = wandb.Artifact(artifact_name(name), type="model", metadata=_jsonable(meta))
            for f in files:
                artifact.add_file(str(f), name=f.name)
            self.run.log_artifact(artifact, aliases=["latest", "best"])

        self._guarded("log_artifact", log)

    def summarize(self, values: Mapping[str, float]) -> None:
        """Set summary keys beside W&B's own last-value ones (never instead of them)."""
        self._guarded("summary", lambda: self.run.summary.update(dict(values)))

    def finish(self, exit_code: int) -> str | None:
        """Finish once with ``exit_code``; an offline run returns its ``wandb sync`` command."""
        if self._finished:
            return None
        self._finished = True
        self._guarded("finish", lambda: self.run.finish(exit_code=exit_code))
        # what reached the offline run before any failure is there to upload
        return sync_command([self.sync_dir]) if self.sync_dir else None


def start_tracker(
    wandb_cfg: Mapping[str, Any] | None,
    *,
    run_name: str,
    config: Mapping[str, Any],
    run_id: str | None = None,
    group: str | None = None,
    env: Mapping[str, str] | None = None,
    directory: Path | None = None,
    git: Mapping[str, str] | None = None,
) -> Tracker:
    """Start tracking as configured (``wandb`` node; missing = ``mode: auto``).

    ``git``: wandb.Settings git fields (``git_commit``, ``git_remote_url``) from the run's
    provenance, so W&B records the commit the run's record names.

    ``directory``: where the W&B run's files go (``DIRECTORY/wandb/offline-run-*``) unless
    ``WANDB_DIR`` says otherwise: the trainer passes its run directory, so a run directory is
    the whole record of a run — copied, synced or deleted as one.

    ``run_id`` resumes an earlier W&B run (``expctl run --resume``); ``group`` overrides
    ``wandb.group`` (the sweep agent groups its trials). When a wandb run is already open in
    this process (``wandb.run``), it is reused as is and the other settings are ignored.
    """
    # One decision table in one place (reuse an open run, resolve the mode, init, fall back to
    # offline once), so every way W&B can start or fail is visible together.
    active = active_wandb_run()
    if active is not None:
        # Opened by the trial function W&B's sweep agent calls (`expctl sweep agent
        # ENTITY/PROJECT/ID`) to read wandb.config: log into it. Its sweep values win, as in
        # wandb.init.
        active.config.setdefaults(dict(config))
        mode = "disabled" if active.disabled else "offline" if active.offline else "online"
        return WandbTracker(active, mode, [])
    settings = dict(wandb_cfg or {})
    mode = resolve_mode(settings.get("mode"), env)
    if mode == "disabled":
        return NullTracker()
    notes: list[str] = []
    kwargs = _init_kwargs(settings, run_name, config, run_id, group)
    if directory is not None and not (env if env is not None else os.environ).get("WANDB_DIR"):
        kwargs["dir"] = str(directory)
    configured_auto = str(settings.get("mode") or "auto").lower() == "auto"
    timeout = AUTO_INIT_TIMEOUT_S if configured_auto else ONLINE_INIT_TIMEOUT_S
    git_settings = dict(git or {})
    try:
        run = _init(mode, kwargs, timeout, git_settings)
    except Exception as e:
        if mode == "online" and configured_auto and not os.environ.get("WANDB_MODE"):
            # auto chose online because credentials exist, but the server is unreachable
            # (typical on compute nodes): keep training and record offline for a later sync.
            notes.append(f"W&B online init failed ({_first_line(e)}); logging offline instead")
            mode = "offline"
            try:
                run = _init(mode, kwargs, timeout, git_settings)
            except Exception as offline_error:
                return without_wandb(notes, mode, offline_error)
        else:
            return without_wandb(notes, mode, e)
    # No define_metric(summary="min"): it replaces W&B's last-value summary of the metric, and
    # the runs table and the sweep objective would then disagree with the run's final value.
    return WandbTracker(run, mode, notes)


def _init_kwargs(
    settings: Mapping[str, Any],
    run_name: str,
    config: Mapping[str, Any],
    run_id: str | None,
    group: str | None,
) -> dict[str, Any]:
    """``wandb.init``'s run arguments from the ``wandb`` node (free text scrubbed of secrets,
    the config redacted); ``run_id`` resumes that W&B run."""
    return {
        "project": settings.get("project") or os.environ.get("WANDB_PROJECT") or "expctl",
        "entity": settings.get("entity") or None,
        "name": scrub(str(settings.get("name") or run_name)),
        "group": group or settings.get("group") or None,
        "tags": [scrub(str(t)) for t in settings.get("tags") or []] or None,
        "notes": scrub(str(settings["notes"])) if settings.get("notes") else None,
        "config": redact(dict(config)),
        "id": run_id,
        "resume": "allow" if run_id else None,
    }


def without_wandb(notes: list[str], mode: str, error: BaseException) -> NullTracker:
    """W&B did not start: train anyway (the local record is the record), say so once."""
    tracker = NullTracker()
    tracker.notes = [
        *notes,
        f"W&B init failed in {mode} mode ({_first_line(error)}); training without W&B — for "
        "a later upload train with wandb.mode=offline, or set wandb.mode=disabled",
    ]
    return tracker


def active_wandb_run() -> Any:
    """``wandb.run`` when this process has one open; never imports wandb (~1 s) to find out."""
    return getattr(sys.modules.get("wandb"), "run", None)


def _init(mode: str, kwargs: dict[str, Any], timeout: float, git: Mapping[str, str]) -> Any:
    import wandb

    env_timeout = os.environ.get("WANDB_INIT_TIMEOUT")
    settings = wandb.Settings(
        silent=True,
        console="off",  # our progress bar owns the terminal; no stdout capture overhead
        init_timeout=float(env_timeout) if env_timeout else timeout,
        git_commit=git.get("git_commit"),
        git_remote_url=git.get("git_remote_url"),
    )
    with _redacted_argv():
        return wandb.init(mode=mode, settings=settings, reinit="create_new", **kwargs)  # type: ignore[arg-type]


@contextlib.contextmanager
def _redacted_argv() -> Iterator[None]:
    """wandb records ``sys.argv`` as the run's arguments (uploaded by `wandb sync`): hand it a
    copy with secret overrides hidden. It reads argv while ``wandb.init`` runs."""
    from expctl.secrets import redact_argv

    original = sys.argv
    sys.argv = redact_argv(original)
    try:
        yield
    finally:
        sys.argv = original


def sync_command(directories: Sequence[Path | str]) -> str:
    """``wandb sync DIR...``: uploads offline runs (a resumed run has one dir per attempt)."""
    return "wandb sync " + " ".join(shlex.quote(str(d)) for d in directories)


def artifact_name(name: str) -> str:
    """W&B artifact names allow letters, digits, ``-``, ``_`` and ``.`` only."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "model"
