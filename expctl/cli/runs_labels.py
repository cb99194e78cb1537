"""`expctl runs tag|untag|note` — label runs, also while they run.

They change only the run's ``labels.json`` (:mod:`expctl.runs.labels`), never its record; like
``artifacts alias`` they print the run directory on stdout and say what changed on stderr.
Registered onto the ``runs`` Typer app by :func:`register` (``cli/runs.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from expctl.cli.common import err, examples, handle_errors, out
from expctl.cli.runs_options import RunArg, RunsDirOpt, runs_root_of

TAG_EPILOG = examples(
    "expctl runs tag latest baseline",
    "expctl runs tag 57abd2 lr-sweep best",
    "expctl runs list --name 'digits-*' --format csv | tail -n +2 | cut -d, -f1 | "
    "xargs -I{} expctl runs tag {} digits",
)
UNTAG_EPILOG = examples(
    "expctl runs untag latest baseline",
    "expctl runs untag 57abd2 lr-sweep best",
)
NOTE_EPILOG = examples(
    "expctl runs note latest 'baseline for the lr sweep'",
    "expctl runs note 57abd2 'diverged at epoch 3: lr too high' --append",
    "git log -1 --format=%B | expctl runs note latest -",
    "expctl runs note latest ''   # clears the notes",
)

TagsArg = Annotated[
    list[str],
    typer.Argument(
        help="Tags: 1 to 64 characters, no spaces, commas or control characters.",
        show_default=False,
    ),
]


@handle_errors
def tag(run: RunArg, tags: TagsArg, runs_dir: RunsDirOpt = None) -> None:
    """Add tags to a run (a set, as in W&B: a tag it has already is kept once), also while it
    runs; prints the run directory. Its record (summary.json) is never rewritten."""
    from expctl.record.refs import resolve_run
    from expctl.runs.labels import add_tags, check_tags

    check_tags(tags)  # a bad tag is exit 2 before anything is read
    path = resolve_run(run, runs_root_of(runs_dir))
    change = add_tags(path, tags)
    if change.already:
        err(f"note: run {_short(path)} already had {_names(change.already)}", style="yellow")
    if change.added:
        err(f"tagged run {_short(path)} with {_names(change.added)}")
    err(f"its tags: {_names(change.labels.tags) or 'none'}")
    out(str(path))


@handle_errors
def untag(run: RunArg, tags: TagsArg, runs_dir: RunsDirOpt = None) -> None:
    """Remove tags from a run (a tag it does not have is a note, not an error); prints the run
    directory."""
    from expctl.record.refs import resolve_run
    from expctl.runs.labels import check_tags, remove_tags

    check_tags(tags)
    path = resolve_run(run, runs_root_of(runs_dir))
    change = remove_tags(path, tags)
    if change.missing:
        err(f"note: run {_short(path)} has no tag {_names(change.missing)}", style="yellow")
    if change.removed:
        err(f"untagged run {_short(path)}: {_names(change.removed)}")
    err(f"its tags: {_names(change.labels.tags) or 'none'}")
    out(str(path))


@handle_errors
def note(
    run: RunArg,
    text: Annotated[
        str,
        typer.Argument(
            help="The notes (one text, as W&B's run notes); - reads them from stdin; '' clears.",
            show_default=False,
        ),
    ],
    append: Annotated[
        bool, typer.Option("--append", "-a", help="Add TEXT as a new line after the notes.")
    ] = False,
    runs_dir: RunsDirOpt = None,
) -> None:
    """Set a run's notes (replacing them, or --append a line); prints the run directory."""
    from expctl.record.refs import resolve_run
    from expctl.runs.labels import check_notes, set_notes

    if text == "-":
        text = sys.stdin.read().replace("\r\n", "\n").rstrip("\n")
    check_notes(text)
    path = resolve_run(run, runs_root_of(runs_dir))
    change = set_notes(path, text, append=append)
    if not change.changed:
        err(f"notes of run {_short(path)} unchanged")
    elif change.labels.notes is None:
        err(f"notes of run {_short(path)} cleared")
    else:
        err(f"notes of run {_short(path)} {'appended to' if append else 'set'}")
    out(str(path))


def _short(path: Path) -> str:
    """``NAME/ID`` of a run directory, for messages (stdout carries the whole path)."""
    from expctl.record.files import run_id

    return f"{path.parent.name}/{run_id(path)}"


def _names(tags: tuple[str, ...] | list[str]) -> str:
    return ", ".join(tags)


def register(app: typer.Typer) -> None:
    """Add ``tag``, ``untag`` and ``note`` to the ``runs`` app."""
    app.command("tag", epilog=TAG_EPILOG)(tag)
    app.command("untag", epilog=UNTAG_EPILOG)(untag)
    app.command("note", epilog=NOTE_EPILOG)(note)
