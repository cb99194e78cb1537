"""ProgramTrial: real child processes, real wandb offline in the child, real signals."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from expctl.sweeps.program.runner import ProgramResult, ProgramTrial

REPO = Path(__file__).resolve().parents[1]
TUTORIAL = REPO / "examples" / "tutorial_sweep" / "train.py"
HYDRA_PROGRAM = REPO / "examples" / "hydra_program" / "train.py"


def program(tmp_path: Path, source: str, name: str = "prog.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return str(path)


def trial(prog: str, tmp_path: Path, params=None, command=None, **kw) -> ProgramResult:
    kw.setdefault("metric", "val_loss")
    kw.setdefault("sweep_id", "sw1")
    kw.setdefault("run_id", "run1")
    kw.setdefault("trial_dir", tmp_path / "trial")
    kw.setdefault("poll_interval", 0.1)
    return ProgramTrial(prog, command, params or {}, **kw).run()


def load_tutorial():
    spec = importlib.util.spec_from_file_location("tutorial_train", TUTORIAL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_tutorial_program_runs_unchanged_and_its_val_loss_is_collected(tmp_path: Path):
    params = {"lr": 0.05, "batch_size": 32, "epochs": 3}
    seen: list[tuple[int, float]] = []
    result = trial(
        str(TUTORIAL), tmp_path, params, on_metric=lambda i, v: seen.append((i, v)) and False
    )

    assert result.status == "completed", result.message
    assert result.exit_code == 0
    assert len(result.history) == 3
    assert result.value == result.history[-1]
    assert seen == list(enumerate(result.history))
    # Same numbers as training in-process with these params: wandb.config had them.
    expected = []
    tutorial = load_tutorial()
    tutorial.wandb = SimpleNamespace(log=lambda d: expected.append(d["val_loss"]))
    tutorial.train(SimpleNamespace(**params, get=lambda k, d=None: params.get(k, d)))
    assert result.history == pytest.approx(expected)
    assert result.command[-3:] == ["--lr=0.05", "--batch_size=32", "--epochs=3"]
    assert result.wandb_run_dir is not None and result.wandb_run_dir.name.endswith("-run1")


@pytest.mark.slow
def test_child_sees_params_in_wandb_config_with_wandbs_environment(tmp_path: Path):
    probe = program(
        tmp_path,
        """
        import json, os, sys
        import wandb
        run = wandb.init(config={"lr": 123.0, "keep": "default"})
        env = {k: v for k, v in os.environ.items() if k.startswith("WANDB_")}
        with open(sys.argv[-1], "w") as f:
            json.dump({"config": dict(run.config), "env": env, "argv": sys.argv[1:],
                       "run_id": run.id}, f)
        run.log({"val_loss": 0.5})
        run.summary["val_loss"] = 0.25  # an explicit summary wins over the last logged value
        run.finish()
    """,
    )
    out = tmp_path / "probe.json"
    spec = {
        "lr": {"values": [0.1]},
        "data.batch_size": {"values": [8]},
        "optim": {"parameters": {"beta": {"value": 0.9}}},
        "amp": {"values": [True]},
    }
    params = {"lr": 0.1, "data.batch_size": 8, "optim.beta": 0.9, "amp": True}
    result = trial(
        probe,
        tmp_path,
        params,
        parameters_spec=spec,
        project="proj",
        command=["${env}", "${interpreter}", "${program}", "${args_no_boolean_flags}", str(out)],
        env={"WANDB_MODE": "offline", "EXTRA": "1"},
    )

    assert result.status == "completed", result.message
    assert (result.value, result.history) == (0.25, [0.5])
    seen = json.loads(out.read_text())
    assert seen["config"] == {
        "lr": 0.1,
        "keep": "default",
        "data.batch_size": 8,
        "optim": {"beta": 0.9},
        "amp": True,
    }
    assert seen["argv"] == [
        "--lr=0.1",
        "--data.batch_size=8",
        "--optim={'beta': 0.9}",
        "--amp",
        str(out),
    ]
    assert seen["run_id"] == "run1"
    param_path = Path(os.environ["WANDB_DIR"]) / "wandb" / "sweep-sw1" / "config-run1.yaml"
    assert seen["env"]["WANDB_SWEEP_PARAM_PATH"] == str(param_path)
    assert yaml.safe_load(param_path.read_text()) == {
        "wandb_version": 1,
        "lr": {"value": 0.1},
        "data.batch_size": {"value": 8},
        "optim": {"value": {"beta": 0.9}},
        "amp": {"value": True},
    }
    assert seen["env"]["WANDB_SWEEP_ID"] == "sw1"
    assert seen["env"]["WANDB_RUN_ID"] == "run1"
    assert seen["env"]["WANDB_MODE"] == "offline"
    assert seen["env"]["WANDB_PROJECT"] == "proj"
    assert seen["env"]["WANDB_DIR"] == os.environ["WANDB_DIR"]
    assert (tmp_path / "trial" / "stdout.log").exists()


@pytest.mark.slow
def test_hydra_program_with_args_no_hyphens(tmp_path: Path):
    params = {"optim.lr": 0.05, "optim.momentum": 0.9, "model.hidden": 8}
    result = trial(
        str(HYDRA_PROGRAM),
        tmp_path,
        params,
        cwd=tmp_path,
        command=["${env}", "${interpreter}", "${program}", "${args_no_hyphens}"],
    )

    assert result.status == "completed", result.message
    assert result.command[-3:] == ["optim.lr=0.05", "optim.momentum=0.9", "model.hidden=8"]
    assert len(result.history) == 4 and result.value == result.history[-1]
    (hydra_config,) = (tmp_path / "outputs").glob("*/*/.hydra/config.yaml")
    composed = yaml.safe_load(hydra_config.read_text())
    assert composed["optim"] == {"lr": 0.05, "momentum": 0.9}
    assert composed["model"] == {"hidden": 8}


def test_failing_program_is_failed_with_its_stderr_tail(tmp_path: Path):
    prog = program(
        tmp_path,
        """
        import sys
        print("starting", flush=True)
        print("ValueError: lr must be positive", file=sys.stderr)
        sys.exit(3)
    """,
    )
    result = trial(prog, tmp_path, {"lr": -1})

    assert (result.status, result.exit_code, result.value) == ("failed", 3, None)
    assert "exited with code 3" in result.message
    assert "ValueError: lr must be positive" in result.message
    assert result.stdout_path.read_text() == "starting\n"


def test_program_without_wandb_run_is_failed(tmp_path: Path):
    result = trial(program(tmp_path, "print('no wandb here')"), tmp_path)
    assert result.status == "failed"
    assert "no wandb run 'run1'" in result.message and "wandb.init()" in result.message


@pytest.mark.slow
def test_program_that_never_logs_the_metric_is_failed_naming_what_it_logged(tmp_path: Path):
    prog = program(
        tmp_path,
        """
        import wandb
        with wandb.init() as run:
            run.log({"train_loss": 1.0, "acc": 0.5})
    """,
    )
    result = trial(prog, tmp_path)

    assert (result.status, result.exit_code, result.value) == ("failed", 0, None)
    assert "never logged metric 'val_loss'" in result.message
    assert "acc, train_loss" in result.message


def test_command_that_cannot_start_is_failed(tmp_path: Path):
    result = trial("x.py", tmp_path, command=[str(tmp_path / "no-such-interpreter"), "${program}"])
    assert result.status == "failed" and result.exit_code is None
    assert "could not start" in result.message


SIGNAL_CHILD = """
import os, signal, subprocess, sys, time
from pathlib import Path
out = Path(sys.argv[1])
grandchild = subprocess.Popen([sys.executable, "-c", '''
import signal, sys, time
from pathlib import Path
def bye(signum, frame):
    Path(sys.argv[1], "grandchild").write_text(str(signum)); sys.exit(0)
signal.signal(signal.SIGTERM, bye)
Path(sys.argv[1], "grandchild-ready").touch()
time.sleep(60)
''', str(out)])
def bye(signum, frame):
    (out / "child").write_text(str(signum))
    grandchild.wait()
    sys.exit(0)
