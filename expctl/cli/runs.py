"""`expctl runs list|show|compare|plot|tag|untag|note` — look at the local records of runs, and
label them, no server needed.

Each command reads run directories through :mod:`expctl.runs` and renders the result: data on
stdout (tables, JSON, CSV, the path of a plot), notes on damaged records on stderr. Listing
reads ``summary.json`` and ``overrides.yaml`` only and imports no torch, wandb or optuna
(``--sweep`` asks the sweep storage, so it imports optuna); plotting libraries are imported
by ``plot`` alone. ``compare``/``plot`` live in ``runs_compare.py``, ``tag``/``untag``/``note``
(labels beside the record, never the record itself) in ``runs_labels.py``. Every table, JSON
and CSV is written by :func:`expctl.cli.output.emit`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from expctl.cli import runs_compare, runs_labels
from expctl.cli import runs_render as render
from expctl.cli.common import err, examples, handle_errors
from expctl.cli.output import TableJsonCsv, TableOrJson, emit, format_option
from expctl.cli.runs_options import RunArg, RunsDirOpt, runs_root_of
from expctl.cli.sweep_options import StorageOpt

if TYPE_CHECKING:
    from expctl.runs.query import Condition, RunView
    from expctl.runs.records import RunInfo

app = typer.Typer(
    help="List, inspect, compare and plot runs from their run directories (offline).",
    no_args_is_help=True,
)

WHERE_HELP = (
    "Keep runs where KEY OP VALUE holds (repeatable; all must hold). OP: < <= > >= = != "
    "~ (glob) !~. KEY: a field (id name status kind device started duration sweep), a final "
    "metric (val_loss), an override or parameter (optim.lr, model), any key of the resolved "
    "config (data.batch_size), provenance (git.commit: a prefix matches, git.dirty, "
    "git.branch, env.host, env.device, env.slurm_job, pkg.torch); prefixes final. best. "
    "param. config. force one."
)


# -- list ----------------------------------------------------------------------------------------


@app.command(
    "list",
    epilog=examples(
        "expctl runs list",
        "expctl runs list --status completed --sort val_loss --limit 5",
        "expctl runs list --where 'optim.lr<0.01' --where model=large --format csv",
        "expctl runs list --sweep $SWEEP_ID --sort -val_acc",
        "expctl runs list --name 'digits-*' --format json | jq '.[0].run_dir'",
        "expctl runs list --where git.commit=3f2a9c1 --where git.dirty=false",
        "expctl runs list --column git.commit --column env.host --sort pkg.torch",
    ),
)
@handle_errors
def list_(
    runs_dir: RunsDirOpt = None,
    sweep: Annotated[
        str | None,
        typer.Option("--sweep", help="Only the trials of this sweep id.", show_default=False),
    ] = None,
    storage: StorageOpt = None,
    name: Annotated[
        str | None,
        typer.Option("--name", help="Only runs whose name matches this glob.", show_default=False),
    ] = None,
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status",
            help="Only runs with this status (repeatable or comma-separated): completed, "
            "failed, interrupted, stopped, running, crashed.",
            show_default=False,
        ),
    ] = None,
    where: Annotated[
        list[str] | None, typer.Option("--where", "-w", help=WHERE_HELP, show_default=False)
    ] = None,
    sort: Annotated[
        str | None,
        typer.Option(
            "--sort",
            help="Sort by KEY ascending, -KEY descending (same keys as --where); default: "
            "newest first.",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option("--limit", "-n", min=1, help="Show at most N runs.", show_default=False),
    ] = None,
    columns: Annotated[
        list[str] | None,
        typer.Option(
            "--column",
            "-c",
            help="Add a column for KEY (repeatable; the keys of --where), e.g. git.commit "
            "(shown short), git.dirty, env.host, pkg.torch, optim.lr.",
            show_default=False,
        ),
    ] = None,
    fmt: Annotated[TableJsonCsv, format_option(TableJsonCsv)] = TableJsonCsv.table,
) -> None:
    """One row per run of any kind (plain runs, multirun and sweep trials, program trials).

    Columns: id, name, status (a `running` run whose process is gone shows as `crashed`),
    start time, duration, device, the monitored metric's final and best value, and the
    overrides that made the run differ from the config defaults; the --sort key, provenance
    keys named by --where (git.commit...) and --column keys are added. Damaged records are
    listed with a note.
    """
    # (Long for its options: Typer's Annotated parameters are most of it.)
    from expctl.runs.query import (
        RunView,
        apply_where,
        filter_runs,
        parse_condition,
        sort_key_name,
        sort_views,
        sweep_runs,
    )

    conditions = [parse_condition(w) for w in where or []]
    root = runs_root_of(runs_dir)
    if sweep is not None:
        runs = _without_refused(sweep_runs(sweep, storage, root))
        runs = filter_runs(runs, name=name, statuses=status or [])
        views = sort_views(apply_where([RunView(r) for r in runs], conditions), sort)
        views = views[:limit] if limit is not None else views
    else:
        from expctl.runs.selection import select_runs

        selection = select_runs(
            root, name=name, statuses=status or [], conditions=conditions, sort=sort, limit=limit
        )
        _warn_unreadable(root, selection.unreadable)
        for path, notes in selection.refused:
            err(f"warning: skipped run {path}: {'; '.join(notes)}", style="yellow")
        views = selection.views
    extra = _extra_columns(views, sort_key_name(sort), conditions, columns or [])
    what = "matching runs" if (conditions or name or status or sweep) else "runs"
    emit(render.RunsListing(views, extra, empty=f"no {what} under {root}"), fmt)


def _extra_columns(
    views: list[RunView], sort: str | None, conditions: list[Condition], columns: list[str]
) -> list[str]:
    """Columns beyond the fixed ones: the --sort key, the provenance keys --where names (a
    commit prefix matched is worth seeing whole) and --column keys; none already shown."""
    from expctl.runs.query import PROVENANCE_PREFIXES, check_keys

    check_keys(columns, views, "--column")
    named = [c.key for c in conditions if c.key.startswith(PROVENANCE_PREFIXES)]
    fixed = ("started", "duration", "id", "name", "status", "device")
    extra = []
    for key in [*([sort] if sort else []), *named, *columns]:
        if key in fixed or key in extra:
            continue
        if key == sort and views and all(key == v.run.monitor for v in views):
            continue  # the metric column
        extra.append(key)
    return extra


def _warn_unreadable(root: Path, unreadable: list[str]) -> None:
    """One warning for every directory of the tree that could not be read (/proc has dozens)."""
    if len(unreadable) == 1:
        err(f"warning: skipped an unreadable directory: {unreadable[0]}", style="yellow")
    elif unreadable:
        err(
            f"warning: skipped {len(unreadable)} unreadable directories under {root} "
            f"(first: {unreadable[0]})",
            style="yellow",
        )


def _without_refused(runs: list[RunInfo]) -> list[RunInfo]:
    """Runs whose record files were refused as unsafe (a FIFO, /dev/zero, an alias bomb) are
    left out of the listing, each with one warning; the rest are listed as usual."""
    kept = []
    for run in runs:
        if run.refused:
            err(f"warning: skipped run {run.path}: {'; '.join(run.refused)}", style="yellow")
        else:
            kept.append(run)
    return kept


# -- show ----------------------------------------------------------------------------------------


@app.command(
    "show",
    epilog=examples(
        "expctl runs show latest",
        "expctl runs show 57ab",
        "expctl runs show runs/digits-mlp/20260101-120000-57abd2 --format json | jq .summary",
    ),
)
@handle_errors
def show(
    run: RunArg,
    runs_dir: RunsDirOpt = None,
    rows: Annotated[
        int,
        typer.Option("--rows", min=0, help="Metric rows to show in the table (the last N)."),
    ] = 20,
    fmt: Annotated[TableOrJson, format_option(TableOrJson)] = TableOrJson.table,
) -> None:
    """A run's summary, its provenance (commit and dirty state, key versions, host, devices,
    SLURM ids), its full resolved config and its metrics."""
    from expctl.record.files import resume_dirs as resume_provenance_dirs
    from expctl.record.read import (
        diff_digest,
        read_config,
        read_metrics,
        read_overrides,
        read_provenance,
    )
    from expctl.record.refs import resolve_run
    from expctl.record.safe_read import Refused
    from expctl.runs.lineage import run_artifacts
    from expctl.runs.records import load_run

    path = resolve_run(run, runs_root_of(runs_dir))
    info = load_run(path)
    config, config_note = read_config(path)
    metric_rows, metric_notes = read_metrics(path)
    given, _ = read_overrides(path)
    provenance, provenance_note = read_provenance(path)
    digest, digest_note = diff_digest(path)
    resumes = [(p.name, read_provenance(p)[0]) for p in resume_provenance_dirs(path)]
    notes = [*info.notes, *metric_notes, *([config_note] if config_note else [])]
    notes += [n for n in (digest_note,) if n]
    if isinstance(provenance_note, Refused):
        notes.append(provenance_note)
    data = {
        "run": info.to_json(),
        "summary": info.summary,
        "overrides": given,
        "artifacts": run_artifacts(path, info.summary).to_json(),
        "config": config,
        "provenance": provenance,
        "diff_sha256": digest,
        "resumes": [{"resume": n, "provenance": p} for n, p in resumes],
        "metrics": metric_rows,
        "notes": notes,
    }
    facts = render.provenance_facts(provenance, provenance_note, digest, resumes)
    emit(render.RunPage(info, data, facts, rows), fmt)


runs_compare.register(app)  # `runs compare` and `runs plot`: several runs side by side
runs_labels.register(app)  # `runs tag`, `untag`, `note`: labels beside the record
