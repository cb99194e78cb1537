"""Every config tree the tests compose, in one place (``TREES``), plus the trees on disk.

``test_config_resolution.py`` checks over all of them that expctl's resolved config equals
``OmegaConf.to_container(cfg, resolve=True)`` of Hydra's own compose; other tests pick trees by
name. A new tree goes here, so the equality check covers it.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def write_tree(root: Path, tree: dict[str, str]) -> Path:
    for rel, text in tree.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return root


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
    # `expctl config show`'s own tests (tests/test_config_cli.py)
    "cli_demo": {
        "config.yaml": """
            defaults:
              - optim: adam
              - _self_
            name: demo
            x: 1
            y: ${x}
            nested:
              rel: ${..x}
              api_key: hunter2
              wandb_token: abc
            out: ${hydra:runtime.output_dir}
            job: ${hydra:job.name}
            year: ${now:%Y}
            envd: ${oc.env:EXPCTL_TEST_UNSET_VAR,fallback}
            decoded: ${oc.decode:'[1, 2]'}
            """,
        "optim/adam.yaml": "lr: 0.001\nbetas: [0.9, 0.999]\n",
        "optim/sgd.yaml": "lr: 0.1\nmomentum: 0.9\n",
        "missing.yaml": "name: ???\nmodel:\n  width: ???\n  depth: 3\nuses: ${name}\n",
    },
    # facebookresearch/mbrl-lib's shape: a node referenced before it is defined, whose own
    # interpolations (absolute and relative) must resolve where they are written
    "forward_references": {
        "config.yaml": """
            defaults:
              - overrides: cartpole
              - _self_
            agent:
              optimizer_cfg: ${action_optimizer}
              planning_horizon: ${overrides.planning_horizon}
            action_optimizer:
              _target_: mbrl.planning.CEMOptimizer
              num_iterations: ${overrides.cem_num_iters}
              elite_ratio: ${overrides.cem_elite_ratio}
              population_size: ${..population}
              lower_bound: ???
              upper_bound: ${.lower_bound}
            population: 350
            opt_defaults:
              lr: ${base_lr}
            nested_ref: ${opt_defaults}
            base_lr: 0.1
            label: "lr=${base_lr}, h=${overrides.planning_horizon}"
            escaped: \\${not_an_interpolation}
            seq: [1, "${base_lr}", {inner: "${population}"}]
            """,
        "overrides/cartpole.yaml": """
            # @package overrides
            cem_num_iters: 5
            cem_elite_ratio: 0.1
            planning_horizon: 15
            """,
        "overrides/halfcheetah.yaml": """
            # @package overrides
            cem_num_iters: 5
            cem_elite_ratio: 0.1
            planning_horizon: 30
            """,
    },
    # state-spaces/s4's shape: an app-registered resolver (`${eval:...}`) in one corner
    "custom_resolver": {
        "config.yaml": """
            model:
              d_model: 256
              n_layers: 4
              d_state: ${eval:${.d_model} // 4}
            optimizer:
              lr: 0.001
              weight_decay: 0.0
            lr: ${optimizer.lr}
            """,
    },
}
