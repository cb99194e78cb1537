"""Sweep methods: one :class:`~expctl.sweeps.methods.base.Method` per W&B method (grid, random,
bayes); hyperband is the stopping rule."""
