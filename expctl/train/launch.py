"""The path from "config + overrides" to a new run directory and ``train()``; ``expctl run``.

:func:`train_new_run` is that path, and the only one: ``expctl run``, its ``--multirun`` and
the sweep agent's trainer trials all take it. It composes the config (all missing values and
bad keys reported before any run directory exists), creates the run directory only for a valid
config, resolves the config into it (``${hydra:runtime.output_dir}`` names it), trains, and
removes the directory again if a config error leaves it empty.

:func:`launch` is ``expctl run`` as one library call, without printing: a new run through
:func:`train_new_run`, or the run to ``--resume`` (its saved config); it hands the
:class:`RunResult` to ``on_result`` — also for a run that failed after its record was written,
so a script can still find (and ``--resume``) it. The caller renders.

Several processes: under ``torchrun ... -m expctl run`` every rank calls this; rank 0 creates
(or finds) the run directory and broadcasts it, and alone reports. ``trainer.devices=N`` outside
torchrun re-runs the same command under torchrun (:mod:`expctl.train.relaunch`) and returns rank
0's exit code. Nothing at module level imports torch: that launcher never needs it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from expctl.config import ConfigSource
from expctl.errors import ExpctlError
from expctl.train.relaunch import (
    devices_of,
    run_leaving_exit_code,
    run_under_torchrun,
    worker_cli_args,
)

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from expctl.train.distributed import Group
    from expctl.train.loop import EpochCallback
    from expctl.train.outcome import RunResult, SweepTrial
    from expctl.train.progress import ProgressSink
    from expctl.train.resume import ResumeConfig

# A run's labels as W&B takes them at init: (tags, notes).
Labels = tuple[tuple[str, ...], "str | None"]

# Failures every rank hits together (bad config, a signal): rank 0 alone reports them.
QUIET_EXIT_CODES = (2, 130, 143)


def train_new_run(
    source: ConfigSource,
    *,
    runs_dir: Path | None = None,
    name: str | None = None,
    extra_overrides: Sequence[str] = (),
    init_from: str | None = None,
    callbacks: Sequence[EpochCallback] = (),
    should_stop: Callable[[], int | None] | None = None,
    handle_signals: bool = True,
    sweep: SweepTrial | None = None,
    progress: ProgressSink | None = None,
    quiet: bool = True,
    draft: DictConfig | None = None,
    on_run_dir: Callable[[Path], Labels] | None = None,
) -> RunResult:
    """Compose ``source`` into a new run directory, train there, return the :class:`RunResult`.

    * ``runs_dir``: where the run directory is created (default ``./runs``, or
      ``$EXPCTL_RUNS_DIR``); ``name``: what it is named after (default: the config's ``name``,
      else the config name).
    * ``extra_overrides`` are composed after ``source.overrides`` but not recorded in the run's
      ``overrides.yaml``, which lists what the user asked for (the sweep agent's internal
      ``++artifact.aliases=[]``).
    * ``init_from``, ``callbacks``, ``should_stop``, ``handle_signals``, ``sweep``,
      ``progress``, ``quiet``: as for :func:`expctl.train.train`. The ``progress`` sink is
      closed when this returns or raises.
    * ``draft``: what :func:`draft_config` composed from exactly these overrides, when the
      caller has it already (``expctl run`` read ``trainer.devices`` from it): one compose less.
    * ``on_run_dir``: called on rank 0 once the run directory exists, before training; its
      (tags, notes) reach W&B at init (``expctl run --tag``).

    Under torchrun every rank calls this: rank 0 creates the run directory, every rank trains in
    it. Raises what :func:`~expctl.train.train` raises — an :class:`ExpctlError` carries the
    RunResult as ``result`` when a record was written — and :class:`ConfigError` (or
    :class:`MissingValuesError`) for a bad config, before a run directory exists or after
    removing the still-empty one. Every ExpctlError raised here carries ``run_dir``: the run
    directory when one was created and is still there, else None.
    """
    from expctl.train import train
    from expctl.train.distributed import process_group

    if init_from is not None:
        check_init_from(init_from)  # a typo must not leave a run directory behind
    composed = source
    if extra_overrides:
        overrides = (*source.overrides, *extra_overrides)
        composed = ConfigSource(source.config_dir, source.config_name, overrides)
    with process_group() as group:  # torchrun's group (or a no-op in a single process)
        cfg, run_dir = _compose_or_close(composed, runs_dir, group, draft, name, progress)
        try:
            labels = on_run_dir(run_dir) if on_run_dir is not None and group.is_main else None
            return train(
                cfg,
                run_dir=run_dir,
                labels=labels,
                config_dir=_config_dir(source),
                config_name=source.config_name,
                overrides=source.overrides,
                init_from=init_from,
                callbacks=callbacks,
                quiet=quiet,
                progress=progress,
                handle_signals=handle_signals,
                sweep=sweep,
                should_stop=should_stop,
            )
        except ExpctlError as e:
            recorded = getattr(e, "result", None) is not None
            if group.is_main and not recorded:
                _remove_if_empty(run_dir)  # bad input or a full disk before anything was recorded
            e.run_dir = run_dir if run_dir.exists() else None  # type: ignore[attr-defined]
            raise


def _compose_or_close(
    source: ConfigSource,
    runs_dir: Path | None,
    group: Group,
    draft: DictConfig | None,
    name: str | None,
    progress: ProgressSink | None,
) -> tuple[DictConfig, Path]:
    """:func:`compose_in_new_run_dir`; when it fails, close ``progress`` (train() would have)
    and say that no run directory is left (``run_dir = None`` on the error)."""
    try:
        return compose_in_new_run_dir(source, runs_dir, group, draft, name=name)
    except BaseException as e:
        if progress is not None:
            progress.close()
        if isinstance(e, ExpctlError):
            e.run_dir = None  # type: ignore[attr-defined]
        raise


@dataclass(frozen=True)
class RunRequest:
    """What ``expctl run`` was asked to do."""

    source: ConfigSource
    resume: str | None = None  # a run directory, or "latest"
    init_from: str | None = None  # a .pt file or an artifact reference (name:vN|alias)
    runs_dir: Path | None = None  # where run directories are created (default: ./runs)
    quiet: bool = False  # passed on to the processes the trainer.devices launcher starts
    tags: tuple[str, ...] = ()  # `--tag`: labels for the run (written by RunHooks.on_run_dir)
    notes: str | None = None  # `--notes`


@dataclass(frozen=True)
class RunHooks:
    """How the caller hears about a run; each is called on the reporting process only."""

    progress: Callable[[], ProgressSink] | None = None  # None: no progress
    on_warning: Callable[[str], None] | None = None
    on_result: Callable[[RunResult], None] | None = None
    # the run directory exists (new, or the one resumed): label it; returns the run's labels
    # (tags, notes) for W&B. Called on rank 0 only, before training.
    on_run_dir: Callable[[Path], Labels] | None = None

    def label(self, run_dir: Path, group: Group) -> Labels | None:
        if self.on_run_dir is None or not group.is_main:
            return None
        return self.on_run_dir(run_dir)

    def warn(self, text: str) -> None:
        if self.on_warning is not None:
            self.on_warning(text)

    def result(self, result: RunResult) -> None:
        if self.on_result is not None:
            self.on_result(result)

    def sink(self, group: Group) -> ProgressSink:
        from expctl.train.progress import NullProgress

        return self.progress() if self.progress is not None and group.is_main else NullProgress()


def launch(request: RunRequest, hooks: RunHooks | None = None) -> int:
    """Run ``expctl run`` in this process (or, for ``trainer.devices=N``, under torchrun).

    Returns the exit code for this process when nothing is left to report: 0 when done; the
    launcher's rank 0 exit code (the workers reported); on a rank other than 0, the code of a
    failure rank 0 reports. Raises :class:`ExpctlError` otherwise (after ``on_result`` when the
    failed run left a record).
    """
    hooks = hooks or RunHooks()
    draft: DictConfig | None = None
    resume_dir: Path | None = None
    resumed: ResumeConfig | None = None
    if "WORLD_SIZE" not in os.environ:  # not a torchrun worker: maybe start torchrun
        if request.resume is not None:
            resume_dir = _find_resume_dir(request.resume, request.runs_dir)
            resumed = _load_run_config(resume_dir, request.source)  # the workers warn
            devices = devices_of(resumed.cfg)
        else:
            draft = draft_config(request.source)
            devices = devices_of(draft)
        if devices > 1:
            return run_under_torchrun(devices, worker_cli_args(request, resume_dir))
    return run_leaving_exit_code(lambda: _run_here(request, draft, resume_dir, resumed, hooks))


def _run_here(
    request: RunRequest,
    draft: DictConfig | None,
    resume_dir: Path | None,
    resumed: ResumeConfig | None,
    hooks: RunHooks,
) -> int:
    from expctl.train.distributed import process_group

    with process_group() as group:  # a no-op in a single process
        try:
            if request.resume is not None:
                result = _resume(request, resume_dir, resumed, group, hooks)
            else:
                result = train_new_run(
                    request.source,
                    runs_dir=request.runs_dir,
                    init_from=request.init_from,
                    progress=hooks.sink(group),
                    handle_signals=True,
                    draft=draft,
                    on_run_dir=hooks.on_run_dir,
                )
        except ExpctlError as e:
            partial = getattr(e, "result", None)
            if group.is_main and partial is not None:
                hooks.result(partial)  # a script can still find (and --resume) the run
            if not group.is_main and e.exit_code in QUIET_EXIT_CODES:
                return e.exit_code
            raise
    if group.is_main:
        hooks.result(result)
    return 0


def _resume(
    request: RunRequest,
    resume_dir: Path | None,
    resumed: ResumeConfig | None,
    group: Group,
    hooks: RunHooks,
) -> RunResult:
    """Continue the run ``--resume`` names, with its saved config and the new overrides
    (``resumed``: that config when the caller has loaded it already)."""
    from expctl.train import train

    assert request.resume is not None
    if request.init_from is not None:
        check_init_from(request.init_from)
    found = resume_dir or (
        _find_resume_dir(request.resume, request.runs_dir) if group.is_main else None
    )
    run_dir = Path(group.broadcast(str(found)))
    if resumed is None:
        resumed = _load_run_config(run_dir, request.source)
    if resumed.redacted and group.is_main:
        keys = ", ".join(resumed.redacted)
        hooks.warn(f"{keys} were redacted in the saved config; pass them again as overrides")
    for note in resumed.notes if group.is_main else ():
        hooks.warn(note)
    labels = hooks.label(run_dir, group)
    return train(
        resumed.cfg,
        labels=labels,
        config_dir=_config_dir(request.source),
        config_name=request.source.config_name,
        overrides=resumed.new_overrides,
        key_names=resumed.key_names,
        resume=run_dir,
        init_from=request.init_from,
        progress=hooks.sink(group),
        handle_signals=True,
    )


# -- config and run directory ----------------------------------------------------------------


def draft_config(source: ConfigSource) -> DictConfig:
    """The composed, unresolved config; missing values are reported here, all at once."""
    from expctl.config import compose_config, missing_keys
    from expctl.errors import MissingValuesError

    draft = compose_config(source, resolve=False, require_complete=False)
    missing = missing_keys(draft)
    if missing:
        raise MissingValuesError(missing)
    return draft


def compose_in_new_run_dir(
    source: ConfigSource,
    runs_dir: Path | None,
    group: Group,
    draft: DictConfig | None = None,
    *,
    name: str | None = None,
) -> tuple[DictConfig, Path]:
    """Validate the config, then create the run directory and resolve into it.

    The run directory is created only for a valid config (no empty directories from typos),
    and before resolution, because ``${hydra:runtime.output_dir}`` must name it. Under torchrun
    rank 0 creates it and every rank resolves into the same one. It is named ``name``, else
    after the config's ``name``, else the config name.
    """
    from omegaconf import OmegaConf

    from expctl.config import compose_config, resolve_collecting_errors
    from expctl.rundir import create_run_dir

    if draft is None:
        draft = draft_config(source)
    needs_run_dir = "${hydra:" in OmegaConf.to_yaml(draft, resolve=False)
    if not needs_run_dir:
        resolve_collecting_errors(draft)  # one compose instead of two when nothing refers to it
    name = name or str(OmegaConf.select(draft, "name", default=None) or source.config_name)
    created = str(create_run_dir(name, runs_dir)) if group.is_main else ""
    run_dir = Path(group.broadcast(created))  # rank 0 creates it; the others get its path
    if not needs_run_dir:
        return draft, run_dir
    try:
        return compose_config(source, run_dir=run_dir), run_dir
    except ExpctlError:
        if group.is_main:
            _remove_if_empty(run_dir)
        raise


def check_init_from(ref: str) -> None:
    """Raise (exit 2) unless ``--init-from REF`` names a checkpoint that exists: a file, a
    run directory, or an artifact version of the local store (checked before anything is
    created; whether its weights fit the model is known only once the model is built)."""
    from expctl.train.checkpoints import find_init_source

    find_init_source(ref)


def _find_resume_dir(ref: str, runs_dir: Path | None) -> Path:
    from expctl.train.resume import find_resume_dir

    return find_resume_dir(ref, runs_dir)


def _load_run_config(run_dir: Path, source: ConfigSource) -> ResumeConfig:
    from expctl.train.resume import load_run_config

    return load_run_config(run_dir, source.overrides, source)


def _config_dir(source: ConfigSource) -> Path:
    from expctl.config import find_config_dir

    return find_config_dir(source.config_dir)[0]


def _remove_if_empty(run_dir: Path) -> None:
    """Remove a run directory that holds nothing but empty folders (and its lock file): left
    there, it would list as a crashed run and become ``latest``."""
    from expctl.record.files import LABELS_FILE, LABELS_LOCK_FILE, LOCK_FILE, PROVENANCE_FILES

    files = [p for p in run_dir.rglob("*") if p.is_file()] if run_dir.is_dir() else None
    no_record = {
        *(run_dir / name for name in (LOCK_FILE, LABELS_FILE, LABELS_LOCK_FILE)),
        *(run_dir / name for name in PROVENANCE_FILES),
    }
    if files is not None and all(p in no_record for p in files):
        shutil.rmtree(run_dir, ignore_errors=True)
