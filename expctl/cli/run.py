"""`expctl run`: parse the options, call :func:`expctl.train.launch.launch`, render the result.

stdout gets one line, the run directory (``RUN=$(expctl run ...)`` works); progress, the final
metrics and the ``wandb sync`` command go to stderr. ``-m`` (multirun) runs
:func:`expctl.sweeps.multirun.multirun` and prints every run directory, one per line.
torch/wandb/hydra are imported inside the command so ``expctl --help`` stays fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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
from expctl.errors import UsageError

if TYPE_CHECKING:
    from expctl.config import ConfigSource
    from expctl.sweeps.multirun import MultirunResult
    from expctl.train import RunResult

ResumeOpt = Annotated[
    str | None,
    typer.Option(
        "--resume",
        help="Continue a run from its checkpoints/last.pt: 'latest', 'latest~N', a run id "
        "(or a unique prefix of one) or a run directory, as `expctl runs show` reads them.",
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
LikeOpt = Annotated[
    str | None,
    typer.Option(
        "--like",
        help="A new run made exactly like RUN (its config dir, config name and overrides; a "
        "sweep trial's parameters), plus the overrides given: 'latest', 'latest~N', a run id "
        "(prefix) or a run directory. Says what differs from RUN's record (commit, "
        "uncommitted changes, package versions, device) before training.",
        show_default=False,
    ),
]
StrictOpt = Annotated[
    bool,
    typer.Option(
        "--strict",
        help="With --like: refuse (exit 2) when the commit, uncommitted changes, package "
        "versions or device differ from RUN's record.",
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


app = typer.Typer()  # one command, merged into the root (cli/typer_compat.add_command_app)


@app.command(
    "run",
    epilog=examples(
        "expctl run trainer.epochs=5 optim.lr=3e-4",
        "expctl run model=large --set trainer.device=cpu --quiet",
        "expctl run --resume latest",
        "expctl run --resume latest~1 trainer.epochs=40   # or a run id (prefix)",
        "expctl run --tag baseline --notes 'first try with AdamW'",
        "expctl run --like latest --strict   # re-make the last run; refuse if code differs",
        "expctl run --like 57abd2 seed=1     # the same run with another seed",
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
    like: LikeOpt = None,
    strict: StrictOpt = False,
    init_from: InitFromOpt = None,
    quiet: QuietOpt = False,
    multirun: MultirunOpt = False,
    runs_dir: RunsDirOpt = None,
    tags: Annotated[
        list[str] | None,
        typer.Option(
            "--tag",
            "-t",
            help="Label the run (repeatable); also a W&B tag. See `expctl runs tag`.",
            show_default=False,
        ),
    ] = None,
    notes: Annotated[
        str | None,
        typer.Option("--notes", help="The run's notes (also W&B's).", show_default=False),
    ] = None,
) -> None:
    """Compose the config, train on the best device, log to W&B, keep a local record.

    Prints the run directory on stdout. Exit codes: 0 done, 1 training failed (e.g. NaN
    loss), 2 bad config or arguments, 130/143 interrupted (last.pt saved: --resume it).
    Works under torchrun (``torchrun --nproc-per-node N -m expctl run ...``); or set
    trainer.devices=N to have it start torchrun itself.
    """
    from expctl import signals

    # From here to the end signals are only noted: training stops after its current step
    # and saves last.pt; a signal before training starts ends the command (130/143) with
    # nothing created, also one landing inside `import torch`.
    with signals.deferred():
        _run(
            overrides,
            config_dir,
            config_name,
            sets,
            resume,
            init_from,
            quiet,
            multirun,
            runs_dir,
            tags or [],
            notes,
            (like, strict),
        )


def _run(
    overrides: list[str] | None,
    config_dir: Path | None,
    config_name: str,
    sets: list[str] | None,
    resume: str | None,
    init_from: str | None,
    quiet: bool,
    multirun: bool,
    runs_dir: Path | None,
    tags: list[str],
    notes: str | None,
    like: tuple[str | None, bool] = (None, False),
) -> None:
    from expctl import signals
    from expctl.config import ConfigSource
    from expctl.runs.labels import check_notes, check_tags

    source = ConfigSource.from_cli(config_dir, config_name, overrides, sets)
    # checked before any run directory exists
    labels = check_tags(tags), (check_notes(notes) if notes is not None else None)
    if like[0] is not None:
        if resume is not None or multirun:
            raise UsageError(
                "--like cannot be combined with --resume or --multirun",
                hint="--like makes one new run like RUN; --resume RUN continues RUN itself",
            )
        source = _like(like[0], source, runs_dir, strict=like[1], quiet=quiet)
    elif like[1]:
        raise UsageError("--strict needs --like RUN", hint="expctl run --like latest --strict")
    if multirun:
        if resume is not None or init_from is not None or tags or notes is not None:
            raise UsageError(
                "--multirun cannot be combined with --resume, --init-from, --tag or --notes",
                hint="resume each run of a multirun on its own: expctl run --resume RUN_DIR",
            )
        _multirun(source, quiet=quiet)
        return
    # MPS lacks some ops; PyTorch falls back to CPU for them only if this is set before
    # torch is imported (the trainer imports it).
    os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")
    from expctl.train.launch import RunHooks, RunRequest, launch
    from expctl.train.progress import default_progress

    signals.check("interrupted before training started")

    def on_result(result: RunResult) -> None:
        if not quiet:
            _report(result)
        out(str(result.run_dir))

    def on_run_dir(run_dir: Path) -> tuple[tuple[str, ...], str | None]:
        from expctl.runs.labels import initial_labels

        written = initial_labels(run_dir, *labels)  # adds to a resumed run's own labels
        return written.tags, written.notes

    hooks = RunHooks(
        progress=None if quiet else lambda: default_progress(sys.stderr),
        on_warning=None if quiet else lambda text: err(f"warning: {text}"),
        on_result=on_result,
        on_run_dir=on_run_dir,
    )
    request = RunRequest(source, resume, init_from, runs_dir, quiet, *labels)
    code = launch(request, hooks)
    if code:  # already reported (by rank 0, or by the workers of a trainer.devices launch)
        raise typer.Exit(code)
    signals.hold_until_exit()  # completed: it exits 0 whatever arrives now
    late = signals.pending()
    if late is not None and not quiet:  # the run had completed: it stays completed (exit 0)
        err(f"note: {signals.signal_name(late)} arrived after the run completed")


def _like(
    ref: str, given: ConfigSource, runs_dir: Path | None, *, strict: bool, quiet: bool
) -> ConfigSource:
    """The source of ``--like REF`` plus the given overrides; says (stderr) what differs from
    the run's record, and with ``strict`` refuses (exit 2) when anything does."""
    from expctl.record.refs import resolve_run
    from expctl.rundir import runs_root
    from expctl.runs.reproduce import differences, like_source
    from expctl.secrets import redact_overrides

    run_dir = resolve_run(ref, runs_root(runs_dir))
    like = like_source(run_dir, given)
    if not quiet:
        shown = " ".join(redact_overrides(like.source.overrides)) or "(no overrides)"
        err(f"like run {run_dir}: {shown}")
        for note in like.notes:
            err(f"note: {note}")
    found = differences(like)
    if not quiet or strict:
        for difference in found:
            err(f"note: differs from the run's record: {difference.message}")
    if strict and found:
        what = ", ".join(dict.fromkeys(d.what for d in found))
        raise UsageError(
            f"--strict: this run would differ from {run_dir.name} in: {what}",
            hint="check out the run's commit (git checkout), apply its diff.patch, install its "
            "requirements.txt; or leave out --strict",
        )
    return like.source


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
        aliases = f" ({', '.join(result.artifact_aliases)})" if result.artifact_aliases else ""
        err(f"published: {result.artifact}{aliases}")
    for note in result.notes:
        if note not in result.shown_notes:  # a warning printed live is not repeated
            err(f"note: {note}")
    if result.sync_command:
        err(f"W&B run saved offline; upload it with: {result.sync_command}")
    elif result.wandb_path:
        err(f"W&B run: {result.wandb_path}")
    for entry in result.tracking:
        if entry.get("backend") == "wandb" or entry.get("mode") != "local":
            continue
        if entry.get("command"):
            err(f"{entry['backend']}: {entry['command']}")
        elif entry.get("run_id"):
            err(f"{entry['backend']} run {entry['run_id']} in {entry.get('path')}")
        else:
            err(f"{entry['backend']}: {entry.get('path')}")


