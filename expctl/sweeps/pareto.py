"""The Pareto front of a multi-objective sweep, and its hypervolume (pure Python, no Optuna).

A trial is on the front when no other trial is at least as good in every objective and better in
one (each objective's goal decides what "better" is). Ties — two trials with equal values — are
both on the front, as in Optuna's ``study.best_trials``.
"""

from __future__ import annotations

from collections.abc import Sequence


def _as_minimised(values: Sequence[float], maximize: Sequence[bool]) -> list[float]:
    return [-v if up else v for v, up in zip(values, maximize, strict=True)]


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """``a`` dominates ``b`` (both minimised): no worse anywhere, better somewhere."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(
        x < y for x, y in zip(a, b, strict=True)
    )


def pareto_front(points: Sequence[Sequence[float]], maximize: Sequence[bool]) -> list[int]:
    """The indices of the non-dominated ``points``, in their order (O(n²): sweeps are small)."""
    flipped = [_as_minimised(p, maximize) for p in points]
    return [
        i
        for i, p in enumerate(flipped)
        if not any(dominates(q, p) for j, q in enumerate(flipped) if j != i)
    ]


def hypervolume_2d(
    points: Sequence[Sequence[float]], reference: Sequence[float], maximize: Sequence[bool]
) -> float:
    """The area dominated by ``points`` (two objectives) up to ``reference``; points that do
    not dominate the reference add nothing."""
    ref = _as_minimised(reference, maximize)
    flipped = [_as_minimised(p, maximize) for p in points]
    inside = sorted((x, y) for x, y in flipped if x < ref[0] and y < ref[1])
    area, best_y = 0.0, ref[1]
    for x, y in inside:  # by the first objective: each point adds the strip below the best so far
        if y < best_y:
            area += (ref[0] - x) * (best_y - y)
            best_y = y
    return area
