"""Trackers: where a run's metrics go besides its own record — W&B (the default), TensorBoard,
MLflow, CSV, or several at once — chosen by the ``logger`` config group, as in
lightning-hydra-template (``logger=tensorboard``, ``logger=[tensorboard,mlflow]``).

* :mod:`~expctl.trackers.base` — the :class:`~expctl.trackers.base.Tracker` protocol the trainer
  logs through (``log``, ``log_checkpoints``, ``summarize``, ``finish``) and ``describe()``,
  what summary.json's ``tracking`` list keeps;
* one module per backend (:mod:`~expctl.trackers.wandb`, :mod:`~expctl.trackers.tensorboard`,
  :mod:`~expctl.trackers.mlflow`, :mod:`~expctl.trackers.csv`), each importing its library only
  when it starts; :mod:`~expctl.trackers.multi` fans out to several;
* :func:`start_trackers` — the one factory: checks the choice at once (unknown backend, bad
  W&B mode, a backend's package missing → :class:`~expctl.errors.ConfigError`, exit 2), then
  starts every backend on one helper thread (expctl.trackers.background) so training never waits.

The config: ``cfg.logger`` maps backend names to their settings (``logger.mlflow.tracking_uri``);
W&B's settings are the top-level ``wandb`` node, which ``logger.wandb`` may extend. A config
without a ``logger`` node (the course's, older projects') means W&B with its ``wandb`` node.

Adding a backend: a module with a ``start_<name>(settings, ...)`` returning a
:class:`~expctl.trackers.base.LocalTracker` subclass, its name in :data:`BACKENDS` and
:func:`_start_one`, and ``configs/logger/<name>.yaml``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from expctl.errors import ConfigError
from expctl.trackers.base import NullTracker, Tracker, describe

BACKENDS = ("wandb", "tensorboard", "mlflow", "csv")
# the package each backend needs (checked without importing it) and the extra that installs it
_PACKAGES = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow")}
_LABELS = {"wandb": "W&B", "tensorboard": "TensorBoard", "mlflow": "MLflow", "csv": "CSV logger"}

__all__ = ["BACKENDS", "NullTracker", "Tracker", "describe", "start_trackers"]


def check_available(backends: Mapping[str, Any]) -> None:
    """Each chosen backend's package is installed (a ConfigError naming the extra otherwise)."""
    for name in backends:
        if name not in _PACKAGES:
            continue
        package, extra = _PACKAGES[name]
        if importlib.util.find_spec(package) is None:
            raise ConfigError(
                f"logger={name} needs the {package!r} package, which is not installed",
                hint=f"pip install 'expctl[{extra}]' (or pick another logger: "
                f"{', '.join(BACKENDS)})",
                where=f"logger.{name}",
            )


def start_trackers(
    loggers: Mapping[str, Mapping[str, Any] | None],
    *,
    run_name: str,
    config: Mapping[str, Any],
    run_ids: Mapping[str, str | None] | None = None,
    group: str | None = None,
    directory: Path | None = None,
    git: Callable[[], Mapping[str, str]] | None = None,
) -> Tracker:
    """Start the chosen backends (``{backend: settings}``, in order) on a helper thread.

    ``run_ids``: a resumed run's earlier run id per backend (W&B and MLflow continue that run);
    ``group``: the sweep id (W&B's group, an MLflow tag); ``directory``: the run directory,
    where every local backend writes; ``git`` is called on the helper thread (W&B's git fields).
    Only W&B disabled (or nothing chosen) → the NullTracker: no thread, no import.
    """
    from expctl.trackers.background import BackgroundTracker

    check_choice(loggers)
    starts, expected = _planned_starts(
        loggers,
        run_name=run_name,
        config=config,
        run_ids=dict(run_ids or {}),
        group=group,
        directory=directory,
        git=git,
    )
    if not starts:
        return NullTracker()

    def start_all() -> Tracker:
        from expctl.trackers.multi import MultiTracker

        members = [_guarded_start(name, start, expected) for name, start in starts]
        return members[0] if len(members) == 1 else MultiTracker(members)

    return BackgroundTracker(start_all, expected)


