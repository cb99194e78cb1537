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


# -- trees shaped like public projects' (issue 19): the constructs their users hit -------------

# facebookresearch/mbrl-lib: every group file carries Hydra 1.0's `# @package _group_` header
# (its app passes no version_base, so Hydra 1.3 composes it with 1.1's rules); the agent refers
# to a whole node holding `???` (`optimizer_cfg: ${action_optimizer}`), and groups refer to one
# another through `${overrides.x}`.
TREES["mbrl_group_headers"] = {
    "main.yaml": """
        defaults:
          - algorithm: pets
          - dynamics_model: gaussian_mlp_ensemble
          - overrides: pets_halfcheetah
          - action_optimizer: cem

        seed: 0
        device: "cuda:0"
        log_frequency_agent: 1000
        save_video: false
        debug_mode: false

        experiment: default

        root_dir: "./exp"
        hydra:
          run:
            dir: ${root_dir}/${algorithm.name}/${experiment}/${overrides.env}/${now:%Y.%m.%d}/${now:%H%M%S}
        """,
    "algorithm/pets.yaml": """
        # @package _group_
        name: "pets"

        agent:
          _target_: mbrl.planning.TrajectoryOptimizerAgent
          action_lb: ???
          action_ub: ???
          planning_horizon: ${overrides.planning_horizon}
          optimizer_cfg: ${action_optimizer}
          replan_freq: 1
          verbose: ${debug_mode}

        normalize: true
        normalize_double_precision: true
        target_is_delta: true
        initial_exploration_steps: ${overrides.trial_length}
        freq_train_model: ${overrides.freq_train_model}
        learned_rewards: ${overrides.learned_rewards}

        num_particles: 20
        """,
    "algorithm/mbpo.yaml": """
        # @package _group_
        name: "mbpo"

        normalize: true
        normalize_double_precision: true
        target_is_delta: true
        learned_rewards: true
        freq_train_model: ${overrides.freq_train_model}
        real_data_ratio: 0.0

        sac_samples_action: true
        initial_exploration_steps: 5000
        random_initial_explore: false
        num_eval_episodes: 1

        agent:
          _target_: mbrl.third_party.pytorch_sac_pranz24.sac.SAC
          num_inputs: ???
          action_space:
            _target_: gym.env.Box
            low: ???
            high: ???
            shape: ???
          args:
            gamma: ${overrides.sac_gamma}
            tau: ${overrides.sac_tau}
            alpha: ${overrides.sac_alpha}
            policy: ${overrides.sac_policy}
            target_update_interval: ${overrides.sac_target_update_interval}
            automatic_entropy_tuning: ${overrides.sac_automatic_entropy_tuning}
            target_entropy: ${overrides.sac_target_entropy}
            hidden_size: ${overrides.sac_hidden_size}
            device: ${device}
            lr: ${overrides.sac_lr}
        """,
    "dynamics_model/gaussian_mlp_ensemble.yaml": """
        # @package _group_
        _target_: mbrl.models.GaussianMLP
        device: ${device}
        num_layers: 4
        in_size: ???
        out_size: ???
        ensemble_size: 7
        hid_size: 200
        deterministic: false
        propagation_method: random_model
        learn_logvar_bounds: false
        activation_fn_cfg:
          _target_: torch.nn.SiLU
        """,
    "overrides/pets_halfcheetah.yaml": """
        # @package _group_
        env: "gym___HalfCheetah-v2"
        term_fn: "no_termination"
        obs_process_fn: mbrl.env.pets_halfcheetah.HalfCheetahEnv.preprocess_fn
        learned_rewards: true
        num_steps: 300000
        trial_length: 1000

        num_elites: 5
        model_lr: 0.00028
        model_wd: 0.00010
        model_batch_size: 32
        validation_ratio: 0
        freq_train_model: 1000
        patience: 12
        num_epochs_train_model: 12

        planning_horizon: 30
        cem_num_iters: 5
        cem_elite_ratio: 0.16
        cem_population_size: 350
        cem_alpha: 0.12
        cem_clipped_normal: false
        """,
    "overrides/mbpo_halfcheetah.yaml": """
        # @package _group_
        env: "gym___HalfCheetah-v2"
        term_fn: "no_termination"

        num_steps: 400000
        epoch_length: 1000
        num_elites: 5
        patience: 5
        model_lr: 0.001
        model_wd: 0.00001
        model_batch_size: 256
        validation_ratio: 0.2
        freq_train_model: 250
        effective_model_rollouts_per_step: 400
        rollout_schedule: [20, 150, 1, 1]
        num_sac_updates_per_step: 10
        sac_updates_every_steps: 1
        num_epochs_to_retain_sac_buffer: 1

        sac_gamma: 0.99
        sac_tau: 0.005
        sac_alpha: 0.2
        sac_policy: "Gaussian"
        sac_target_update_interval: 1
        sac_automatic_entropy_tuning: true
        sac_target_entropy: -1
        sac_hidden_size: 512
        sac_lr: 0.0003
        sac_batch_size: 256
        """,
    "action_optimizer/cem.yaml": """
        # @package _group_
        _target_: mbrl.planning.CEMOptimizer
        num_iterations: ${overrides.cem_num_iters}
        elite_ratio: ${overrides.cem_elite_ratio}
        population_size: ${overrides.cem_population_size}
        alpha: ${overrides.cem_alpha}
        lower_bound: ???
        upper_bound: ???
        return_mean_elites: true
        device: ${device}
        clipped_normal: ${overrides.cem_clipped_normal}
        """,
}

