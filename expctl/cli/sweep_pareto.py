"""How ``sweep status`` and ``sweep best`` show a multi-objective sweep: one column per objective
and a ``*`` on each Pareto-optimal trial (there is no single best trial, there is a front).

Called by :mod:`expctl.cli.sweep` and :mod:`expctl.cli.sweep_results` when the sweep has
``metrics:`` (``sweep best``'s table is :func:`best_table` for every sweep: one value column
when there is one metric); pages rendered by :func:`expctl.cli.output.emit`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from expctl.cli.output import Table, short_number, table_lines

if TYPE_CHECKING:
    from expctl.runs.sweep_results import SweepResults, Trial
    from expctl.sweeps.overview import SweepStatus, TrialRow

PARETO_MARK = "*"
LEADERBOARD_ROWS = 50  # trials shown beyond the front (as `sweep status` of one metric)


def objectives_text(objectives: list[dict[str, Any]]) -> str:
    return ", ".join(f"{o['name']} ({o['goal']})" for o in objectives)


def status_lines(status: SweepStatus, head: list[str], agents_line: str) -> list[str]:
    """``sweep status`` of a multi-objective sweep: ``head`` (the sweep and its progress), the
    objectives, the agents, then every trial with a column per objective; front trials first,
    marked ``*``."""
    objectives = status.objectives or []
    lines = [
        *head,
        f"objectives: {objectives_text(objectives)}; Pareto front: {len(status.front)} trial"
        f"{'s' if len(status.front) != 1 else ''} (marked {PARETO_MARK})",
        agents_line,
    ]
    names = [o["name"] for o in objectives]
    ordered = sorted(status.trials, key=_front_first)
    shown = len(status.front) + LEADERBOARD_ROWS  # the front, the next best, every running one
    ordered = ordered[:shown] + [t for t in ordered[shown:] if t.state == "running"]
    rows = [_status_row(t, names) for t in ordered]
    if rows:
        header = ("#", "pareto", "state", *names, "seconds", "params", "run dir", "note")
        lines += ["", *table_lines(header, rows)]
    if len(rows) < len(status.trials):
        left = len(status.trials) - len(rows)
        lines.append(f"... {left:,} more trials (--format json lists every trial)")
    return lines


def _front_first(t: TrialRow) -> tuple:
    order = {"complete": 0, "pruned": 1, "running": 2, "waiting": 3, "fail": 4}
    return (not t.pareto, order.get(t.state, 5), t.number)


def _status_row(t: TrialRow, names: list[str]) -> tuple:
    values = [short_number(t.values[n]) if t.values else "" for n in names]
    params = " ".join(f"{k}={short_number(v)}" for k, v in t.params.items())
    seconds = f"{t.duration:.1f}" if t.duration is not None else ""
    state = t.state if t.retry_of is None else f"{t.state} (re-run of {t.retry_of})"
    note = t.message if t.state != "complete" and t.message else ""
    mark = PARETO_MARK if t.pareto else ""
    return (t.number, mark, state, *values, seconds, params, t.run_dir or "", note)


def value_text(results: SweepResults) -> Callable[[Trial], str]:
    """How ``sweep best`` names a trial's result in its messages: ``name=value`` for each
    objective (or the one metric)."""

    def text(t: Trial) -> str:
        if t.values:
            return " ".join(f"{k}={short_number(v)}" for k, v in t.values.items())
        return f"{results.metric or 'value'}={short_number(t.value)}"

    return text


def best_table(results: SweepResults, rows: list[dict[str, Any]], refs: bool) -> Table:
    """``sweep best``'s table: the chosen trials, a column for the metric or for each objective
    (a multi-objective sweep's front)."""
    names = [o["name"] for o in results.objectives or []]
    value_columns = names or [results.metric or "value"]
    header = ["rank", "trial", *value_columns, "run", "run dir", "overrides"]
    if refs:
        header.append("artifact")
    table = []
    for r in rows:
        values = r.get("values") or {}
        shown = (
            [short_number(values.get(n)) for n in names] if names else [short_number(r["value"])]
        )
        line = [r["rank"], r["number"], *shown, r["run_id"] or "", r["run_dir"] or ""]
        line.append(" ".join(r["overrides"]))
        if refs:
            line.append(r.get("artifact", ""))
        table.append(tuple(line))
    return Table(tuple(header), table)