# -- multirun --------------------------------------------------------------------------------


def _multirun(source: ConfigSource, *, quiet: bool) -> None:
    """Every combination, then a table of them (stderr), every run directory (stdout), and
    exit 1 when any run failed."""
    from expctl.sweeps.multirun import multirun

    result = multirun(source, quiet=quiet, on_event=None if quiet else err)
    if not quiet:
        _report_multirun(result)
    for record in result.records:
        if record.run_dir:
            out(record.run_dir)
    result.raise_if_failed()


def _report_multirun(result: MultirunResult) -> None:
    from expctl.cli.output import table_lines
    from expctl.sweeps.multirun import swept_overrides

    counts: dict[str, int] = {}
    for record in result.records:
        counts[record.status] = counts.get(record.status, 0) + 1
    tally = ", ".join(f"{n} {status}" for status, n in counts.items()) or "no runs"
    err(f"multirun {result.sweep_id}: {tally} (details: expctl sweep status {result.sweep_id})")
    rows = [
        (
            r.number,
            r.status,
            "" if r.value is None else f"{r.value:.6g}",
            " ".join(swept_overrides(r)),
            r.run_dir or "",
        )
        for r in result.records
    ]
    header = ("#", "status", result.metric or "value", "overrides", "run dir")
    for line in table_lines(header, rows):
        err(f"  {line}")
