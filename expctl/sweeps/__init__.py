"""W&B-compatible sweeps on Optuna storages, with no server.

* :mod:`expctl.sweeps.spec` — W&B's sweep YAML → a validated :class:`SweepSpec`
  (all problems at once), helped by :mod:`~expctl.sweeps.spec_yaml` (YAML with line numbers),
  :mod:`~expctl.sweeps.spec_problems`, :mod:`~expctl.sweeps.parameters` (parameters and
  distribution inference), :mod:`~expctl.sweeps.config_check` (parameters vs the project config)
  and :mod:`~expctl.sweeps.overrides` (sampled values → Hydra overrides).
* :mod:`expctl.sweeps.distributions` — every W&B distribution as an Optuna distribution in a
  bounded *latent* space plus a deterministic transform.
* :mod:`expctl.sweeps.grid` — W&B's grid semantics (points, de-duplication, run_cap).
* :mod:`expctl.sweeps.storage` — storage URLs (journal file by default, SQLite, PostgreSQL, ...).
* :mod:`expctl.sweeps.engine` — a sweep = one Optuna study; exactly-once claims, heartbeats,
  dead-agent recovery, run_cap, target, status.
* :mod:`expctl.sweeps.hyperband` — W&B's hyperband early termination as an Optuna pruner.
* :mod:`expctl.sweeps.agent` — claim → run → tell until done; the trainer objective.
* :mod:`expctl.sweeps.service` — what the CLI calls: backend choice, create from a file, run an
  agent locally or under W&B's agent.
* :mod:`expctl.sweeps.program` / :mod:`~expctl.sweeps.macros` — program sweeps: W&B's command
  macros and environment protocol; :mod:`~expctl.sweeps.wandb_metrics` reads the metric back.
* :mod:`expctl.sweeps.wandb_cloud` — the thin adapter to W&B's sweep server.
* :mod:`expctl.sweeps.multirun` — Hydra-style ``expctl run -m a=1,2 b=x,y`` as a local grid sweep.
"""
