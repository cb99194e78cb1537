"""Issue 19, "records and reports that tell the truth": what `sweep report`, `sweep status`,
`runs plot` and `sweep best --publish` show must not mislead — every trial visible, axes on the
scale the values live on, caveats where the data is thin, a sweep nobody works on called idle.

Sweeps here are real (a journal file, the engine's agent) with a tiny Python objective; the
figures are read back from the plotly JSON embedded in the written HTML page.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from disks import tmpfs
from sweep_helpers import agent, create

from expctl.sweeps.spec import parse_spec
from expctl.sweeps.trial import TrialContext

OPTIMIZERS = ["sgd", "adamw-with-decoupled-decay", "rmsprop", "adagrad", "adam", "lion", "lamb"]
OPTIMIZERS += ["adafactor", "adadelta", "nadam"]  # 10 categories, some long
WIDE = {
    "method": "random",
    "metric": {"name": "loss", "goal": "minimize"},
    "parameters": {
        "lr": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-1},
        "layers": {"distribution": "int_uniform", "min": 1, "max": 12},
        "optimizer": {"values": OPTIMIZERS},
        "batch": {"values": [128, 16, 64, 32]},
    },
}


def loss(ctx: TrialContext) -> float:
    p = ctx.params
    return abs(math.log10(p["lr"]) + 2.5) + p["layers"] / 12 + len(p["optimizer"]) / 30


def sweep(url: str, spec: dict[str, Any], count: int) -> str:
    info = create(parse_spec(spec), url)
    if count:
        agent(info.id, url, objective=loss, count=count, handle_signals=False, seed=0)
    return info.id


def report(cli, sweep_id: str, url: str, out: Path) -> Any:
    result = cli("sweep", "report", sweep_id, "--storage", url, "--out", str(out))
    assert result.exit_code == 0, result.stderr
    return result


def figure(page: str, div_id: str) -> tuple[list[dict], dict]:
    """The data and layout that the page hands to ``Plotly.newPlot`` for ``div_id``."""
    start = page.index(f'Plotly.newPlot(                        "{div_id}"')
    decoder = json.JSONDecoder()
    at = page.index("[", start)
    data, end = decoder.raw_decode(page, at)
    layout, _ = decoder.raw_decode(page, page.index("{", end))
    return data, layout


def contrast_with_white(color: str) -> float:
    """WCAG contrast ratio of a ``#rrggbb`` or ``rgb(r, g, b)`` colour against white."""
    if color.startswith("#"):
        rgb = [int(color[i : i + 2], 16) for i in (1, 3, 5)]
    else:
        rgb = [int(float(c)) for c in re.findall(r"[\d.]+", color)[:3]]
    linear = [(c / 255) / 12.92 if c <= 10 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in rgb]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return 1.05 / (luminance + 0.05)


def colorscale_colors(scale: Any) -> list[str]:
    import plotly.colors

    if isinstance(scale, str):
        scale = plotly.colors.get_colorscale(scale)
    return [stop[1] if isinstance(stop, list | tuple) else stop for stop in scale]


# -- item 10: parallel coordinates ----------------------------------------------------------------


