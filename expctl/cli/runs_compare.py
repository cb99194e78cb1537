"""`expctl runs compare|plot` — several runs side by side: tables of what differs, and curves.

Registered onto the ``runs`` Typer app by :func:`register` (``cli/runs.py``). The library side
is :mod:`expctl.runs.compare` and :mod:`expctl.runs.plot` (plotting libraries are imported by
``plot`` alone); the page is drawn by :func:`expctl.cli.output.emit`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NamedTuple

import typer

from expctl.cli.common import err, examples, handle_errors, out
from expctl.cli.output import (
    Document,
    Lines,
    Table,
    TableOrJson,
    emit,
    format_option,
    json_cell,
    short_number,
)
from expctl.cli.runs_options import MetricOpt, RunsArg, RunsDirOpt, runs_root_of
from expctl.cli.runs_render import SHORT_COMMIT, num

COMPARE_EPILOG = examples(
    "expctl runs compare latest latest~1",
    "expctl runs compare 57abd2 9f01c3 --metric val_acc",
    "expctl runs compare $(expctl runs list --sort val_loss --limit 3 --format csv | "
    "tail -n +2 | cut -d, -f1) --format json",
)
PLOT_EPILOG = examples(
    "expctl runs plot latest latest~1 --metric val_loss --out curves.png",
    "expctl runs plot 57abd2 9f01c3 --metric val_acc --x epoch --out curves.html",
    "xdg-open $(expctl runs plot latest --out /tmp/curves.png)",
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

    infos = resolve_runs(runs, runs_root_of(runs_dir))
    comparison = Comparison(compare_runs(infos, metric, x))
    comparison.say_notes()
    emit(comparison, fmt)


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
    infos = resolve_runs(runs, runs_root_of(runs_dir))
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


def register(app: typer.Typer) -> None:
    """Add ``compare`` and ``plot`` to the ``runs`` app."""
    app.command("compare", epilog=COMPARE_EPILOG)(compare)
    app.command("plot", epilog=PLOT_EPILOG)(plot)


PROVENANCE_TITLE = "code and environment (what differs)"
NO_DIFFERENCES = ["(no differences)"]
METRICS_TITLE = "metrics: final (and at the best step of the monitored metric, where it differs)"


class Comparison(NamedTuple):
    """`runs compare`'s result: :func:`expctl.runs.compare.compare_runs`'s data (JSON as is)."""

    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return self.data

    def say_notes(self) -> None:
        """Damage found while comparing, on stderr (whatever the format)."""
        for run_id, notes in self.data["notes"].items():
            for note in notes:
                err(f"note: run {run_id}: {note}", style="yellow")

    def page(self) -> Document:
        data = self.data
        ids = tuple(r["id"] for r in data["runs"])
        runs = [(r["id"], r["name"], r["status"], r["run_dir"]) for r in data["runs"]]
        blocks: list[Table | Lines] = [Table(("id", "name", "status", "run dir"), runs, "runs")]
        config = [(k, *(cell(v) for v in values)) for k, values in data["config"].items()]
        blocks.append(_or_none(Table(("key", *ids), config, "config (keys that differ)")))
        code = provenance_rows(data["provenance"])
        blocks.append(_or_none(Table(("", *ids), code, PROVENANCE_TITLE)))
        if data["final_metrics"]:
            table = [(k, *metric_cells(data, k)) for k in data["final_metrics"]]
            blocks.append(Table(("metric", *ids), table, METRICS_TITLE, right=ids))
        if data["metric"]:
            blocks.append(_series_table(data))
        return Document(blocks)


def _or_none(table: Table) -> Table | Lines:
    """A table of differences, or "(no differences)" under its title."""
    return table if table.rows else Lines(NO_DIFFERENCES, table.title)


def _series_table(data: dict[str, Any]) -> Table:
    rows = [
        (
            s["id"],
            s["sparkline"],
            num(s["first"]),
            num(s["last"]),
            num(s["min"]),
            num(s["max"]),
            len(s["points"]),
        )
        for s in data["series"]
    ]
    numbers = ("first", "last", "min", "max", "points")
    columns = ("run", "curve", *numbers)
    return Table(columns, rows, f"{data['metric']} by {data['x']}", right=numbers)


def provenance_rows(provenance: dict[str, Any]) -> list[tuple[str, ...]]:
    """Rows of `runs compare`'s code-and-environment table: the facts that differ (a commit
    short, a diff by its digest's first digits), then the packages whose versions differ."""
    rows = []
    for label, values in provenance["facts"].items():
        rows.append((label, *(_provenance_cell(label, v) for v in values)))
    for name, versions in provenance["packages"].items():
        rows.append((f"package {name}", *(v or "(not installed)" for v in versions)))
    return rows


def _provenance_cell(label: str, value: Any) -> str:
    if value is None:
        return "(none)" if label == "diff" else "—"
    if label == "commit":
        return str(value)[:SHORT_COMMIT]
    if label == "diff":
        return str(value)[: len("sha256:") + SHORT_COMMIT]
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def metric_cells(data: dict[str, Any], key: str) -> list[str]:
    cells = []
    for final, best in zip(data["final_metrics"][key], data["best_metrics"][key], strict=True):
        text = num(final)
        if best is not None and best != final and not (_nan(best) and _nan(final)):
            text += f" (at best {num(best)})"
        cells.append(text)
    return cells


def _nan(value: Any) -> bool:
    return isinstance(value, float) and value != value


def cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return short_number(value)
    if isinstance(value, dict | list):
        return json_cell(value)
    return str(value)
