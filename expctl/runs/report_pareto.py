"""The report's Pareto front of a multi-objective sweep (``metrics:``).

Two objectives: every complete trial as a point (objective 1 across, objective 2 up), the
Pareto-optimal ones in red joined by the front's staircase. Three or more: parallel coordinates,
one axis per objective, the front's lines dark red and the other trials light grey. plotly is
imported by :func:`pareto_figure` only.
"""

from __future__ import annotations

from typing import Any

from expctl.runs.sweep_results import SweepResults, Trial

FRONT_COLOR = "#d62728"
OTHER_COLOR = "#9aa5b1"  # still ≥ 2.5:1 against the white page: dominated trials stay visible


def pareto_figure(results: SweepResults) -> tuple[Any, str | None]:
    """The figure, or ``(None, why)`` when there is nothing to draw."""
    objectives = results.objectives or []
    done = [t for t in results.trials if t.state == "complete" and t.values]
    if not done:
        return None, "no complete trial yet"
    if len(objectives) == 2:
        return _scatter(results, objectives, done), None
    return _parallel(objectives, done), None


def _scatter(results: SweepResults, objectives: list[dict[str, Any]], done: list[Trial]) -> Any:
    import plotly.graph_objects as go

    x_name, y_name = (o["name"] for o in objectives)
    figure = go.Figure()
    groups = ((False, "dominated", OTHER_COLOR), (True, "Pareto front", FRONT_COLOR))
    for on_front, name, color in groups:
        chosen = [t for t in done if t.pareto == on_front]
        if not chosen:
            continue
        figure.add_trace(
            go.Scatter(
                x=[t.values[x_name] for t in chosen],  # type: ignore[index]
                y=[t.values[y_name] for t in chosen],  # type: ignore[index]
                mode="markers",
                name=name,
                marker={"color": color, "size": 10 if on_front else 7},
                text=[f"trial {t.number}<br>{results.params_text(t)}" for t in chosen],
                hovertemplate=f"%{{text}}<br>{x_name} %{{x}}<br>{y_name} %{{y}}<extra></extra>",
            )
        )
    front = sorted((t for t in done if t.pareto), key=lambda t: t.values[x_name])  # type: ignore[index]
    # the staircase that bounds what the front dominates: from a front point across to the next
    # one's first objective, then to it ("hv"); mirrored when the first objective is maximised
    x_up = objectives[0]["goal"] == "maximize"
    figure.add_trace(
        go.Scatter(
            x=[t.values[x_name] for t in front],  # type: ignore[index]
            y=[t.values[y_name] for t in front],  # type: ignore[index]
            mode="lines",
            name="front",
            line={"color": FRONT_COLOR, "shape": "vh" if x_up else "hv"},
            hoverinfo="skip",
        )
    )
    figure.update_layout(
        xaxis_title=f"{x_name} ({objectives[0]['goal']})",
        yaxis_title=f"{y_name} ({objectives[1]['goal']})",
        template="plotly_white",
        margin={"t": 20, "l": 60, "r": 20, "b": 40},
    )
    return figure


def _parallel(objectives: list[dict[str, Any]], done: list[Trial]) -> Any:
    import plotly.graph_objects as go

    # the front drawn last, on top of the others
    ordered = sorted(done, key=lambda t: (t.pareto, t.number))
    dimensions = []
    for o in objectives:
        values = [t.values[o["name"]] for t in ordered]  # type: ignore[index]
        dimensions.append(
            {
                "label": f"{o['name']} ({o['goal'][:3]})",
                "values": values,
                "range": [min(values), max(values)],
            }
        )
    dimensions.append(
        {
            "label": "Pareto front",
            "values": [1 if t.pareto else 0 for t in ordered],
            "range": [0, 1],
            "tickvals": [0, 1],
            "ticktext": ["no", "yes"],
        }
    )
    figure = go.Figure(
        go.Parcoords(
            line={
                "color": [1 if t.pareto else 0 for t in ordered],
                "colorscale": [[0, OTHER_COLOR], [1, FRONT_COLOR]],
                "cmin": 0,
                "cmax": 1,
            },
            dimensions=dimensions,
        )
    )
    figure.update_layout(template="plotly_white", margin={"t": 40, "l": 60, "r": 60, "b": 30})
    return figure
