"""Issue 19, the config loader's part: what expctl prints about a config is what Hydra and
OmegaConf would say, and says which config it is.

* outside a project, the example config shipped with expctl is named (never silently used);
* an interpolation to a node holding a ``???`` is that node, as in OmegaConf;
* Hydra 1.0 ``# @package _group_`` trees take ``group.key=value`` overrides, as under Hydra;
* `config show` writes YAML byte for byte as ``OmegaConf.to_yaml`` (``--cfg job``);
* several comma-separated values without ``-m`` get a hint naming ``-m``.
"""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from config_trees import TREES, write_tree
from omegaconf import OmegaConf

from expctl.config import PACKAGED_CONFIG_DIR, ConfigSource, compose_config, dump_yaml
from expctl.errors import MissingValuesError


def expctl(
    exe: list[str], *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*exe, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


# -- 5. outside a project: the packaged example is named, and its +key hint is not given ------


def test_outside_a_project_the_example_config_is_named_on_stderr(expctl_exe, isolated):
    shown = expctl(expctl_exe, "config", "show", "--select", "name", cwd=isolated)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == "digits-mlp"  # stdout is still only the data
    assert "using the example config shipped with expctl" in shown.stderr
    assert str(PACKAGED_CONFIG_DIR) in shown.stderr and "--config-dir" in shown.stderr


def test_in_a_project_nothing_is_said_about_the_config_dir(expctl_exe, project):
    shown = expctl(expctl_exe, "config", "show", "--select", "name", cwd=project)
    assert shown.returncode == 0 and shown.stderr == ""


def test_a_config_dir_variable_overruling_the_local_configs_is_named(expctl_exe, project):
    other = write_tree(project / "elsewhere", {"config.yaml": "where: env\n"})
    env = {"EXPCTL_CONFIG_DIR": str(other)}
    shown = expctl(expctl_exe, "config", "show", cwd=project, env=env)
    assert shown.returncode == 0 and shown.stdout == "where: env\n"
    assert f"using EXPCTL_CONFIG_DIR={other.resolve()}, not ./configs here" in shown.stderr
    # the variable alone (no ./configs to overrule) is the user's choice: nothing to say
    alone = expctl(expctl_exe, "config", "show", cwd=other, env=env)
    assert alone.returncode == 0 and alone.stderr == ""


def test_unknown_key_outside_a_project_names_the_example_and_offers_no_plus_key(
    expctl_exe, isolated
):
    """Following `+learning_rate=0.01` here would train the example with its lr unchanged."""
    result = expctl(expctl_exe, "run", "learning_rate=0.01", cwd=isolated)
    assert result.returncode == 2, result.stderr
    error = next(line for line in result.stderr.splitlines() if line.startswith("error: "))
    assert "unknown config key 'learning_rate'" in error
    assert "example config shipped with expctl" in error and str(PACKAGED_CONFIG_DIR) in error
    hint = result.stderr.strip().splitlines()[-1]
    assert hint.startswith("hint: ") and "--config-dir" in hint
    assert "+learning_rate" not in result.stderr
    assert not list(isolated.glob("runs/*")), "nothing may be trained"


def test_unknown_group_option_outside_a_project_names_the_example(expctl_exe, isolated):
    result = expctl(expctl_exe, "config", "show", "model=resnet50", cwd=isolated)
    assert result.returncode == 2
    error = next(line for line in result.stderr.splitlines() if line.startswith("error: "))
    assert "unknown option 'resnet50' for config group 'model'" in error
    assert "example config shipped with expctl" in error
    assert "--config-dir" in result.stderr.strip().splitlines()[-1]


def test_unknown_key_in_a_project_names_its_config_dir(cli, project):
    result = cli("config", "show", "optim.lrr=1")
    assert result.exit_code == 2
    first = result.stderr.splitlines()[0]
    assert f"(config dir {(project / 'configs').resolve()})" in first
    assert "+optim.lrr=1" in result.stderr  # in the user's own project, adding a key is sane


# -- 6. an interpolation to a node holding a ??? ----------------------------------------------


def test_reference_to_a_node_with_missing_values_shows_the_node(cli, isolated):
    """mbrl-lib: `optimizer_cfg: ${action_optimizer}`, whose bounds are `???`."""
    write_tree(isolated / "configs", TREES["mbrl_group_headers"])
    result = cli("config", "show", "--config-name", "main", "--format", "json")
    assert result.exit_code == 0, result.stderr
    cfg = json.loads(result.stdout)
    optimizer = cfg["algorithm"]["agent"]["optimizer_cfg"]
    assert optimizer == cfg["action_optimizer"]
    assert optimizer["lower_bound"] == "???" and optimizer["population_size"] == 350
    # the warning names the ??? the user can set, not the copy seen through the reference
    assert "action_optimizer.lower_bound" in result.stderr
    assert "optimizer_cfg.lower_bound" not in result.stderr

    selected = cli("config", "show", "--config-name", "main", "--select", "algorithm.agent")
    assert selected.exit_code == 0, selected.stderr
    agent = yaml.safe_load(selected.stdout)
    assert agent["optimizer_cfg"]["num_iterations"] == 5
    assert "action_optimizer.lower_bound" in selected.stderr


def test_override_adding_a_reference_to_a_node_with_missing_values(cli, isolated):
    """drqv2-style `+agent_cfg=${agent}`: the agent node, its ??? shapes included."""
    write_tree(isolated / "configs", TREES["drqv2"])
    result = cli("config", "show", "--format", "json", "+agent_cfg=${agent}")
    assert result.exit_code == 0, result.stderr
    cfg = json.loads(result.stdout)
    assert cfg["agent_cfg"] == cfg["agent"]
    assert cfg["agent_cfg"]["obs_shape"] == "???" and cfg["agent_cfg"]["lr"] == 1e-4
    assert cfg["agent_cfg"]["stddev_schedule"] == "linear(1.0,0.1,500000)"


def test_missing_value_check_names_only_the_keys_to_set(tmp_path):
    conf = write_tree(tmp_path / "conf", TREES["drqv2"])
    with pytest.raises(MissingValuesError) as raised:
        compose_config(ConfigSource(conf, "config", ("+agent_cfg=${agent}",)))
    assert raised.value.keys == ["agent.obs_shape", "agent.action_shape"]
    cfg = compose_config(
        ConfigSource(
            conf,
            "config",
            ("+agent_cfg=${agent}", "agent.obs_shape=[9,84,84]", "agent.action_shape=[12]"),
        )
    )
    assert OmegaConf.to_container(cfg.agent_cfg)["obs_shape"] == [9, 84, 84]


# -- 7. Hydra 1.0 `# @package _group_` trees ------------------------------------------------------


def test_group_header_tree_takes_group_key_overrides(expctl_exe, isolated):
    """mbrl-lib: `overrides.num_steps=5` sets the key of the `_group_` file of group overrides."""
    conf = write_tree(isolated / "conf", TREES["mbrl_group_headers"])
    args = ["config", "show", "--config-dir", str(conf), "--config-name", "main"]
    result = expctl(
        expctl_exe, *args, "overrides.num_steps=5", "--select", "overrides", cwd=isolated
    )
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["num_steps"] == 5
    assert "`# @package _group_` header" in result.stderr  # said once, on stderr

    typo = expctl(expctl_exe, *args, "overrides.num_step=5", cwd=isolated)
    assert typo.returncode == 2
    assert "did you mean overrides.num_steps" in typo.stderr  # never `_group_.num_steps`
    assert "_group_.num_steps" not in typo.stderr


def test_group_header_tree_hints_lead_somewhere(tmp_path):
    """`+overrides.num_steps=5` is refused (the key exists); the hint's form then works."""
    from expctl.errors import ConfigError

    conf = write_tree(tmp_path / "conf", TREES["mbrl_group_headers"])
    with pytest.raises(ConfigError) as raised:
        compose_config(ConfigSource(conf, "main", ("+overrides.num_steps=5",)), resolve=False)
    assert "set it with overrides.num_steps=..." in (raised.value.hint or "")
    cfg = compose_config(
        ConfigSource(conf, "main", ("overrides.num_steps=5",)),
        resolve=False,
        require_complete=False,
    )
    assert cfg.overrides.num_steps == 5


def test_group_header_tree_changes_a_group_and_its_keys_at_once(tmp_path):
    conf = write_tree(tmp_path / "conf", TREES["mbrl_group_headers"])
    cfg = compose_config(
        ConfigSource(
            conf,
            "main",
            ("algorithm=mbpo", "overrides=mbpo_halfcheetah", "overrides.sac_lr=0.001"),
        ),
        resolve=False,  # mbpo's overrides have no cem_* keys for the (unused) action optimizer
        require_complete=False,
    )
    assert cfg.algorithm.name == "mbpo" and cfg.overrides.sac_lr == 0.001
    assert "_group_" not in cfg


# -- 8. YAML exactly as OmegaConf.to_yaml writes it -----------------------------------------------

TRICKY_STRINGS = [
    "yes", "no", "on", "off", "y", "n", "Y", "N", "Yes", "NO", "On", "OFF",
    "true", "False", "TRUE", "null", "Null", "NULL", "~", "", " ", " leading space",
    "trailing space ", "1e3", "1E3", "-1e-5", "1_000", "0x1F", "0o17", "017", "0b101", "+1",
    ".5", "1.", "1:30", ".inf", "-.inf", ".nan", "2001-12-14", "2001-12-14t21:59:43.10-05:00",
    "a: b", "a #b", "#c", "- x", "-", "?", ":", "@at", "%p", "!t", "&a", "*a", "|", ">",
    "'single'", '"double"', "{x}", "[x]", "a,b", "a=b", "tab\there", "\t", "line\nbreak",
    "ends with newline\n", "\n", "crlf\r\n", "héllo", "日本語", "emoji 🎉", "…", "\u00a0nbsp",
    "\u2028", "back\\slash", "${x}", "\\${x}", "???", "word " * 30, "x" * 120,
]  # fmt: skip


def _scalar(rng: random.Random) -> Any:
    kind = rng.randrange(10)
    if kind < 5:
        return rng.choice(TRICKY_STRINGS)
    if kind == 5:
        return rng.choice([0, 1, -7, 10**20, 3000000])
    if kind == 6:
        return rng.choice([0.0, -0.0, 1.5, 1e-5, 1e300, 3.0e-4, math.inf, -math.inf, 0.1 + 0.2])
    if kind == 7:
        return rng.choice([True, False])
    if kind == 8:
        return None
    return "".join(rng.choice("ab yn:#-'\"\n\t1.e") for _ in range(rng.randrange(6)))


def _config(rng: random.Random, depth: int = 0) -> Any:
    if depth >= 3 or rng.random() < 0.3:
        return _scalar(rng)
    if rng.random() < 0.3:
        return [_config(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = [
        rng.choice([*TRICKY_STRINGS[:60], f"k{rng.randrange(99)}", rng.randrange(9)])
        for _ in range(rng.randrange(5))
    ]
    return {key: _config(rng, depth + 1) for key in keys}


def _top(rng: random.Random) -> dict[Any, Any]:
    cfg = _config(rng)
    return cfg if isinstance(cfg, dict) else {"value": cfg}


@pytest.mark.parametrize("seed", range(4))
def test_dump_yaml_is_omegaconf_to_yaml_byte_for_byte(seed):
    rng = random.Random(seed)
    for _ in range(250):
        plain = _top(rng)
        assert dump_yaml(plain) == OmegaConf.to_yaml(OmegaConf.create(plain)), plain


def test_dump_yaml_quotes_every_tricky_string_as_key_and_value():
    plain = {s: s for s in TRICKY_STRINGS}
    assert dump_yaml(plain) == OmegaConf.to_yaml(OmegaConf.create(plain))
    # and any YAML 1.1 reader (PyYAML's safe_load is one) reads back the very strings
    assert yaml.safe_load(dump_yaml(plain)) == plain


def test_config_show_prints_what_hydra_cfg_job_prints(expctl_exe, isolated):
    """`config show` on a tree with boolean-like keys and values equals Hydra's resolved YAML."""
    conf = write_tree(
        isolated / "configs",
        {
            "config.yaml": """
                'n': 'y'
                flags: {'on': 'off', 'yes': 'no', 'Y': 'N'}
                sci: '1e3'
                hexa: '0x1F'
                empty: ''
                lead: ' leading space'
                text: "héllo\\nwörld"
                tilde: '~'
                nul: 'null'
                copy: ${flags}
                joined: "${sci}-${hexa}"
                """
        },
    )
    result = expctl(expctl_exe, "config", "show", cwd=isolated)
    assert result.returncode == 0, result.stderr

    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(conf), version_base=None):
        cfg = compose("config")
    assert result.stdout == OmegaConf.to_yaml(cfg, resolve=True)
    assert yaml.safe_load(result.stdout)["flags"] == {"on": "off", "yes": "no", "Y": "N"}


# -- 13. forgetting -m ------------------------------------------------------------------------------


def test_comma_separated_values_without_multirun_suggest_m(cli, project):
    result = cli("run", "optim.lr=0.1,0.01")
    assert result.exit_code == 2
    assert "optim.lr=0.1,0.01" in result.stderr.splitlines()[0]
    hint = result.stderr.strip().splitlines()[-1]
    assert "expctl run -m optim.lr=0.1,0.01" in hint and "optim.lr=[0.1,0.01]" in hint
    assert "\"optim.lr='0.1,0.01'\"" in hint
    assert not list(project.glob("runs/*"))


def test_a_run_outside_a_project_says_so_once_and_trains_the_example(expctl_exe, isolated):
    """`run` composes twice (draft, then into the run dir): the warning is still one line."""
    args = ["run", "-q", "trainer.epochs=1", "data=synthetic", "data.num_samples=256"]
    result = expctl(expctl_exe, *args, "trainer.num_threads=1", "trainer.device=cpu", cwd=isolated)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("using the example config shipped with expctl") == 1
    assert Path(result.stdout.strip()).is_dir()


@pytest.mark.parametrize("command", [["run"], ["config", "show"]])
def test_an_argparse_style_option_is_answered_with_the_override_to_write(
    expctl_exe, project, command
):
    shown = expctl(expctl_exe, *command, "--learning_rate", "0.01", cwd=project)
    assert shown.returncode == 2
    assert "No such option: --learning_rate" in shown.stderr
    assert (
        f"hint: overrides are key=value, not options: expctl {' '.join(command)} learning_rate=VALUE"
        in shown.stderr
    )
    assert not (project / "runs").exists()


def test_a_long_options_typo_is_offered_long_options_only(expctl_exe, project):
    """Click's close matches offered `-cn` (`--config-name`'s short form) for `--cont`."""
    shown = expctl(expctl_exe, "run", "--cont", cwd=project)
    assert shown.returncode == 2
    assert "No such option: --cont (Possible options: --notes)" in shown.stderr
    shown = expctl(expctl_exe, "config", "show", "--config-nam", "x", cwd=project)
    assert "(Possible options: --config-dir, --config-name)" in shown.stderr


def test_setting_a_key_deleted_on_the_same_line_says_so(cli, project):
    shown = cli("config", "show", "~loss", "loss={a: 1}")
    assert shown.exit_code == 2, shown.stderr
    assert "unknown config key 'loss'" in shown.stderr
    assert "~loss on the same command line deleted it first" in shown.stderr
    assert "unexpected" not in shown.stderr