# facebookresearch/drqv2: a task chosen into the global package (`task@_global_`), whose own
# defaults list pulls a difficulty preset (`# @package _global_`) that the agent refers to;
# `lr: 1e-4` (a float only to OmegaConf's YAML loader); `+agent_cfg=${agent}` on the command line.
TREES["drqv2"] = {
    "config.yaml": """
        defaults:
          - _self_
          - task@_global_: quadruped_walk

        # task settings
        frame_stack: 3
        action_repeat: 2
        discount: 0.99
        # train settings
        num_seed_frames: 4000
        # eval
        eval_every_frames: 10000
        num_eval_episodes: 10
        # snapshot
        save_snapshot: false
        # replay buffer
        replay_buffer_size: 1000000
        replay_buffer_num_workers: 4
        nstep: 3
        batch_size: 256
        # misc
        seed: 1
        device: cuda
        save_video: true
        save_train_video: false
        use_tb: false
        # experiment
        experiment: exp
        # agent
        lr: 1e-4
        feature_dim: 50

        agent:
          _target_: drqv2.DrQV2Agent
          obs_shape: ??? # to be specified later
          action_shape: ??? # to be specified later
          device: ${device}
          lr: ${lr}
          critic_target_tau: 0.01
          update_every_steps: 2
          use_tb: ${use_tb}
          num_expl_steps: 2000
          hidden_dim: 1024
          feature_dim: ${feature_dim}
          stddev_schedule: ${stddev_schedule}
          stddev_clip: 0.3

        hydra:
          run:
            dir: ./exp_local/${now:%Y.%m.%d}/${now:%H%M%S}_${hydra.job.override_dirname}
        """,
    "task/easy.yaml": """
        # @package _global_
        num_train_frames: 1100000
        stddev_schedule: 'linear(1.0,0.1,100000)'
        """,
    "task/medium.yaml": """
        # @package _global_
        num_train_frames: 3100000
        stddev_schedule: 'linear(1.0,0.1,500000)'
        """,
    "task/quadruped_walk.yaml": """
        defaults:
          - medium
          - _self_

        task_name: quadruped_walk
        """,
    "task/cartpole_swingup.yaml": """
        defaults:
          - easy
          - _self_

        task_name: cartpole_swingup
        """,
}

