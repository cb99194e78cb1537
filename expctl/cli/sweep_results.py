"""`expctl sweep report|best` — a sweep's results: one offline HTML report, the best N trials.

Registered onto the ``sweep`` Typer app by :func:`register` (``cli/sweep.py``). The library
side is :mod:`expctl.runs.report` and :mod:`expctl.runs.sweep_results`; optuna and plotly are
imported inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from expctl.cli.common import err, examples, handle_errors, out
from expctl.cli.output import Shown, TableOrJson, emit, format_option
from expctl.cli.sweep_options import StorageOpt, SweepIdArg

REPORT_EPILOG = examples(
    "expctl sweep report $SWEEP_ID --out report.html",
    "expctl sweep report $SWEEP_ID --out /shared/reports/lr.html --top-k 10",
    "scp cluster:project/report.html . && xdg-open report.html   # opens offline",
)
BEST_EPILOG = examples(
    "expctl sweep best $SWEEP_ID",
    "expctl sweep best $SWEEP_ID --top 3 --publish digits-best",
    "expctl artifacts pull digits-best:best   # the sweep's best model",
    "expctl sweep best $SWEEP_ID --format json | jq -r '.[0].run_dir'",
    "expctl sweep best $SWEEP_ID --by val_loss --top 3   # a multi-objective sweep's front",
)


@handle_errors
def report(
    sweep_id: SweepIdArg,
    out_path: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write.")] = Path(
        "report.html"
    ),
    storage: StorageOpt = None,
    top_k: Annotated[
        int, typer.Option("--top-k", min=1, help="Learning curves of this many best trials.")
    ] = 5,
) -> None:
    """One self-contained HTML report of a sweep (works with no network); prints its path.

    Leaderboard, optimisation history, parallel coordinates, parameter importance (Optuna's
    evaluator on the W&B values) and the learning curves of the top-k trials.
    """
    from expctl.runs.report import write_report

    written = write_report(sweep_id, out_path, storage=storage, top_k=top_k)
    size = written.size / 1e6
    err(f"wrote {written.path} ({size:.1f} MB): {len(written.plots)} plots")
    for note in written.notes:
        err(f"  not drawn: {note}", style="yellow")
    for caveat in written.caveats:
        err(f"  caveat: {caveat}", style="yellow")
    out(str(written.path))


@handle_errors
def best(
    sweep_id: SweepIdArg,
    top: Annotated[
        int | None,
        typer.Option(
            "--top",
            "-n",
            min=1,
            help="How many trials [default: 1; a multi-objective sweep: its whole Pareto front].",
            show_default=False,
        ),
    ] = None,
    by: Annotated[
        str | None,
        typer.Option(
            "--by",
            help="A multi-objective sweep: order its Pareto front by this objective "
            "[default: the first].",
            show_default=False,
        ),
    ] = None,
    publish: Annotated[
        str | None,
        typer.Option(
            "--publish",
            help="Publish each trial's checkpoints as a version of this artifact, with "
            "aliases best and top-1 ... top-N.",
            show_default=False,
        ),
    ] = None,
    store: Annotated[
        Path | None,
        typer.Option(
            "--store",
            envvar="EXPCTL_ARTIFACTS",
            help="Artifact store for --publish [default: ./.expctl/artifacts].",
            show_default=False,
        ),
    ] = None,
    storage: StorageOpt = None,
    fmt: Annotated[TableOrJson, format_option(TableOrJson)] = TableOrJson.table,
) -> None:
    """The best N complete trials with their run dirs and overrides (a multi-objective sweep:
    its Pareto front); with --publish, their checkpoints become versions of one artifact
    (`expctl artifacts pull NAME:best`)."""
    # (Long for its options: Typer's Annotated parameters are most of it.)
    from expctl.cli.sweep_pareto import best_table, value_text
    from expctl.runs.sweep_results import best_trials, load_sweep, publish_best

    results = load_sweep(sweep_id, storage)
    chosen = best_trials(results, top, by)
    if top is not None and len(chosen) < top:
        where = "on the Pareto front of" if results.objectives else "complete trial(s) in"
        err(f"only {len(chosen)} {where} sweep {sweep_id}", style="yellow")
    refs: dict[int, Any] = {}
    if publish is not None:
        # published worst first, so the best is the newest version; each line names its rank
        values = {t.number: value_text(results)(t) for t in chosen}
        for p in publish_best(results, chosen, publish, store, by):
            refs[p.number] = p
            again = ", same files as before" if p.reused else ""
            err(
                f"published {p.ref} as {', '.join(p.aliases)} (trial {p.number}, "
                f"{values[p.number]}{again})"
            )
        err(f"pull the best with: expctl artifacts pull {publish}:best")
    rows = []
    for rank, t in enumerate(chosen, 1):
        row = {"rank": rank, **t.to_json()}
        if t.number in refs:
            row["artifact"] = refs[t.number].ref
            row["aliases"] = list(refs[t.number].aliases)
        rows.append(row)
    emit(Shown(rows, best_table(results, rows, bool(refs))), fmt)


def register(app: typer.Typer) -> None:
    """Add ``report`` and ``best`` to the ``sweep`` app."""
    app.command("report", epilog=REPORT_EPILOG)(report)
    app.command("best", epilog=BEST_EPILOG)(best)
