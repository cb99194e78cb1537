"""Hostile or careless input: a clear exit 2 (one line + hint) within seconds — never a hang, an
out-of-memory, a traceback or "unexpected ... please report it"."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from config_trees import write_tree


def expctl(expctl_exe, *args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*expctl_exe, *args], capture_output=True, text=True, timeout=timeout, **kwargs
    )


def assert_clean_bad_input(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and any(x.startswith("hint: ") for x in lines)
    for text in ("Traceback", "unexpected", "please report", "UserWarning"):
        assert text not in result.stderr, result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


# -- sweep files ------------------------------------------------------------------------------


def billion_laughs() -> str:
    lines = ["program: t.py", "method: random", "a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "\n".join([*lines, "parameters:", "  x: {values: *a8}"]) + "\n"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (billion_laughs(), "expands to more than 100,000 values"),
        (
            "method: grid\nprogram: t.py\nparameters:\n"
            "  x: {distribution: int_uniform, min: 0, max: 100000000000}\n",
            "the grid has 100,000,000,001 points",
        ),
        ("method: random\nprogram: t.py\nparameters:\n  x: {min: .nan, max: 1.0}\n", "finite"),
        ("method: random\nprogram: t.py\nparameters:\n  x: {min: 0.0, max: .inf}\n", "finite"),
        (
            "method: random\nprogram: t.py\nparameters:\n  x: {values: "
            + "[" * 5000
            + "]" * 5000
            + "}\n",
            "levels deep",
        ),
    ],
    ids=["billion-laughs", "huge-int-grid", "nan-bound", "inf-bound", "deep-nesting"],
)
def test_hostile_sweep_files_are_refused_quickly_and_small(isolated, expctl_exe, text, needle):
    (isolated / "sweep.yaml").write_text(text)
    # a fresh parent whose only child is expctl: its peak memory is expctl's alone
    measure = (
        "import resource, subprocess, sys\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=60)\n"
        "sys.stderr.write(p.stderr)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.exit(p.returncode)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", measure, *expctl_exe, "sweep", "create", "sweep.yaml"],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert_clean_bad_input(result, needle)
    assert int(result.stdout.strip()) < 200_000, f"peak {result.stdout.strip()} KB"
    assert not (isolated / ".expctl").exists()  # nothing was created


def test_a_binary_sweep_file(isolated, expctl_exe):
    (isolated / "sweep.yaml").write_bytes(bytes(range(256)) * 4)
    assert_clean_bad_input(expctl(expctl_exe, "sweep", "create", "sweep.yaml"), "UTF-8")


def test_a_ten_thousand_point_grid_is_queued_whole(isolated, expctl_exe):
    (isolated / "grid.yaml").write_text(
        "method: grid\nprogram: t.py\nparameters:\n  x: {distribution: int_uniform, min: 1, max: 10000}\n"
    )
    (isolated / "t.py").write_text("")
    created = expctl(expctl_exe, "sweep", "create", "grid.yaml", timeout=60)
    assert created.returncode == 0, created.stderr
    status = expctl(expctl_exe, "sweep", "status", created.stdout.strip(), "--format", "json")
    data = json.loads(status.stdout)
    assert data["counts"] == {"waiting": 10000} and data["planned"] == 10000


# -- configs and overrides --------------------------------------------------------------------


@pytest.fixture
def tree(isolated: Path) -> Path:
    return write_tree(
        isolated / "configs",
        {
            "config.yaml": "defaults:\n  - model: small\n  - _self_\nname: x\nlr: 0.1\n",
            "model/small.yaml": "width: 8\n",
            "model/large.yaml": "width: 64\n",
            "cycle.yaml": "defaults:\n  - cycle\n",
            "deep.yaml": "x: " + "[" * 5000 + "]" * 5000 + "\n",
        },
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["=1"], "has no key"),
        (["name=${oc.env:EXPCTL_TEST_NOPE}"], "EXPCTL_TEST_NOPE is not set"),
        (["model=null"], "choose one of model: large, small"),
        (["--config-name", "cycle"], "a cycle"),
        (["--config-name", "deep"], "nested thousands of levels deep"),
    ],
)
def test_bad_configs_and_overrides_are_exit_2(tree, expctl_exe, args, needle):
    assert_clean_bad_input(expctl(expctl_exe, "config", "show", *args), needle)


def test_a_binary_config_file_is_named(tree, expctl_exe):
    (tree / "model" / "binary.yaml").write_bytes(bytes(range(256)))
    result = expctl(expctl_exe, "config", "show", "model=binary")
    assert_clean_bad_input(result, "binary.yaml: not a UTF-8 text file")


def test_usage_errors_have_a_hint(isolated, expctl_exe):
    assert_clean_bad_input(
        expctl(expctl_exe, "config", "show", "--bogus"), "No such option", "config show --help"
    )
    assert_clean_bad_input(expctl(expctl_exe, "sweep", "create"), "Missing argument")


def test_json_output_is_strict_json(tree, expctl_exe):
    (tree / "config.yaml").write_text("a: .nan\nb: .inf\nc: -.inf\nd: 1.5\n")

    def refuse(name: str) -> None:
        raise ValueError(f"not JSON: {name}")

    result = expctl(expctl_exe, "config", "show", "--format", "json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout, parse_constant=refuse)
    assert data == {"a": "nan", "b": "inf", "c": "-inf", "d": 1.5}


@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_a_closed_pipe_is_141_also_unbuffered(tree, expctl_exe, unbuffered):
    (tree / "config.yaml").write_text("".join(f"k{i}: {'x' * 100}\n" for i in range(5000)))
    env = {**os.environ, "PYTHONUNBUFFERED": unbuffered}
    pipeline = subprocess.run(
        [
            "bash",
            "-c",
            f'{" ".join(expctl_exe)} config show | head -1 >/dev/null; echo "${{PIPESTATUS[0]}}"',
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert pipeline.stdout.strip() == "141", pipeline.stderr
    assert pipeline.stderr == ""


def test_checkpoint_write_every_s_is_a_known_key(project, cli):
    result = cli(
        "config", "show", "--select", "checkpoint.write_every_s", "checkpoint.write_every_s=0"
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "0"


def test_a_corrupt_checkpoint_never_suggests_weights_only_false(isolated):
    from pathlib import PurePosixPath

    import torch

    from expctl.errors import RuntimeFailure
    from expctl.train.checkpoints import load_checkpoint

    path = isolated / "evil.pt"
    torch.save({"model": PurePosixPath("not a tensor")}, path)  # weights_only refuses it
    with pytest.raises(RuntimeFailure) as raised:
        load_checkpoint(path)
    text = f"{raised.value} {raised.value.hint}"
    assert "weights_only=False" not in text and "weights_only=True" in text


# -- _target_ and programs --------------------------------------------------------------------


@pytest.mark.parametrize(
    "target", ["pathlib.Path.write_text", "pathlib.PosixPath.touch", "subprocess.run", "os.system"]
)
def test_targets_that_write_files_or_start_processes_are_refused(project, expctl_exe, target):
    victim = project / "pwned"
    result = expctl(
        expctl_exe,
        "run",
        "trainer.epochs=1",
        "--quiet",
        f"+model.evil={{_target_: {target}, _args_: [{victim}]}}",
    )
    assert_clean_bad_input(result, "model.evil._target_", "is refused")
    assert not victim.exists()


def test_hydras_own_blocklist_message_is_whole(project, expctl_exe):
    # allowed by name (expctl.allow_targets), still refused by Hydra's own blocklist
    result = expctl(
        expctl_exe,
        "run",
        "trainer.epochs=1",
        "--quiet",
        "+model.evil={_target_: builtins.exit}",
        "++expctl.allow_targets=[builtins.exit]",
    )
    assert_clean_bad_input(result, "blocklisted")
    first = result.stderr.splitlines()[0]
    assert not first.rstrip().endswith("because it allows"), first


PROGRAM_SWEEP = "program: missing/train.py\nmethod: grid\nparameters:\n  x: {values: [1, 2]}\n"


def test_a_missing_program_warns_at_create_and_the_agent_burns_no_trial(isolated, expctl_exe):
    (isolated / "sweep.yaml").write_text(PROGRAM_SWEEP)
    created = expctl(expctl_exe, "sweep", "create", "sweep.yaml")
    assert created.returncode == 0, created.stderr
    assert "warning: program 'missing/train.py' does not exist here" in created.stderr
    sweep_id = created.stdout.strip()
    agent = expctl(expctl_exe, "sweep", "agent", sweep_id)
    assert_clean_bad_input(agent, str(isolated / "missing" / "train.py"))
    status = json.loads(expctl(expctl_exe, "sweep", "status", sweep_id, "-f", "json").stdout)
    assert status["counts"] == {"waiting": 2}


def test_a_crash_while_sampling_fails_the_trial_instead_of_leaving_it_running(
    isolated, monkeypatch
):
    from optuna.trial import TrialState
    from sweep_helpers import create, open_

    import expctl.sweeps.distributions as distributions
    from expctl.sweeps.spec import parse_spec

    spec = parse_spec(
        {"method": "random", "program": "t.py", "parameters": {"x": {"min": 0.0, "max": 1.0}}}
    )
    info = create(spec, "s.journal")

    def overflow(*args, **kwargs):
        raise OverflowError("math range error")

    monkeypatch.setattr(distributions, "to_value", overflow)
    with pytest.raises(OverflowError):
        open_(info.id, "s.journal").claim()
    (trial,) = open_(info.id, "s.journal").trials()
    assert trial.state == TrialState.FAIL


def test_grid_sizes_are_computed_not_enumerated():
    from expctl.sweeps.methods.grid import grid_points, grid_size
    from expctl.sweeps.spec import parse_spec

    spec = parse_spec(
        {
            "method": "grid",
            "program": "t.py",
            "run_cap": 3,
            "parameters": {
                "a": {"distribution": "int_uniform", "min": 0, "max": 100_000_000_000},
                "b": {"distribution": "q_uniform", "min": 0.0, "max": 1.0, "q": 1e-9},
            },
        }
    )
    assert grid_size(spec) == 100_000_000_001 * 1_000_000_000
    assert [p["a"] for p in grid_points(spec, limit=10)] == [0, 0, 0]
    assert sys.getsizeof(grid_points(spec, limit=10)) < 1000
