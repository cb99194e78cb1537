"""``sweep report`` of a multi-objective sweep draws its Pareto front: 2 objectives as a scatter
with the front's staircase, 3 or more as parallel coordinates highlighting it — read back from
the plotly JSON of the written page, and rendered offline in headless Chromium."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sweep_helpers import agent, create
from test_report_truth import figure
from test_runs_e2e import _check_offline_page, _render

from expctl.sweeps.spec import parse_spec
from expctl.sweeps.trial import TrialContext


def three(ctx: TrialContext) -> dict[str, float]:
    x, y = ctx.params["x"], ctx.params["y"]
    return {"f1": x, "f2": 1 - x * x - y, "f3": (x - 0.5) ** 2 + y}


def sweep(url: str, names: list[tuple[str, str]], trials: int) -> str:
    spec = {
        "method": "custom",
        "scheduler": {"engine": "optuna"},
        "metrics": [{"name": n, "goal": g} for n, g in names],
        "parameters": {"x": {"min": 0.0, "max": 1.0}, "y": {"min": 0.0, "max": 1.0}},
        "run_cap": trials,
    }
    info = create(parse_spec(spec), url)
    agent(info.id, url, objective=three, handle_signals=False, seed=0)
    return info.id


def report(cli, sweep_id: str, url: str, out: Path) -> tuple[str, dict[str, Any]]:
    result = cli("sweep", "report", sweep_id, "--storage", url, "--out", str(out))
    assert result.exit_code == 0, result.stderr
    status = json.loads(cli("sweep", "status", sweep_id, "--storage", url, "-f", "json").stdout)
    return out.read_text(), status


def test_two_objectives_are_a_scatter_with_the_front_line(cli, isolated: Path) -> None:
    url = str(isolated / "s.journal")
    sweep_id = sweep(url, [("f1", "minimize"), ("f2", "maximize")], 12)
    page, status = report(cli, sweep_id, url, isolated / "r.html")
    data, layout = figure(page, "plot-pareto")
    traces = {t["name"]: t for t in data}
    values = {t["number"]: t["values"] for t in status["trials"] if t["values"]}
    front = [values[n] for n in status["front"]]
    assert sorted(traces["Pareto front"]["x"]) == sorted(v["f1"] for v in front)
    assert len(traces["dominated"]["x"]) == len(values) - len(front)
    line = traces["front"]
    assert line["mode"] == "lines" and line["line"]["shape"] == "hv"  # f1 is minimised
    assert line["x"] == sorted(v["f1"] for v in front)
    assert layout["xaxis"]["title"]["text"] == "f1 (minimize)"
    assert "f1 (minimize), f2 (maximize)" in page and f"{len(front)} trials on the front" in page
    # the single-metric sections say why they are not drawn instead of "0 complete trials"
    assert "Not drawn: a multi-objective sweep has no single metric" in page


def test_three_objectives_are_parallel_coordinates_highlighting_the_front(
    cli, isolated: Path
) -> None:
    url = str(isolated / "s.journal")
    names = [("f1", "minimize"), ("f2", "maximize"), ("f3", "minimize")]
    sweep_id = sweep(url, names, 12)
    page, status = report(cli, sweep_id, url, isolated / "r.html")
    data, _ = figure(page, "plot-pareto")
    (trace,) = data
    assert trace["type"] == "parcoords"
    labels = [d["label"] for d in trace["dimensions"]]
    assert labels == ["f1 (min)", "f2 (max)", "f3 (min)", "Pareto front"]
    assert sum(trace["line"]["color"]) == len(status["front"]) >= 1


@pytest.mark.slow
def test_the_front_renders_offline_in_chromium(cli, isolated: Path) -> None:
    url = str(isolated / "s.journal")
    for n, names in enumerate(
        (
            [("f1", "minimize"), ("f2", "maximize")],
            [("f1", "minimize"), ("f2", "maximize"), ("f3", "minimize")],
        )
    ):
        sweep_id = sweep(url, names, 8)
        out = isolated / f"r{n}.html"
        page, _ = report(cli, sweep_id, url, out)
        dom = _render(out, isolated)
        start = dom.index('id="plot-pareto"')
        end = dom.index("</section>", start)
        assert dom[start:end].count('class="main-svg"') >= 1  # plotly drew the front
        _check_offline_page(page, dom)
