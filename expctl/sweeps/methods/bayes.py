"""``method: bayes``: Optuna's GPSampler over the latent space, needing a metric; a suggestion
that repeats a point another agent runs is asked again."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from expctl.sweeps.methods.base import Method

if TYPE_CHECKING:
    import optuna

    from expctl.errors import Problems
    from expctl.sweeps.spec import Metric, Parameter

BAYES_STARTUP_TRIALS = 5


class BayesMethod(Method):
    name = "bayes"

    @classmethod
    def spec_problems(
        cls, parameters: list[Parameter], metric: Metric | None, data: dict, problems: Problems
    ) -> None:
        if metric is None:
            problems.add("metric", "method: bayes needs a `metric` (name and goal) to optimise")

    def make_sampler(self, seed: int | None = None) -> optuna.samplers.BaseSampler:
        """Optuna's GPSampler, chosen by benchmarks/sweeps.py (Branin, 10 seeds, trials to
        within 1% of the optimum): GP 30 (median), TPE ~200, random > 1000. GPSampler also
        models the *running* trials of other agents (q-batch LogEI), so parallel agents do not
        all propose the same point: 4 trials in flight needed 38 (1.3× sequential). It costs
        ~0.1 s per suggestion, nothing next to a trial.
        """
        import optuna

        return optuna.samplers.GPSampler(
            seed=seed,
            n_startup_trials=BAYES_STARTUP_TRIALS,
            independent_sampler=optuna.samplers.RandomSampler(seed=seed),
            warn_independent_sampling=False,
        )

    def repeats_a_point(
        self, trial: optuna.Trial, params: dict[str, Any], study: optuna.Study
    ) -> bool:
        """A suggestion identical to a point another agent is running now, or — in a space
        with a continuous parameter, where an exact repeat is a wasted trial — to any point
        tried before. (Small discrete spaces must repeat points; that is fine.)"""
        from optuna.trial import TrialState

        from expctl.sweeps.studies import PREFIX

        continuous = any(p.is_continuous for p in self.spec.parameters)
        return any(
            t.number != trial.number
            and (t.state == TrialState.RUNNING or (continuous and t.state.is_finished()))
            and not t.user_attrs.get(PREFIX + "discarded")
            and t.user_attrs.get(PREFIX + "params") == params
            for t in study.get_trials(deepcopy=False)
        )
