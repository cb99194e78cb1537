"""Learning curves of several runs in one figure: PNG/SVG/PDF with matplotlib, HTML with plotly.

matplotlib and plotly are imported here, inside the functions, never at start-up. An HTML
figure is self-contained (plotly.js embedded): it opens with no network.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expctl.errors import UsageError
from expctl.record.read import read_metrics
from expctl.runs.compare import AXES, check_metric, metric_names, metric_series
from expctl.runs.records import RunInfo

MATPLOTLIB_FORMATS = (".png", ".svg", ".pdf")
HTML_FORMATS = (".html", ".htm")
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}
# 10 colours (matplotlib's tab10 = plotly's default colorway), then the same colours dashed,
# dotted, dash-dotted: up to 40 curves, no two alike (the 11th run used to repeat the 1st).
COLORS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip
PLOTLY_DASHES = ("solid", "dash", "dot", "dashdot")
MATPLOTLIB_DASHES = ("-", "--", ":", "-.")


@dataclass(frozen=True)
class Curve:
    label: str
    points: list[tuple[float, float]]


def check_out_path(out: Path, formats: Sequence[str]) -> Path:
    """``--out``: a known extension, in a directory that exists (exit 2 otherwise)."""
    out = Path(out).expanduser()
    if out.suffix.lower() not in formats:
        raise UsageError(
            f"cannot write {out}: unknown file type {out.suffix or '(none)'!r}",
            hint=f"end --out with one of {', '.join(formats)}",
        )
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(
            f"cannot write {out}: the directory {parent} does not exist",
            hint=f"create it first (mkdir -p {parent}) or choose another --out",
        )
    if out.is_dir():
        raise UsageError(f"cannot write {out}: it is a directory", hint="give a file name")
    return out


def run_label(run: RunInfo, shared: frozenset[str] = frozenset(), width: int = 60) -> str:
    """``name id`` and the overrides this run does not share with the others plotted."""
    label = f"{run.name} {run.id}"
    own = [o for o in run.overrides if o not in shared]
    if own:
        label += " " + " ".join(own)
    return label if len(label) <= width else label[: width - 1] + "…"


def shared_overrides(runs: Sequence[RunInfo]) -> frozenset[str]:
    if len(runs) < 2:
        return frozenset()
    return frozenset(set(runs[0].overrides).intersection(*(r.overrides for r in runs[1:])))


def run_curves(runs: Sequence[RunInfo], metric: str, x: str) -> tuple[list[Curve], list[str]]:
    """One curve per run; unknown metric or an axis the runs lack is exit 2."""
    if x not in AXES:
        raise UsageError(f"unknown --x {x!r}", hint="--x step or --x epoch")
    rows_by_run = [read_metrics(r.path)[0] for r in runs]
    check_metric(metric, metric_names(rows_by_run, runs))
    curves, notes = [], []
    shared = shared_overrides(runs)
    for run, rows in zip(runs, rows_by_run, strict=True):
        points = metric_series(rows, metric, x)
        if not points:
            logged = any(metric in r for r in rows)
            why = f"no {x} column" if logged and x == "epoch" else f"no {metric} logged"
            notes.append(f"run {run.id}: {why}; not plotted")
            continue
        curves.append(Curve(run_label(run, shared), points))
    if not curves:
        hint = "try --x step" if x == "epoch" else "check the metric name"
        raise UsageError(f"none of the runs has {metric} by {x}", hint=hint)
    return curves, notes


def plot_runs(runs: Sequence[RunInfo], metric: str, x: str, out: Path) -> tuple[Path, list[str]]:
    """Write the learning curves to ``out`` (type by extension); returns it and notes."""
    out = check_out_path(out, (*MATPLOTLIB_FORMATS, *HTML_FORMATS))
    curves, notes = run_curves(runs, metric, x)
    title = f"{metric} by {x}"
    if out.suffix.lower() in HTML_FORMATS:
        figure = curves_figure(curves, metric, x, title)
        write_html(figure, out, title)
    else:
        _write_matplotlib(curves, metric, x, title, out)
    return out, notes


def _write_matplotlib(curves: list[Curve], metric: str, x: str, title: str, out: Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    from expctl.fsutil import atomic_path

    figure = Figure(figsize=(9, 5.5), layout="constrained")
    ax = figure.add_subplot()
    for i, curve in enumerate(curves):
        xs, ys = zip(*curve.points, strict=True)
        color, dash = line_style(i)
        ax.plot(
            xs,
            ys,
            color=color,
            linestyle=MATPLOTLIB_DASHES[dash],
            marker="o" if len(xs) <= 30 else None,
            markersize=3,
            label=curve.label,
        )
    ax.set_xlabel(x)
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    with out_errors(), atomic_path(out, fsync=False) as tmp:
        figure.savefig(tmp, format=out.suffix.lower().lstrip("."), dpi=120)
        readable(tmp)


def curves_figure(curves: Sequence[Curve], metric: str, x: str, title: str) -> Any:
    import plotly.graph_objects as go

    figure = go.Figure()
    for i, curve in enumerate(curves):
        xs, ys = zip(*curve.points, strict=True)
        color, dash = line_style(i)
        figure.add_trace(
            go.Scatter(
                x=list(xs),
                y=list(ys),
                mode="lines+markers" if len(xs) <= 50 else "lines",
                name=curve.label,
                line={"color": color, "dash": PLOTLY_DASHES[dash]},
                marker={"color": color},
            )
        )
    figure.update_layout(
        title=title,
        xaxis_title=x,
        yaxis_title=metric,
        template="plotly_white",
        legend={"orientation": "h", "y": -0.2},
        margin={"t": 50, "l": 60, "r": 20, "b": 40},
    )
    return figure


def line_style(i: int) -> tuple[str, int]:
    """Curve ``i``'s colour and dash (an index into the DASHES tuples): unique for 40 curves."""
    return COLORS[i % len(COLORS)], (i // len(COLORS)) % len(PLOTLY_DASHES)


def write_html(figure: Any, out: Path, title: str) -> None:
    """A self-contained HTML page (plotly.js embedded: no CDN, works offline)."""
    html = figure.to_html(full_html=True, include_plotlyjs=True, config=PLOTLY_CONFIG)
    html = html.replace("<head>", f"<head><title>{_escape(title)}</title>", 1)
    write_text(out, html)


def write_text(out: Path, text: str) -> None:
    """Write a file people share (a plot, a report): atomically, readable as the umask says."""
    from expctl.fsutil import atomic_path

    with out_errors(), atomic_path(out, fsync=False) as tmp:
        tmp.write_text(text, encoding="utf-8")
        readable(tmp)


# The disk's errors name the fix for an --out file (fsutil's own hints are about --runs-dir).
_OUT_HINTS = {
    errno.ENOSPC: "free space there, or write the file to another disk with --out",
    errno.EDQUOT: "free space in your quota, or write the file to another disk with --out",
    errno.EROFS: "write the file to a writable directory with --out",
    errno.EACCES: "check the directory's permissions, or choose another with --out",
}


@contextlib.contextmanager
def out_errors() -> Iterator[None]:
    """Writing ``--out`` failed on the disk: the error says so, with a hint about --out."""
    from expctl.fsutil import WriteError

    try:
        yield
    except WriteError as e:
        e.hint = _OUT_HINTS.get(e.errno or 0, e.hint)
        raise


def readable(path: Path) -> None:
    import os

    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def _escape(text: str) -> str:
    import html

    return html.escape(text, quote=True)
