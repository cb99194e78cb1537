"""`expctl sweep create|agent|status|list|stop`: stdout is data, stderr is people, exit codes —
plus the real trainer under an agent and Hydra-style multirun."""

from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
import time
from pathlib import Path

import pytest
from processes import alive

from expctl.config import ConfigSource
from expctl.errors import ConfigError

ID = re.compile(r"^[a-z0-9]{8}$")


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def tiny_grid(project: Path) -> Path:
    return write(
        project / "tiny.yaml",
        """
        name: tiny
        method: grid
        metric: {name: val_loss}
        parameters:
          seed: {values: [3, 1, 2]}
    """,
    )


def create(cli, spec: Path, *args: str) -> str:
    result = cli("sweep", "create", str(spec), "--config-dir", "configs", *args)
    assert result.exit_code == 0, result.stderr
    return result.stdout.strip()


def test_create_prints_only_the_sweep_id(cli, project: Path) -> None:
    result = cli("sweep", "create", "configs/sweeps/grid.yaml")
    assert result.exit_code == 0, result.stderr
    assert ID.match(result.stdout.strip()) and result.stdout.count("\n") == 1
    sweep_id = result.stdout.strip()
    assert f"created sweep {sweep_id} 'digits-grid': method grid, 6 runs planned" in result.stderr
    assert "optim.lr        categorical   0.01, 0.003, 0.001" in result.stderr
    assert f"expctl sweep agent {sweep_id}\n" in result.stderr
    assert (project / ".expctl" / "sweeps.journal").is_file()


def test_create_reports_every_problem_and_exits_2(cli, project: Path) -> None:
    bad = write(
        project / "bad.yaml",
        """
        method: gird
        parameters:
          optim.lrr: {values: [0.1]}
          model: {values: [larg]}
    """,
    )
    result = cli("sweep", "create", str(bad))
    assert result.exit_code == 2 and result.stdout == ""
    assert "error: " in result.stderr and "3 problems in sweep spec" in result.stderr
    assert "did you mean 'grid'" in result.stderr
    assert "did you mean 'optim.lr'" in result.stderr
    assert "did you mean 'large'" in result.stderr
    assert "hint: " in result.stderr and "Traceback" not in result.stderr


def test_create_with_storage_name_and_project(cli, project: Path, tiny_grid: Path) -> None:
    db = project / "s.db"
    sweep_id = create(
        cli, tiny_grid, "--storage", f"sqlite:///{db}", "--name", "renamed", "--project", "p1"
    )
    result = cli("sweep", "list", "--storage", f"sqlite:///{db}", "--format", "json")
    [row] = json.loads(result.stdout)
    assert (row["id"], row["name"], row["planned"]) == (sweep_id, "renamed", 3)


