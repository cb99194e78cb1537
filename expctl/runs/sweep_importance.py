"""A sweep's trials as Optuna sees them: a distribution per parameter inferred from the W&B
values, an in-memory study of the complete trials, and Optuna's parameter importance on it
(the report's importance plot; parallel coordinates share the inferred distributions)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from expctl.record.jsonpolicy import is_finite_number
from expctl.runs.sweep_results import SweepResults, Trial, value_key

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution

LOG_RATIO = 100.0  # numeric parameters spanning this factor (all > 0) get a log axis
# Optuna's importance evaluator fits a random forest to the trials: on fewer than this many it
# ranks parameters by noise, so the report says so next to the plot.
IMPORTANCE_MIN_TRIALS = 10


def infer_distributions(trials: Sequence[Trial]) -> dict[str, BaseDistribution]:
    """An Optuna distribution per parameter that varies, inferred from the W&B values:
    numbers → Int/Float over their range (log when all > 0 and spanning ≥ 100×), anything
    else → categorical. Constants are left out (nothing to learn from them)."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    values: dict[str, list[Any]] = {}
    for t in trials:
        for k, v in t.params.items():
            values.setdefault(k, []).append(v)
    out: dict[str, BaseDistribution] = {}
    for name, seen in values.items():
        distinct = list({value_key(v): v for v in seen}.values())
        if len(distinct) < 2:
            continue
        if all(is_finite_number(v) for v in seen):
            lo, hi = min(seen), max(seen)
            log = lo > 0 and hi / lo >= LOG_RATIO
            if all(isinstance(v, int) for v in seen):
                out[name] = IntDistribution(int(lo), int(hi), log=log and lo >= 1)
            else:
                out[name] = FloatDistribution(float(lo), float(hi), log=log)
        else:
            out[name] = CategoricalDistribution([_choice(v) for v in distinct])
    return out


def optuna_study(results: SweepResults, trials: Sequence[Trial] | None = None) -> optuna.Study:
    """An in-memory Optuna study of the complete trials, with the W&B values as its params (so
    Optuna's importance evaluators and plots work on what the user sees)."""
    import optuna

    from expctl.sweeps.storage import quiet_optuna

    quiet_optuna()
    chosen = list(trials) if trials is not None else results.ranked()
    distributions = infer_distributions(chosen)
    study = optuna.create_study(direction="maximize" if results.maximize else "minimize")
    frozen = []
    for t in sorted(chosen, key=lambda t: t.number):
        params = {
            k: _param_value(v, distributions[k]) for k, v in t.params.items() if k in distributions
        }
        frozen.append(
            optuna.trial.create_trial(
                params=params,
                distributions={k: distributions[k] for k in params},
                value=float(t.value),  # type: ignore[arg-type]
                user_attrs={"expctl:number": t.number},
            )
        )
    study.add_trials(frozen)
    return study


def param_importances(results: SweepResults) -> tuple[dict[str, float] | None, str | None]:
    """Optuna's default importance evaluator on the W&B values; ``(None, why)`` when there is
    too little to go on."""
    ranked = results.ranked()
    if len(ranked) < 2:
        return None, f"needs at least 2 complete trials ({len(ranked)} so far)"
    distributions = infer_distributions(ranked)
    if not distributions:
        return None, "no parameter took more than one value"
    import optuna

    study = optuna_study(results, ranked)
    try:
        importances = optuna.importance.get_param_importances(study)
    except Exception as e:  # degenerate data (all values equal, ...): say so, draw the rest
        return None, f"Optuna could not evaluate importance: {e}"
    return {k: float(v) for k, v in importances.items()}, None


def importance_caveat(complete: int) -> str | None:
    """What the report says next to a parameter importance computed from too few trials."""
    if complete >= IMPORTANCE_MIN_TRIALS:
        return None
    return (
        f"parameter importance needs ≥ {IMPORTANCE_MIN_TRIALS} complete trials to be "
        f"meaningful; this sweep has {complete}: read it as noise, not a ranking"
    )


def _param_value(value: Any, distribution: BaseDistribution) -> Any:
    from optuna.distributions import CategoricalDistribution

    if isinstance(distribution, CategoricalDistribution):
        return _choice(value)
    return value


def _choice(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return json.dumps(value, sort_keys=True, default=str)
