"""Reading a multi-objective sweep: the Pareto front (pure function, and against Optuna's own
``study.best_trials``), ``sweep status`` marking it, ``sweep best`` listing it (``--top``,
``--by``), ``--publish`` of its checkpoints, ``sweep list``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from sweep_helpers import agent, create, open_

from expctl.sweeps.pareto import hypervolume_2d, pareto_front
from expctl.sweeps.spec import parse_spec
from expctl.sweeps.trial import TrialContext

SPEC: dict[str, Any] = {
    "method": "custom",
    "scheduler": {"engine": "optuna"},
    "metrics": [{"name": "f1", "goal": "minimize"}, {"name": "f2", "goal": "maximize"}],
    "parameters": {"x": {"min": 0.0, "max": 1.0}, "y": {"min": 0.0, "max": 1.0}},
}


def objective(ctx: TrialContext) -> dict[str, float]:
    """f1 = x (minimise), f2 = 1 - x² - y (maximise): the front is y = 0."""
    x, y = ctx.params["x"], ctx.params["y"]
    return {"f1": x, "f2": 1 - x * x - y}


def ran_sweep(url: str, trials: int, spec: dict[str, Any] | None = None) -> str:
    info = create(parse_spec({**(spec or SPEC), "run_cap": trials}), url)
    agent(info.id, url, objective=objective, handle_signals=False, seed=0)
    return info.id


# -- the front and its hypervolume ----------------------------------------------------------------


def test_pareto_front_follows_each_goal() -> None:
    points = [[1.0, 1.0], [2.0, 3.0], [0.5, 0.5], [1.0, 1.0], [3.0, 0.0]]
    assert pareto_front(points, [False, True]) == [0, 1, 2, 3]  # min first, max second
    assert pareto_front(points, [False, False]) == [2, 4]
    assert pareto_front(points, [True, True]) == [1, 4]
    assert pareto_front([[1.0, 1.0], [1.0, 1.0]], [False, False]) == [0, 1]  # ties: both


def test_hypervolume_2d_is_the_dominated_area() -> None:
    assert hypervolume_2d([[0.0, 1.0], [1.0, 0.0]], [2.0, 2.0], [False, False]) == 3.0
    assert hypervolume_2d([[3.0, 0.0]], [2.0, 2.0], [False, False]) == 0.0  # outside
    # a maximised objective: reflected, same area
    assert hypervolume_2d([[0.0, -1.0], [1.0, 0.0]], [2.0, -2.0], [False, True]) == 3.0


def test_the_marked_front_is_optunas_best_trials(isolated: Path) -> None:
    from expctl.sweeps.service import sweep_status

    url = str(isolated / "s.journal")
    sweep_id = ran_sweep(url, 15)
    status = sweep_status(sweep_id, url)
    expected = sorted(t.number for t in open_(sweep_id, url).study.best_trials)
    assert status["front"] == expected
    assert sorted(t["number"] for t in status["trials"] if t["pareto"]) == expected
    assert status["objectives"] == [
        {"name": "f1", "goal": "minimize", "target": None},
        {"name": "f2", "goal": "maximize", "target": None},
    ]
    row = status["trials"][0]
    assert set(row["values"]) == {"f1", "f2"} and row["value"] is None and status["best"] is None


# -- the commands ---------------------------------------------------------------------------------


def test_sweep_status_marks_the_front_with_a_column_per_objective(cli, isolated: Path) -> None:
    url = str(isolated / "s.journal")
    sweep_id = ran_sweep(url, 8)
    result = cli("sweep", "status", sweep_id, "--storage", url)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    front = json.loads(cli("sweep", "status", sweep_id, "--storage", url, "-f", "json").stdout)[
        "front"
    ]
    assert f"Pareto front: {len(front)} trial" in result.stdout
    assert "objectives: f1 (minimize), f2 (maximize)" in result.stdout
    header = next(line for line in lines if line.startswith("#"))
    assert header.split()[:5] == ["#", "pareto", "state", "f1", "f2"]
    rows = lines[lines.index(header) + 2 :]
    marked = [int(r.split()[0]) for r in rows if r.split()[1] == "*"]
    assert sorted(marked) == front and len(rows) == 8
    assert [int(r.split()[0]) for r in rows[: len(front)]] == sorted(front)  # the front first


def test_sweep_best_lists_the_front_ordered_by_an_objective(cli, isolated: Path) -> None:
    url = str(isolated / "s.journal")
    sweep_id = ran_sweep(url, 10)
    status = json.loads(cli("sweep", "status", sweep_id, "--storage", url, "-f", "json").stdout)
    values = {t["number"]: t["values"] for t in status["trials"] if t["pareto"]}

    whole = json.loads(cli("sweep", "best", sweep_id, "--storage", url, "-f", "json").stdout)
    assert [r["number"] for r in whole] == sorted(values, key=lambda n: values[n]["f1"])
    assert all(r["pareto"] and r["values"] == values[r["number"]] for r in whole)

    by_f2 = cli(
        "sweep", "best", sweep_id, "--storage", url, "--by", "f2", "--top", "2", "-f", "json"
    )
    assert by_f2.exit_code == 0, by_f2.stderr
    expected = sorted(values, key=lambda n: -values[n]["f2"])[:2]  # f2 is maximised
    assert [r["number"] for r in json.loads(by_f2.stdout)] == expected

    table = cli("sweep", "best", sweep_id, "--storage", url)
    assert table.stdout.splitlines()[0].split()[:4] == ["rank", "trial", "f1", "f2"]

    wrong = cli("sweep", "best", sweep_id, "--storage", url, "--by", "f3")
    assert wrong.exit_code == 2
    assert "--by 'f3': not an objective" in wrong.stderr and "objectives: f1, f2" in wrong.stderr

    many = cli("sweep", "best", sweep_id, "--storage", url, "--top", "99")
    assert many.exit_code == 0 and f"only {len(values)} on the Pareto front" in many.stderr


def test_sweep_best_by_on_a_single_objective_sweep_is_refused(cli, isolated: Path) -> None:
    url = str(isolated / "s.journal")
    single = {**{k: v for k, v in SPEC.items() if k != "metrics"}, "metric": {"name": "f1"}}
    sweep_id = ran_sweep(url, 3, single)
    ok = cli("sweep", "best", sweep_id, "--storage", url, "--by", "f1", "-f", "json")
    assert ok.exit_code == 0 and len(json.loads(ok.stdout)) == 1  # --top defaults to 1
    wrong = cli("sweep", "best", sweep_id, "--storage", url, "--by", "f2")
    assert wrong.exit_code == 2 and "has one objective, 'f1'" in wrong.stderr


def test_sweep_list_names_every_objective(cli, isolated: Path) -> None:
    url = str(isolated / "s.journal")
    sweep_id = ran_sweep(url, 2)
    rows = json.loads(cli("sweep", "list", "--storage", url, "-f", "json").stdout)
    (row,) = [r for r in rows if r["id"] == sweep_id]
    assert row["metric"] == "f1, f2" and row["best"] is None and row["complete"] == 2


TRAINER_SWEEP = """
method: custom
scheduler: {engine: optuna}
metrics:
  - {name: val_loss, goal: minimize}
  - {name: train_loss, goal: minimize}
