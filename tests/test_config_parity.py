"""The composed config equals what Hydra's own ``@hydra.main`` gives, on several real-world trees."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from config_trees import TREES, write_tree

from expctl.config import ConfigSource, compose_config

CASES = [
    ("lightning_template", "config", []),
    ("lightning_template", "config", ["experiment=example"]),
    ("lightning_template", "config", ["data=cifar", "model._args_.0.out_features=128", "~tags"]),
    ("lightning_template", "config", ["++extra.deep=1", "+new_list=[1,2,{a: b}]", "seed=3"]),
    ("self_first_vs_last", "config", []),
    ("self_first_vs_last", "self_first", []),
    ("self_first_vs_last", "config", ["db=postgres", "db.port=1"]),
    ("packages_and_multiselect", "config", []),
    ("packages_and_multiselect", "config", ["transforms=[flip,blur]", "name=x"]),
    ("packages_and_multiselect", "config", ["server/db@backup=mysql", "name='a=b'"]),
    # issue 19: public projects' shapes; `group.key=value` into a `# @package _group_` file
    ("mbrl_group_headers", "main", ["overrides.num_steps=5", "dynamics_model.hid_size=64"]),
    ("mbrl_group_headers", "main", ["algorithm=mbpo", "overrides=mbpo_halfcheetah"]),
    ("drqv2", "config", ["+agent_cfg=${agent}", "task@_global_=cartpole_swingup"]),
    ("lerobot", "default", ["policy=act", "env=aloha", "seed=3"]),
    ("audiocraft", "config", ["solver=compression/encodec_base_24khz", "dset=audio/default"]),
]

HYDRA_APP = textwrap.dedent(
    """
    import json, sys
    import hydra
    from omegaconf import OmegaConf

    @hydra.main(version_base=VERSION_BASE, config_path=sys.argv.pop(1), config_name=sys.argv.pop(1))
    def main(cfg):
        print("@@" + json.dumps(OmegaConf.to_container(cfg, resolve=False)))

    main()
    """
)


def _hydra_reference(conf: Path, name: str, overrides: list[str], tmp: Path) -> dict:
    app = tmp / "hydra_app.py"
    # An app whose configs use Hydra 1.0's `# @package _group_` header runs with 1.1's rules
    # (under 1.3's the header is a literal key); expctl detects that and composes the same way.
    legacy = any("@package _group_" in p.read_text() for p in conf.rglob("*.yaml"))
    app.write_text(HYDRA_APP.replace("VERSION_BASE", '"1.1"' if legacy else "None"))
    args = [
        *overrides,
        f"hydra.run.dir={tmp / 'out'}",
        "hydra/job_logging=none",
        "hydra/hydra_logging=none",
    ]
    proc = subprocess.run(
        [sys.executable, str(app), str(conf), name, *args],
        capture_output=True,
        text=True,
        cwd=tmp,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("@@"))
    return json.loads(line[2:])


@pytest.mark.parametrize(("tree", "name", "overrides"), CASES)
def test_composition_matches_hydra_main(tmp_path: Path, tree: str, name: str, overrides: list[str]):
    from omegaconf import OmegaConf

    conf = write_tree(tmp_path / "conf", TREES[tree])
    expected = _hydra_reference(conf, name, overrides, tmp_path)
    cfg = compose_config(
        ConfigSource(conf, name, tuple(overrides)), resolve=False, require_complete=False
    )
    assert OmegaConf.to_container(cfg, resolve=False) == expected


def test_example_project_matches_hydra_main(tmp_path: Path):
    from omegaconf import OmegaConf

    conf = Path(__file__).resolve().parents[1] / "configs"
    for overrides in (
        [],
        ["+experiment=large_sgd"],
        ["model=large", "optim=sgd", "scheduler=step"],
    ):
        expected = _hydra_reference(conf, "config", overrides, tmp_path)
        cfg = compose_config(
            ConfigSource(conf, "config", tuple(overrides)), resolve=False, require_complete=False
        )
        assert OmegaConf.to_container(cfg, resolve=False) == expected