@pytest.fixture(scope="module")
def wide_page(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 30-trial random sweep over a log, an int, a 10-way categorical and a numeric grid
    parameter, reported once for the tests below."""
    from typer.testing import CliRunner

    from expctl.cli.main import app

    root = tmp_path_factory.mktemp("wide")
    url = str(root / "sweeps.journal")
    sweep_id = sweep(url, WIDE, 30)
    out = root / "report.html"
    result = CliRunner().invoke(
        app, ["sweep", "report", sweep_id, "--storage", url, "-o", str(out)]
    )
    assert result.exit_code == 0, result.stderr
    assert "caveat" not in result.stderr  # 30 trials: importance is shown plainly
    return out.read_text()


def parcoords(page: str) -> tuple[dict, dict[str, dict]]:
    data, _ = figure(page, "plot-parallel")
    (trace,) = [t for t in data if t["type"] == "parcoords"]
    return trace, {d["label"]: d for d in trace["dimensions"]}


def test_parallel_coordinates_draw_every_trial_visibly_on_white(wide_page):
    data, _ = figure(wide_page, "plot-parallel")
    colors = []  # whatever draws the lines: a parcoords' colour scale, or one colour per line
    for trace in data:
        if trace["type"] == "parcoords":
            colors += colorscale_colors(trace["line"]["colorscale"])
        elif "lines" in trace.get("mode", "") and isinstance(trace["line"].get("color"), str):
            colors.append(trace["line"]["color"])
    assert colors
    weakest = min(colors, key=contrast_with_white)
    # the worst trial's line must be seen: no colour of the scale fades into the page
    assert contrast_with_white(weakest) >= 2.5, weakest


def test_log_distributed_parameter_is_on_a_log_axis_labelled_with_real_values(wide_page):
    _, dims = parcoords(wide_page)
    lr = dims["lr"]
    assert all(-4.0 <= v <= -1.0 for v in lr["values"]), "log10(lr) is plotted"
    assert lr["range"][0] < lr["range"][1]
    ticks = [float(t) for t in lr["ticktext"]]
    assert [round(math.log10(t), 6) for t in ticks] == [round(v, 6) for v in lr["tickvals"]]
    assert min(ticks) >= 1e-4 and max(ticks) <= 1e-1
    assert all(lr["range"][0] <= v <= lr["range"][1] for v in lr["tickvals"]), "all drawn"


def test_integer_parameter_has_integer_ticks(wide_page):
    _, dims = parcoords(wide_page)
    layers = dims["layers"]
    assert layers["tickvals"], "ticks are chosen, not left to plotly's fractional ones"
    assert all(float(v).is_integer() for v in layers["tickvals"])
    assert all(re.fullmatch(r"\d+", t) for t in layers["ticktext"])


def test_grid_values_in_numeric_order_and_categories_sorted_without_overlap(wide_page):
    _, dims = parcoords(wide_page)
    batch = dims["batch"]
    assert batch["tickvals"] == sorted(batch["tickvals"]) == [16, 32, 64, 128]
    assert batch["range"] == [16, 128]  # smallest at the bottom, as on every numeric axis

    optimizer = dims["optimizer"]
    labels = optimizer["ticktext"]
    assert len(labels) == len(set(labels)) == len(OPTIMIZERS), "each category is named once"
    assert all(len(t) <= 12 for t in labels)
    assert all(t in OPTIMIZERS or "…" in t for t in labels), labels
    full = [next(o for o in OPTIMIZERS if o.startswith(t.split("…")[0])) for t in labels]
    assert full == sorted(full), labels
    assert optimizer["tickvals"] == sorted(optimizer["tickvals"])


def test_many_categories_get_spread_labels_that_cannot_overlap():
    from expctl.runs.report_parallel import MAX_CATEGORY_LABELS, axis

    names = [f"category-number-{i:02d}" for i in range(40)]
    found = axis("choice", names[::-1], log=False)
    assert len(found.ticktext or []) <= MAX_CATEGORY_LABELS <= 16
    assert len(set(found.ticktext)) == len(found.ticktext), "shortened labels stay apart"
    assert found.ticktext[0] == "categ…ber-00" and found.tickvals[-1] == 39  # ends are kept
    assert found.values[0] == 39 and found.values[-1] == 0  # positions follow the sorted order


# -- item 11: importance, idle sweeps, colours, publishing ----------------------------------------


def test_importance_from_few_trials_carries_a_caveat(cli, isolated):
    url = str(isolated / "sweeps.journal")
    sweep_id = sweep(url, WIDE, 4)
    result = report(cli, sweep_id, url, isolated / "r.html")
    page = (isolated / "r.html").read_text()
    assert "needs ≥ 10 complete trials" in page and "this sweep has 4" in page
    assert "caveat: Parameter importance" in result.stderr
    _, layout = figure(page, "plot-importance")
    assert "from 4 complete trials" in layout["title"]["text"]


def test_sweep_with_no_agent_alive_reads_idle_not_running(cli, isolated):
    url = str(isolated / "sweeps.journal")
    sweep_id = sweep(url, WIDE, 2)  # the agent ran 2 trials and exited
    status = cli("sweep", "status", sweep_id, "--storage", url)
    assert status.exit_code == 0, status.stderr
    first = status.stdout.splitlines()[0]
    assert "idle (no agent alive, nothing waiting)" in first, first
    data = json.loads(cli("sweep", "status", sweep_id, "--storage", url, "-f", "json").stdout)
    assert data["state"] == "running" and data["idle"] is True  # scripts keep W&B's word
    report(cli, sweep_id, url, isolated / "r.html")
    assert "idle (no agent alive, nothing waiting)" in (isolated / "r.html").read_text()

    grid = {**WIDE, "method": "grid", "parameters": {"batch": {"values": [1, 2, 3]}}}
    waiting = sweep(url, grid, 0)
    line = cli("sweep", "status", waiting, "--storage", url).stdout.splitlines()[0]
    assert "idle (no agent alive, 3 trials waiting)" in line, line


def test_more_than_ten_curves_never_share_a_style(isolated):
    from expctl.runs.plot import Curve, _write_matplotlib, curves_figure

    curves = [Curve(f"run {i}", [(0, 1.0 + i), (1, 0.5 + i)]) for i in range(14)]
    traces = curves_figure(curves, "loss", "step", "").to_plotly_json()["data"]
    styles = {(t["line"].get("color"), t["line"].get("dash", "solid")) for t in traces}
    assert None not in {c for c, _ in styles} and len(styles) == 14

    svg = isolated / "curves.svg"
    _write_matplotlib(curves, "loss", "step", "", svg)
    drawn = set()
    for style in re.findall(r'<path d="M[^"]*"[^>]*style="([^"]*)"', svg.read_text()):
        stroke = re.search(r"stroke: (#[0-9a-f]{6})", style)
        if stroke and "fill: none" in style:
            dash = re.search(r"stroke-dasharray: ([\d.,\s]+)", style)
            drawn.add((stroke.group(1), dash.group(1).strip() if dash else ""))
    # 14 data lines (the legend repeats them), besides the black frame and grey grid lines
    assert len(drawn - {("#000000", ""), ("#b0b0b0", "")}) == 14, drawn


# -- item 13: an --out on a full disk ------------------------------------------------------------


def test_report_on_a_full_disk_hints_out_not_runs_dir(cli, isolated):
    url = str(isolated / "sweeps.journal")
    sweep_id = sweep(url, WIDE, 2)
    with tmpfs(isolated / "small", "256k") as small:
        out = small / "report.html"
        result = cli("sweep", "report", sweep_id, "--storage", url, "--out", str(out))
        assert result.exit_code == 1, result.stderr
        assert f"no space left on device {small}" in result.stderr
        hint = next(line for line in result.stderr.splitlines() if line.startswith("hint:"))
        assert "--out" in hint and "--runs-dir" not in hint, hint
        assert not out.exists() and list(small.iterdir()) == []  # no partial file left


TRAINER_SWEEP = """
method: random
metric: {name: val_loss, goal: minimize}
parameters:
  optim.lr: {distribution: log_uniform_values, min: 1.0e-3, max: 1.0e-1}
  trainer.epochs: {value: 1}
  trainer.device: {value: cpu}
  data: {value: synthetic}
  data.num_samples: {value: 128}
"""


@pytest.mark.slow
def test_publish_gives_the_best_the_newest_version_and_names_each_rank(cli, project):
    (project / "sweep.yaml").write_text(TRAINER_SWEEP)
    created = cli("sweep", "create", "sweep.yaml")
    assert created.exit_code == 0, created.stderr
    sweep_id = created.stdout.strip()
    ran = cli("sweep", "agent", sweep_id, "--count", "3")
    assert ran.exit_code == 0, ran.stderr
    best = json.loads(cli("sweep", "best", sweep_id, "--top", "3", "-f", "json").stdout)

    published = cli("sweep", "best", sweep_id, "--top", "3", "--publish", "m")
    assert published.exit_code == 0, published.stderr
    lines = [line for line in published.stderr.splitlines() if line.startswith("published")]
    # top-1 is published last (the newest version, where `latest` is) and each line says
    # which rank it holds, with its trial and metric: no guessing from version numbers
    for rank, (line, row) in enumerate(zip(lines, best, strict=True), 1):
        assert line.startswith(f"published m:v{3 - rank} as top-{rank}"), line
        assert f"(trial {row['number']}, val_loss={row['value']:.4g}" in line, line
    assert "best" in lines[0]
