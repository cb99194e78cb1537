"""`expctl artifacts pull|list|show|push|alias`: the versioned artifact store.

The store is ``.expctl/artifacts`` under the current directory unless ``$EXPCTL_ARTIFACTS`` or
``--store DIR`` says otherwise. ``pull`` prints only the local path on stdout, so
``CKPT_DIR=$(expctl artifacts pull digits-mlp-model:best)`` works; ``push`` prints ``NAME:vN``.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from expctl.cli.artifacts_render import LineagePage, VersionList, files_text, size_text
from expctl.cli.artifacts_render import version_table as version_table  # tests draw it
from expctl.cli.common import console, err, examples, handle_errors, out
from expctl.cli.output import TableOrJson, emit, format_option, printable
from expctl.errors import UsageError

if TYPE_CHECKING:
    from expctl.artifacts.store import Progress

app = typer.Typer(
    help="Versioned model/dataset artifacts: a local store that works offline, or W&B. "
    "The store is ./.expctl/artifacts unless $EXPCTL_ARTIFACTS or --store says otherwise.",
    no_args_is_help=True,
)

PROGRESS_MIN_BYTES = 64 * 10**6  # smaller pulls finish before a bar is worth drawing

StoreOpt = Annotated[
    Path | None,
    typer.Option(
        "--store",
        envvar="EXPCTL_ARTIFACTS",
        help="Artifact store directory [default: ./.expctl/artifacts].",
        show_default=False,
    ),
]
TypeOpt = Annotated[
    str | None,
    typer.Option("--type", "-t", help="Artifact type (model, dataset, ...).", show_default=False),
]


@contextlib.contextmanager
def _progress_bar(total: int, label: str) -> Iterator[Progress | None]:
    """A transient rich bar on stderr for large transfers on a terminal; else nothing."""
    if total < PROGRESS_MIN_BYTES or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
    )
    with Progress(*columns, console=console(stderr=True), transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


@app.command(
    "pull",
    epilog=examples(
        "CKPT_DIR=$(expctl artifacts pull digits-mlp-model:best)",
        "expctl artifacts pull digits-mlp-model:v3 --root ckpt --force",
        "expctl artifacts pull my-team/expctl/digits-mlp-model:best   # from W&B (online)",
    ),
)
@handle_errors
def pull(
    ref: Annotated[
        str,
        typer.Argument(
            help="NAME[:ALIAS|:vN] from the local store (default alias: latest), or "
            "ENTITY/PROJECT/NAME:ALIAS from W&B.",
            show_default=False,
        ),
    ],
    root: Annotated[
        Path | None,
        typer.Option(
            "--root",
            "-r",
            help="Directory to fill [default: ./artifacts/NAME-vN].",
            show_default=False,
        ),
    ] = None,
    type_: TypeOpt = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace a --root that holds other files.")
    ] = False,
    copy: Annotated[
        bool, typer.Option("--copy", help="Always copy files (never hard-link from the store).")
    ] = False,
    store: StoreOpt = None,
) -> None:
    """Fetch a version into a directory, verify every sha256, print the directory."""
    from expctl.artifacts import wandb_remote
    from expctl.artifacts.store import ArtifactStore

    if wandb_remote.is_remote_ref(ref):
        out(str(wandb_remote.pull(ref, root, type=type_, force=force)))
        return
    artifacts = ArtifactStore(store)
    version = artifacts.resolve(ref, type=type_)
    with _progress_bar(version.size, version.ref) as progress:
        path = artifacts.pull(
            version, root, force=force, mode="copy" if copy else "auto", progress=progress
        )
    err(f"pulled {version.ref} ({files_text(version)}, {size_text(version.size)})")
    out(str(path))


@app.command(
    "list",
    epilog=examples(
        "expctl artifacts list",
        "expctl artifacts list digits-mlp-model",
        "expctl artifacts list --format json | jq '.[] | .ref'",
    ),
)
@handle_errors
def list_(
    name: Annotated[
        str | None,
        typer.Argument(help="Only this artifact's versions.", show_default=False),
    ] = None,
    fmt: Annotated[TableOrJson, format_option(TableOrJson)] = TableOrJson.table,
    store: StoreOpt = None,
) -> None:
    """List artifacts: names, types, versions, aliases, sizes, creating runs."""
    from expctl.artifacts.store import ArtifactStore, validate_name

    artifacts = ArtifactStore(store)
    versions = artifacts.versions(validate_name(name)) if name else artifacts.all_versions()
    emit(VersionList(versions, empty=f"no artifacts in {artifacts.root}"), fmt)


@app.command(
    "show",
    epilog=examples(
        "expctl artifacts show digits-mlp-model:best",
        "expctl artifacts show digits-mlp-model:v0 --runs-dir /scratch/runs",
        "expctl artifacts show digits-mlp-model --format json | jq '.consumed_by.runs[].run_dir'",
    ),
)
@handle_errors
def show(
    ref: Annotated[
        str,
        typer.Argument(
            help="NAME[:ALIAS|:vN] in the local store (default alias: latest).",
            show_default=False,
        ),
    ],
    runs_dir: Annotated[
        Path | None,
        typer.Option(
            "--runs-dir",
            envvar="EXPCTL_RUNS_DIR",
            help="Where to look for runs that consumed it (default: ./runs).",
            show_default=False,
        ),
    ] = None,
    fmt: Annotated[TableOrJson, format_option(TableOrJson)] = TableOrJson.table,
    store: StoreOpt = None,
) -> None:
    """A version's files, digest, aliases, the run that produced it (commit, metrics), what
    that run was initialised from (back to the start), and every run initialised from it."""
    from expctl.artifacts.store import ArtifactStore
    from expctl.rundir import runs_root
    from expctl.runs.lineage import version_lineage

    lineage = version_lineage(ArtifactStore(store), ref, runs_root(runs_dir))
    emit(LineagePage(lineage), fmt)
    for note in lineage.notes:
        err(f"note: {printable(note)}")


@app.command(
    "push",
    epilog=examples(
        "expctl artifacts push runs/digits-mlp/20261201-101500-1a2b3c/checkpoints "
        "--name digits-mlp-model --type model --alias best",
        "expctl artifacts push data/digits.npz --name digits --type dataset",
        "expctl artifacts push ckpt.pt --name my-model --metadata '{\"val_acc\": 0.97}'",
    ),
)
@handle_errors
def push(
    path: Annotated[
        Path, typer.Argument(help="A file or a directory to publish.", show_default=False)
    ],
    name: Annotated[str, typer.Option("--name", "-n", help="Artifact name.", show_default=False)],
    type_: Annotated[
        str | None,
        typer.Option(
            "--type",
            "-t",
            show_default=False,
            help="Artifact type [default: the artifact's existing type, else dataset].",
        ),
    ] = None,
    alias: Annotated[
        list[str] | None,
        typer.Option(
            "--alias",
            "-a",
            help="Alias to move to this version (repeatable); latest moves automatically.",
            show_default=False,
        ),
    ] = None,
    metadata: Annotated[
        str | None,
        typer.Option(
            "--metadata", "-m", help="A JSON object stored with the version.", show_default=False
        ),
    ] = None,
    store: StoreOpt = None,
) -> None:
    """Publish a file or directory as a new version (or find the identical one); print NAME:vN."""
    from expctl.artifacts.publish import publish_path

    meta = _parse_metadata(metadata)
    version = publish_path(
        path, name, type=type_, aliases=alias or [], metadata=meta, store_root=store
    )
    state = "unchanged, same content as" if version.reused else "published"
    err(
        f"{state} {version.ref} ({files_text(version)}, {size_text(version.size)}; "
        f"aliases moved here: {', '.join(version.moved) or 'none'})"
    )
    out(version.ref)


@app.command(
    "alias",
    epilog=examples(
        "expctl artifacts alias digits-mlp-model:v3 best",
        "expctl artifacts alias digits-mlp-model:v3 production",
        "expctl artifacts alias digits-mlp-model:v3 production --remove",
    ),
)
@handle_errors
def alias(
    ref: Annotated[
        str, typer.Argument(help="NAME:vN (or NAME:ALIAS) of the version.", show_default=False)
    ],
    name: Annotated[str, typer.Argument(help="The alias to move there.", show_default=False)],
    remove: Annotated[
        bool, typer.Option("--remove", help="Remove the alias from that version instead.")
    ] = False,
    store: StoreOpt = None,
) -> None:
    """Move an alias (best, production, ...) to a version, or --remove it; prints NAME:vN."""
    from expctl.artifacts.aliases import remove_alias, set_alias
    from expctl.artifacts.store import ArtifactStore

    change = remove_alias if remove else set_alias
    version = change(ArtifactStore(store), ref, name)
    err(
        f"{'removed' if remove else 'moved'} alias {name!r} "
        f"{'from' if remove else 'to'} {version.ref} "
        f"(its aliases: {', '.join(version.aliases) or 'none'})"
    )
    out(version.ref)


def _parse_metadata(text: str | None) -> dict | None:
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise UsageError(
            f"--metadata is not valid JSON: {e}",
            hint="give a JSON object, e.g. --metadata '{\"val_acc\": 0.97}'",
        ) from None
    if not isinstance(data, dict):
        raise UsageError(
            "--metadata must be a JSON object", hint="e.g. --metadata '{\"val_acc\": 0.97}'"
        )
    return data
