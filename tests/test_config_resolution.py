"""Resolution equals Hydra's: on every config tree of the suite, for every config that resolves,
expctl's resolved config is ``OmegaConf.to_container(cfg, resolve=True)`` of Hydra's own compose."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from config_trees import REPO, TREES, write_tree
from omegaconf import OmegaConf

from expctl.config import ConfigSource, compose_config
from expctl.config.resolve import resolved_container
from expctl.errors import ConfigError

# Extra compositions beyond the primary config and each option of each group.
EXTRA = {
    "lightning_template": [("config", ["experiment=example"]), ("config", ["~tags", "seed=3"])],
    "self_first_vs_last": [("self_first", [])],
    "packages_and_multiselect": [("config", ["name=x", "transforms=[flip,blur]"])],
    "forward_references": [
        ("config", ["action_optimizer.lower_bound=-1"]),
        ("config", ["action_optimizer.lower_bound=-1", "overrides=halfcheetah", "base_lr=3"]),
    ],
    "cli_demo": [("missing", ["name=a", "model.width=3"])],
    "mbrl_group_headers": [
        ("main", ["overrides.num_steps=5", "algorithm.num_particles=4"]),
        ("main", ["algorithm=mbpo", "overrides=mbpo_halfcheetah"]),
        ("main", ["action_optimizer.lower_bound=-1", "action_optimizer.upper_bound=1"]),
    ],
    "drqv2": [
        ("config", ["+agent_cfg=${agent}"]),
        ("config", ["task@_global_=cartpole_swingup", "lr=3e-4", "agent.obs_shape=[9,84,84]"]),
    ],
    "lerobot": [
        ("default", ["policy=act", "env=aloha"]),
        ("default", ["policy.n_obs_steps=3", "training.online_env_seed=2", "+local=x"]),
    ],
    "audiocraft": [
        ("config", ["solver=compression/default"]),
        ("config", ["solver=compression/encodec_base_24khz"]),
        ("config", ["solver=compression/encodec_base_24khz", "dset=audio/default", "rvq.n_q=4"]),
        ("config", ["solver=compression/encodec_base_24khz", "+seanet.decoder.n_filters=64"]),
    ],
}
# Directories of the repository that hold config trees users compose.
DISK_TREES = {
    "configs": REPO / "configs",
    "examples/hydra_program/conf": REPO / "examples" / "hydra_program" / "conf",
    "examples/course/configs": REPO / "examples" / "course" / "configs",
}


def _compositions(conf: Path, tree: str) -> list[tuple[str, list[str]]]:
    """The primary configs as they are, each option of each group, and the EXTRA cases."""
    primaries = sorted(p.stem for p in conf.glob("*.yaml"))
    cases = [(name, []) for name in primaries]
    name = "config" if "config" in primaries else primaries[0]
    for group in sorted(d for d in conf.iterdir() if d.is_dir()):
        for option in sorted(group.glob("*.yaml")):
            prefix = "+" if group.name == "experiment" else ""
            cases.append((name, [f"{prefix}{group.name}={option.stem}"]))
    return cases + EXTRA.get(tree, [])


def _hydra_resolved(conf: Path, name: str, overrides: list[str], run_dir: Path) -> Any:
    """Hydra's compose with its runtime values set as @hydra.main sets them, then OmegaConf's
    own resolution; raises whatever Hydra/OmegaConf raise."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    # as in test_config_parity: Hydra 1.0's `_group_` header means an app on 1.1's rules
    legacy = any("@package _group_" in p.read_text() for p in conf.rglob("*.yaml"))
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf), version_base="1.1" if legacy else None):
            cfg = compose(name, overrides=overrides, return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()
    job = OmegaConf.select(cfg, "name", default=None, throw_on_missing=False)
    with open_dict(cfg):
        cfg.hydra.job.name = job if isinstance(job, str) else name
        cfg.hydra.runtime.output_dir = str(run_dir)
    HydraConfig.instance().set_config(cfg)
    OmegaConf.set_struct(cfg, False)
    del cfg["hydra"]
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)


def _cases() -> list[tuple[str, str, list[str]]]:
    return [("tree:" + t, n, o) for t in TREES for n, o in _tree_compositions(t)] + [
        ("disk:" + d, n, o) for d, path in DISK_TREES.items() for n, o in _compositions(path, d)
    ]


def _tree_compositions(tree: str) -> list[tuple[str, list[str]]]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return _compositions(write_tree(Path(tmp), TREES[tree]), tree)


@pytest.mark.parametrize(("tree", "name", "overrides"), _cases())
def test_resolved_config_equals_omegaconf_resolution(
    tmp_path: Path, tree: str, name: str, overrides: list[str]
) -> None:
    kind, _, key = tree.partition(":")
    conf = write_tree(tmp_path / "conf", TREES[key]) if kind == "tree" else DISK_TREES[key]
    run_dir = tmp_path / "run"
    source = ConfigSource(conf, name, tuple(overrides))
    try:
        expected = _hydra_resolved(conf, name, overrides, run_dir)
    except Exception:  # it does not resolve under Hydra either: expctl says why (exit 2)
        with pytest.raises(ConfigError):
            compose_config(source, run_dir=run_dir)
        return
    cfg = compose_config(source, run_dir=run_dir, require_complete=False)
    # resolve=True only turns escaped literals (\${x}) back into text: nothing else is left
    assert OmegaConf.to_container(cfg, resolve=True) == expected
    # and what `config show` prints is those values: an interpolation to a node holding a ???
    # is that node, "???" inside, not the `${...}` text
    composed = compose_config(source, run_dir=run_dir, resolve=False, require_complete=False)
    assert resolved_container(composed)[0] == expected


def test_every_config_tree_in_the_repository_is_checked() -> None:
    """A config tree added to the repository must join DISK_TREES (and so the check above)."""
    import subprocess

    files = subprocess.run(
        ["git", "ls-files", "*config.yaml"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    found = {str(Path(f).parent) for f in files if not f.startswith("tests/")}
    assert found <= set(DISK_TREES), f"add to DISK_TREES: {sorted(found - set(DISK_TREES))}"


def test_forward_reference_resolves_like_hydra(tmp_path: Path) -> None:
    """The mbrl-lib case: `agent.optimizer_cfg: ${action_optimizer}` defined later."""
    conf = write_tree(tmp_path / "conf", TREES["forward_references"])
    cfg = compose_config(ConfigSource(conf, "config", ("action_optimizer.lower_bound=-1",)))
    optimizer = OmegaConf.to_container(cfg.agent.optimizer_cfg)
    assert optimizer["num_iterations"] == 5
    assert optimizer["population_size"] == 350  # ${..population}, relative to where written
    assert optimizer["upper_bound"] == -1
    assert cfg.nested_ref.lr == 0.1
    assert cfg.escaped == "${not_an_interpolation}"  # a literal stays a literal


def test_missing_value_behind_a_reference_names_the_key_to_set(tmp_path: Path) -> None:
    from expctl.errors import MissingValuesError

    conf = write_tree(tmp_path / "conf", TREES["forward_references"])
    with pytest.raises(MissingValuesError) as raised:
        compose_config(ConfigSource(conf, "config", ()))
    assert raised.value.keys == ["action_optimizer.lower_bound"]
    assert "--set action_optimizer.lower_bound=..." in (raised.value.hint or "")
