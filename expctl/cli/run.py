"""`expctl run`: compose the config, train, and report where the record is.

stdout gets one line, the run directory (``RUN=$(expctl run ...)`` works); progress, the final
metrics and the ``wandb sync`` command go to stderr. torch/wandb/hydra are imported inside the
command so ``expctl --help`` stays fast.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from expctl.cli.common import (
    ConfigDirOpt,
    ConfigNameOpt,
    OverridesArg,
    SetOpt,
    err,
    examples,
    handle_errors,
    out,
)
from expctl.errors import ExpctlError, NotImplementedYet, UsageError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from expctl.config import ConfigSource
    from expctl.train import RunResult

ResumeOpt = Annotated[
    str | None,
    typer.Option(
        "--resume",
        help="Continue a run from its checkpoints/last.pt: a run directory or 'latest'.",
        show_default=False,
    ),
]
InitFromOpt = Annotated[
    str | None,
    typer.Option(
        "--init-from",
        help="Initialise the model's weights from a .pt file or an artifact (name:vN|alias).",
        show_default=False,
    ),
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress or summary on stderr (errors only).")
]
MultirunOpt = Annotated[
    bool,
    typer.Option(
        "--multirun", "-m", help="Run every combination of comma-separated override values."
    ),
]
RunsDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--runs-dir",
        envvar="EXPCTL_RUNS_DIR",
        help="Where run directories are created (default: ./runs).",
        show_default=False,
    ),
]


def register(app: typer.Typer) -> None:
    @app.command(
        "run",
        epilog=examples(
            "expctl run trainer.epochs=5 optim.lr=3e-4",
            "expctl run model=large --set trainer.device=cpu --quiet",
            "expctl run --resume latest",
        ),
    )
    @handle_errors
    def run(
        overrides: OverridesArg = None,
        config_dir: ConfigDirOpt = None,
        config_name: ConfigNameOpt = "config",
        sets: SetOpt = None,
        resume: ResumeOpt = None,
        init_from: InitFromOpt = None,
        quiet: QuietOpt = False,
        multirun: MultirunOpt = False,
        runs_dir: RunsDirOpt = None,
    ) -> None:
        """Compose the config, train on the best device, log to W&B, keep a local record.

        Prints the run directory on stdout. Exit codes: 0 done, 1 training failed (e.g. NaN
        loss), 2 bad config or arguments, 130/143 interrupted (last.pt saved: --resume it).
        """
        from expctl.config import ConfigSource

        source = ConfigSource.from_cli(config_dir, config_name, overrides, sets)
        if multirun:
            _multirun(source, quiet=quiet, resume=resume, init_from=init_from)
            return
        # MPS lacks some ops; PyTorch falls back to CPU for them only if this is set before
        # torch is imported.
        os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")
        if resume is not None:
            cfg, run_dir = _resume_config(resume, runs_dir, source.overrides, quiet=quiet)
        else:
            cfg, run_dir = _compose_in_new_run_dir(source, runs_dir)
        result = _train(cfg, run_dir, source, resume is not None, init_from, quiet)
        if not quiet:
            _report(result)
        out(str(result.run_dir))


def _multirun(source: ConfigSource, *, quiet: bool, resume: str | None, init_from: str | None):
    if resume is not None or init_from is not None:
        raise UsageError(
            "--multirun cannot be combined with --resume or --init-from",
            hint="resume each run of a multirun on its own: expctl run --resume RUN_DIR",
        )
    try:
        from expctl.sweeps.multirun import run_multirun
    except ImportError:
        raise NotImplementedYet("expctl run --multirun") from None
    run_multirun(source, quiet=quiet)


def _compose_in_new_run_dir(source: ConfigSource, runs_dir: Path | None) -> tuple[DictConfig, Path]:
    """Validate the config, then create the run directory and resolve into it.

    The run directory is created only for a valid config (no empty directories from typos),
    and before resolution, because ``${hydra:runtime.output_dir}`` must name it.
    """
    from omegaconf import OmegaConf

    from expctl.config import compose_config, missing_keys, resolve_collecting_errors
    from expctl.errors import MissingValuesError
    from expctl.rundir import create_run_dir

    draft = compose_config(source, resolve=False, require_complete=False)
    missing = missing_keys(draft)
    if missing:
        raise MissingValuesError(missing)
    needs_run_dir = "${hydra:" in OmegaConf.to_yaml(draft, resolve=False)
    if not needs_run_dir:
        resolve_collecting_errors(draft)  # one compose instead of two when nothing refers to it
    name = str(OmegaConf.select(draft, "name", default=None) or source.config_name)
    run_dir = create_run_dir(name, runs_dir)
    if not needs_run_dir:
        return draft, run_dir
    try:
        return compose_config(source, run_dir=run_dir), run_dir
    except ExpctlError:
        _remove_if_empty(run_dir)
        raise


def _resume_config(
    ref: str, runs_dir: Path | None, overrides: tuple[str, ...], *, quiet: bool
) -> tuple[DictConfig, Path]:
    from expctl.train.resume import find_resume_dir, load_run_config

    run_dir = find_resume_dir(ref, runs_dir)
    cfg, redacted = load_run_config(run_dir, overrides)
    if redacted and not quiet:
        keys = ", ".join(redacted)
        err(f"warning: {keys} were redacted in the saved config; pass them again as overrides")
    return cfg, run_dir


def _train(
    cfg: DictConfig,
    run_dir: Path,
    source: ConfigSource,
    resuming: bool,
    init_from: str | None,
    quiet: bool,
) -> RunResult:
    from expctl.train import default_progress, train
    from expctl.train.progress import NullProgress

    sink: Any = NullProgress() if quiet else default_progress(sys.stderr)
    try:
        return train(
            cfg,
            run_dir=None if resuming else run_dir,
            overrides=source.overrides,
            resume=run_dir if resuming else None,
            init_from=init_from,
            progress=sink,
            handle_signals=True,
        )
    except ExpctlError as e:
        result = getattr(e, "result", None)
        if result is not None:
            if not quiet:
                _report(result)
            out(str(result.run_dir))  # a script can still find (and --resume) the run
        elif not resuming and isinstance(e, UsageError):
            _remove_if_empty(run_dir)  # bad config found before anything was recorded
        raise


def _report(result: RunResult) -> None:
    from expctl.train.progress import format_metrics

    err(f"run: {result.run_dir} ({result.status}, device {result.device})")
    keys = ("train_loss", "train_acc", "val_loss", "val_acc")
    if result.final_metrics:
        err(
            f"final: epoch {int(result.final_metrics.get('epoch', 0))}  "
            f"{format_metrics(result.final_metrics, keys)}"
        )
    if result.best_checkpoint is not None:
        try:
            best = result.best_checkpoint.relative_to(result.run_dir)
        except ValueError:
            best = result.best_checkpoint
        err(f"best checkpoint: {best}")
    if result.artifact:
        err(f"published: {result.artifact}")
    for note in result.notes:
        err(f"note: {note}")
    if result.sync_command:
        err(f"W&B run saved offline; upload it with: {result.sync_command}")
    elif result.wandb_path:
        err(f"W&B run: {result.wandb_path}")


def _remove_if_empty(run_dir: Path) -> None:
    """Remove a run directory that holds nothing but empty folders."""
    if run_dir.is_dir() and not any(p.is_file() for p in run_dir.rglob("*")):
        shutil.rmtree(run_dir, ignore_errors=True)
