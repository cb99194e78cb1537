"""The report's plotly figures of a single-metric sweep: the optimisation history, parameter
importance and the learning curves of the top trials. Each returns ``(figure, None)``, or
``(None, why)`` when there is nothing honest to draw (the report says why in its place)."""

from __future__ import annotations

from typing import Any

from expctl.record.read import read_metrics
from expctl.runs.compare import metric_series
from expctl.runs.plot import Curve, curves_figure
from expctl.runs.report_parallel import shorten
from expctl.runs.sweep_importance import importance_caveat, param_importances
from expctl.runs.sweep_results import SweepResults, Trial

LOG_SPREAD = 5.0  # a metric spanning this factor (all > 0) is drawn on a log axis


def history(results: SweepResults) -> tuple[Any, str | None]:
    finished = [
        t
        for t in results.trials
        if t.state in ("complete", "pruned") and isinstance(t.value, int | float)
    ]
    if not finished:
        return None, "no trial has finished with a value yet"
    import plotly.graph_objects as go

    metric = results.metric or "value"
    figure = go.Figure()
    varying = results.varying()  # once: per trial it made the report quadratic in trials
    for state, color in (("complete", "#1f77b4"), ("pruned", "#aaaaaa")):
        chosen = sorted((t for t in finished if t.state == state), key=lambda t: t.number)
        if chosen:
            figure.add_trace(
                go.Scatter(
                    x=[t.number for t in chosen],
                    y=[t.value for t in chosen],
                    mode="markers",
                    name=state,
                    marker={"color": color, "size": 8},
                    text=[results.params_text(t, varying) for t in chosen],
                    hovertemplate="trial %{x}<br>" + metric + " %{y}<br>%{text}<extra></extra>",
                )
            )
    best_x: list[int] = []
    best_y: list[float] = []
    best: float | None = None
    pick = max if results.maximize else min
    for t in sorted((t for t in finished if t.state == "complete"), key=lambda t: t.number):
        value = float(t.value)  # type: ignore[arg-type]
        best = value if best is None else pick(best, value)
        best_x.append(t.number)
        best_y.append(best)
    if best_x:
        figure.add_trace(
            go.Scatter(
                x=best_x,
                y=best_y,
                mode="lines",
                name="best so far",
                line={"shape": "hv", "color": "#d62728"},
            )
        )
    values = [float(t.value) for t in finished]  # type: ignore[arg-type]
    spread = min(values) > 0 and max(values) / min(values) >= LOG_SPREAD
    figure.update_layout(
        xaxis_title="trial",
        yaxis_title=metric,
        yaxis={"type": "log" if spread else "linear"},
        template="plotly_white",
        xaxis={"tickformat": "d", "dtick": 1 if len(results.trials) <= 20 else None},
        margin={"t": 20, "l": 60, "r": 20, "b": 40},
    )
    return figure, None


def importance(results: SweepResults) -> tuple[Any, str | None]:
    importances, why = param_importances(results)
    if importances is None:
        return None, why
    import plotly.graph_objects as go

    names = list(importances)[::-1]  # most important on top
    n = len(results.ranked())
    caveat = importance_caveat(n)
    figure = go.Figure(
        go.Bar(
            x=[importances[name] for name in names],
            y=names,
            orientation="h",
            text=[f"{importances[name]:.2f}" for name in names],
            textposition="outside",
            # grey when it rests on too few trials: a screenshot of the plot keeps the caveat
            marker={"color": "#aaaaaa" if caveat else "#1f77b4"},
        )
    )
    title = f"from {n} complete trials" + (" — too few to rely on" if caveat else "")
    figure.update_layout(
        title={"text": title, "font": {"size": 13, "color": "#a00" if caveat else "#555"}},
        xaxis_title=f"importance for {results.metric}",
        template="plotly_white",
        margin={"t": 40, "l": 140, "r": 40, "b": 40},
        xaxis={"range": [0, 1.1]},
    )
    return figure, None


def curves(results: SweepResults, top: list[Trial]) -> tuple[Any, str | None]:
    if not top:
        return None, "no complete trial yet"
    metric = results.metric
    if metric is None:
        return None, "the sweep has no metric"
    rows_by_trial = []
    for t in top:
        rows = read_metrics(t.run.path)[0] if t.run is not None else []
        rows_by_trial.append((t, rows))
    with_epoch = all(
        all(isinstance(r.get("epoch"), int | float) for r in rows if metric in r)
        for _, rows in rows_by_trial
    )
    axis = "epoch" if with_epoch else "step"
    curves = []
    for rank, (t, rows) in enumerate(rows_by_trial, 1):
        points = metric_series(rows, metric, axis)
        if points:
            label = f"#{rank} trial {t.number}: " + results.params_text(t)
            curves.append(Curve(shorten(label, 80), points))  # a cut shows as "…"
    if not curves:
        return None, f"the top trials' run directories hold no {metric} rows"
    figure = curves_figure(curves, metric, axis, "")
    figure.update_layout(title=None, margin={"t": 20, "l": 60, "r": 20, "b": 40})
    last = max(p[0] for c in curves for p in c.points)
    if axis == "epoch" and last <= 30:
        figure.update_xaxes(dtick=1)
    return figure, None


# -- helpers -------------------------------------------------------------------------------------
