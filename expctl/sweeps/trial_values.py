"""The values a claimed trial runs with: W&B values from the grid point or the sampler, and
recorded as Optuna params too (what Optuna's own tools show). Half of
:class:`expctl.sweeps.engine.Sweep`, as :mod:`expctl.sweeps.liveness` is another."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from expctl.sweeps.methods.samplers import suggest
from expctl.sweeps.studies import PREFIX

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution

    from expctl.sweeps.spec import SweepSpec
    from expctl.sweeps.storage import StorageHandle


class TrialValues:
    """The trial-values half of :class:`expctl.sweeps.engine.Sweep`."""

    handle: StorageHandle
    study: optuna.Study
    spec: SweepSpec

    def _params(self, trial: optuna.Trial, queued: dict[str, Any] | None) -> dict[str, Any]:
        """The W&B values of a trial; random/bayes trials also get their latent Optuna params."""
        from expctl.sweeps.distributions import latent_distribution, to_value

        if self.spec.method == "grid":
            point = dict(queued or {})
            self._record_grid_params(trial._trial_id, point)
            return point
        values: dict[str, Any] = {}
        for p in self.spec.parameters:
            dist = latent_distribution(p)
            latent = None if dist is None else suggest(trial, p.name, dist)
            values[p.name] = to_value(p, latent)
        if queued is None:
            self.handle.storage.set_trial_user_attr(trial._trial_id, PREFIX + "params", values)
        return values

    @functools.cached_property
    def _grid_columns(self) -> list[tuple[str, BaseDistribution]]:
        """Each grid column's Optuna distribution, built once (a column's values are checked
        for duplicates: per trial, that was a quarter of a 200-point grid's bookkeeping)."""
        from expctl.sweeps.methods.grid import column_distribution

        columns = ((p.name, column_distribution(p)) for p in self.spec.parameters)
        return [(name, dist) for name, dist in columns if dist is not None]

    def _record_grid_params(self, trial_id: int, point: dict[str, Any]) -> None:
        """A grid point as the trial's Optuna params too (what Optuna's tools show)."""
        for name, dist in self._grid_columns:
            if name not in point:
                continue
            try:
                internal = dist.to_internal_repr(point[name])
            except ValueError:  # not one of the column's values (a point queued by hand)
                continue
            if dist._contains(internal):
                self.handle.storage.set_trial_param(trial_id, name, internal, dist)

    def _repeats_a_point(self, trial: optuna.Trial, params: dict[str, Any]) -> bool:
        """A bayes suggestion identical to a point another agent is running now, or — in a
        space with a continuous parameter, where an exact repeat is a wasted trial — to any
        point tried before. (Small discrete spaces must repeat points; that is fine.)"""
        from optuna.trial import TrialState

        if self.spec.method != "bayes":
            return False  # grids are exact; random repeats only by chance, as in W&B
        continuous = any(p.is_continuous for p in self.spec.parameters)
        return any(
            t.number != trial.number
            and (t.state == TrialState.RUNNING or (continuous and t.state.is_finished()))
            and not t.user_attrs.get(PREFIX + "discarded")
            and t.user_attrs.get(PREFIX + "params") == params
            for t in self.study.get_trials(deepcopy=False)
        )