# huggingface/lerobot (its Hydra era): env and policy files write into the global package and
# override the defaults' `???`s; keys with dots (`observation.image`), string interpolations
# that build Python expressions, list items that are interpolations, an optional group.
TREES["lerobot"] = {
    "default.yaml": """
        defaults:
          - _self_
          - env: pusht
          - policy: diffusion
          - optional local: default

        hydra:
          run:
            dir: outputs/train/${now:%Y-%m-%d}/${now:%H-%M-%S}_${env.name}_${policy.name}_${hydra.job.name}
          job:
            name: default

        resume: false
        device: cuda
        use_amp: false
        seed: ???
        dataset_repo_id: lerobot/pusht
        video_backend: pyav

        training:
          offline_steps: ???
          online_steps: ???
          online_steps_between_rollouts: ???
          online_sampling_ratio: 0.5
          online_env_seed: ???
          eval_freq: ???
          log_freq: 200
          save_checkpoint: true
          save_freq: ???
          num_workers: 4
          batch_size: ???
          image_transforms:
            enable: false
            max_num_transforms: 3
            random_order: false
            brightness:
              weight: 1
              min_max: [0.8, 1.2]

        eval:
          n_episodes: 1
          batch_size: 1
          use_async_envs: false

        wandb:
          enable: false
          disable_artifact: false
          project: lerobot
          notes: ""
        """,
    "env/pusht.yaml": """
        # @package _global_

        fps: 10

        env:
          name: pusht
          task: PushT-v0
          image_size: 96
          state_dim: 2
          action_dim: 2
          fps: ${fps}
          episode_length: 300
          gym:
            obs_type: pixels_agent_pos
            render_mode: rgb_array
            visualization_width: 384
            visualization_height: 384
        """,
    "env/aloha.yaml": """
        # @package _global_

        fps: 50

        env:
          name: aloha
          task: AlohaInsertion-v0
          state_dim: 14
          action_dim: 14
          fps: ${fps}
          episode_length: 400
          gym:
            obs_type: pixels_agent_pos
            render_mode: rgb_array
        """,
    "policy/diffusion.yaml": """
        # @package _global_

        seed: 100000
        dataset_repo_id: lerobot/pusht

        override_dataset_stats:
          observation.image:
            mean: [[[0.5]], [[0.5]], [[0.5]]]
            std: [[[0.5]], [[0.5]], [[0.5]]]

        training:
          offline_steps: 200000
          online_steps: 0
          eval_freq: 25000
          save_freq: 25000
          save_checkpoint: true
          batch_size: 64
          grad_clip_norm: 10
          lr: 1.0e-4
          lr_scheduler: cosine
          lr_warmup_steps: 500
          adam_betas: [0.95, 0.999]
          adam_eps: 1.0e-8
          adam_weight_decay: 1.0e-6
          online_steps_between_rollouts: 1

          delta_timestamps:
            observation.image: "[i / ${fps} for i in range(1 - ${policy.n_obs_steps}, 1)]"
            observation.state: "[i / ${fps} for i in range(1 - ${policy.n_obs_steps}, 1)]"
            action: "[i / ${fps} for i in range(1 - ${policy.n_obs_steps}, 1 - ${policy.n_obs_steps} + ${policy.horizon})]"

          drop_n_last_frames: 7  # ${policy.horizon} - ${policy.n_action_steps} - ${policy.n_obs_steps} + 1

        eval:
          n_episodes: 50
          batch_size: 50

        policy:
          name: diffusion
          n_obs_steps: 2
          horizon: 16
          n_action_steps: 8
          input_shapes:
            observation.image: [3, 96, 96]
            observation.state: ["${env.state_dim}"]
          output_shapes:
            action: ["${env.action_dim}"]
          input_normalization_modes:
            observation.image: mean_std
            observation.state: min_max
          output_normalization_modes:
            action: min_max
          vision_backbone: resnet18
          crop_shape: [84, 84]
          crop_is_random: True
          pretrained_backbone_weights: null
          use_group_norm: True
          spatial_softmax_num_keypoints: 32
          down_dims: [512, 1024, 2048]
          kernel_size: 5
          n_groups: 8
          diffusion_step_embed_dim: 128
          use_film_scale_modulation: True
          noise_scheduler_type: DDPM
          num_train_timesteps: 100
          beta_schedule: squaredcos_cap_v2
          beta_start: 0.0001
          beta_end: 0.02
          prediction_type: epsilon
          clip_sample: True
          clip_sample_range: 1.0
          num_inference_steps: null
          do_mask_loss_for_padding: false
        """,
    "policy/act.yaml": """
        # @package _global_

        seed: 1000
        dataset_repo_id: lerobot/aloha_sim_insertion_human

        override_dataset_stats:
          observation.images.top:
            mean: [[[0.485]], [[0.456]], [[0.406]]]
            std: [[[0.229]], [[0.224]], [[0.225]]]

        training:
          offline_steps: 100000
          online_steps: 0
          eval_freq: 20000
          save_freq: 20000
          save_checkpoint: true
          batch_size: 8
          lr: 1e-5
          lr_backbone: 1e-5
          weight_decay: 1e-4
          grad_clip_norm: 10
          online_steps_between_rollouts: 1

          delta_timestamps:
            action: "[i / ${fps} for i in range(${policy.chunk_size})]"

        eval:
          n_episodes: 50
          batch_size: 50

        policy:
          name: act
          n_obs_steps: 1
          chunk_size: 100
          n_action_steps: 100
          input_shapes:
            observation.images.top: [3, 480, 640]
            observation.state: ["${env.state_dim}"]
          output_shapes:
            action: ["${env.action_dim}"]
          vision_backbone: resnet18
          use_vae: true
          latent_dim: 32
          dropout: 0.1
          kl_weight: 10.0
        """,
}