parameters:
  optim.lr: {distribution: log_uniform_values, min: 1.0e-3, max: 1.0}
  trainer.epochs: {value: 1}
  trainer.device: {value: cpu}
  data: {value: synthetic}
  data.num_samples: {value: 128}
run_cap: 4
"""


@pytest.mark.slow
def test_publish_puts_the_fronts_checkpoints_in_the_store(cli, project: Path) -> None:
    (project / "sweep.yaml").write_text(TRAINER_SWEEP)
    created = cli("sweep", "create", "sweep.yaml")
    assert created.exit_code == 0, created.stderr
    sweep_id = created.stdout.strip()
    ran = cli("sweep", "agent", sweep_id)
    assert ran.exit_code == 0, ran.stderr
    front = json.loads(cli("sweep", "best", sweep_id, "--by", "train_loss", "-f", "json").stdout)
    published = cli("sweep", "best", sweep_id, "--by", "train_loss", "--publish", "front")
    assert published.exit_code == 0, published.stderr
    lines = [line for line in published.stderr.splitlines() if line.startswith("published")]
    assert len(lines) == len(front)
    for rank, (line, row) in enumerate(zip(lines, front, strict=True), 1):
        assert f"as top-{rank}" in line and f"(trial {row['number']}, " in line, line
        assert f"train_loss={row['values']['train_loss']:.4g}" in line, line
    from expctl.artifacts.store import ArtifactStore

    store = ArtifactStore(None)
    best = store.resolve("front:best")
    meta = best.metadata
    assert meta["sweep"]["trial"] == front[0]["number"] and meta["monitor"] == "train_loss"
    assert meta["values"] == front[0]["values"]
    assert math.isfinite(meta["values"]["val_loss"])


@pytest.mark.slow
def test_runs_list_where_filters_on_each_objective(cli, project: Path) -> None:
    (project / "sweep.yaml").write_text(TRAINER_SWEEP)
    sweep_id = cli("sweep", "create", "sweep.yaml").stdout.strip()
    assert cli("sweep", "agent", sweep_id).exit_code == 0
    status = json.loads(cli("sweep", "status", sweep_id, "-f", "json").stdout)
    trials = [t for t in status["trials"] if t["values"]]
    val_cut = sorted(t["values"]["val_loss"] for t in trials)[2]  # keeps 2 of 4 by val_loss
    train_cut = max(t["values"]["train_loss"] for t in trials)  # drops the worst by train_loss
    where = ("--where", f"val_loss<{val_cut}", "--where", f"train_loss<{train_cut}")
    listed = cli("runs", "list", "--sweep", sweep_id, *where, "-f", "json")
    assert listed.exit_code == 0, listed.stderr
    expected = {
        t["run_dir"]
        for t in trials
        if t["values"]["val_loss"] < val_cut and t["values"]["train_loss"] < train_cut
    }
    assert {r["run_dir"] for r in json.loads(listed.stdout)} == expected
    for r in json.loads(listed.stdout):  # the run records hold every objective's final value
        values = next(t["values"] for t in trials if t["run_dir"] == r["run_dir"])
        assert r["final_metrics"]["val_loss"] == pytest.approx(values["val_loss"])
        assert r["final_metrics"]["train_loss"] == pytest.approx(values["train_loss"])
