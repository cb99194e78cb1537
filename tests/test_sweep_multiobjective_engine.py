"""Multi-objective (and single-objective ``method: custom``) sweeps on expctl's own engine: the
study's directions, trials holding every objective, a trial missing one failing clearly, exactly
once across real agent processes one of which is SIGKILLed, program sweeps (an unmodified script
that ``wandb.log``s each objective) and trainer sweeps.

The objectives below are also loaded by agent processes:
``--objective test_sweep_multiobjective_engine:NAME`` (the tests put this directory on
PYTHONPATH).
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import pytest
from agent_processes import Agents
from conftest import postgres_url_or_skip
from sweep_helpers import agent, create, open_

from expctl.sweeps.spec import parse_spec
from expctl.sweeps.trial import TrialContext, TrialOutcome

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent

SPEC = {
    "method": "custom",
    "scheduler": {"engine": "optuna"},
    "metrics": [{"name": "f1", "goal": "minimize"}, {"name": "f2", "goal": "minimize"}],
    "parameters": {f"x{i}": {"min": 0.0, "max": 1.0} for i in range(3)},
    "run_cap": 12,
}


# -- objectives (also run by agent processes) -----------------------------------------------------


def dtlz2(params: dict[str, Any]) -> dict[str, float]:
    """DTLZ2 with 2 objectives over x0..x2 in [0, 1]: the front is the quarter circle."""
    x = [float(params[f"x{i}"]) for i in range(3)]
    g = sum((v - 0.5) ** 2 for v in x[1:])
    angle = x[0] * math.pi / 2
    return {"f1": (1 + g) * math.cos(angle), "f2": (1 + g) * math.sin(angle)}


def _log(event: str, ctx: TrialContext) -> None:
    path = os.environ.get("SWEEP_TEST_LOG")
    if path:
        line = json.dumps(
            {"event": event, "pid": os.getpid(), "number": ctx.number, "params": ctx.params}
        )
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)


def sleepy_dtlz2(ctx: TrialContext) -> TrialOutcome:
    """DTLZ2 after $SWEEP_TEST_SLEEP seconds (stopping early when asked)."""
    _log("start", ctx)
    deadline = time.monotonic() + float(os.environ.get("SWEEP_TEST_SLEEP", "0.1"))
    while time.monotonic() < deadline:
        if ctx.should_stop() is not None:
            return TrialOutcome("interrupted")
        time.sleep(0.02)
    _log("end", ctx)
    return TrialOutcome("completed", metrics=dtlz2(ctx.params))


def only_f1(ctx: TrialContext) -> dict[str, float]:
    return {"f1": 1.0, "other": 2.0}


# -- in-process agents -----------------------------------------------------------------------------


def test_a_multi_objective_sweep_is_an_optuna_study_with_every_direction(tmp_path: Path) -> None:
    spec = parse_spec({**SPEC, "metrics": [{"name": "f1"}, {"name": "f2", "goal": "maximize"}]})
    url = str(tmp_path / "s.journal")
    info = create(spec, url)
    summary = agent(info.id, url, objective=lambda ctx: dtlz2(ctx.params), seed=1)
    assert summary.count("complete") == 12 and "run_cap" in summary.reason
    study = open_(info.id, url).study
    from optuna.study import StudyDirection

    assert study.directions == [StudyDirection.MINIMIZE, StudyDirection.MAXIMIZE]
    for t in study.trials:
        expected = dtlz2(t.user_attrs["expctl:params"])
        assert t.values == pytest.approx([expected["f1"], expected["f2"]])
    assert study.best_trials  # Optuna's own Pareto front works on it


def test_a_trial_that_never_logs_an_objective_fails_saying_which(tmp_path: Path) -> None:
    url = str(tmp_path / "s.journal")
    info = create(parse_spec({**SPEC, "run_cap": 1}), url)
    events: list[str] = []
    summary = agent(info.id, url, objective=only_f1, on_event=events.append)
    (trial,) = summary.trials
    assert trial.status == "failed"
    assert "objective 'f2' was never logged (logged: f1, other)" in (trial.message or "")
    assert any("objective 'f2' was never logged" in e for e in events)
    (frozen,) = open_(info.id, url).study.trials
    assert frozen.state.name == "FAIL"


def test_a_non_finite_objective_fails(tmp_path: Path) -> None:
    url = str(tmp_path / "s.journal")
    info = create(parse_spec({**SPEC, "run_cap": 1}), url)
    summary = agent(info.id, url, objective=lambda ctx: {"f1": 1.0, "f2": float("nan")})
    assert summary.trials[0].status == "failed"
    assert "objective 'f2' is nan" in (summary.trials[0].message or "")


def test_single_objective_custom_is_a_tpe_study_from_metric_goal(tmp_path: Path) -> None:
    spec = parse_spec(
        {
            "method": "custom",
            "scheduler": {"engine": "optuna"},
            "metric": {"name": "f2", "goal": "maximize"},
            "parameters": SPEC["parameters"],
            "run_cap": 5,
        }
    )
    url = str(tmp_path / "s.journal")
    info = create(spec, url)
    summary = agent(info.id, url, objective=lambda ctx: dtlz2(ctx.params), seed=3)
    assert summary.count("complete") == 5
    sweep = open_(info.id, url)
    assert type(sweep.study.sampler).__name__ == "TPESampler"
    assert type(sweep.study.pruner).__name__ == "NopPruner"  # no pruner unless asked (#12561)
    assert sweep.study.direction.name == "MAXIMIZE"
    assert sweep.study.best_value == max(t.value for t in summary.trials if t.value is not None)


def test_targets_of_every_objective_finish_the_sweep(tmp_path: Path) -> None:
    spec = parse_spec(
        {
            **SPEC,
            "metrics": [{"name": "f1", "target": 10.0}, {"name": "f2", "target": 10.0}],
            "run_cap": 5,
        }
    )
    url = str(tmp_path / "s.journal")
    info = create(spec, url)
    summary = agent(info.id, url, objective=lambda ctx: dtlz2(ctx.params))
    assert summary.count("complete") == 1
    assert "metric.target reached by trial 0" in summary.reason


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
@pytest.mark.parametrize("method", ["custom", "random"])
def test_a_dead_agents_sampled_trial_is_rerun_on_an_rdb(
    method: str, kind: str, tmp_path: Path
) -> None:
    """Regression: the re-run of a sampled trial (created on the raw RDB storage) was unknown
    to Optuna's RDB cache, and claiming it raised KeyError (random sweeps too)."""
    url = f"sqlite:///{tmp_path / 's.db'}" if kind == "sqlite" else postgres_url_or_skip()
    raw = {**SPEC, "run_cap": 3}
    if method == "random":
        raw = {
            "method": "random",
            "metric": {"name": "f1"},
            "parameters": SPEC["parameters"],
            "run_cap": 3,
        }
    info = create(parse_spec(raw), url)
    dead = open_(info.id, url).claim("deadhost:1")  # claimed, never heartbeated
    assert not isinstance(dead, str)
    time.sleep(1.2)
    events: list[str] = []
    summary = agent(
        info.id,
        url,
        objective=lambda ctx: dtlz2(ctx.params),
        stale_after=1.0,
        handle_signals=False,
        on_event=events.append,
    )
    assert summary.recovered == [(0, 1)], events
    assert summary.count("complete") == 3
    rerun = next(t for t in summary.trials if t.number == 1)
    assert rerun.params == dead.params


