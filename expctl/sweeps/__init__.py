"""W&B-compatible sweeps on Optuna storages, with no server.

Sub-packages:

* :mod:`expctl.sweeps.spec` — W&B's sweep YAML → a validated :class:`SweepSpec` (all problems at
  once): YAML with line numbers, parameters and distribution inference, metric and
  early_terminate, command, parameters vs the project config, sampled values → Hydra overrides.
* :mod:`expctl.sweeps.methods` — one :class:`~expctl.sweeps.methods.base.Method` per W&B method
  (grid, random, bayes: sampler, create-time enqueue, planned count, run_cap and repeat rules);
  hyperband early termination as an Optuna pruner.
* :mod:`expctl.sweeps.storage` — storage URLs (journal file by default, SQLite, PostgreSQL, ...),
  the checked journal, its lock, its repair, and the trial index.
* :mod:`expctl.sweeps.program` — program sweeps: W&B's command macros and environment protocol,
  the process tree, the record a program trial leaves.
* :mod:`expctl.sweeps.wandb` — the thin adapter to W&B's sweep server, a trial under W&B's agent,
  reading a program's metric back from its W&B files.

Modules:

* :mod:`expctl.sweeps.distributions` — every W&B distribution as an Optuna distribution in a
  bounded *latent* space plus a deterministic transform.
* :mod:`expctl.sweeps.studies` — how a sweep is stored in an Optuna study (create, look up).
* :mod:`expctl.sweeps.engine` — a sweep = one Optuna study; exactly-once claims, heartbeats,
  dead-agent recovery, run_cap, target, status.
* :mod:`expctl.sweeps.agent` — claim → run → tell until done; the trainer objective.
* :mod:`expctl.sweeps.service` — what the CLI calls: backend choice, create from a file, run an
  agent locally or under W&B's agent.
* :mod:`expctl.sweeps.multirun` — Hydra-style ``expctl run -m a=1,2 b=x,y`` as a local grid sweep.
"""
