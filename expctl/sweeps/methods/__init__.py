"""Sweep methods: one :class:`~expctl.sweeps.methods.base.Method` per W&B method — grid, random,
bayes, custom (a scheduler on Optuna) — that owns its sampler, create-time enqueue, planned
count, run_cap and repeat rules; hyperband is the stopping rule
(:mod:`~expctl.sweeps.methods.hyperband`), not a method.

Adding a method: one module here with a :class:`Method` subclass, listed in :data:`METHODS`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from expctl.sweeps.methods.base import Method
from expctl.sweeps.methods.bayes import BayesMethod
from expctl.sweeps.methods.custom import CustomMethod
from expctl.sweeps.methods.grid import GridMethod
from expctl.sweeps.methods.random import RandomMethod

if TYPE_CHECKING:
    from expctl.errors import Problems
    from expctl.sweeps.spec import SweepSpec

#: every method a sweep file may name, by its ``method:`` value, in the order messages list them
METHODS: dict[str, type[Method]] = {
    m.name: m for m in (GridMethod, RandomMethod, BayesMethod, CustomMethod)
}
#: W&B methods expctl does not run, and why
UNSUPPORTED: dict[str, str] = {}

__all__ = ["METHODS", "Method", "check_method", "method_for"]


def method_for(spec: SweepSpec) -> Method:
    """The :class:`Method` object of a (validated) spec."""
    return METHODS[spec.method](spec)


def check_method(value: Any, problems: Problems) -> str | None:
    """The ``method:`` of a sweep file, or None with the problem added."""
    names = list(METHODS)
    if value is None:
        problems.add("method", f"missing: choose one of {', '.join(names)}")
        return None
    if isinstance(value, str) and value in UNSUPPORTED:
        runs = ", ".join(names[:-1]) + " and " + names[-1]
        problems.add("method", f"method {value!r} {UNSUPPORTED[value]}; expctl runs {runs}")
        return None
    if value not in names:  # (a list or a map is not a method either)
        problems.bad_choice("method", "method", value, tuple(names))
        return None
    return str(value)
