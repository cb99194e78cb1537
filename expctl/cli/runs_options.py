"""Options and arguments every `expctl runs …` command shares: one spelling, one help text."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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


def runs_root_of(runs_dir: Path | None) -> Path:
    from expctl.rundir import runs_root

    return runs_root(runs_dir)
