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

from expctl.cli.common import console, err, examples, handle_errors, out
from expctl.cli.output import (
    TableOrJson,
    format_option,
    json_text,
    printable,
    short_number,
    table_lines,
)
from expctl.errors import UsageError

if TYPE_CHECKING:
    from expctl.artifacts.store import ArtifactVersion, Progress
    from expctl.runs.lineage import Lineage, LineageRun

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
    err(f"pulled {version.ref} ({_files(version)}, {_size(version.size)})")
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
    if fmt == TableOrJson.json:
        out(json_text([v.summary() for v in versions]))
        return
    if not versions:
        err(f"no artifacts in {artifacts.root}")
        return
    # One table on a terminal and in a pipe, aligned like every other table (`runs list`):
    # nothing is cut, so two versions never read the same; scripts use --format json.
    for line in version_table(versions):
        out(line)


def _metric(version: ArtifactVersion) -> str:
    """The creating run's monitored metric (``val_loss=0.1594``): what ``best`` compares."""
    monitored = version.monitored
    return f"{monitored[0]}={monitored[2]:.4g}" if monitored else ""


LIST_COLUMNS = ("ref", "type", "aliases", "metric", "size", "files", "created", "run")


def version_table(versions: list[ArtifactVersion]) -> list[str]:
    """``artifacts list`` as plain aligned lines (:func:`expctl.cli.output.table_lines`)."""
    rows = [
        (
            v.ref,
            v.type,
            ",".join(v.aliases),
            _metric(v),
            _size(v.size),
            len(v.files),
            v.created[:16].replace("T", " "),  # minutes are enough to tell versions apart
            _short_run(v.run_dir),
        )
        for v in versions
    ]
    return table_lines(LIST_COLUMNS, rows)


def _short_run(path: str | None) -> str:
    """RUN_NAME/STAMP-ID identifies a run (a table cell: the full path is in plain/json)."""
    return "/".join(Path(path).parts[-2:]) if path else ""


def _files(version: ArtifactVersion) -> str:
    n = len(version.files)
    return f"{n} file{'' if n == 1 else 's'}"


def _size(n: int) -> str:
    from expctl.artifacts.store import human_size

    return human_size(n)


CONSUMERS_SHOWN = 10  # runs listed under "consumed by" on the page (JSON lists them all)


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
    if fmt == TableOrJson.json:
        out(json_text(lineage.to_json()))
        return
    for line in lineage_lines(lineage):
        out(line)
    for note in lineage.notes:
        err(f"note: {printable(note)}")


def lineage_lines(lineage: Lineage) -> list[str]:
    """The human page of ``artifacts show``, one printable line each."""
    v = lineage.version
    lines = [
        f"artifact      {v.ref}",
        f"type          {v.type}",
        f"created       {v.created}",
        f"digest        sha256:{v.digest}",
        f"size          {_size(v.size)} in {_files(v)}",
        f"aliases       {', '.join(v.aliases) or '(none)'}",
        "files:",
        *("  " + line for line in _file_table(v)),
    ]
    shown = {k: val for k, val in v.metadata.items() if k != "config"}
    if shown or "config" in v.metadata:
        lines.append("metadata:")
        lines += [f"  {k}: {_short_json(val)}" for k, val in shown.items()]
        if "config" in v.metadata:
            lines.append("  config: (the run's resolved config; --format json shows it)")
    lines.append("produced by:")
    lines += ["  " + line for line in _run_lines(lineage.producer, "no run recorded")]
    lines.append("initialised from:")
    if not lineage.chain:
        lines.append("  nothing (trained from scratch, or not recorded)")
    for link in lineage.chain:  # newest first: each one was trained from the next
        what = link.version or str(link.init_from.get("file") or link.init_from.get("ref"))
        sha = str(link.init_from.get("sha256") or "")[:12]
        where = "" if link.in_store or link.version is None else ", no longer in the store"
        lines.append(f"  <- {what} (file {link.init_from.get('file')}, sha256 {sha}{where})")
        if link.producer is not None:
            lines += ["     " + line for line in _run_lines(link.producer, "")]
        if link.stop:
            lines.append(f"     ({link.stop})")
    consumers = lineage.consumers
    count = len(consumers)
    lines.append(
        f"consumed by:  {count} run{'' if count == 1 else 's'} under {lineage.runs_root}"
        + (" (--init-from)" if count else "")
    )
    for run in consumers[:CONSUMERS_SHOWN]:
        lines.append("  " + _run_lines(run, "")[0])
    if count > CONSUMERS_SHOWN:
        lines.append(f"  … and {count - CONSUMERS_SHOWN} more (--format json lists them all)")
    return [printable(line) for line in lines]  # names and paths come from shared files


def _short_json(value: object, width: int = 100) -> str:
    """A metadata value on one line: long metric dicts are cut (--format json has them whole)."""
    text = json.dumps(value, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


def _file_table(version: ArtifactVersion) -> list[str]:
    rows = [(f.path, _size(f.size), f.sha256[:12]) for f in version.files]
    return table_lines(("path", "size", "sha256"), rows)


def _run_lines(run: LineageRun | None, none: str) -> list[str]:
    """``RUN_DIR (status, started)``, then its commit and key final metrics."""
    if run is None:
        return [none] if none else []
    if not run.exists:
        return [f"{run.run_dir} (run directory no longer exists)"]
    started = (run.started_at or "")[:19].replace("T", " ")
    head = f"{run.run_dir} ({run.status}{', ' + started if started else ''})"
    commit = run.commit[:12] if run.commit else "unknown"
    if run.commit and run.dirty:
        commit += " (dirty)"
    metrics = " ".join(f"{k}={short_number(val)}" for k, val in run.metrics.items())
    return [head, f"commit {commit}" + (f"   {metrics}" if metrics else "")]


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
        f"{state} {version.ref} ({_files(version)}, {_size(version.size)}; "
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
