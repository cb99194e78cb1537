"""`--backend wandb`: `sweep create` hands the validated YAML to W&B's server, `sweep agent
ENTITY/PROJECT/ID` runs W&B's agent protocol with the local agent's trial function.

No W&B server is reachable here, so the wandb calls that need one are replaced at the API
boundary: ``wandb.sweep`` and ``wandb.Api`` by recording fakes, ``wandb.agent`` by
:class:`FakeWandbAgent`, which does what W&B's Python agent (``wandb/agents/pyagent.py``) does
for each run — export WANDB_SWEEP_ID/WANDB_RUN_ID/WANDB_SWEEP_PARAM_PATH, write the parameter
file, ``wandb.teardown()``, call the function in a thread, ``wandb.finish()`` — with real wandb,
offline.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import wandb

from expctl.errors import NotFoundError, RuntimeFailure, UsageError
from expctl.sweeps.spec import parse_spec
from expctl.sweeps.wandb.cloud import fetch_cloud_sweep_config, is_cloud_sweep_path
from expctl.sweeps.wandb.metrics import TransactionLogReader, find_run_log, read_metric

TESTS = Path(__file__).resolve().parent
PATH = "team/proj/abc123"

TRAINER_SWEEP = {
    "name": "cloud-tiny",
    "method": "grid",
    "metric": {"name": "val_loss", "goal": "minimize"},
    "parameters": {
        "seed": {"values": [1, 2]},
        "optim": {"parameters": {"lr": {"values": [0.5]}}},  # nested: re-nested by W&B
    },
}
PROGRAM_SWEEP = {
    "program": "train.py",
    "method": "random",
    "metric": {"name": "val_loss"},
    "parameters": {"lr": {"min": 0.0001, "max": 0.1}},
}


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    """The backend refuses WANDB_MODE=offline (the tests' default) before calling W&B."""
    monkeypatch.setenv("WANDB_MODE", "online")


@pytest.fixture
def created(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """wandb.sweep / wandb.Api replaced by recording fakes; the list holds wandb.sweep's kwargs."""
    calls: list[dict[str, Any]] = []

    def fake_sweep(**kwargs: Any) -> str:
        calls.append(kwargs)
        print("Create sweep with ID: abc123")  # the real one prints this on stdout
        return "abc123"

    monkeypatch.setattr(wandb, "sweep", fake_sweep)
    monkeypatch.setattr(wandb, "Api", lambda: SimpleNamespace(default_entity="me"))
    return calls


class FakeWandbAgent:
    """``wandb.agent`` for a server that hands out ``runs`` (one parameter dict per run)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, runs: list[dict[str, Any]]):
        self.monkeypatch = monkeypatch
        self.runs = runs
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.run_ids: list[str] = []
        self.errors: list[BaseException] = []
        self.fetched: list[str] = []  # sweep paths read with wandb.Api().sweep(path)

    def __call__(
        self,
        sweep_id: str,
        function: Any = None,
        entity: Any = None,
        project: Any = None,
        count: Any = None,
    ) -> None:
        from wandb.sdk.lib import config_util

        self.calls.append(
            (sweep_id, {"function": function, "entity": entity, "project": project, "count": count})
        )
        if function is None:
            return  # W&B's agent would run the sweep's program itself
        # no server here: the runs W&B's agent would start online are offline
        self.monkeypatch.setenv("WANDB_MODE", "offline")
        wandb_dir = Path(os.environ["WANDB_DIR"])
        for n, params in enumerate(self.runs[:count]):
            run_id = f"run{n}"
            param_path = wandb_dir / "wandb" / f"sweep-{sweep_id}" / f"config-{run_id}.yaml"
            config_util.save_config_file_from_dict(
                str(param_path), {k: {"value": v} for k, v in params.items()}
            )
            self.monkeypatch.setenv("WANDB_SWEEP_ID", sweep_id)
            self.monkeypatch.setenv("WANDB_RUN_ID", run_id)
            self.monkeypatch.setenv("WANDB_SWEEP_PARAM_PATH", str(param_path))
            wandb.teardown()  # pyagent too: the next wandb.init() re-reads the sweep values
            errors: list[BaseException] = []

            def job(errors: list[BaseException] = errors) -> None:
                try:
                    function()
                except Exception as e:  # pyagent records the run as errored
                    errors.append(e)

            thread = threading.Thread(target=job)  # pyagent runs the function in a thread
            thread.start()
            thread.join()
            wandb.finish(exit_code=1 if errors else 0)
            self.run_ids.append(run_id)
            self.errors += errors
        wandb.teardown()  # pyagent's last step; it also flushes the offline run logs
        for var in ("WANDB_SWEEP_ID", "WANDB_RUN_ID", "WANDB_SWEEP_PARAM_PATH"):
            self.monkeypatch.delenv(var)


@pytest.fixture
def hosted(monkeypatch: pytest.MonkeyPatch, online: None):
    """A W&B server holding one sweep: returns install(config, runs) -> FakeWandbAgent."""

    def install(config: dict[str, Any], runs: list[dict[str, Any]]) -> FakeWandbAgent:
        agent = FakeWandbAgent(monkeypatch, runs)

        def sweep(path: str) -> SimpleNamespace:
            agent.fetched.append(path)
            return SimpleNamespace(config=config)

        monkeypatch.setattr(wandb, "Api", lambda: SimpleNamespace(sweep=sweep))
        monkeypatch.setattr(wandb, "agent", agent)
        return agent

    return install


def sweep_test_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`--objective test_sweep_support:sleepy` logs each trial's params to this file."""
    log = tmp_path / "trials.log"
    monkeypatch.setenv("SWEEP_TEST_LOG", str(log))
    monkeypatch.setenv("SWEEP_TEST_SLEEP", "0")
    monkeypatch.syspath_prepend(str(TESTS))
    return log


def logged(log: Path, event: str) -> list[dict[str, Any]]:
    lines = log.read_text().splitlines() if log.exists() else []
    return [e for e in map(json.loads, lines) if e["event"] == event]


# -- sweep create --backend wandb ------------------------------------------------------------------


def test_create_on_wandb_prints_only_the_path(cli, project: Path, online, created) -> None:
    spec = write(
        project / "s.yaml",
        """
        name: lr-search
        method: grid
        metric: {name: val_loss}
        parameters:
          optim.lr: {values: [1e-3, 1e-2]}
          model: {values: [small, large]}
    """,
    )
    result = cli(
        "sweep",
        "create",
        str(spec),
        "--backend",
        "wandb",
        "--project",
        "digits",
        "--entity",
        "team",
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "team/digits/abc123\n"  # W&B's own "Create sweep" line went to stderr
    assert "Create sweep with ID: abc123" in result.stderr
    assert "created sweep team/digits/abc123 'lr-search': method grid, 4 runs planned" in (
        result.stderr
    )
    assert "expctl sweep agent team/digits/abc123" in result.stderr
    [call] = created
    assert (call["project"], call["entity"]) == ("digits", "team")
    assert call["sweep"]["parameters"]["optim.lr"] == {"values": [0.001, 0.01]}  # floats, not str
    assert call["sweep"]["project"] == "digits" and call["sweep"]["entity"] == "team"
    assert not (project / ".expctl").exists()  # nothing local was created


def test_backend_from_the_environment_and_program_sweeps(
    cli, project: Path, online, created, monkeypatch
) -> None:
    spec = write(
        project / "p.yaml",
        """
        program: train.py
        project: from-yaml
        method: random
        parameters:
          lr: {min: 0.0001, max: 0.1}
    """,
    )
    monkeypatch.setenv("EXPCTL_SWEEP_BACKEND", "wandb")
    result = cli("sweep", "create", str(spec))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "me/from-yaml/abc123\n"  # entity: the logged-in user's default
    assert "wandb agent me/from-yaml/abc123" in result.stderr
    assert created[0]["sweep"]["program"] == "train.py"


def test_create_on_wandb_validates_before_sending_anything(
    cli, project: Path, online, created
) -> None:
    bad = write(
        project / "bad.yaml",
        """
        method: grid
        metric: {name: val_loss, goal: minimise}
        parameters:
          optim.lrr: {values: [0.1]}
    """,
    )
    result = cli("sweep", "create", str(bad), "--backend", "wandb", "--project", "p")
    assert result.exit_code == 2 and result.stdout == ""
    assert "2 problems in sweep spec" in result.stderr
    assert "did you mean 'minimize'" in result.stderr and "did you mean 'optim.lr'" in (
        result.stderr
    )
    assert created == []


def test_create_refuses_unknown_backends_and_offline_mode(cli, project: Path, created) -> None:
    result = cli("sweep", "create", "configs/sweeps/grid.yaml", "--backend", "wandbb")
    assert result.exit_code == 2
    assert "unknown sweep backend 'wandbb'" in result.stderr
    assert "did you mean 'wandb'?" in result.stderr
    # the tests run with WANDB_MODE=offline: W&B's server is off limits, said before any call
    result = cli(
        "sweep", "create", "configs/sweeps/grid.yaml", "--backend", "wandb", "--project", "p"
    )
    assert result.exit_code == 2 and "WANDB_MODE=offline" in result.stderr
    assert created == [] and not (Path(".expctl")).exists()


# -- sweep agent ENTITY/PROJECT/ID -----------------------------------------------------------------


def test_agent_runs_the_local_trial_function_under_wandbs_agent(
    cli, project: Path, tmp_path: Path, hosted, monkeypatch
) -> None:
    log = sweep_test_env(tmp_path, monkeypatch)
    agent = hosted(
        TRAINER_SWEEP, runs=[{"seed": 1, "optim": {"lr": 0.5}}, {"seed": 2, "optim": {"lr": 0.5}}]
    )
    result = cli(
        "sweep",
        "agent",
        PATH,
        "--count",
        "2",
        "--set",
        "trainer.epochs=1",
        "--objective",
        "test_sweep_support:sleepy",
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert agent.fetched == [PATH]
    [(sweep_id, kwargs)] = agent.calls
    assert sweep_id == "abc123" and callable(kwargs["function"])
    assert (kwargs["entity"], kwargs["project"], kwargs["count"]) == ("team", "proj", 2)
    assert agent.errors == []
    # the values W&B's agent handed over reached the objective as flat dotted names ...
    assert [e["params"] for e in logged(log, "end")] == [
        {"optim.lr": 0.5, "seed": 1},
        {"optim.lr": 0.5, "seed": 2},
    ]
    assert "trial 0 (W&B run run0): optim.lr=0.5 seed=1" in result.stderr
    assert "trial 1: complete val_loss=2.5" in result.stderr
    # ... and the metric went into the run W&B's agent handed out, which ended with exit 0
    for run_id, expected in (("run0", 1.5), ("run1", 2.5)):
        run_log = find_run_log(Path(os.environ["WANDB_DIR"]), run_id)
        assert run_log is not None
        tracker = read_metric(run_log, "val_loss")
        assert (tracker.final, tracker.exit_code) == (expected, 0)


def test_a_failed_trial_is_an_errored_run_for_wandbs_agent(
    cli, project: Path, hosted, monkeypatch
) -> None:
    monkeypatch.syspath_prepend(str(TESTS))
    agent = hosted(TRAINER_SWEEP, runs=[{"seed": 1, "optim": {"lr": 0.5}}])
    result = cli("sweep", "agent", PATH, "--objective", "test_sweep_support:failing")
    assert result.exit_code == 0, result.stderr  # W&B's agent decides when to give up
    [error] = agent.errors
    assert isinstance(error, RuntimeFailure) and "RuntimeError: boom" in str(error)
    assert "trial 0: failed" in result.stderr and "boom" in result.stderr
    run_log = find_run_log(Path(os.environ["WANDB_DIR"]), "run0")
    assert run_log is not None and read_metric(run_log, "val_loss").exit_code == 1


def test_agent_checks_the_hosted_sweep_against_the_local_config(cli, project: Path, hosted) -> None:
    typo = {**TRAINER_SWEEP, "parameters": {"optim.lrr": {"values": [0.1]}}}
    agent = hosted(typo, runs=[{"optim.lrr": 0.1}])
    result = cli("sweep", "agent", PATH)
    assert result.exit_code == 2
    assert f"{PATH}: 1 problem in sweep spec" in result.stderr
    assert "did you mean 'optim.lr'" in result.stderr
    assert agent.calls == []  # no run was asked for


def test_program_sweeps_are_left_to_wandbs_own_agent(cli, project: Path, hosted) -> None:
    agent = hosted(PROGRAM_SWEEP, runs=[{"lr": 0.01}])
    result = cli("sweep", "agent", PATH, "--count", "3")
    assert result.exit_code == 0, result.stderr
    assert agent.calls == [
        ("abc123", {"function": None, "entity": "team", "project": "proj", "count": 3})
    ]
    assert f"exactly as `wandb agent {PATH}` would" in result.stderr
    # a timeout cannot be applied to a program W&B's agent runs: refused, not ignored
    result = cli("sweep", "agent", PATH, "--trial-timeout", "60")
    assert result.exit_code == 2 and "--trial-timeout cannot apply" in result.stderr
    assert len(agent.calls) == 1


def test_unknown_hosted_sweeps_and_offline_mode(monkeypatch, cli, project: Path) -> None:
    result = cli("sweep", "agent", PATH)  # WANDB_MODE=offline in the tests
    assert result.exit_code == 2 and "needs W&B's server, but WANDB_MODE=offline" in result.stderr

    def missing(path: str) -> Any:
        raise ValueError(f"Could not find sweep <Sweep {path}>")

    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setattr(wandb, "Api", lambda: SimpleNamespace(sweep=_raising(missing)))
    with pytest.raises(NotFoundError, match="no W&B sweep 'team/proj/nope'") as e:
        fetch_cloud_sweep_config("team/proj/nope")
    assert "--backend wandb" in (e.value.hint or "")


def _raising(fn: Any) -> Any:
    """A fake ``Api().sweep`` whose ``.config`` raises like the public API's lazy load."""

    class LazySweep:
        def __init__(self, path: str):
            self.path = path

        @property
        def config(self) -> Any:
            return fn(self.path)

    return LazySweep


def test_sweep_paths_select_the_backend() -> None:
    assert is_cloud_sweep_path("team/proj/abc123")
    for local in ("k3v9x2ab", "proj/abc123", "a//b", "/a/b", "a/b/c/d"):
        assert not is_cloud_sweep_path(local), local


# -- the trial function --------------------------------------------------------------------------


def test_sweep_values_finds_flat_nested_and_mixed_names() -> None:
    from expctl.sweeps.wandb.trial import sweep_values

    spec = parse_spec(
        {
            "method": "random",
            "parameters": {
                "optim.lr": {"values": [0.1]},
                "model": {
                    "parameters": {"hidden": {"values": [8]}, "act.name": {"values": ["relu"]}}
                },
                "seed": {"value": 3},
            },
        }
    )
    config = {"optim.lr": 0.1, "model": {"hidden": 8, "act.name": "relu"}, "seed": 3, "other": 1}
    assert sweep_values(config, spec) == {
        "model.act.name": "relu",
        "model.hidden": 8,
        "optim.lr": 0.1,
        "seed": 3,
    }
    with pytest.raises(RuntimeFailure, match="no value for sweep parameter 'seed'"):
        sweep_values({"optim.lr": 0.1, "model": {"hidden": 8, "act.name": "x"}}, spec)


def test_the_trial_timeout_must_be_positive() -> None:
    from expctl.sweeps.wandb.trial import wandb_trial_function

    with pytest.raises(UsageError, match="positive number of seconds"):
        wandb_trial_function(parse_spec(TRAINER_SWEEP), "abc123", trial_timeout=0)


def test_the_trainer_reuses_an_open_wandb_run(isolated: Path) -> None:
    from expctl.trackers.wandb import start_tracker

    wandb.teardown()  # wandb's settings singleton would keep an earlier test's WANDB_DIR
    run = wandb.init(config={"optim": {"lr": 0.5}})
    try:
        tracker = start_tracker(
            {"mode": "disabled", "project": "ignored"},
            run_name="x",
            config={"optim": {"lr": 0.5, "name": "adam"}, "seed": 1},
        )
        assert tracker.run is run and tracker.mode == "offline"  # type: ignore[attr-defined]
        assert tracker.run_id == run.id and tracker.sync_dir is not None
        # values already in the run (W&B's sweep values) win, the rest is added
        assert run.config["optim"] == {"lr": 0.5} and run.config["seed"] == 1
        tracker.log({"val_loss": 0.25}, step=1)
        tracker.finish(0)
    finally:
        run.finish()
    assert wandb.run is None
    assert len(list((Path(os.environ["WANDB_DIR"]) / "wandb").glob("offline-run-*"))) == 1


@pytest.mark.slow
def test_expctls_trainer_logs_into_the_run_wandbs_agent_handed_out(
    cli, project: Path, hosted
) -> None:
    hosted(
        {**TRAINER_SWEEP, "metric": {"name": "val_loss"}}, runs=[{"optim": {"lr": 0.01}, "seed": 7}]
    )
    result = cli(
        "sweep",
        "agent",
        PATH,
        "--count",
        "1",
        "--set",
        "trainer.epochs=1",
        "--set",
        "trainer.device=cpu",
        "--set",
        "artifact.publish=false",
    )
    assert result.exit_code == 0, result.stderr
    assert "trial 0: complete val_loss=" in result.stderr
    wandb_root = Path(os.environ["WANDB_DIR"]) / "wandb"
    assert [p.name.rsplit("-", 1)[1] for p in wandb_root.glob("offline-run-*")] == ["run0"]
    run_log = find_run_log(wandb_root.parent, "run0")
    assert run_log is not None
    tracker = read_metric(run_log, "val_loss")
    assert len(tracker.history) == 1 and tracker.exit_code == 0
    config: dict[str, Any] = {}  # the run's config: set at init (run record), then updated
    for record in TransactionLogReader(run_log).read_new():
        kind = record.WhichOneof("record_type")
        if kind in ("run", "config"):
            items = record.run.config.update if kind == "run" else record.config.update
            config.update({item.key: json.loads(item.value_json) for item in items})
    assert config["optim"] == {"lr": 0.01} and config["seed"] == 7  # W&B's values, as it keeps them
    assert config["trainer"]["epochs"] == 1 and config["model"]["_target_"] == "torch.nn.Sequential"
    [run_dir] = (project / "runs" / "cloud-tiny").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["wandb"]["run_id"] == "run0"


def test_the_cli_module_does_not_import_wandb() -> None:
    import subprocess

    code = "import sys, expctl.cli.sweep; print('wandb' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
