"""`expctl run`: compose the config, train, and report where the record is.

stdout gets one line, the run directory (``RUN=$(expctl run ...)`` works); progress, the final
metrics and the ``wandb sync`` command go to stderr. torch/wandb/hydra are imported inside the
command so ``expctl --help`` stays fast.

Several processes: under ``torchrun ... -m expctl run`` every rank runs this command; rank 0
creates (or finds) the run directory and broadcasts it, and alone prints. ``trainer.devices=N``
outside torchrun re-runs the same command under ``python -m torch.distributed.run --standalone``
and exits with rank 0's exit code (each worker leaves its code in ``$EXPCTL_LAUNCH_EXIT_DIR``,
since torchrun itself reports any worker failure as exit 1).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
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
from expctl.errors import ConfigError, ExpctlError, NotImplementedYet, UsageError

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from expctl.config import ConfigSource
    from expctl.train import RunResult
    from expctl.train.distributed import Group

LAUNCH_EXIT_DIR = "EXPCTL_LAUNCH_EXIT_DIR"
QUIET_EXIT_CODES = (2, 130, 143)  # every rank hits these together: rank 0 alone reports them

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
            "expctl run trainer.devices=2 trainer.device=cpu   # 2 processes (DDP)",
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
        Works under torchrun (``torchrun --nproc-per-node N -m expctl run ...``); or set
        trainer.devices=N to have it start torchrun itself.
        """
        from expctl.config import ConfigSource

        source = ConfigSource.from_cli(config_dir, config_name, overrides, sets)
        if multirun:
            _multirun(source, quiet=quiet, resume=resume, init_from=init_from)
            return
        # MPS lacks some ops; PyTorch falls back to CPU for them only if this is set before
        # torch is imported.
        os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")
        draft = resume_dir = None
        if "WORLD_SIZE" not in os.environ:  # not a torchrun worker: maybe launch torchrun
            if resume is not None:
                resume_dir = _find_resume_dir(resume, runs_dir)
                devices = _devices(_resume_config(resume_dir, source.overrides, quiet=True))
            else:
                draft = _draft_config(source)
                devices = _devices(draft)
            if devices > 1:
                args = _cli_args(source, resume_dir, init_from, quiet, runs_dir)
                raise typer.Exit(_launch(devices, args))
        with _exit_code_for_launcher():
            _run(source, draft, resume, resume_dir, runs_dir, init_from, quiet)


def _run(
    source: ConfigSource,
    draft: DictConfig | None,
    resume: str | None,
    resume_dir: Path | None,
    runs_dir: Path | None,
    init_from: str | None,
    quiet: bool,
) -> None:
    from expctl.train.distributed import process_group

    with process_group() as group:  # a no-op in a single process
        try:
            if resume is not None:
                found = resume_dir or (
                    _find_resume_dir(resume, runs_dir) if group.is_main else None
                )
                run_dir = Path(group.broadcast(str(found)))
                cfg = _resume_config(run_dir, source.overrides, quiet=quiet or not group.is_main)
            else:
                cfg, run_dir = _compose_in_new_run_dir(source, runs_dir, group, draft)
            result = _train(cfg, run_dir, source, resume is not None, init_from, quiet, group)
        except ExpctlError as e:
            if not group.is_main and e.exit_code in QUIET_EXIT_CODES:
                raise typer.Exit(e.exit_code) from None
            raise
    if not group.is_main:
        return
    if not quiet:
        _report(result)
    out(str(result.run_dir))


# -- several processes -----------------------------------------------------------------------


def _devices(cfg: DictConfig) -> int:
    from omegaconf import OmegaConf

    value = OmegaConf.select(cfg, "trainer.devices", default=1)
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"trainer.devices must be an integer >= 1, got {value!r}",
            hint="trainer.devices=2 trains in 2 processes (one per GPU, or CPU processes)",
            where="trainer.devices",
        )
    return value


def launch_command(nproc: int, cli_args: Sequence[str]) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc-per-node N -m expctl <args>``."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={int(nproc)}",
        "-m",
        "expctl",
        *cli_args,
    ]