def warm_up(loggers: Mapping[str, Mapping[str, Any] | None]) -> None:
    """Import wandb on a helper thread now when it will start (a W&B logger not disabled): the
    import is most of W&B's start-up (~1 s), which a short run's end would otherwise wait for.
    Called as a run starts, before its model is built; never raises, never opens a run."""
    from expctl.trackers.wandb import active_wandb_run, resolve_mode

    if "wandb" not in loggers or active_wandb_run() is not None or "wandb" in sys.modules:
        return
    try:
        if resolve_mode((loggers["wandb"] or {}).get("mode")) == "disabled":
            return
    except ConfigError:
        return  # start_trackers reports it
    threading.Thread(target=_import_wandb, name="expctl-wandb-import", daemon=True).start()


def _import_wandb() -> None:
    with contextlib.suppress(Exception):
        import wandb  # noqa: F401


def check_choice(loggers: Mapping[str, Any]) -> None:
    """Every chosen backend is known and its package installed (a ConfigError otherwise)."""
    unknown = [name for name in loggers if name not in BACKENDS]
    if unknown:
        raise ConfigError(
            f"unknown logger {unknown[0]!r}",
            hint=f"use one of {', '.join(BACKENDS)} (logger=NAME, or logger=[a,b] for several)",
            where=f"logger.{unknown[0]}",
        )
    check_available(loggers)


def _planned_starts(
    loggers: Mapping[str, Mapping[str, Any] | None],
    *,
    run_name: str,
    config: Mapping[str, Any],
    run_ids: dict[str, str | None],
    group: str | None,
    directory: Path | None,
    git: Callable[[], Mapping[str, str]] | None,
) -> tuple[list[tuple[str, Callable[[], Tracker]]], str]:
    """How to start each backend (on the helper thread), in order, and W&B's mode as far as
    it is known before it starts (a bad mode is an error now; ``disabled`` starts nothing)."""
    from expctl.trackers.wandb import active_wandb_run, resolve_mode, start_tracker

    starts: list[tuple[str, Callable[[], Tracker]]] = []
    expected = "disabled"
    for name, raw in loggers.items():
        settings = dict(raw or {})
        if name == "wandb":
            if active_wandb_run() is not None:  # reused as it is: nothing slow to start
                tracker = start_tracker(settings, run_name=run_name, config=config)
                expected = tracker.mode
                starts.append((name, lambda tracker=tracker: tracker))  # type: ignore[misc]
                continue
            expected = resolve_mode(settings.get("mode"))  # a bad mode is an error now
            if expected == "disabled":
                continue

            def start_wandb(settings: dict[str, Any] = settings) -> Tracker:
                return start_tracker(
                    settings,
                    run_name=run_name,
                    config=config,
                    run_id=run_ids.get("wandb"),
                    group=group,
                    directory=directory,
                    git=git() if git is not None else None,
                )

            starts.append((name, start_wandb))
        else:
            starts.append(
                (
                    name,
                    lambda name=name, settings=settings: _start_one(  # type: ignore[misc]
                        name, settings, run_name, config, directory, run_ids.get(name), group
                    ),
                )
            )
    return starts, expected


def _start_one(
    name: str,
    settings: dict[str, Any],
    run_name: str,
    config: Mapping[str, Any],
    directory: Path | None,
    run_id: str | None,
    group: str | None,
) -> Tracker:
    if name == "tensorboard":
        from expctl.trackers.tensorboard import start_tensorboard

        return start_tensorboard(settings, run_dir=directory, config=config)
    if name == "mlflow":
        from expctl.trackers.mlflow import start_mlflow

        return start_mlflow(
            settings,
            run_name=run_name,
            config=config,
            run_dir=directory,
            run_id=run_id,
            group=group,
        )
    if name == "csv":
        from expctl.trackers.csv import start_csv

        return start_csv(settings, run_dir=directory)
    raise AssertionError(name)


def _guarded_start(name: str, start: Callable[[], Tracker], mode: str) -> Tracker:
    """A backend that cannot start is one note; the run and the other backends go on."""
    try:
        return start()
    except Exception as e:
        if name == "wandb":
            from expctl.trackers.wandb import without_wandb

            return without_wandb([], mode, e)
        return _Failed(name, e)


class _Failed(NullTracker):
    def __init__(self, name: str, error: BaseException):
        from expctl.trackers.base import first_line

        super().__init__()
        self.backend = name
        self.notes.append(
            f"{_LABELS.get(name, name)} could not start ({first_line(error)}); training without "
            "it — the local record is complete"
        )

    def describe(self) -> list[dict[str, Any]]:
        return [{"backend": self.backend, "mode": "failed", "path": None, "run_id": None}]
