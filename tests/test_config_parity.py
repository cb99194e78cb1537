"""The composed config equals what Hydra's own ``@hydra.main`` gives, on several real-world trees."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from expctl.config import ConfigSource, compose_config

# Each tree: {relative path: yaml text}. They exercise defaults lists, _self_ order, @package,
# optional groups, `override /group:` in _global_ experiments, multi-select groups, interpolation.
TREES: dict[str, dict[str, str]] = {
    "lightning_template": {
        "config.yaml": """
            defaults:
              - _self_
              - data: mnist
              - model: mlp
              - trainer: cpu
              - optional local: default
              - experiment: null
            seed: 12345
            task_name: train
            tags: [dev]
            """,
        "data/mnist.yaml": "batch_size: 64\nnum_workers: 0\ntrain_val_test_split: [55000, 5000, 10000]\n",
        "data/cifar.yaml": "batch_size: 128\nnum_workers: 4\n",
        "model/mlp.yaml": """
            _target_: torch.nn.Sequential
            _args_:
              - _target_: torch.nn.Linear
                in_features: 784
                out_features: 64
              - _target_: torch.nn.Linear
                in_features: ${..[0].out_features}
                out_features: 10
            """,
        "trainer/cpu.yaml": "accelerator: cpu\nmax_epochs: 10\n",
        "trainer/gpu.yaml": "defaults:\n  - cpu\naccelerator: gpu\n",
        "experiment/example.yaml": """
            # @package _global_
            defaults:
              - override /data: cifar
              - override /trainer: gpu
            tags: [cifar, gpu]
            seed: 7
            trainer:
              max_epochs: 3
            """,
    },
    "self_first_vs_last": {
        "config.yaml": """
            defaults:
              - db: mysql
              - _self_
            db:
              port: 9999
            """,
        "db/mysql.yaml": "driver: mysql\nport: 3306\nuser: ${oc.env:USER_FOR_TEST,root}\n",
        "db/postgres.yaml": "driver: postgres\nport: 5432\n",
        "self_first.yaml": """
            defaults:
              - _self_
              - db: mysql
            db:
              port: 9999
            """,
    },
    "packages_and_multiselect": {
        "config.yaml": """
            defaults:
              - server/db@backup: postgres
              - server/db: mysql
              - transforms: [crop, flip]
              - _self_
            name: ???
            """,
        "server/db/mysql.yaml": "# @package _group_\nport: 3306\n",
        "server/db/postgres.yaml": "port: 5432\n",
        "transforms/crop.yaml": "crop:\n  size: 32\n",
        "transforms/flip.yaml": "flip:\n  p: 0.5\n",
        "transforms/blur.yaml": "blur:\n  sigma: 1.0\n",
    },
}

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
]

HYDRA_APP = textwrap.dedent(
    """
    import json, sys
    import hydra
    from omegaconf import OmegaConf

    @hydra.main(version_base=None, config_path=sys.argv.pop(1), config_name=sys.argv.pop(1))
    def main(cfg):
        print("@@" + json.dumps(OmegaConf.to_container(cfg, resolve=False)))

    main()
    """
)


def _write_tree(root: Path, tree: dict[str, str]) -> Path:
    for rel, text in tree.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return root


def _hydra_reference(conf: Path, name: str, overrides: list[str], tmp: Path) -> dict:
    app = tmp / "hydra_app.py"
    app.write_text(HYDRA_APP)
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

    conf = _write_tree(tmp_path / "conf", TREES[tree])
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