# facebookresearch/audiocraft: solvers in nested groups (`solver=compression/encodec_base_24khz`)
# that write into the global package (`# @package __global__`), with relative
# (`compression/default`) and absolute (`/model: encodec/...`) defaults, `override /dset:` of a
# nested group, and interpolations across the parts.
TREES["audiocraft"] = {
    "config.yaml": """
        # WARNING: This is the base configuration file shared across ALL solvers in AudioCraft
        defaults:
          - _self_
          - dset: default
          - solver: default

        device: cuda
        dtype: float32
        autocast: false
        autocast_dtype: bfloat16
        seed: 2036
        show: false  # just show the model and its size and exit
        continue_from:  # continue from a given sig or path
        execute_only:  # can be set to generate/evaluate/valid to run that stage
        execute_inplace: false # don't enforce continue_from to be set

        efficient_attention_backend: torch  # can be torch or xformers.
        num_threads: 1  # called with torch.set_num_thread.
        mp_start_method: forkserver  # multiprocessing method (spawn, fork or fork_server).

        label:  # use this if you want twice the same exp, with a name.

        logging:
          level: INFO
          log_updates: 10
          log_tensorboard: false
          log_wandb: false
        wandb:
          with_media_logging: true
          project:  # project name
          name:  # optional name for the experiment
          group:  # optional group

        slurm:
          gpus: 4  # convenience parameter, number of GPUs to use.
          mem_per_gpu: 40  # in GB, total mem is automatically scaled to fit.
          time: 3600
          constraint:
          partition:
          setup: []
          exclude: ''

        dora:
          dir: /checkpoint/${oc.env:EXPCTL_TEST_AUDIOCRAFT_USER,nobody}/experiments/audiocraft/outputs
          exclude: [
            'device', 'wandb.*', 'tensorboard.*', 'logging.*',
            'dataset.num_workers', 'eval.num_workers', 'special.*',
            'execute_only', 'execute_best', 'generate.every',
          ]
          use_rendezvous: false
          git_save: true
        """,
    "dset/default.yaml": """
        # @package __global__

        datasource:
          train: ???
          valid: ???
          evaluate: ???
          generate: ???
        """,
    "dset/audio/default.yaml": """
        # @package __global__

        datasource:
          max_sample_rate: ???
          max_channels: ???

          train: ???
          valid: ???
          evaluate: ???
          generate: ???
        """,
    "dset/audio/example.yaml": """
        # @package __global__

        datasource:
          max_sample_rate: 44100
          max_channels: 2

          train: egs/example
          valid: egs/example
          evaluate: egs/example
          generate: egs/example
        """,
    "solver/default.yaml": """
        # @package __global__

        solver: ???

        fsdp:
          use: false  # should we use FSDP.
          param_dtype: float16  # equivalent to autocast_dtype for FSDP.
          reduce_dtype: float32
          buffer_dtype: float32
          sharding_strategy: shard_grad_op
          per_block: true

        dataset:
          batch_size: ???
          num_workers: 10
          segment_duration: null
          num_samples: null
          return_info: false
          shuffle: false
          sample_on_duration: true
          sample_on_weight: true
          min_segment_ratio: 0.5
          train:
            num_samples: null
            shuffle: true
            shuffle_seed: 0  # if you want to sample the data differently.
            permutation_on_files: false
          valid:
            num_samples: null
          evaluate:
            num_samples: null
          generate:
            num_samples: null
            return_info: true

        checkpoint:
          save_last: true
          save_every: null
          keep_last: null
          keep_every_states: null

        generate:
          every: null
          path: 'samples'
          audio:
            format: 'mp3'
            strategy: 'clip'
            sample_rate: null
          lm:
            use_sampling: false
            temp: 1.0
            top_k: 0
            top_p: 0.0
        evaluate:
          every: null
          num_workers: 5
          truncate_audio: null
          fixed_generation_duration: null  # in secs
          metrics:
            base: true  # run default evaluation (e.g. like train/valid stage)

        optim:
          epochs: ???
          updates_per_epoch: null
          lr: ???
          optimizer: ???
          adam:
            betas: [0.9, 0.999]
            weight_decay: 0.
          ema:
            use: false  # whether to use EMA or not
            updates: ${optim.updates_per_epoch}  # frequency of updates of the EMA
            device: cpu  # device for EMA, can be put on GPU if more frequent updates
            decay: 0.99  # EMA decay value, if null, no EMA is used

        schedule:
          lr_scheduler: null
          step:
            step_size: null
            gamma: null
          cosine:
            warmup: null
            lr_min_ratio: 0.0
            cycle_length: 1.0
        """,
    "solver/compression/default.yaml": """
        # @package __global__

        defaults:
          - /solver/default
          - override /dset: audio/default
          - _self_

        solver: compression
        sample_rate: ???
        channels: ???

        # loss balancing
        losses:
          adv: 4.
          feat: 4.
          l1: 0.1
          mel: 0.
          msspec: 2.
          sisnr: 0.
        balancer:
          balance_grads: true
          ema_decay: 0.999
          per_batch_item: true
          total_norm: 1.

        adversarial:
          every: 1
          adversaries: [msstftd]
          adv_loss: hinge
          feat_loss: l1

        metrics:
          visqol:
            mode: audio
            bin: null  # path to visqol install
            model: tcdaudio14_aacvopus_coresv_svrnsim_n.68_g.01_c1.model

        dataset:
          batch_size: 64
          num_workers: 10
          segment_duration: 1
          train:
            num_samples: 500000
          valid:
            num_samples: 10000
          evaluate:
            batch_size: 32
            num_samples: 10000
          generate:
            batch_size: 32
            num_samples: 50
            segment_duration: 10

        evaluate:
          every: 25
          num_workers: 5
          metrics:
            visqol: false
            sisnr: true

        optim:
          epochs: 200
          updates_per_epoch: 2000
          lr: 3e-4
          max_norm: 0.
          optimizer: adam
          adam:
            betas: [0.5, 0.9]
            weight_decay: 0.
          ema:
            use: true         # whether to use EMA or not
            updates: 1        # update at every step
            device: ${device} # device for EMA, can be put on GPU if more frequent updates
            decay: 0.99       # EMA decay value, if null, no EMA is used
        """,
    "solver/compression/encodec_base_24khz.yaml": """
        # @package __global__

        defaults:
          - compression/default
          - /model: encodec/encodec_base_causal
          - override /dset: audio/example
          - _self_

        channels: 1
        sample_rate: 24000
        """,
    "model/encodec/default.yaml": """
        # @package __global__

        compression_model: encodec

        encodec:
          autoencoder: seanet
          quantizer: rvq
          sample_rate: ${sample_rate}
          channels: ${channels}
          causal: false
          renormalize: false

        seanet:
          dimension: 128
          channels: ${channels}
          causal: ${encodec.causal}
          n_filters: 32
          n_residual_layers: 1
          ratios: [8, 5, 4, 2]
          activation: ELU
          activation_params: {"alpha": 1.}
          norm: weight_norm
          norm_params: {}
          kernel_size: 7
          residual_kernel_size: 3
          last_kernel_size: 7
          dilation_base: 2
          pad_mode: constant
          true_skip: true
          compress: 2
          lstm: 2
          disable_norm_outer_blocks: 0
          # by using Hydra `+param=` syntax, i.e.`+seanet.decoder.n_filters=64`.
          decoder:
            trim_right_ratio: 1.0
            final_activation: null
            final_activation_params: null
          encoder: {}

        rvq:
          n_q: 8
          q_dropout: false
          bins: 1024
          decay: 0.99
          kmeans_init: true
          kmeans_iters: 50
          threshold_ema_dead_code: 2
          orthogonal_reg_weight: 0.0
          orthogonal_reg_active_codes_only: false

        no_quant: {}
        """,
    "model/encodec/encodec_base_causal.yaml": """
        # @package __global__

        defaults:
          - encodec/default

        encodec:
          causal: true

        rvq:
          n_q: 32
          q_dropout: true
        """,
}
