"""`expctl runs list|show|compare|plot|tag|untag|note` — look at the local records of runs, and
label them, no server needed.

Each command reads run directories through :mod:`expctl.runs` and renders the result: data on
stdout (tables, JSON, CSV, the path of a plot), notes on damaged records on stderr. Listing
reads ``summary.json`` and ``overrides.yaml`` only and imports no torch, wandb or optuna
(``--sweep`` asks the sweep storage, so it imports optuna); plotting libraries are imported
by ``plot`` alone. ``tag``, ``untag`` and ``note`` change only the run's ``labels.json``
(:mod:`expctl.runs.labels`), never its record; like ``artifacts alias`` they print the run
directory on stdout and say what changed on stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from expctl.cli import runs_render as render
from expctl.cli.common import err, examples, handle_errors, no_color, out
from expctl.cli.output import (
    TableJsonCsv,
    TableOrJson,
    csv_text,
    format_option,
    json_text,
    table_lines,
)
from expctl.cli.sweep_options import StorageOpt

if TYPE_CHECKING:
    from expctl.runs.query import Condition, RunView
    from expctl.runs.records import RunInfo

app = typer.Typer(
    help="List, inspect, compare and plot runs from their run directories (offline).",
    no_args_is_help=True,
)

RunsDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--runs-dir",
        envvar="EXPCTL_RUNS_DIR",
        help="Where run directories live (default: ./runs).",
        show_default=False,
    ),
]
RunArg = Annotated[
    str,
    typer.Argument(
        help="A run directory, a run id (or a unique prefix), or latest (latest~1: the one "
        "before).",
        show_default=False,
    ),
]
RunsArg = Annotated[
    list[str],
    typer.Argument(
        help="Runs: run directories, run ids (or unique prefixes), latest, latest~1, ...",
        show_default=False,
    ),
]
MetricOpt = Annotated[
    str | None,
    typer.Option(
        "--metric",
        "-m",
        help="Metric to follow (default: the runs' monitored metric).",
        show_default=False,
    ),
]

WHERE_HELP = (
    "Keep runs where KEY OP VALUE holds (repeatable; all must hold). OP: < <= > >= = != "
    "~ (glob) !~. KEY: a field (id name status kind device started duration sweep), a final "
    "metric (val_loss), an override or parameter (optim.lr, model), any key of the resolved "
    "config (data.batch_size), provenance (git.commit: a prefix matches, git.dirty, "
    "git.branch, env.host, env.device, env.slurm_job, pkg.torch); prefixes final. best. "
    "param. config. force one."
)


def _root(runs_dir: Path | None) -> Path:
    from expctl.rundir import runs_root

    return runs_root(runs_dir)


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
    from expctl.record.scan import scan_runs_root
    from expctl.runs.query import (
        RunView,
        apply_where,
        parse_condition,
        sort_key_name,
        sort_views,
        sweep_runs,
    )
    from expctl.runs.records import load_run

    conditions = [parse_condition(w) for w in where or []]
    root = _root(runs_dir)
    if sweep is not None:
        runs = sweep_runs(sweep, storage, root)
    else:
        found = scan_runs_root(root)
        _warn_unreadable(root, found.unreadable)
        runs = [load_run(p) for p in found.dirs]
    from expctl.runs.query import filter_runs

    runs = _without_refused(runs)
    runs = filter_runs(runs, name=name, statuses=status or [])
    views = apply_where([RunView(r) for r in runs], conditions)
    views = sort_views(views, sort)
    if limit is not None:
        views = views[:limit]
    extra = _extra_columns(views, sort_key_name(sort), conditions, columns or [])
    if fmt == TableJsonCsv.json:
        out(json_text([_list_json(v, extra) for v in views]))
        return
    header, rows = render.list_rows(views, extra, csv=fmt == TableJsonCsv.csv)
    if fmt == TableJsonCsv.csv:
        out(csv_text(header, rows))
        return
    if not views:
        what = "matching runs" if (conditions or name or status or sweep) else "runs"
        err(f"no {what} under {root}")
        return
    for line in table_lines(header, rows):
        out(line)


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


def _list_json(view: RunView, extra: list[str]) -> dict[str, object]:
    data = view.run.to_json()
    if extra:  # the keys asked for, as --where reads them (null: the run has none)
        data["columns"] = {key: view.lookup(key)[1] for key in extra}
    return data


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

    path = resolve_run(run, _root(runs_dir))
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
    if fmt == TableOrJson.json:
        out(
            json_text(
                {
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
            )
        )
        return
    facts = render.provenance_facts(provenance, provenance_note, digest, resumes)
    out("\n".join(render.show_lines(info, config, metric_rows, notes, rows, facts)))


# -- compare -------------------------------------------------------------------------------------


@app.command(
    "compare",
    epilog=examples(
        "expctl runs compare latest latest~1",
        "expctl runs compare 57abd2 9f01c3 --metric val_acc",
        "expctl runs compare $(expctl runs list --sort val_loss --limit 3 --format csv | "
        "tail -n +2 | cut -d, -f1) --format json",
    ),
)
@handle_errors
def compare(
    runs: RunsArg,
    metric: MetricOpt = None,
    x: Annotated[
        str | None,
        typer.Option("--x", help="Series axis: epoch or step (default: epoch when logged)."),
    ] = None,
    runs_dir: RunsDirOpt = None,
    fmt: Annotated[TableOrJson, format_option(TableOrJson)] = TableOrJson.table,
) -> None:
    """Runs side by side: the config keys that differ, final/best metrics, and the metric per
    epoch with a sparkline per run."""
    from expctl.runs.compare import compare_runs
    from expctl.runs.query import resolve_runs

    infos = resolve_runs(runs, _root(runs_dir))
    data = compare_runs(infos, metric, x)
    if fmt == TableOrJson.json:
        out(json_text(data))
        return
    for run_id, notes in data["notes"].items():
        for note in notes:
            err(f"note: run {run_id}: {note}", style="yellow")
    if sys.stdout.isatty() and not no_color():
        render.print_compare(data)
        return
    out("\n".join(render.compare_lines(data)))


# -- plot ----------------------------------------------------------------------------------------


@app.command(
    "plot",
    epilog=examples(
        "expctl runs plot latest latest~1 --metric val_loss --out curves.png",
        "expctl runs plot 57abd2 9f01c3 --metric val_acc --x epoch --out curves.html",
        "xdg-open $(expctl runs plot latest --out /tmp/curves.png)",
    ),
)
@handle_errors
def plot(
    runs: RunsArg,
    out_path: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Output file: .png/.svg/.pdf (matplotlib) or .html (plotly, self-contained).",
        ),
    ] = Path("curves.png"),
    metric: MetricOpt = None,
    x: Annotated[str, typer.Option("--x", help="X axis: step or epoch.")] = "step",
    runs_dir: RunsDirOpt = None,
) -> None:
    """Learning curves of several runs in one figure; prints only the output path."""
    from expctl.record.read import read_metrics
    from expctl.runs.compare import default_metric, metric_names
    from expctl.runs.plot import HTML_FORMATS, MATPLOTLIB_FORMATS, check_out_path, plot_runs
    from expctl.runs.query import resolve_runs

    check_out_path(out_path, (*MATPLOTLIB_FORMATS, *HTML_FORMATS))  # before reading anything
    infos = resolve_runs(runs, _root(runs_dir))
    if metric is None:
        rows = [read_metrics(r.path)[0] for r in infos]
        metric = default_metric(infos, metric_names(rows, infos))
        if metric is None:
            from expctl.errors import UsageError

            raise UsageError("these runs logged no metrics", hint="check metrics.jsonl of the runs")
    path, notes = plot_runs(infos, metric, x, out_path)
    for note in notes:
        err(f"note: {note}", style="yellow")
    out(str(path))


# -- tag / untag / note --------------------------------------------------------------------------

TagsArg = Annotated[
    list[str],
    typer.Argument(
        help="Tags: 1 to 64 characters, no spaces, commas or control characters.",
        show_default=False,
    ),
]


@app.command(
    "tag",
    epilog=examples(
        "expctl runs tag latest baseline",
        "expctl runs tag 57abd2 lr-sweep best",
        "expctl runs list --name 'digits-*' --format csv | tail -n +2 | cut -d, -f1 | "
        "xargs -I{} expctl runs tag {} digits",
    ),
)
@handle_errors
def tag(run: RunArg, tags: TagsArg, runs_dir: RunsDirOpt = None) -> None:
    """Add tags to a run (a set, as in W&B: a tag it has already is kept once), also while it
    runs; prints the run directory. Its record (summary.json) is never rewritten."""
    from expctl.record.refs import resolve_run
    from expctl.runs.labels import add_tags, check_tags

    check_tags(tags)  # a bad tag is exit 2 before anything is read
    path = resolve_run(run, _root(runs_dir))
    change = add_tags(path, tags)
    if change.already:
        err(f"note: run {_short(path)} already had {_names(change.already)}", style="yellow")
    if change.added:
        err(f"tagged run {_short(path)} with {_names(change.added)}")
    err(f"its tags: {_names(change.labels.tags) or 'none'}")
    out(str(path))


@app.command(
    "untag",
    epilog=examples(
        "expctl runs untag latest baseline",
        "expctl runs untag 57abd2 lr-sweep best",
    ),
)
@handle_errors
def untag(run: RunArg, tags: TagsArg, runs_dir: RunsDirOpt = None) -> None:
    """Remove tags from a run (a tag it does not have is a note, not an error); prints the run
    directory."""
    from expctl.record.refs import resolve_run
    from expctl.runs.labels import check_tags, remove_tags

    check_tags(tags)
    path = resolve_run(run, _root(runs_dir))
    change = remove_tags(path, tags)
    if change.missing:
        err(f"note: run {_short(path)} has no tag {_names(change.missing)}", style="yellow")
    if change.removed:
        err(f"untagged run {_short(path)}: {_names(change.removed)}")
    err(f"its tags: {_names(change.labels.tags) or 'none'}")
    out(str(path))


@app.command(
    "note",
    epilog=examples(
        "expctl runs note latest 'baseline for the lr sweep'",
        "expctl runs note 57abd2 'diverged at epoch 3: lr too high' --append",
        "git log -1 --format=%B | expctl runs note latest -",
        "expctl runs note latest ''   # clears the notes",
    ),
)
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
    path = resolve_run(run, _root(runs_dir))
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