def test_create_then_agent_then_status_json(cli, project: Path, tiny_grid: Path) -> None:
    sweep_id = create(cli, tiny_grid)
    result = cli(
        "sweep",
        "agent",
        sweep_id,
        "--objective",
        "test_sweep_support:sleepy",
        env={"SWEEP_TEST_SLEEP": "0"},
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert "agent done: 3 complete; the sweep is finished (grid complete)" in result.stderr
    result = cli("sweep", "status", sweep_id, "--format", "json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["id"], data["method"], data["state"], data["planned"]) == (
        sweep_id,
        "grid",
        "finished",
        3,
    )
    assert data["metric"]["name"] == "val_loss"
    assert [t["params"]["seed"] for t in data["trials"]] == [3, 1, 2]
    assert data["best"]["value"] == 1.0 and data["best"]["command"] == "expctl run seed=1"
    table = cli("sweep", "status", sweep_id)
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    assert lines[0] == f"sweep {sweep_id} 'tiny': grid, finished (grid complete)"
    assert "best: trial 1 val_loss=1" in table.stdout and "  expctl run seed=1" in table.stdout


def test_count_limits_the_trials_of_one_agent(cli, project: Path, tiny_grid: Path) -> None:
    sweep_id = create(cli, tiny_grid)
    result = cli(
        "sweep",
        "agent",
        sweep_id,
        "--count",
        "1",
        "--objective",
        "test_sweep_support:sleepy",
        env={"SWEEP_TEST_SLEEP": "0"},
    )
    assert result.exit_code == 0 and "ran --count 1 trials" in result.stderr
    data = json.loads(cli("sweep", "status", sweep_id, "-f", "json").stdout)
    assert data["counts"] == {"complete": 1, "waiting": 2} and data["state"] == "running"


def test_stop_makes_agents_exit_without_new_trials(cli, project: Path, tiny_grid: Path) -> None:
    sweep_id = create(cli, tiny_grid)
    result = cli("sweep", "stop", sweep_id)
    assert result.exit_code == 0 and "stopped" in result.stderr
    result = cli("sweep", "agent", sweep_id, "--objective", "test_sweep_support:sleepy")
    assert result.exit_code == 0
    assert "no trials; the sweep was stopped" in result.stderr
    table = cli("sweep", "list")
    assert sweep_id in table.stdout and "stopped" in table.stdout


def test_unknown_ids_and_missing_storage_exit_2(cli, project: Path, tiny_grid: Path) -> None:
    result = cli("sweep", "status", "nosuchid")
    assert result.exit_code == 2 and "no sweep storage" in result.stderr
    sweep_id = create(cli, tiny_grid)
    for command in (["status", "nosuchid"], ["agent", "nosuchid"], ["stop", "nosuchid"]):
        result = cli("sweep", *command)
        assert result.exit_code == 2, command
        assert "error: no sweep 'nosuchid'" in result.stderr
        assert f"known sweeps in journal://{project}/.expctl/sweeps.journal: {sweep_id}" in (
            result.stderr
        )
    result = cli("sweep", "status", sweep_id, "--format", "yaml")
    assert result.exit_code == 2 and "'yaml' is not one of 'table', 'json'" in result.stderr


def test_list_with_no_storage_is_empty_not_an_error(cli, project: Path) -> None:
    result = cli("sweep", "list", "--format", "json")
    assert result.exit_code == 0 and json.loads(result.stdout) == []
    assert not (project / ".expctl").exists()


@pytest.mark.parametrize("command", ["create", "agent", "status", "list", "stop", "repair"])
def test_every_command_help_ends_with_examples(cli, command: str) -> None:
    result = cli("sweep", command, "--help")
    assert result.exit_code == 0
    tail = result.stdout.rstrip().splitlines()[-6:]
    assert any(
        line.strip().startswith("$ expctl sweep") or "expctl sweep" in line for line in tail
    ), result.stdout
    assert "Examples" in result.stdout


@pytest.mark.slow
def test_command_substitution_with_the_installed_entry_point(expctl_exe, project: Path) -> None:
    result = subprocess.run(
        [*expctl_exe, "sweep", "create", "configs/sweeps/random.yaml"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert ID.match(result.stdout.strip())
    assert "run_cap 20" in result.stderr


# -- the real trainer ------------------------------------------------------------------------------


@pytest.mark.slow
def test_agent_trains_with_expctls_trainer(cli, project: Path, tmp_path: Path) -> None:
    spec = write(
        project / "train.yaml",
        """
        name: digits-tiny
        method: grid
        metric: {name: val_loss, goal: minimize}
        early_terminate: {type: hyperband, min_iter: 1, eta: 3}
        parameters:
          optim.lr: {values: [0.01, 0.001]}
          model: {value: small}
          trainer.epochs: {value: 2}
          trainer.device: {value: cpu}
    """,
    )
    sweep_id = create(cli, spec)
    result = cli("sweep", "agent", sweep_id)
    assert result.exit_code == 0, result.stderr
    data = json.loads(cli("sweep", "status", sweep_id, "--format", "json").stdout)
    assert data["state"] == "finished"
    assert sorted(t["state"] for t in data["trials"]) in (
        ["complete", "complete"],
        ["complete", "pruned"],
    )
    for trial in data["trials"]:
        run_dir = Path(trial["run_dir"])
        assert run_dir.is_dir() and run_dir.parent.name == "digits-tiny"
        assert trial["epochs"] >= 1  # per-epoch val_loss reached the pruner
    best = data["best"]
    lr = best["params"]["optim.lr"]
    assert best["overrides"] == [
        "model=small",
        f"optim.lr={lr}",
        "trainer.device=cpu",
        "trainer.epochs=2",
    ]
    assert (
        best["command"] == f"expctl run model=small optim.lr={lr} trainer.device=cpu "
        "trainer.epochs=2"
    )
    # each trial was a W&B run (offline here), grouped by the sweep id
    runs = list((tmp_path / "wandb").rglob("offline-run-*"))
    assert len(runs) == 2


@pytest.mark.slow
def test_multirun_runs_the_product_as_a_grid_sweep(project: Path) -> None:
    from expctl.sweeps.multirun import multirun
    from expctl.sweeps.service import sweep_status

    events: list[str] = []
    records = multirun(
        ConfigSource(
            None,
            "config",
            ("optim.lr=0.05,0.01", "model=small,large", "trainer.epochs=1", "trainer.device=cpu"),
        ),
        quiet=True,
        on_event=events.append,
    ).records
    assert [r.status for r in records] == ["complete"] * 4
    assert len({r.run_dir for r in records}) == 4
    assert {tuple(r.overrides) for r in records} == {
        ("trainer.epochs=1", "trainer.device=cpu", f"model={m}", f"optim.lr={lr}")
        for m in ("small", "large")
        for lr in ("0.05", "0.01")
    }
    assert all("val_loss" in r.metrics for r in records)
    sweep_id = events[0].split()[-1]
    status = sweep_status(sweep_id)
    assert status["planned"] == 4 and status["metric"]["name"] == "val_loss"
    assert status["best"]["command"].startswith("expctl run trainer.epochs=1 trainer.device=cpu")


def test_multirun_checks_every_value_before_running(project: Path) -> None:
    from expctl.sweeps.multirun import multirun

    with pytest.raises(ConfigError) as e:
        multirun(ConfigSource(None, "config", ("model=small,larg", "optim.lrr=1,2")), quiet=True)
    text = str(e.value)
    assert "3 swept overrides cannot be composed" in text
    assert "model=larg" in text and "optim.lrr=1" in text
    assert not (project / ".expctl").exists()  # nothing was created


def test_multirun_expands_like_hydra() -> None:
    from expctl.sweeps.multirun import split_sweeps

    base, sweeps = split_sweeps(["a=1", "b=1,2", "+c=range(0,3)", "d=choice(x,'y z')"])
    assert base == ["a=1"]
    assert sweeps == {
        "b": ("b", ["1", "2"]),
        "c": ("+c", ["0", "1", "2"]),
        "d": ("d", ["x", "y\\ z"]),
    }  # Hydra's own escaping of the value


# -- --trial-timeout -------------------------------------------------------------------------------


def test_a_hung_program_trial_is_killed_and_failed(cli, project: Path) -> None:
    write(
        project / "hang.py",
        """
        import os, pathlib, time
        pathlib.Path("hang.pid").write_text(str(os.getpid()))
        time.sleep(600)
    """,
    )
    spec = write(
        project / "hang.yaml",
        """
        program: hang.py
        method: grid
        metric: {name: val_loss}
        parameters:
          x: {values: [1]}
    """,
    )
    sweep_id = create(cli, spec)
    result = cli("sweep", "agent", sweep_id, "--trial-timeout", "1")
    # its only trial failed: exit 1 (an agent with any trial that succeeded exits 0)
    assert result.exit_code == 1, result.stderr
    assert "every trial this agent ran failed (1)" in result.stderr
    assert "timed out after the trial timeout of 1 s (--trial-timeout)" in result.stderr
    assert not alive(int((project / "hang.pid").read_text()))
    [trial] = json.loads(cli("sweep", "status", sweep_id, "-f", "json").stdout)["trials"]
    assert trial["state"] == "fail" and trial["retry_of"] is None
    assert "timed out" in trial["message"] and "the program was killed" in trial["message"]


def test_objectives_see_the_timeout_and_a_timed_out_trial_is_not_requeued(project: Path) -> None:
    from sweep_helpers import agent, create

    from expctl.sweeps.service import sweep_status
    from expctl.sweeps.spec import parse_spec
    from expctl.sweeps.trial import TrialContext, TrialOutcome

    info = create(
        parse_spec(
            {"method": "grid", "metric": {"name": "v"}, "parameters": {"x": {"values": [1, 2]}}}
        )
    )
    seen: list[float | None] = []

    def patient(ctx: TrialContext) -> TrialOutcome:
        seen.append(ctx.timeout)
        while ctx.params["x"] == 2 and not ctx.timed_out():
            time.sleep(0.01)
        return TrialOutcome("interrupted" if ctx.timed_out() else "completed", {"v": 1.0})

    summary = agent(info.id, objective=patient, handle_signals=False, trial_timeout=0.2)
    assert seen == [0.2, 0.2]
    assert [(t.status, t.message) for t in summary.trials] == [
        ("complete", None),
        ("failed", "timed out after the trial timeout of 0.2 s (--trial-timeout)"),
    ]
    assert sweep_status(info.id)["counts"] == {"complete": 1, "fail": 1}


def test_the_trial_timeout_must_be_positive(cli, project: Path, tiny_grid: Path) -> None:
    sweep_id = create(cli, tiny_grid)
    result = cli("sweep", "agent", sweep_id, "--trial-timeout", "0")
    assert result.exit_code == 2 and "positive number of seconds" in result.stderr


@pytest.mark.slow
def test_a_trainer_trial_past_the_timeout_stops_at_a_step_and_fails(cli, project: Path) -> None:
    spec = write(
        project / "long.yaml",
        """
        name: long
        method: grid
        metric: {name: val_loss}
        parameters:
          trainer.epochs: {value: 10000}
          trainer.device: {value: cpu}
    """,
    )
    sweep_id = create(cli, spec)
    result = cli("sweep", "agent", sweep_id, "--trial-timeout", "2")
    assert result.exit_code == 1, result.stderr  # its only trial failed
    [trial] = json.loads(cli("sweep", "status", sweep_id, "-f", "json").stdout)["trials"]
    assert trial["state"] == "fail" and trial["retry_of"] is None
    assert trial["message"].startswith("timed out after the trial timeout of 2 s")
    assert (Path(trial["run_dir"]) / "checkpoints" / "last.pt").is_file()


def test_agent_for_an_unknown_sweep_says_only_that(cli, project) -> None:
    created = cli("sweep", "create", "configs/sweeps/grid.yaml")
    assert created.exit_code == 0, created.stderr
    result = cli("sweep", "agent", "nosuchid")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == "error: no sweep 'nosuchid'"
    assert created.stdout.strip() in result.stderr  # the hint lists the sweeps that exist


def test_status_names_unnamed_sweeps_rounds_floats_and_says_which_agents_live(
    cli, project: Path, monkeypatch
) -> None:
    (project / "thirds.py").write_text("def f(ctx):\n    return ctx.params['seed'] / 3\n")
    monkeypatch.syspath_prepend(str(project))
    spec = write(
        project / "unnamed.yaml",
        """
        method: grid
        metric: {name: val_loss}
        parameters:
          seed: {values: [1, 2]}
        """,
    )
    sweep_id = create(cli, spec)
    before = cli("sweep", "status", sweep_id)
    assert f"sweep {sweep_id} 'grid over config'" in before.stdout
    assert f"start one to continue: expctl sweep agent {sweep_id}\n" in before.stdout
    assert cli("sweep", "agent", sweep_id, "--objective", "thirds:f").exit_code == 0
    table = cli("sweep", "status", sweep_id).stdout
    assert "0.3333" in table and "0.33333333" not in table  # ~4 significant digits
    data = json.loads(cli("sweep", "status", sweep_id, "--format", "json").stdout)
    assert {t["value"] for t in data["trials"]} == {1 / 3, 2 / 3}  # JSON stays exact
    assert data["grid_size"] == 2 and data["planned"] == 2 and data["state"] == "finished"
    ((agent, beat),) = data["agents"].items()
    assert agent.endswith(f":{os.getpid()}") and beat["alive"] is False  # it has exited


def test_the_tutorial_sweep_ends_by_itself(project: Path) -> None:
    from expctl.sweeps.spec import load_spec

    repo = Path(__file__).resolve().parents[1]
    assert load_spec(repo / "configs" / "sweeps" / "tutorial_program.yaml").run_cap == 12


def test_hints_to_start_an_agent_name_a_storage_that_is_not_the_default(cli, project: Path) -> None:
    """The command a message suggests must work when pasted: with --storage, unless default."""
    spec = write(
        project / "s.yaml",
        """
        method: grid
        metric: {name: val_loss}
        parameters:
          seed: {values: [1, 2]}
        """,
    )
    storage = str(project / "elsewhere.journal")
    created = cli("sweep", "create", str(spec), "--storage", storage)
    assert created.exit_code == 0, created.stderr
    sweep_id = created.stdout.strip()
    status = cli("sweep", "status", sweep_id, "--storage", storage).stdout
    assert f"expctl sweep agent {sweep_id} --storage journal://{storage}" in status
    assert f"expctl sweep agent {sweep_id} --storage journal://{storage}" in created.stderr