# -- real agent processes, one SIGKILLed -----------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_a_sigkilled_agents_trial_is_rerun_once_and_run_cap_holds(
    kind: str, tmp_path: Path
) -> None:
    url = (
        str(tmp_path / "shared" / "s.journal")
        if kind == "journal"
        else f"sqlite:///{tmp_path / 's.db'}"
    )
    info = create(parse_spec({**SPEC, "run_cap": 8}), url)
    agents = Agents(info.id, url, tmp_path / "trials.log", sleep=0.6)
    objective = "test_sweep_multiobjective_engine:sleepy_dtlz2"
    (victim,) = agents.start(1, "--stale-after", "2", objective=objective)
    started = agents.wait_for(lambda e: e["pid"] == victim.pid)
    others = agents.start(2, "--stale-after", "2", objective=objective)
    time.sleep(0.2)
    victim.kill()  # SIGKILL mid-trial: its trial stays RUNNING until another agent reaps it
    victim.wait()
    agents.procs = others
    for code, err in agents.wait():
        assert code == 0, err
    trials = open_(info.id, url).study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    dead = [t for t in trials if t.state.name == "FAIL"]
    assert [t.number for t in dead] == [started["number"]]
    rerun = [t for t in complete if t.user_attrs.get("expctl:retry_of") == started["number"]]
    assert len(rerun) == 1 and rerun[0].user_attrs["expctl:params"] == started["params"]
    assert len(complete) == 8  # run_cap: the re-run does not count twice
    numbers = [e["number"] for e in agents.events() if e["event"] == "end"]
    assert len(numbers) == len(set(numbers)) == 8  # each trial ran to its end exactly once
    for t in complete:
        assert len(t.values) == 2


# -- program sweeps and trainer sweeps -------------------------------------------------------------

PROGRAM = """\
import argparse, math
import wandb

parser = argparse.ArgumentParser()
parser.add_argument("--x0", type=float)
parser.add_argument("--x1", type=float)
parser.add_argument("--x2", type=float)
args = parser.parse_args()
run = wandb.init()
g = (args.x1 - 0.5) ** 2 + (args.x2 - 0.5) ** 2
for step in range(2):
    run.log({"f1": (1 + g) * math.cos(args.x0 * math.pi / 2) + 1 - step})
    if "{skip}" != "f2":
        run.log({"f2": (1 + g) * math.sin(args.x0 * math.pi / 2) + 1 - step})
run.finish()
"""


