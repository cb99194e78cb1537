"""`expctl config show` and the config loader's error cases, through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from config_trees import TREES, write_tree

from expctl.config import ConfigSource, quote_value_with_equals


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return root


@pytest.fixture
def tree(isolated: Path) -> Path:
    return write_tree(isolated / "configs", TREES["cli_demo"])


def test_show_prints_resolved_yaml_on_stdout(cli, tree):
    result = cli("config", "show")
    assert result.exit_code == 0, result.stderr
    cfg = yaml.safe_load(result.stdout)
    assert cfg["y"] == 1 and cfg["nested"]["rel"] == 1
    assert cfg["optim"] == {"lr": 0.001, "betas": [0.9, 0.999]}
    assert cfg["envd"] == "fallback" and cfg["decoded"] == [1, 2]
    assert cfg["job"] == "demo" and cfg["out"].startswith("runs/demo/")
    assert cfg["year"].isdigit()
    assert result.stderr == ""


def test_show_json_is_machine_readable_and_select_works(cli, tree):
    result = cli("config", "show", "--format", "json", "--select", "optim", "optim=sgd")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {"lr": 0.1, "momentum": 0.9}
    assert "\x1b[" not in result.stdout


def test_no_resolve_keeps_interpolations(cli, tree):
    result = cli("config", "show", "--no-resolve", "--select", "nested")
    assert yaml.safe_load(result.stdout)["rel"] == "${..x}"


def test_secrets_redacted_unless_asked(cli, tree):
    shown = yaml.safe_load(cli("config", "show", "--select", "nested").stdout)
    assert shown["api_key"] == "********" and shown["wandb_token"] == "********"
    raw = yaml.safe_load(cli("config", "show", "--select", "nested", "--show-secrets").stdout)
    assert raw["api_key"] == "hunter2"


@pytest.mark.parametrize(
    "overrides",
    [["x=5", "+extra.deep=a=b"], ["--set", "x=5", "--set", "+extra.deep=a=b"]],
)
def test_positional_and_set_overrides_with_equals_in_value(cli, tree, overrides):
    result = cli("config", "show", "--format", "json", *overrides)
    assert result.exit_code == 0, result.stderr
    cfg = json.loads(result.stdout)
    assert cfg["x"] == 5 and cfg["y"] == 5 and cfg["extra"] == {"deep": "a=b"}


def test_override_forms(cli, tree):
    result = cli(
        "config",
        "show",
        "--format",
        "json",
        "++x=7",
        "~nested",
        "+list=[1,2]",
        "+d={a: 1}",
        "name='quoted, with comma'",
    )
    assert result.exit_code == 0, result.stderr
    cfg = json.loads(result.stdout)
    assert cfg["x"] == 7 and "nested" not in cfg
    assert cfg["list"] == [1, 2] and cfg["d"] == {"a": 1} and cfg["name"] == "quoted, with comma"


def test_quote_only_touches_unparsable_overrides():
    assert quote_value_with_equals("a=1") == "a=1"
    assert quote_value_with_equals("a='x=y'") == "a='x=y'"
    assert quote_value_with_equals("url=http://h/?q=1") == "url='http://h/?q=1'"
    assert ConfigSource.from_cli(None, "config", ["a=b=c"], ["d=1"]).overrides == ("a='b=c'", "d=1")


def test_missing_values_listed_and_check_fails(cli, tree):
    shown = cli("config", "show", "--config-name", "missing")
    assert shown.exit_code == 0
    assert yaml.safe_load(shown.stdout)["name"] == "???"
    assert "name, model.width" in shown.stderr
    assert "--set name=... --set model.width=..." in shown.stderr

    checked = cli("config", "show", "--config-name", "missing", "--check")
    assert checked.exit_code == 2
    assert "missing values for name, model.width" in checked.stderr

    fixed = cli("config", "show", "--config-name", "missing", "--check", "name=a", "model.width=3")
    assert fixed.exit_code == 0, fixed.stderr
    assert yaml.safe_load(fixed.stdout)["uses"] == "a"


def test_tutorial_config_needs_a_name(cli, project):
    result = cli("config", "show", "--config-name", "tutorial", "--check")
    assert result.exit_code == 2
    assert "missing value for name" in result.stderr and "--set name=..." in result.stderr
    result = cli("config", "show", "--config-name", "tutorial", "--check", "name=exp1")
    assert result.exit_code == 0, result.stderr
    cfg = yaml.safe_load(result.stdout)
    assert cfg["name"] == "exp1" and cfg["optim"]["weight_decay"] == cfg["optim"]["lr"]


ERROR_CASES = [
    # (extra files, args, expected fragments in the first stderr line, fragment in the hint)
    (
        {},
        ["optim=adamm"],
        "unknown option 'adamm' for config group 'optim'",
        "did you mean optim=adam",
    ),
    ({}, ["optim.lrr=1"], "unknown config key 'optim.lrr'", "+optim.lrr=1"),
    ({}, ["+x=2"], "cannot add 'x' with '+'", "x=..."),
    ({}, ["x=[1,"], "cannot parse override 'x=[1,'", "grammar"),
    ({}, ["--config-name", "nope"], "no primary config 'nope'", "config, missing"),
    ({"configs/optim/broken.yaml": "lr: [1\n"}, ["optim=broken"], "broken.yaml:", "fix the YAML"),
    ({}, ["+bad=${does.not.exist}"], "missing key 'does.not.exist'", "${...}"),
    ({}, ["+bad=${nosuch:1}"], "unknown resolver 'nosuch'", "register_new_resolver"),
    ({}, ["+bad=${oc.env:EXPCTL_TEST_UNSET_VAR}"], "EXPCTL_TEST_UNSET_VAR is not set", "export"),
    (
        {},
        ["--config-dir", "does/not/exist"],
        "config directory 'does/not/exist' does not exist",
        "--config-dir",
    ),
    ({}, ["--select", "optim.lrr"], "no key 'optim.lrr'", "did you mean optim.lr"),
    (  # a nested choice: suggested as typed, not blamed on a defaults list
        {"configs/experiment/owt/gpt2s-flash.yaml": "# @package _global_\nname: g\n"},
        ["+experiment=owt/gpt2s-flashh"],
        "unknown option 'gpt2s-flashh' for config group 'experiment/owt'",
        "did you mean +experiment=owt/gpt2s-flash?",  # as typed, `+` included
    ),
    (  # a typo in the nested directory: the options below the group the user typed
        {"configs/experiment/owt/gpt2s-flash.yaml": "# @package _global_\nname: g\n"},
        ["+experiment=owtt/gpt2s-flash"],
        "unknown option 'owtt/gpt2s-flash' for config group 'experiment'",
        "did you mean +experiment=owt/gpt2s-flash? available options for experiment: owt/gpt2s",
    ),
    (  # Hydra's own group, chosen in a defaults list: the file and line that chose it
        {
            "configs/config.yaml": "defaults:\n  - _self_\n  - override hydra/job_logging: colorlog\n"
        },
        [],
        "config.yaml:3: '- override hydra/job_logging: colorlog' chooses 'colorlog', which "
        "hydra/job_logging does not have (a Hydra plugin's option: install its package)",
        "options for hydra/job_logging: default, disabled, none, stdout",
    ),
]


@pytest.mark.parametrize(("files", "args", "message", "hint"), ERROR_CASES)
def test_bad_input_is_one_clear_line_with_a_hint(cli, tree, files, args, message, hint):
    write(tree.parent, files)
    result = cli("config", "show", *args)
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert lines[-1].startswith("hint: ") and hint in lines[-1], result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_all_interpolation_problems_reported_at_once(cli, tree):
    result = cli("config", "show", "+a=${nope}", "+b=${oc.env:EXPCTL_TEST_UNSET_VAR}")
    assert result.exit_code == 2
    assert "2 interpolations cannot be resolved" in result.stderr
    assert "a: interpolation refers to missing key 'nope'" in result.stderr
    assert "b: environment variable EXPCTL_TEST_UNSET_VAR is not set" in result.stderr


def test_debug_shows_traceback_and_config_dir(cli, tree):
    result = cli("--debug", "config", "show", "optim=adamm")
    assert result.exit_code == 2
    assert "Traceback" in result.stderr
    ok = cli("--debug", "config", "show")
    assert f"config dir: {tree.resolve()} (./configs)" in ok.stderr


def test_config_dir_discovery_order(cli, tree, tmp_path, monkeypatch):
    other = write(tmp_path / "elsewhere", {"config.yaml": "where: env\n"})
    monkeypatch.setenv("EXPCTL_CONFIG_DIR", str(other))
    assert yaml.safe_load(cli("config", "show").stdout) == {"where": "env"}
    monkeypatch.delenv("EXPCTL_CONFIG_DIR")
    assert yaml.safe_load(cli("config", "show").stdout)["name"] == "demo"
    monkeypatch.chdir(tmp_path)  # no ./configs here: the example configs shipped with expctl
    assert yaml.safe_load(cli("config", "show").stdout)["name"] == "digits-mlp"


def test_every_command_help_ends_with_examples(cli):
    commands = [
        [],
        ["run"],
        ["config", "show"],
        ["sweep", "create"],
        ["sweep", "agent"],
        ["sweep", "status"],
        ["sweep", "list"],
        ["sweep", "stop"],
        ["artifacts", "pull"],
        ["artifacts", "list"],
        ["artifacts", "push"],
    ]
    for cmd in commands:
        result = cli(*cmd, "--help")
        assert result.exit_code == 0, (cmd, result.output)
        assert "Examples:" in result.stdout and "$ expctl" in result.stdout, cmd


def test_version(cli):
    from expctl import __version__

    result = cli("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"expctl {__version__}"


def test_installed_entry_point_in_a_subprocess(expctl_exe, project):
    proc = subprocess.run(
        [*expctl_exe, "config", "show", "--format", "json", "--select", "trainer"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["device"] == "auto"
    bad = subprocess.run(
        [*expctl_exe, "config", "show", "model=nope"], capture_output=True, text=True
    )
    assert (
        bad.returncode == 2
        and "unknown option 'nope'" in bad.stderr
        and "Traceback" not in bad.stderr
    )
    usage = subprocess.run(
        [*expctl_exe, "config", "show", "--bogus"], capture_output=True, text=True
    )
    assert usage.returncode == 2 and usage.stdout == ""


def test_python_dash_m_works(project):
    proc = subprocess.run(
        [sys.executable, "-m", "expctl", "--version"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and proc.stdout.startswith("expctl ")


HEAVY = ("torch", "wandb", "optuna", "mlflow", "tensorboard")
# what Typer's type adapters import (~80 ms with a Path option's): cli/typer_compat.py defers
# them for values that need no conversion, the common flags' included
ADAPTERS = ("pydantic",)
# `sweep status` needs Optuna (its storage) and nothing else heavy
STATUS_ABSENT = tuple(m for m in HEAVY if m != "optuna") + ADAPTERS


@pytest.mark.parametrize(
    ("args", "absent"),
    [
        (["--help"], HEAVY + ADAPTERS),
        (["--version"], HEAVY + ADAPTERS),
        (["config", "show"], HEAVY + ADAPTERS),
        (["sweep", "--help"], HEAVY + ADAPTERS),
        (["run", "--help"], HEAVY + ADAPTERS),
        (
            ["config", "show", "--config-dir", "configs", "--config-name", "config"],
            HEAVY + ADAPTERS,
        ),
        (
            ["config", "show", "--set", "optim.lr=0.5", "-f", "json", "--select", "optim"],
            HEAVY + ADAPTERS,
        ),
        (
            ["runs", "list", "--runs-dir", "runs", "--format", "json", "-n", "5", "--sort", "id"],
            HEAVY + ADAPTERS,
        ),
        (["sweep", "status", "SWEEP_ID", "--storage", "sweeps.journal"], STATUS_ABSENT),
    ],
)
def test_fast_paths_do_not_import_heavy_libraries(project, expctl_exe, args, absent):
    if "SWEEP_ID" in args:
        create = [*expctl_exe, "sweep", "create", "configs/sweeps/grid.yaml"]
        sweep_id = subprocess.run(
            [*create, "--storage", "sweeps.journal"], capture_output=True, text=True, check=True
        ).stdout.strip()
        args = [sweep_id if a == "SWEEP_ID" else a for a in args]
    (project / "runs").mkdir()
    code = (
        "import sys; sys.argv = ['expctl', *sys.argv[1:]]\n"
        "from expctl.cli.entry import main\n"
        "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
        f"heavy = [m for m in {absent!r} if m in sys.modules]\n"
        "sys.stderr.write(f'EXIT={code} HEAVY=' + ','.join(heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    assert "HEAVY=" in proc.stderr, proc.stderr
    assert proc.stderr.rsplit("EXIT=", 1)[1].strip() == "0 HEAVY=", proc.stderr


def test_sigint_exits_130_without_traceback(project):
    """Ctrl-C anywhere: a real SIGINT to a real process exits 130 and prints no traceback."""
    import signal
    import time

    code = (
        "import sys, time\n"
        "from expctl.cli.entry import main\n"
        "from expctl.cli.main import app\n"
        "@app.command('sleepy', hidden=True)\n"
        "def sleepy():\n    print('ready', flush=True); time.sleep(30)\n"
        "sys.argv = ['expctl', 'sleepy']\n"
        "main()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr


def test_secrets_under_a_secret_map_and_selected_secret_leaves_are_redacted(cli, tree):
    shown = cli("config", "show", "+secrets={wandb: abc, hf: def}", "--select", "secrets")
    assert yaml.safe_load(shown.stdout) == {"wandb": "********", "hf": "********"}
    leaf = cli("config", "show", "+db.password=hunter2", "--select", "db.password")
    assert leaf.stdout.strip().strip("'") == "********"
    assert "hunter2" not in leaf.stdout


def test_hyperparameters_that_merely_contain_secret_letters_stay_visible(cli, tree):
    result = cli(
        "config",
        "show",
        "--format",
        "json",
        "+max_tokens=512",
        "+tokenizer.name=bpe",
        "+monkey=1",
        "+apiKey=k",
        "+AWS_SECRET_ACCESS_KEY=s",
    )
    cfg = json.loads(result.stdout)
    assert cfg["max_tokens"] == 512 and cfg["tokenizer"] == {"name": "bpe"} and cfg["monkey"] == 1
    assert cfg["apiKey"] == "********" and cfg["AWS_SECRET_ACCESS_KEY"] == "********"


def test_redact_override():
    from expctl.secrets import redact_override

    assert redact_override("+db.password=hunter2") == "+db.password=********"
    assert redact_override("wandb.api_key=xyz") == "wandb.api_key=********"
    assert redact_override("optim.lr=0.1") == "optim.lr=0.1"
    assert redact_override("~token") == "~token"


def test_a_reader_that_goes_away_is_not_an_error(expctl_exe, project):
    """`expctl config show | head -1`: the pipe closes before we write; no traceback, no hint."""
    proc = subprocess.Popen(
        [*expctl_exe, "config", "show"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141, stderr
    assert stderr == ""


# -- --select resolves only what the selected key needs (as Hydra does) -------------------------


@pytest.fixture
def s4_like(isolated: Path) -> Path:
    return write_tree(isolated / "configs", TREES["custom_resolver"])


def test_select_ignores_an_unknown_resolver_elsewhere(cli, s4_like):
    result = cli("config", "show", "--select", "optimizer", "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {"lr": 0.001, "weight_decay": 0.0}
    assert cli("config", "show", "--select", "lr").stdout.strip() == "0.001"


def test_unknown_resolver_names_the_key_and_hints_no_resolve(cli, s4_like):
    result = cli("config", "show")
    assert result.exit_code == 2
    assert "model.d_state: unknown resolver 'eval'" in result.stderr
    assert "--no-resolve" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_resolve_select_shows_the_interpolation_as_written(cli, s4_like):
    result = cli("config", "show", "--no-resolve", "--select", "lr")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "${optimizer.lr}"


def test_select_a_missing_value_shows_it_and_check_fails(cli, tree):
    shown = cli("config", "show", "--config-name", "missing", "--select", "name")
    assert shown.exit_code == 0, shown.stderr
    assert shown.stdout.strip() == "???"
    assert "missing value for name" in shown.stderr and "did you mean" not in shown.stderr
    checked = cli("config", "show", "--config-name", "missing", "--select", "name", "--check")
    assert checked.exit_code == 2 and "--set name=..." in checked.stderr
    # the selection's own missing values only: model.width is not part of `name`
    assert "model.width" not in checked.stderr


def test_missing_value_reached_through_a_reference_hints_the_key_that_holds_it(cli, isolated: Path):
    write_tree(isolated / "configs", TREES["forward_references"])
    result = cli("config", "show", "--check")
    assert result.exit_code == 2
    assert "--set action_optimizer.lower_bound=..." in result.stderr
    assert "agent.optimizer_cfg" not in result.stderr
    assert cli("config", "show", "--check", "action_optimizer.lower_bound=-2").exit_code == 0
    selected = cli("config", "show", "--select", "agent", "--check")
    assert selected.exit_code == 2 and "action_optimizer.lower_bound" in selected.stderr


def test_select_inside_a_secret_map_stays_hidden(cli, isolated: Path):
    write_tree(isolated / "configs", {"config.yaml": "secrets:\n  hf: hf_abcdef\nlr: 1\n"})
    assert cli("config", "show", "--select", "secrets.hf").stdout.strip() == "'********'"
    assert "hf_abcdef" not in cli("config", "show").stdout
