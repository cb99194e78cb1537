"""W&B's hyperband early termination as an Optuna pruner.

W&B (wandb/sweeps ``hyperband_stopping.py``) uses one set of bands for the whole sweep:
``min_iter·eta^k`` (k = 0, 1, ...) or ``max_iter/eta^k`` (k = 1..s). A band *b* counts the metric
values a run has logged (not steps): the rule since wandb/sweeps PR #99 (Feb 2023) takes each
run's *b*-th value ``h[b-1]`` among runs with ``len(h) >= b``, the threshold is
``sorted(those)[int(len * (1/eta))]`` (goal-adjusted: lower is better), and a running trial is
judged at the largest band ``b <= len(its history)``: stopped when its value — ``h[b-1]`` when
``strict`` (W&B's schema default), else its best so far — is worse than that threshold. Only
finite values count (W&B's ``is_number``).

Optuna's own HyperbandPruner brackets trials by trial number instead; this pruner is W&B's rule.
The trainer reports one value per epoch (``trial.report(value, epoch)``), so bands count epochs.
Hyperband is the stopping rule of every method (:func:`make_pruner`), not a method itself.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from optuna.pruners import BasePruner
from optuna.trial import TrialState

if TYPE_CHECKING:
    import optuna
    from optuna.study import Study
    from optuna.trial import FrozenTrial

    from expctl.sweeps.spec import SweepSpec


class WandbHyperbandPruner(BasePruner):
    def __init__(
        self, bands: list[int], eta: float, *, strict: bool = True, maximize: bool = False
    ):
        if not bands:
            raise ValueError("hyperband needs at least one band")
        self.bands = sorted(bands)
        self.eta = eta
        self.strict = strict
        self.sign = -1.0 if maximize else 1.0

    def history(self, trial: FrozenTrial) -> list[float]:
        """The trial's logged values in step order, goal-adjusted (lower is better), finite only."""
        return [
            self.sign * v
            for _, v in sorted(trial.intermediate_values.items())
            if v is not None and math.isfinite(v)
        ]

    def threshold(self, band: int, histories: list[list[float]]) -> float:
        """The value a trial must not exceed at ``band``: ``sorted(b-th values)[int(r*len)]``."""
        values = sorted(h[band - 1] for h in histories if len(h) >= band)
        return values[int((1.0 / self.eta) * len(values))] if values else math.inf

    def should_stop(self, history: list[float], histories: list[list[float]]) -> bool:
        """W&B's decision for one running trial given every trial's history (its own included)."""
        reached = [band for band in self.bands if band <= len(history)]
        if not reached:
            return False
        band = reached[-1]
        value = history[band - 1] if self.strict else min(history)
        return value > self.threshold(band, histories)

    def prune(self, study: Study, trial: FrozenTrial) -> bool:
        history = self.history(trial)
        if not history or self.bands[0] > len(history):
            return False
        states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.FAIL)
        others = study.get_trials(deepcopy=False, states=states)
        histories = [self.history(t) for t in others if t.number != trial.number]
        histories = [h for h in histories if h]
        histories.append(history)
        return self.should_stop(history, histories)


def make_pruner(spec: SweepSpec) -> optuna.pruners.BasePruner:
    """W&B's hyperband where the spec asks for early termination, else Optuna's no-op pruner."""
    import optuna

    et = spec.early_terminate
    if et is None:
        return optuna.pruners.NopPruner()
    maximize = bool(spec.metric and spec.metric.maximize)
    return WandbHyperbandPruner(et.bands(), et.eta, strict=et.strict, maximize=maximize)
