"""The report's parallel-coordinates plot: one line per complete trial, one axis per parameter.

Built here rather than with ``optuna.visualization.plot_parallel_coordinate`` because that plot
misleads on the sweeps people run: its colour scale fades the worst trials to white (invisible
on a white page), it draws log-distributed parameters on linear axes, keeps categories in the
order they were first seen and gives integer parameters fractional ticks. Each axis here is
built from the values the trials really took (:func:`axis`), so the rules are testable without
drawing anything. plotly is imported by :func:`parallel_figure` only.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from expctl.record.jsonpolicy import is_finite_number as _number
from expctl.runs.sweep_importance import infer_distributions
from expctl.runs.sweep_results import SweepResults, Trial

# plotly's Plasma without its light end: every stop keeps >= 2.9:1 contrast against the white
# page (the lightest, #ed7953), so the worst trial's line is as visible as the best one's.
COLORSCALE = ["#0d0887", "#46039f", "#7201a8", "#9c179e", "#bd3786", "#d8576b", "#ed7953"]
MAX_TICKS = 8  # numeric axes: ticks enough to read a value off, never crowded
# category axes: one label per category up to this many (~20 px each at the report's height,
# so they never overlap); beyond it, evenly spread ones only
MAX_CATEGORY_LABELS = 16
LABEL_WIDTH = 12  # characters of a category's tick label (longer ones end in "…")
NAME_WIDTH = 20  # characters of an axis title


@dataclass(frozen=True)
class Axis:
    """One parcoords dimension: ``values`` are what is plotted (log10 of the value on a log
    axis, the category's position on a categorical one); ticks carry the real values."""

    name: str
    kind: str  # "log" | "linear" | "int" | "category"
    values: list[float]
    range: tuple[float, float]
    tickvals: list[float] | None
    ticktext: list[str] | None

    def dimension(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "label": shorten(self.name, NAME_WIDTH, keep="end"),
            "values": self.values,
            "range": list(self.range),
        }
        if self.tickvals is not None:
            found["tickvals"] = self.tickvals
            found["ticktext"] = self.ticktext
        return found


def parallel_figure(results: SweepResults, ranked: Sequence[Trial]) -> tuple[Any, str | None]:
    """The figure, or ``(None, why)`` when there is nothing to draw."""
    if not ranked:
        return None, "no complete trial yet"
    distributions = infer_distributions(ranked)
    if not distributions:
        return None, "no parameter took more than one value"
    import plotly.graph_objects as go

    metric = results.metric or "value"
    axes = [
        axis(name, [t.params.get(name) for t in ranked], _is_log(distributions[name]))
        for name in distributions
    ]
    values = [float(t.value) for t in ranked]  # type: ignore[arg-type]
    axes.append(axis(metric, values, log=False))
    figure = go.Figure(
        go.Parcoords(
            dimensions=[a.dimension() for a in axes],
            line={
                "color": values,
                "colorscale": COLORSCALE,
                # the best trial is the darkest line, whichever way the metric goes
                "reversescale": results.maximize,
                "showscale": True,
                "colorbar": {"title": {"text": shorten(metric, NAME_WIDTH, keep="end")}},
            },
            labelangle=0,
            tickfont={"size": 11},
        )
    )
    figure.update_layout(margin={"t": 60, "l": 70, "r": 100, "b": 30})
    return figure, None


def axis(name: str, seen: Sequence[Any], log: bool) -> Axis:
    """The axis for one parameter from the values the trials took."""
    if seen and all(_number(v) for v in seen):
        numbers = [float(v) for v in seen]
        integer = all(isinstance(v, int) for v in seen)
        if log and min(numbers) > 0:
            return _log_axis(name, numbers, integer)
        return _linear_axis(name, numbers, integer)
    return _category_axis(name, seen)


def _log_axis(name: str, numbers: list[float], integer: bool) -> Axis:
    # plotly's parcoords has no log axis: plot log10(value), label the ticks with real values
    logs = [math.log10(v) for v in numbers]
    low, high = min(logs), max(logs)
    distinct = sorted(set(logs))
    if _readable(distinct, high - low):
        ticks = distinct  # a grid: a tick at each value it took, nothing between
    else:  # ticks at whole decades, and the axis spans them so that each one is drawn
        low, high = math.floor(low), math.ceil(high)
        step = max(1, math.ceil((high - low) / (MAX_TICKS - 1)))
        ticks = [float(k) for k in range(int(low), int(high) + 1, step)]
    text = [_number_text(10.0**t, integer) for t in ticks]
    return Axis(name, "log", logs, (low, high), ticks, text)


def _linear_axis(name: str, numbers: list[float], integer: bool) -> Axis:
    lo, hi = min(numbers), max(numbers)
    distinct = sorted(set(numbers))
    ticks: list[float] | None = None
    if _readable(distinct, hi - lo):
        ticks = distinct  # a grid: a tick at each value it took, nothing between
    elif integer:  # whole numbers only: plotly would put ticks at 2.5, 3.5, ...
        step = _nice_step(hi - lo)
        first = math.ceil(lo / step) * step
        ticks = [float(v) for v in range(int(first), int(hi) + 1, step)]
    kind = "int" if integer else "linear"
    text = None if ticks is None else [_number_text(t, integer) for t in ticks]
    if lo == hi:  # every trial ended on the same value: an axis of zero length draws nothing
        lo, hi = lo - 0.5, hi + 0.5
    return Axis(name, kind, numbers, (lo, hi), ticks, text)


def _readable(positions: list[float], span: float) -> bool:
    """Few enough values, far enough apart, for a label at each without overlap."""
    if len(positions) > MAX_TICKS:
        return False
    gaps = [b - a for a, b in itertools.pairwise(positions)]
    return not gaps or min(gaps) >= span / (2 * MAX_TICKS)


def _nice_step(span: float) -> int:
    """A whole-number step of 1, 2 or 5 × 10^k giving at most MAX_TICKS ticks over ``span``."""
    step = 1
    while span / step > MAX_TICKS - 1:
        for factor in (2, 5 / 2, 2):  # 1 → 2 → 5 → 10 → 20 ...
            step = round(step * factor)
            if span / step <= MAX_TICKS - 1:
                break
    return step


def _category_axis(name: str, seen: Sequence[Any]) -> Axis:
    categories = sorted({_category_key(v): v for v in seen}.values(), key=_category_order)
    position = {_category_key(v): float(i) for i, v in enumerate(categories)}
    shown = _spread(list(range(len(categories))), MAX_CATEGORY_LABELS)
    return Axis(
        name,
        "category",
        [position[_category_key(v)] for v in seen],
        (float(max(len(categories) - 1, 1)), 0.0),  # the first category on top: a list reads down
        [float(i) for i in shown],
        [shorten(_category_text(categories[i]), LABEL_WIDTH, keep="ends") for i in shown],
    )


def shorten(text: str, width: int, *, keep: str = "start") -> str:
    """``text`` in at most ``width`` characters; a cut is always shown by "…". ``keep``:
    ``start``, ``end`` or ``ends`` (both: names that share a prefix stay apart)."""
    if len(text) <= width:
        return text
    if keep == "end":
        return "…" + text[-(width - 1) :]
    if keep == "ends":
        head = (width - 1) // 2
        return text[:head] + "…" + text[-(width - 1 - head) :]
    return text[: width - 1] + "…"


def _spread(items: list[int], most: int) -> list[int]:
    """At most ``most`` of ``items``, evenly spaced, the first and the last always kept."""
    if len(items) <= most:
        return items
    step = (len(items) - 1) / (most - 1)
    return sorted({items[round(i * step)] for i in range(most)})


def _is_log(distribution: Any) -> bool:
    return bool(getattr(distribution, "log", False))


def _number_text(value: float, integer: bool) -> str:
    return str(round(value)) if integer else f"{value:.4g}"


def _category_key(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True, default=str)


def _category_order(value: Any) -> tuple[int, float, str]:
    """Numbers in numeric order, then booleans, then text alphabetically, then the rest."""
    if _number(value):
        return (0, float(value), "")
    if isinstance(value, bool):
        return (1, float(value), "")
    if isinstance(value, str):
        return (2, 0.0, value)
    return (3, 0.0, _category_key(value))


def _category_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if _number(value):
        return f"{value:.4g}" if isinstance(value, float) else str(value)
    return _category_key(value)