signal.signal(signal.SIGTERM, IGNORE and signal.SIG_IGN or bye)
(out / "pid").write_text(str(os.getpid()))
while not (out / "grandchild-ready").exists():
    time.sleep(0.02)
(out / "ready").touch()
time.sleep(60)
"""


def signal_trial(tmp_path: Path, ignore: bool, grace: float) -> ProgramResult:
    out = tmp_path / "out"
    out.mkdir()
    prog = program(tmp_path, f"IGNORE = {ignore}\n" + SIGNAL_CHILD)
    ready = out / "ready"
    return trial(
        prog,
        tmp_path,
        command=["${interpreter}", "${program}", str(out)],
        should_stop=lambda: signal.SIGTERM if ready.exists() else None,
        kill_grace=grace,
        timeout=60,
    )  # the timeout only guards against a broken test


def test_should_stop_forwards_the_signal_to_the_whole_process_group(tmp_path: Path):
    result = signal_trial(tmp_path, ignore=False, grace=20)

    assert result.status == "interrupted" and "SIGTERM" in result.message
    assert result.exit_code == 0  # the child handled SIGTERM and exited by itself
    assert (tmp_path / "out" / "child").read_text() == str(int(signal.SIGTERM))
    assert (tmp_path / "out" / "grandchild").read_text() == str(int(signal.SIGTERM))


def test_child_ignoring_sigterm_is_sigkilled_after_the_grace(tmp_path: Path):
    result = signal_trial(tmp_path, ignore=True, grace=0.5)

    assert result.status == "interrupted"
    assert result.exit_code == -signal.SIGKILL
    assert not (tmp_path / "out" / "child").exists()
    # the grandchild took SIGTERM and left; nothing of the group is alive afterwards
    assert (tmp_path / "out" / "grandchild").exists()
    assert live_members(int((tmp_path / "out" / "pid").read_text())) == []


def live_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that are not zombies (init reaps those a moment later)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, group = fields[0], int(fields[2])
        if group == pgid and state not in ("Z", "X"):
            alive.append(int(stat.parent.name))
    return alive


def test_a_raising_callback_never_leaves_the_program_running(tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    prog = program(tmp_path, "IGNORE = False\n" + SIGNAL_CHILD)

    def should_stop():
        if (out / "ready").exists():
            raise RuntimeError("agent bug")
        return None

    with pytest.raises(RuntimeError, match="agent bug"):
        trial(
            prog,
            tmp_path,
            command=["${interpreter}", "${program}", str(out)],
            should_stop=should_stop,
            kill_grace=20,
            timeout=60,
        )
    assert (out / "child").read_text() == str(int(signal.SIGTERM))
    assert live_members(int((out / "pid").read_text())) == []


def test_timeout_kills_the_trial(tmp_path: Path):
    prog = program(tmp_path, "import time\ntime.sleep(60)\n")
    result = trial(prog, tmp_path, timeout=0.5, kill_grace=5)

    assert result.status == "timeout"
    assert result.exit_code == -signal.SIGTERM
    assert "trial timeout of 0.5 s" in result.message


@pytest.mark.slow
def test_on_metric_true_stops_the_child_like_a_hyperband_prune(tmp_path: Path):
    # Three epochs, then a long one: the values must be seen while the child runs (wandb-core
    # would flush them only after 15 s), else this ends as a timeout, not a stop.
    prog = program(
        tmp_path,
        """
        import time
        import wandb
        run = wandb.init()
        for epoch in range(3):
            run.log({"val_loss": 10.0 - epoch})
        time.sleep(60)
        run.log({"val_loss": 0.0})
        run.finish()
    """,
    )
    calls: list[int] = []

    def on_metric(index: int, value: float) -> bool:
        calls.append(index)
        return value > 5.0 and index == 2  # "worse than the band threshold at band 2"

    result = trial(prog, tmp_path, on_metric=on_metric, kill_grace=10, timeout=12)

    assert result.status == "stopped", result.message
    assert result.exit_code == -signal.SIGTERM
    assert result.history == [10.0, 9.0, 8.0]
    assert result.value == 8.0
    assert calls == [0, 1, 2]  # each value reported exactly once


@pytest.mark.slow
def test_rerun_with_the_same_run_id_reads_only_its_own_run(tmp_path: Path):
    prog = program(
        tmp_path,
        """
        import sys
        import wandb
        with wandb.init() as run:
            run.log({"val_loss": float(run.config.lr)})
    """,
    )
    first = trial(prog, tmp_path, {"lr": 1.0})
    second = trial(prog, tmp_path, {"lr": 2.0})

    assert (first.value, second.value) == (1.0, 2.0)
    assert second.history == [2.0]
    assert first.wandb_run_dir != second.wandb_run_dir


def test_kill_delay_defaults_to_wandbs_variable(monkeypatch):
    from expctl.sweeps.program.child_process import DEFAULT_KILL_GRACE, kill_grace

    assert kill_grace(None, {}) == DEFAULT_KILL_GRACE == 30.0
    assert kill_grace(None, {"WANDB_AGENT_KILL_DELAY": "2.5"}) == 2.5
    assert kill_grace(1.0, {"WANDB_AGENT_KILL_DELAY": "2.5"}) == 1.0


def test_interpreter_is_the_agents_own(tmp_path: Path):
    prog = program(tmp_path, "import sys; print(sys.executable)")
    result = trial(prog, tmp_path)
    assert result.stdout_path.read_text().strip() == sys.executable
