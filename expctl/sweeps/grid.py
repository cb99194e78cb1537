"""W&B's grid semantics: which points a grid sweep runs, in which order.

* parameters in name order; the product of their value lists (W&B's ``itertools.product``);
* ``int_uniform`` → ``range(min, max + 1)`` (max inclusive), ``q_uniform`` →
  ``numpy.arange(min, max, q)`` (max *excluded*), constants are one value;
* duplicate points are collapsed, comparing values as YAML with integer floats as ints
  (``3e6`` and ``3000000`` are the same point), keeping the first occurrence;
* ``run_cap`` keeps the first ``run_cap`` points.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from expctl.errors import SpecError
from expctl.sweeps.spec import GRID_DISTRIBUTIONS, Parameter, SweepSpec


def grid_values(p: Parameter) -> list[Any]:
    """The values a grid takes for one parameter."""
    if p.distribution == "constant":
        return [p.value]
    if p.distribution == "categorical":
        return list(p.values)
    if p.distribution == "int_uniform":
        return list(range(int(p.min), int(p.max) + 1))  # type: ignore[arg-type]
    if p.distribution == "q_uniform":
        import numpy as np

        return np.arange(p.min, p.max, p.q).tolist()  # type: ignore[arg-type]
    raise ValueError(
        f"{p.name}: {p.distribution} cannot be enumerated by a grid "
        f"({', '.join(GRID_DISTRIBUTIONS)})"
    )


def normalise(value: Any) -> Any:
    """Integer-valued floats become ints, recursively (W&B's grid de-duplication rule)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list | tuple):
        return [normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    return value


def point_key(point: dict[str, Any]) -> str:
    """A canonical string for a grid point (equal for points W&B considers duplicates)."""
    return json.dumps({k: normalise(v) for k, v in point.items()}, sort_keys=True, default=str)


def grid_points(spec: SweepSpec, limit: int | None = None) -> list[dict[str, Any]]:
    """Every distinct grid point in W&B's order, capped at ``run_cap``.

    More than ``limit`` points (after run_cap) is a :class:`SpecError`: every point is enqueued
    up front, and a grid that large is better searched with method: random and a run_cap.
    """
    names = [p.name for p in spec.parameters]
    columns = [grid_values(p) for p in spec.parameters]
    points: list[dict[str, Any]] = []
    seen: set[str] = set()
    for combo in itertools.product(*columns):
        point = dict(zip(names, combo, strict=False))
        key = point_key(point)
        if key in seen:
            continue
        seen.add(key)
        points.append(point)
        if spec.run_cap is not None and len(points) >= spec.run_cap:
            break
        if limit is not None and len(points) > limit:
            raise SpecError(
                spec.source,
                [("parameters", f"the grid has more than {limit} points")],
                hint="add run_cap: N, or use method: random with run_cap",
            )
    return points


def grid_size(spec: SweepSpec) -> int:
    return len(grid_points(spec))