def _cli_args(
    source: ConfigSource,
    resume_dir: Path | None,
    init_from: str | None,
    quiet: bool,
    runs_dir: Path | None,
) -> list[str]:
    """This command's arguments, rebuilt from what was parsed (not from sys.argv, which a
    caller embedding the CLI may not have set)."""
    args = ["run", "--config-name", source.config_name]
    if source.config_dir is not None:
        args += ["--config-dir", str(Path(source.config_dir).resolve())]
    if resume_dir is not None:
        args += ["--resume", str(resume_dir)]
    if init_from is not None:
        args += ["--init-from", init_from]
    if runs_dir is not None:
        args += ["--runs-dir", str(Path(runs_dir).resolve())]
    if quiet:
        args.append("--quiet")
    return [*args, "--", *source.overrides]


def _launch(nproc: int, cli_args: list[str]) -> int:
    """Run this command in ``nproc`` processes under torchrun; rank 0's exit code.

    torchrun runs in its own session so a terminal's Ctrl-C reaches it once, from here; it
    forwards SIGINT/SIGTERM to every worker, which stop at an agreed step and save last.pt.
    """
    with tempfile.TemporaryDirectory(prefix="expctl-launch-") as exit_dir:
        env = {**os.environ, LAUNCH_EXIT_DIR: exit_dir}
        proc = subprocess.Popen(launch_command(nproc, cli_args), env=env, start_new_session=True)

        def forward(signum: int, frame: object) -> None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)

        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            returncode = proc.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        codes = {
            int(f.name.removeprefix("rank-")): int(f.read_text() or 1)
            for f in Path(exit_dir).glob("rank-*")
        }
    if 0 in codes:
        return codes[0]
    return max(codes.values()) if codes else (returncode if returncode > 0 else 1)


@contextlib.contextmanager
def _exit_code_for_launcher() -> Iterator[None]:
    """Leave this worker's exit code where the ``trainer.devices`` launcher finds it."""
    exit_dir = os.environ.get(LAUNCH_EXIT_DIR)
    code = 1
    try:
        yield
        code = 0
    except ExpctlError as e:
        code = e.exit_code
        raise
    except typer.Exit as e:
        code = e.exit_code
        raise
    except KeyboardInterrupt:
        code = 130
        raise
    finally:
        if exit_dir and os.path.isdir(exit_dir):
            rank = os.environ.get("RANK", "0")
            with contextlib.suppress(OSError):
                Path(exit_dir, f"rank-{rank}").write_text(str(code))


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


def _draft_config(source: ConfigSource) -> DictConfig:
    """The composed, unresolved config; missing values are reported here, all at once."""
    from expctl.config import compose_config, missing_keys
    from expctl.errors import MissingValuesError

    draft = compose_config(source, resolve=False, require_complete=False)
    missing = missing_keys(draft)
    if missing:
        raise MissingValuesError(missing)
    return draft


def _compose_in_new_run_dir(
    source: ConfigSource, runs_dir: Path | None, group: Group, draft: DictConfig | None = None
) -> tuple[DictConfig, Path]:
    """Validate the config, then create the run directory and resolve into it.

    The run directory is created only for a valid config (no empty directories from typos),
    and before resolution, because ``${hydra:runtime.output_dir}`` must name it. Under torchrun
    rank 0 creates it and every rank resolves into the same one.
    """
    from omegaconf import OmegaConf

    from expctl.config import compose_config, resolve_collecting_errors
    from expctl.rundir import create_run_dir

    if draft is None:
        draft = _draft_config(source)
    needs_run_dir = "${hydra:" in OmegaConf.to_yaml(draft, resolve=False)
    if not needs_run_dir:
        resolve_collecting_errors(draft)  # one compose instead of two when nothing refers to it
    name = str(OmegaConf.select(draft, "name", default=None) or source.config_name)
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


def _find_resume_dir(ref: str, runs_dir: Path | None) -> Path:
    from expctl.train.resume import find_resume_dir

    return find_resume_dir(ref, runs_dir)


def _resume_config(run_dir: Path, overrides: tuple[str, ...], *, quiet: bool) -> DictConfig:
    from expctl.train.resume import load_run_config

    cfg, redacted = load_run_config(run_dir, overrides)
    if redacted and not quiet:
        keys = ", ".join(redacted)
        err(f"warning: {keys} were redacted in the saved config; pass them again as overrides")
    return cfg


def _train(
    cfg: DictConfig,
    run_dir: Path,
    source: ConfigSource,
    resuming: bool,
    init_from: str | None,
    quiet: bool,
    group: Group,
) -> RunResult:
    from expctl.train import default_progress, train
    from expctl.train.progress import NullProgress

    sink: Any = NullProgress() if quiet or not group.is_main else default_progress(sys.stderr)
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
        if not group.is_main:
            pass
        elif result is not None:
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
