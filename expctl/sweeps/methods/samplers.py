"""Sampling and pruning under W&B's spec: which Optuna sampler and pruner a sweep uses."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from expctl.sweeps.spec import SweepSpec

if TYPE_CHECKING:
    import optuna

BAYES_STARTUP_TRIALS = 5


def make_sampler(spec: SweepSpec, seed: int | None = None) -> optuna.samplers.BaseSampler:
    """random: exact W&B distributions; bayes: Optuna's GPSampler (see benchmarks/sweeps.py).

    Chosen by benchmarks/sweeps.py (Branin, 10 seeds, trials to within 1% of the optimum):
    GP 30 (median), TPE ~200, random > 1000. GPSampler also models the *running* trials of other
    agents (q-batch LogEI), so parallel agents do not all propose the same point: 4 trials in
    flight needed 38 (1.3× sequential). It costs ~0.1 s per suggestion, nothing next to a trial.
    """
    import optuna

    if spec.method == "bayes":
        return optuna.samplers.GPSampler(
            seed=seed,
            n_startup_trials=BAYES_STARTUP_TRIALS,
            independent_sampler=optuna.samplers.RandomSampler(seed=seed),
            warn_independent_sampling=False,
        )
    return optuna.samplers.RandomSampler(seed=seed)


def make_pruner(spec: SweepSpec) -> optuna.pruners.BasePruner:
    import optuna

    from expctl.sweeps.methods.hyperband import WandbHyperbandPruner

    et = spec.early_terminate
    if et is None:
        return optuna.pruners.NopPruner()
    maximize = bool(spec.metric and spec.metric.maximize)
    return WandbHyperbandPruner(et.bands(), et.eta, strict=et.strict, maximize=maximize)


def suggest(trial: optuna.Trial, name: str, dist: Any) -> Any:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, log=dist.log, step=dist.step)
    if isinstance(dist, FloatDistribution):
        return trial.suggest_float(name, dist.low, dist.high, log=dist.log, step=dist.step)
    raise TypeError(f"unsupported distribution {dist!r}")
