"""W&B command macros: every macro's argv, checked against W&B's own renderer."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from expctl.errors import UsageError
from expctl.sweeps.program.macros import (
    DEFAULT_COMMAND,
    KNOWN_MACROS,
    build_command,
    command_args,
    sweep_file,
    unknown_macros,
    wandb_params,
)

PARAMS = {
    "lr": 0.001,
    "tiny": 1e-05,
    "batch_size": 64,
    "amp": True,
    "shuffle": False,
    "optimizer": "adam",
    "layers": [32, 64],
    "optim": {"lr": 0.01, "beta": 0.9},
    "none": None,
}


def build(command, params=PARAMS, tmp: Path = Path("/w"), **kw):
    return build_command(
        command, "train.py", params, sweep_id="sw1", run_id="run1", wandb_dir=tmp, **kw
    )


def test_default_command_is_env_interpreter_program_args():
    argv = build(None, {"lr": 0.001, "batch_size": 64})
    assert argv == ["/usr/bin/env", sys.executable, "train.py", "--lr=0.001", "--batch_size=64"]
    assert build(list(DEFAULT_COMMAND), {"lr": 0.001, "batch_size": 64}) == argv


@pytest.mark.parametrize(
    ("macro", "expected"),
    [
        (
            "${args}",
            [
                "--lr=0.001",
                "--tiny=1e-05",
                "--batch_size=64",
                "--amp=True",
                "--shuffle=False",
                "--optimizer=adam",
                "--layers=[32, 64]",
                "--optim={'lr': 0.01, 'beta': 0.9}",
                "--none=None",
            ],
        ),
        (
            "${args_no_hyphens}",
            [
                "lr=0.001",
                "tiny=1e-05",
                "batch_size=64",
                "amp=True",
                "shuffle=False",
                "optimizer=adam",
                "layers=[32, 64]",
                "optim={'lr': 0.01, 'beta': 0.9}",
                "none=None",
            ],
        ),
        (
            "${args_no_boolean_flags}",
            [
                "--lr=0.001",
                "--tiny=1e-05",
                "--batch_size=64",
                "--amp",
                "--optimizer=adam",
                "--layers=[32, 64]",
                "--optim={'lr': 0.01, 'beta': 0.9}",
                "--none=None",
            ],
        ),
        (
            "${args_no_equals}",
            [
                "--lr",
                "0.001",
                "--tiny",
                "1e-05",
                "--batch_size",
                "64",
                "--amp",
                "True",
                "--shuffle",
                "False",
                "--optimizer",
                "adam",
                "--layers",
                "[32, 64]",
                "--optim",
                "{'lr': 0.01, 'beta': 0.9}",
                "--none",
                "None",
            ],
        ),
        (
            "${args_append_hydra}",
            [
                "+lr=0.001",
                "+tiny=1e-05",
                "+batch_size=64",
                "+amp=True",
                "+shuffle=False",
                "+optimizer=adam",
                "+layers=[32, 64]",
                "+optim={'lr': 0.01, 'beta': 0.9}",
                "+none=None",
            ],
        ),
        (
            "${args_override_hydra}",
            [
                "++lr=0.001",
                "++tiny=1e-05",
                "++batch_size=64",
                "++amp=True",
                "++shuffle=False",
                "++optimizer=adam",
                "++layers=[32, 64]",
                "++optim={'lr': 0.01, 'beta': 0.9}",
                "++none=None",
            ],
        ),
        (
            "${args_json}",
            [
                '{"lr": 0.001, "tiny": 1e-05, "batch_size": 64, "amp": true, '
                '"shuffle": false, "optimizer": "adam", "layers": [32, 64], '
                '"optim": {"lr": 0.01, "beta": 0.9}, "none": null}'
            ],
        ),
        ("${env}", ["/usr/bin/env"]),
        ("${interpreter}", [sys.executable]),
        ("${program}", ["train.py"]),
    ],
)
def test_each_macro_argv(macro, expected):
    assert build(["python", macro, "--fixed"]) == ["python", *expected, "--fixed"]


def test_renderings_match_wandbs_own_agent():
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    theirs = create_sweep_command_args({"args": {k: {"value": v} for k, v in PARAMS.items()}})
    ours = command_args(PARAMS)
    for name, argv in ours.items():
        assert argv == theirs[name], name
    assert set(KNOWN_MACROS) >= set(ours)


def test_args_json_file_is_written_where_wandb_writes_it(tmp_path: Path):
    argv = build(
        ["${env}", "${interpreter}", "${program}", "${args_json_file}"],
        {"lr": 0.1, "optim": {"lr": 0.2}},
        tmp=tmp_path,
    )
    path = tmp_path / "wandb" / "sweep-sw1" / "config-run1.json"
    assert argv[-1] == str(path) == str(sweep_file(tmp_path, "sw1", "run1", "json"))
    assert json.loads(path.read_text()) == {"lr": 0.1, "optim": {"lr": 0.2}}


def test_only_whole_items_are_macros():
    argv = build(["--lr=${args}", "x${program}", "${program}"], {"lr": 1})
    assert argv == ["--lr=${args}", "x${program}", "train.py"]


def test_envvar_is_substituted_inside_items():
    argv = build(
        ["${envvar:DATA}/train.py", "--root=${envvar:DATA}", "--x=${envvar:lower}"],
        {},
        environ={"DATA": "/data"},
    )
    assert argv == ["/data/train.py", "--root=/data", "--x=${envvar:lower}"]  # W&B: A-Z0-9_ only


def test_unset_envvar_is_an_error_not_its_name():
    with pytest.raises(UsageError, match="DATA_DIR is not set") as err:
        build(["${envvar:DATA_DIR}"], {}, environ={})
    assert "export DATA_DIR" in err.value.hint


def test_unknown_macro_is_an_error_with_did_you_mean():
    assert unknown_macros(["${args}", "${arg_json}", "${envvar:X}", "plain"]) == ["${arg_json}"]
    with pytest.raises(UsageError, match=r"\$\{arg_json\}") as err:
        build(["${env}", "${arg_json}"])
    assert "${args_json}" in err.value.hint


def test_numpy_values_render_as_plain_python():
    argv = build(
        ["${args}", "${args_json}"],
        {"lr": np.float64(0.25), "n": np.int64(3), "v": np.array([1, 2])},
    )
    assert argv == ["--lr=0.25", "--n=3", "--v=[1, 2]", '{"lr": 0.25, "n": 3, "v": [1, 2]}']


def test_flat_dotted_names_stay_literal_like_wandb():
    assert wandb_params({"optim.lr": 0.1, "model": "small"}) == {"optim.lr": 0.1, "model": "small"}


def test_nested_parameter_blocks_are_renested_like_wandb():
    spec = {
        "optim": {
            "parameters": {
                "lr": {"values": [0.1]},
                "sched": {"parameters": {"gamma": {"value": 0.5}}},
            }
        },
        "data.batch_size": {"values": [32]},
        "epochs": {"value": 3},
    }
    flat = {"optim.lr": 0.1, "optim.sched.gamma": 0.5, "data.batch_size": 32, "epochs": 3}
    assert wandb_params(flat, spec) == {
        "optim": {"lr": 0.1, "sched": {"gamma": 0.5}},
        "data.batch_size": 32,
        "epochs": 3,
    }
