"""``method: random``: each trial sampled from W&B's exact distributions when an agent asks for
it, ``run_cap`` trials at most (the :class:`~expctl.sweeps.methods.base.Method` defaults)."""

from __future__ import annotations

from expctl.sweeps.methods.base import Method


class RandomMethod(Method):
    name = "random"
