"""W&B's grid semantics: which points a grid sweep runs, in which order.

* parameters in name order; the product of their value lists (W&B's ``itertools.product``);
* ``int_uniform`` → ``range(min, max + 1)`` (max inclusive), ``q_uniform`` →
  ``numpy.arange(min, max, q)`` (max *excluded*), constants are one value;
* duplicate points are collapsed, comparing values as YAML with an integer-valued float as an
  int (``3e6`` and ``3000000`` are one point; like W&B, only for the value itself, not inside a
  list or map), keeping the first occurrence;
* ``run_cap`` keeps the first ``run_cap`` points.

:class:`GridMethod` is the method. A grid of up to :data:`QUEUED_GRID_POINTS` points is queued
whole when the sweep is created (each point a WAITING trial, visible as such in Optuna's tools);
a larger one is *claimed by index*: nothing is enumerated at create, a point is a pure function of
its index (:meth:`GridMethod.point`, mixed radix over the value lists), and an agent takes the next
index by creating a trial (see :mod:`expctl.sweeps.trial_queue`).

Sizes are computed before anything is enumerated (a 10^11-point ``int_uniform`` is refused in
microseconds, not after filling the memory): a point repeats only if each of its values repeats,
so the grid's size is the product of each parameter's number of distinct values.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from expctl.errors import SpecError
from expctl.sweeps.methods.base import Method

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution

    from expctl.errors import Problems
    from expctl.sweeps.spec import Metric, Parameter, SweepSpec

# The distributions a grid can enumerate (finite sets of values).
GRID_DISTRIBUTIONS = ("constant", "categorical", "int_uniform", "q_uniform")
# `expctl run -m` enumerates its runs in one process: beyond this many it is refused (a sweep
# file takes larger grids).
MAX_GRID_POINTS = 10_000
# A grid up to this size is queued whole at create (a WAITING trial per point); larger ones are
# claimed by index, one trial created per claim.
QUEUED_GRID_POINTS = 10_000
# The most trials a storage can number: Optuna's RDB schema keeps trial numbers in a 32-bit
# INTEGER column (the journal has no such limit, but one sweep must run on any storage).
MAX_STORED_GRID_POINTS = 2**31 - 1


def grid_values(p: Parameter) -> Sequence[Any]:
    """The distinct values a grid takes for one parameter, in W&B's order (``int_uniform`` as
    a lazy range: it may be huge)."""
    if p.distribution == "constant":
        return [p.value]
    if p.distribution == "categorical":
        return _distinct(p.values)
    if p.distribution == "int_uniform":
        return range(int(p.min), int(p.max) + 1)  # type: ignore[arg-type]
    if p.distribution == "q_uniform":
        return _QRange(float(p.min), float(p.q), _value_count(p))  # type: ignore[arg-type]
    raise ValueError(
        f"{p.name}: {p.distribution} cannot be enumerated by a grid "
        f"({', '.join(GRID_DISTRIBUTIONS)})"
    )


class _QRange(Sequence[float]):
    """``numpy.arange(min, max, q)`` (max excluded), element by element and bit for bit as numpy
    computes it (``min + i*delta`` with ``delta = (min + q) - min``), without building it."""

    def __init__(self, start: float, step: float, size: int):
        self.start, self.step, self.size = start, (start + step) - start, size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.size))]
        if not -self.size <= i < self.size:
            raise IndexError(i)
        return self.start + (i % self.size) * self.step


def _value_count(p: Parameter) -> int:
    """How many distinct values :func:`grid_values` gives, without building them."""
    if p.distribution == "int_uniform":
        return max(0, int(p.max) - int(p.min) + 1)  # type: ignore[arg-type]
    if p.distribution == "q_uniform":
        return max(0, math.ceil((p.max - p.min) / p.q))  # type: ignore[operator]
    return len(grid_values(p))


def normalise(value: Any) -> Any:
    """An integer-valued float as an int (W&B's grid de-duplication rule, top level only)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _key(value: Any) -> str:
    value = normalise(value)
    if value is None or type(value) in (int, str, bool, float):
        return json.dumps(value)  # the default encoder: a scalar has no keys to sort
    return json.dumps(value, sort_keys=True, default=str)


def _distinct(values: Sequence[Any]) -> list[Any]:
    seen: set[str] = set()
    out = []
    for v in values:
        key = _key(v)
        if key not in seen:
            seen.add(key)
            out.append(v)
    return out


def column_distribution(p: Parameter) -> BaseDistribution | None:
    """The Optuna distribution a grid column is recorded under, so that Optuna's own tools
    (optuna-dashboard, ``study.trials_dataframe()``) show a grid trial's W&B values; None for a
    constant or for values Optuna cannot store as themselves (lists, maps, ``1`` with ``True``)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if p.distribution == "int_uniform":
        return IntDistribution(int(p.min), int(p.max))  # type: ignore[arg-type]
    if p.distribution == "q_uniform" and _value_count(p) > 0:
        return FloatDistribution(float(p.min), float(p.max))  # type: ignore[arg-type]
    if p.distribution == "categorical":
        values = grid_values(p)
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        if values and len(numbers) == len(values) and all(math.isfinite(v) for v in numbers):
            # a range, not the list: every agent replays every trial's params, and Optuna
            # compares a categorical's whole list each time (an 800-value column was ~12 ms of
            # each trial, times the agents); Optuna's tools still show the values themselves
            if all(isinstance(v, int) for v in numbers):
                return IntDistribution(int(min(numbers)), int(max(numbers)))
            return FloatDistribution(float(min(numbers)), float(max(numbers)))
        primitive = all(isinstance(v, str | int | float | bool | type(None)) for v in values)
        if primitive and len(set(values)) == len(values):  # True == 1: index() would mix them
            return CategoricalDistribution(tuple(values))
    return None


def grid_size(spec: SweepSpec) -> int:
    """The number of distinct points of the full grid (before ``run_cap``)."""
    return math.prod(_value_count(p) for p in spec.parameters)


def planned_runs(spec: SweepSpec) -> int:
    """How many runs the grid sweep makes: its size, capped by ``run_cap``."""
    size = grid_size(spec)
    return min(size, spec.run_cap) if spec.run_cap is not None else size


def grid_points(spec: SweepSpec, limit: int | None = None) -> list[dict[str, Any]]:
    """Every distinct grid point in W&B's order, capped at ``run_cap``.

    More than ``limit`` points to run is a :class:`SpecError`, said before any is built: every
    point is queued up front (that is what makes grids exactly-once), and a grid that large is
    better searched with ``method: random`` and a ``run_cap``.
    """
    planned = check_grid_size(spec, limit)
    names = [p.name for p in spec.parameters]
    columns = [grid_values(p) for p in spec.parameters]
    return [dict(zip(names, _nth(columns, i), strict=True)) for i in range(planned)]


def check_grid_size(spec: SweepSpec, limit: int | None) -> int:
    """The runs a grid sweep plans, or :class:`SpecError` when that is more than ``limit``."""
    planned = planned_runs(spec)
    if limit is not None and planned > limit:
        sizes = " × ".join(f"{p.name} {_value_count(p):,}" for p in spec.parameters)
        raise SpecError(
            spec.source,
            [("parameters", f"the grid has {planned:,} points ({sizes}); at most {limit:,}")],
            hint="add run_cap: N (the first N points run), narrow the ranges, or use "
            "method: random with a run_cap",
        )
    return planned


def _nth(columns: list[Sequence[Any]], index: int) -> list[Any]:
    """The ``index``-th point of ``itertools.product(*columns)`` (the last column varies
    fastest), without materialising the columns as product() would."""
    values = []
    for column in reversed(columns):
        index, digit = divmod(index, len(column))
        values.append(column[digit])
    return values[::-1]


class GridMethod(Method):
    """``method: grid``: every point queued at create time (that is what makes a grid
    exactly-once), capped by ``run_cap``; the sweep finishes when its last point does."""

    name = "grid"
    samples_on_claim = False
    exhausted_reason = "grid complete"
    finishes_when_drained = True

    @classmethod
    def spec_problems(
        cls, parameters: list[Parameter], metric: Metric | None, data: dict, problems: Problems
    ) -> None:
        from expctl.sweeps.spec.problems import param_path

        for p in parameters:
            if p.distribution not in GRID_DISTRIBUTIONS:
                problems.add(
                    param_path(p.name, data),
                    f"distribution {p.distribution!r} cannot be used with method: grid "
                    f"(grid takes {', '.join(GRID_DISTRIBUTIONS)}; "
                    "use values: [...] or method: random)",
                )

    def check_size(self) -> None:
        check_grid_size(self.spec, MAX_STORED_GRID_POINTS)

    def planned(self) -> int:
        return self._planned

    @functools.cached_property
    def _planned(self) -> int:  # asked on every claim of a grid claimed by index
        return check_grid_size(self.spec, MAX_STORED_GRID_POINTS)

    def size(self) -> int:
        return grid_size(self.spec)

    @property
    def claims_by_index(self) -> bool:
        """Too large to queue at create: each claim takes the next index instead."""
        return self.planned() > QUEUED_GRID_POINTS

    def points_to_enqueue(self) -> list[dict[str, Any]]:
        if self.claims_by_index:
            return []
        return grid_points(self.spec, limit=QUEUED_GRID_POINTS)

    def queued_trial(self, point: dict[str, Any]) -> optuna.trial.FrozenTrial:
        """With the point's Optuna params already: a claim then writes two records, not three,
        and every agent replays one record fewer per trial (a fifth of a trial's records)."""
        trial = super().queued_trial(point)
        params = self.optuna_params(point)
        trial.params = {
            name: dist.to_external_repr(internal) for name, (internal, dist) in params.items()
        }
        trial.distributions = {name: dist for name, (_, dist) in params.items()}
        return trial

    def point(self, index: int) -> dict[str, Any] | None:
        """The ``index``-th point in W&B's order, or None past the planned runs."""
        if not 0 <= index < self.planned():
            return None
        return dict(zip(self._names, _nth(self._values, index), strict=True))

    @functools.cached_property
    def _names(self) -> list[str]:
        return [p.name for p in self.spec.parameters]

    @functools.cached_property
    def _values(self) -> list[Sequence[Any]]:
        return [grid_values(p) for p in self.spec.parameters]

    def make_sampler(self, seed: int | None = None) -> optuna.samplers.BaseSampler:
        """Never asked for a point (every trial is queued), as random would be."""
        import optuna

        return optuna.samplers.RandomSampler(seed=seed)

    def trial_values(
        self, trial: optuna.Trial, queued: dict[str, Any] | None, storage: Any
    ) -> dict[str, Any]:
        """The queued point, recorded as the trial's Optuna params too (what Optuna's tools
        show)."""
        point = dict(queued or {})
        self.record_params(trial._trial_id, trial.params, point, storage)
        return point

    def optuna_params(self, point: dict[str, Any]) -> dict[str, tuple[float, BaseDistribution]]:
        """The point's values as Optuna params (internal value, distribution), for the columns
        that have one; a value that is not one of its column's (a point queued by hand) has
        none."""
        params = {}
        for name, dist in self._columns:
            if name not in point:
                continue
            try:
                internal = dist.to_internal_repr(point[name])
            except ValueError:
                continue
            if dist._contains(internal):
                params[name] = (internal, dist)
        return params

    @functools.cached_property
    def _columns(self) -> list[tuple[str, BaseDistribution]]:
        """Each grid column's Optuna distribution, built once (a column's values are checked
        for duplicates: per trial, that was a quarter of a 200-point grid's bookkeeping)."""
        columns = ((p.name, column_distribution(p)) for p in self.spec.parameters)
        return [(name, dist) for name, dist in columns if dist is not None]