@pytest.mark.slow
def test_a_program_sweep_reads_every_objective_from_wandb_log(cli, tmp_path: Path) -> None:
    (tmp_path / "work" / "mo.py").write_text(PROGRAM.replace("{skip}", ""))
    (tmp_path / "work" / "miss.py").write_text(PROGRAM.replace("{skip}", "f2"))
    url = str(tmp_path / "s.journal")
    spec = parse_spec({**SPEC, "program": "mo.py", "run_cap": 2})
    info = create(spec, url)
    summary = agent(info.id, url, handle_signals=False)
    assert summary.count("complete") == 2, [t.message for t in summary.trials]
    for t in open_(info.id, url).study.trials:
        assert t.values == pytest.approx(
            [dtlz2(t.user_attrs["expctl:params"])[k] for k in ("f1", "f2")]
        )  # the last logged values
    # the trials' run records hold each objective: `runs list --where` filters on either
    f2 = sorted(t.values[1] for t in open_(info.id, url).study.trials)
    listed = cli(
        "runs",
        "list",
        "--sweep",
        info.id,
        "--storage",
        url,
        "--where",
        f"f2<{f2[1]}",
        "--where",
        "f1>-1",
        "-f",
        "json",
    )
    assert listed.exit_code == 0, listed.stderr
    assert [r["final_metrics"]["f2"] for r in json.loads(listed.stdout)] == [f2[0]]
    missing = create(parse_spec({**SPEC, "program": "miss.py", "run_cap": 1}), url)
    summary = agent(missing.id, url, handle_signals=False)
    assert summary.trials[0].status == "failed"
    assert "objective 'f2' was never logged" in (summary.trials[0].message or "")


@pytest.mark.slow
def test_a_trainer_sweep_optimises_two_trainer_metrics(project: Path) -> None:
    url = str(project / "s.journal")
    spec = parse_spec(
        {
            "method": "custom",
            "scheduler": {"engine": "optuna"},
            "metrics": [{"name": "val_loss"}, {"name": "val_acc", "goal": "maximize"}],
            "parameters": {"optim.lr": {"min": 0.001, "max": 0.1}},
            "run_cap": 2,
        }
    )
    from expctl.config import ConfigSource

    info = create(spec, url, config_dir=project / "configs")
    summary = agent(
        info.id,
        url,
        handle_signals=False,
        config_source=ConfigSource(project / "configs", "config", ("trainer.epochs=1",)),
    )
    assert summary.count("complete") == 2, [t.message for t in summary.trials]
    for t in summary.trials:
        assert {"val_loss", "val_acc"} <= set(t.metrics)
    for t in open_(info.id, url).study.trials:
        assert len(t.values) == 2


def test_engine_wandb_files_run_their_own_method(tmp_path: Path) -> None:
    """``scheduler: {engine: wandb}`` with a W&B method runs that method, unchanged."""
    raw = {k: v for k, v in SPEC.items() if k != "metrics"}
    spec = parse_spec({**raw, "method": "random", "scheduler": {"engine": "wandb"}})
    assert spec.method == "random" and spec.scheduler is not None


@pytest.mark.parametrize(
    ("final", "state"),
    [({"f1": 0.25, "f2": 0.75, "other": 1.0}, "COMPLETE"), ({"f1": 0.25}, "FAIL")],
)
def test_a_trial_whose_agent_died_after_its_run_ended_is_recorded_from_the_run(
    final: dict, state: str, isolated: Path
) -> None:
    """The run ended (its summary.json says so) but the agent died before recording the result:
    the trial is recorded from the run with every objective — or failed, naming the one the run
    never logged — and is not re-run."""
    url = str(isolated / "s.journal")
    info = create(parse_spec({**SPEC, "run_cap": 1}), url)
    dead = open_(info.id, url).claim("deadhost:1")
    assert not isinstance(dead, str)
    run_dir = isolated / "runs" / f"sweep-{info.id}" / "20261207-000000-abcdef"
    run_dir.mkdir(parents=True)
    summary = {
        "status": "completed",
        "sweep": {"id": info.id, "trial": dead.number},
        "final_metrics": final,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary))
    time.sleep(1.2)
    ran = agent(
        info.id, url, objective=lambda ctx: dtlz2(ctx.params), stale_after=1.0, handle_signals=False
    )
    assert ran.trials == [] and ran.recovered == []  # nothing re-run
    (trial,) = open_(info.id, url).study.get_trials(deepcopy=False)
    assert trial.state.name == state
    message = trial.user_attrs["expctl:result"]["message"]
    if state == "COMPLETE":
        assert trial.values == [0.25, 0.75]
    else:
        assert "objective 'f2' was never logged" in message
    assert "recorded from its run directory" in message
