"""What a config, a sweep or a working directory can make expctl execute (issue 20, round 3).

- `_target_`: only an allowlist is built (torch.nn/optim, torch.utils.data datasets, the
  project's own modules, what `expctl.allow_targets` names), checked before anything is called;
- the sbatch script: nothing from the working directory or the sweep id becomes a command;
- a trial's program dies with its agent, grandchildren included, even under `kill -9`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from processes import alive

from expctl.config import ConfigSource, compose_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _forget_project_modules():
    """A project module this test writes (``mymodels``) is imported in-process by the CLI
    runner; left in ``sys.modules`` it would be another test's ``mymodels`` (from a directory
    that is not that test's project)."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        file = str(getattr(sys.modules.get(name), "__file__", None) or "")
        if file.startswith(tempfile.gettempdir()):  # the test's own project, under tmp_path
            del sys.modules[name]


def expctl(expctl_exe, *args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*expctl_exe, *args], capture_output=True, text=True, timeout=120, **kwargs
    )


def assert_refused(result, *needles: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: "), result.stderr
    assert lines[1].startswith("hint: ") and "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


# -- _target_: an allowlist, checked before anything is called ----------------------------------

FILE_WRITERS = {
    "numpy.savetxt": "{_target_: numpy.savetxt, fname: evil.sh, X: [1], header: 'echo PWNED', "
    "comments: ''}",
    "torch.save": "{_target_: torch.save, _args_: [1, evil.pt]}",
    "logging.FileHandler": "{_target_: logging.FileHandler, filename: evil.log}",
    "sqlite3.connect": "{_target_: sqlite3.connect, database: evil.db}",
    "zipfile.ZipFile": "{_target_: zipfile.ZipFile, file: evil.zip, mode: w}",
    "dbm.open": "{_target_: dbm.open, _args_: [evil.dbm, c]}",
}


@pytest.mark.parametrize("target", list(FILE_WRITERS))
def test_a_loss_target_that_writes_a_file_is_refused_before_anything_runs(
    project: Path, cli, target: str
):
    before = set(project.iterdir())
    result = cli("run", "trainer.epochs=1", "--quiet", "~loss", f"+loss={FILE_WRITERS[target]}")
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(f"error: loss._target_: _target_ '{target}' is refused"), lines
    assert "expctl.allow_targets" in lines[1]
    created = {p.name for p in set(project.iterdir()) - before} - {"runs"}
    assert not created, f"{target} ran: {created}"
    assert not list(project.glob("evil*")) and not list(project.glob("runs/*/*/evil*"))


def test_the_file_writers_command_line_through_the_real_entry_point(project: Path, expctl_exe):
    result = expctl(
        expctl_exe,
        "run",
        "trainer.epochs=1",
        "--quiet",
        "~loss",
        f"+loss={FILE_WRITERS['numpy.savetxt']}",
    )
    assert_refused(result, "loss._target_", "numpy.savetxt", "expctl: {allow_targets: [")
    assert not (project / "evil.sh").exists()


@pytest.mark.parametrize(
    ("override", "where"),
    [
        # nested in _args_ of an allowed target
        (
            "+model.evil={_target_: torch.nn.Sequential, _args_: [{_target_: numpy.savetxt, "
            "fname: evil.sh, X: [1]}]}",
            "model.evil._args_.0._target_",
        ),
        # an allowed module re-exports torch, whose save is not allowed
        (
            "+model.evil={_target_: torch.nn.modules.module.torch.save, _args_: [1, evil.pt]}",
            "model.evil._target_",
        ),
        # functools.partial is allowed; what it wraps is checked too
        (
            "+loss={_target_: functools.partial, _args_: [{_target_: numpy.savetxt, "
            "_partial_: true, fname: evil.sh}]}",
            "loss._args_.0._target_",
        ),
    ],
    ids=["nested-args", "re-exported-module", "partial"],
)
def test_nested_and_re_exported_targets_are_checked(project: Path, cli, override, where):
    result = cli("run", "trainer.epochs=1", "--quiet", "~loss", override)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith(f"error: {where}: _target_ "), result.stderr
    assert not list(project.glob("evil*"))


def test_a_target_reached_through_interpolation_is_checked(project: Path, cli):
    result = cli(
        "run",
        "trainer.epochs=1",
        "--quiet",
        "+elsewhere={_target_: numpy.savetxt, fname: evil.sh, X: [1]}",
        "+model.evil=${elsewhere}",
    )
    assert result.exit_code == 2, result.stderr
    assert "model.evil._target_" in result.stderr and "numpy.savetxt" in result.stderr
    assert not (project / "evil.sh").exists()


def test_a_project_module_re_exporting_a_file_writer_is_refused(project: Path, cli):
    (project / "mymodels.py").write_text("from numpy import savetxt\n")
    result = cli("run", "--quiet", "~loss", "+loss={_target_: mymodels.savetxt, fname: evil.sh}")
    assert result.exit_code == 2, result.stderr
    assert "defined in numpy" in result.stderr
    assert not (project / "evil.sh").exists()


def test_the_check_comes_before_anything_is_imported(project: Path, cli):
    """An import runs code: a module outside the allowlist is not even imported."""
    lib = project.parent / "lib"
    lib.mkdir()
    (lib / "noisy.py").write_text(
        f"open({str(project / 'imported')!r}, 'w').close()\n\ndef f():\n    pass\n"
    )
    sys.path.insert(0, str(lib))
    try:
        result = cli("run", "--quiet", "~loss", "+loss={_target_: noisy.f}")
    finally:
        sys.path.remove(str(lib))
    assert result.exit_code == 2, result.stderr
    assert not (project / "imported").exists()


EXTERNAL_MODEL = """
import torch


class Net(torch.nn.Module):
    def __init__(self, num_features, num_classes):
        super().__init__()
        self.linear = torch.nn.Linear(num_features, num_classes)

    def forward(self, x):
        return self.linear(x)
"""


def use_model(project: Path, target: str) -> str:
    """A model option naming ``target``; the override that picks it."""
    (project / "configs" / "model" / "mine.yaml").write_text(
        f"_target_: {target}\nnum_features: ${{data.num_features}}\n"
        "num_classes: ${data.num_classes}\n"
    )
    return "model=mine"


def test_a_third_party_target_needs_the_allowlist_line_the_hint_gives(project: Path, expctl_exe):
    """An installed package (here: a directory on PYTHONPATH, outside the project) is refused
    until `expctl.allow_targets` names it; the hint's line, pasted into the config, is enough."""
    lib = project.parent / "site"
    lib.mkdir()
    (lib / "extmodels.py").write_text(EXTERNAL_MODEL)
    env = {**os.environ, "PYTHONPATH": str(lib), "WANDB_MODE": "disabled"}
    model = use_model(project, "extmodels.Net")
    refused = expctl(expctl_exe, "run", "trainer.epochs=1", "--quiet", model, env=env)
    assert_refused(refused, "model._target_", "extmodels.Net")
    line = "expctl: {allow_targets: [extmodels.Net]}"
    assert line in refused.stderr
    config = project / "configs" / "config.yaml"
    config.write_text(config.read_text() + "\n" + line + "\n")
    built = expctl(expctl_exe, "run", "trainer.epochs=1", "--quiet", model, env=env)
    assert built.returncode == 0, built.stderr
    on_the_command_line = expctl(
        expctl_exe,
        "run",
        "trainer.epochs=1",
        "--quiet",
        model,
        "++expctl.allow_targets=[extmodels.*]",
        env=env,
    )
    assert on_the_command_line.returncode == 0, on_the_command_line.stderr


def test_what_hydra_users_write_is_built(project: Path, cli):
    (project / "user_models.py").write_text(EXTERNAL_MODEL)  # (a name no other test imports)
    result = cli(
        "run",
        "trainer.epochs=1",
        "--quiet",
        "optim=adamw",
        "+scheduler={_target_: torch.optim.lr_scheduler.LambdaLR, lr_lambda: "
        "{_target_: functools.partial, _args_: [{_target_: builtins.max, _partial_: true}, 1]}}",
        use_model(project, "user_models.Net"),
        "loss.label_smoothing=0.1",
    )
    # builtins.max is not on the list: the scheduler's lambda is refused, by name and path
    assert result.exit_code == 2 and "scheduler.lr_lambda._args_.0._target_" in result.stderr
    ok = cli(
        "run",
        "trainer.epochs=1",
        "--quiet",
        "optim=adamw",
        "scheduler=cosine",
        use_model(project, "user_models.Net"),
        "+loss.weight={_target_: torch.tensor, data: [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, "
        "1.0, 1.0]}",
    )
    assert ok.exit_code == 0, ok.stderr


def _trees() -> list[tuple[Path, str, str]]:
    """(config dir, group, option) for every option of every built group in the examples."""
    trees = [
        REPO / "configs",
        REPO / "expctl" / "configs",
        REPO / "examples" / "course" / "configs",
    ]
    found = []
    for tree in trees:
        for group in ("data", "model", "optim", "scheduler"):
            for option in sorted((tree / group).glob("*.yaml")):
                found.append((tree, group, option.stem))
    return found


@pytest.mark.parametrize(
    ("tree", "group", "option"),
    _trees(),
    ids=[f"{t.relative_to(REPO)}:{g}={o}" for t, g, o in _trees()],
)
def test_every_example_option_passes_the_allowlist(tree: Path, group: str, option: str):
    from expctl.train.build import check_all_targets, ensure_cwd_importable

    ensure_cwd_importable()
    overrides = [f"{group}={option}"]
    if tree.parent.name == "course":
        overrides.append("learning_rate=0.1")  # the course leaves it ??? on purpose
    cfg = compose_config(ConfigSource(tree, "config", tuple(overrides)))
    check_all_targets(cfg)  # raises ConfigError if refused


def test_the_allowlist_must_be_a_list_of_names(project: Path, cli):
    result = cli("run", "--quiet", "++expctl.allow_targets={a: 1}")
    assert result.exit_code == 2 and "expctl.allow_targets must be a list" in result.stderr


def test_an_allowlisted_target_still_goes_through_hydras_blocklist(project: Path, cli):
    result = cli(
        "run",
        "--quiet",
        "+model.evil={_target_: builtins.exit}",
        "++expctl.allow_targets=[builtins.exit]",
    )
    assert result.exit_code == 2 and "blocklisted" in result.stderr


# -- a trial's whole process tree dies with its agent, even by SIGKILL ---------------------------

GRANDCHILD = """
import os, sys, time
from pathlib import Path
Path(sys.argv[1]).write_text(str(os.getpid()))
time.sleep(120)
Path(sys.argv[1] + ".finished").write_text("the point ran to its end")
"""
# a shell wrapper that starts python in the background and waits (the torchrun/accelerate shape)
SHELL_WRAPPER = '"$PYTHON" grandchild.py "$PIDFILE" &\nwait\n'
# a python that starts python and forwards no signal
PYTHON_WRAPPER = (
    "import os, subprocess, sys\n"
    "subprocess.run([sys.executable, 'grandchild.py', os.environ['PIDFILE']])\n"
)
WRAPPERS = {
    "shell": ("wrapper.sh", SHELL_WRAPPER, '["/bin/sh", "${program}"]'),
    "python": ("wrapper.py", PYTHON_WRAPPER, '["${interpreter}", "${program}"]'),
}


def _wait_for(predicate, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


@pytest.mark.parametrize("wrapper", list(WRAPPERS))
def test_a_trials_grandchild_dies_when_its_agent_is_killed_with_sigkill(
    cli, isolated: Path, expctl_exe, wrapper: str
):
    name, text, command = WRAPPERS[wrapper]
    (isolated / name).write_text(text)
    (isolated / "grandchild.py").write_text(GRANDCHILD)
    (isolated / "sweep.yaml").write_text(
        f"program: {name}\ncommand: {command}\nmethod: grid\nmetric: {{name: loss}}\n"
        "parameters:\n  x: {values: [1, 2]}\n"
    )
    sweep_id = cli("sweep", "create", "sweep.yaml").stdout.strip()
    pidfile = isolated / "grandchild.pid"
    agent = subprocess.Popen(
        [*expctl_exe, "sweep", "agent", sweep_id],
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PIDFILE": str(pidfile), "PYTHON": sys.executable},
        start_new_session=True,  # SIGKILL reaches the agent alone, as the OOM killer's would
    )
    try:
        _wait_for(lambda: pidfile.exists() and pidfile.read_text(), 60, "no grandchild started")
        assert agent.poll() is None
        grandchild = int(pidfile.read_text())
        assert alive(grandchild)
        agent.kill()
        agent.wait()
        # bounded, not timed: the kernel closes the agent's end of the guard's pipe at once
        _wait_for(lambda: not alive(grandchild), 10, "the trial's grandchild outlived its agent")
    finally:
        agent.kill()
        agent.wait()
        if pidfile.exists() and pidfile.read_text():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
    assert not Path(f"{pidfile}.finished").exists()


def test_a_trial_that_ends_normally_stands_its_guard_down(isolated: Path):
    """The guard kills only when the agent dies: a finished trial leaves no guard behind and
    does not kill what its program deliberately left running in its own session."""
    from expctl.sweeps.program.child_process import GroupGuard

    child = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        guard = GroupGuard(child.pid)
        guard.release()
        assert child.poll() is None, "released: the guard must not kill"
    finally:
        child.kill()
        child.wait()
