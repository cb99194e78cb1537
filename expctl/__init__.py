"""expctl: compose a config, train, track with W&B, and sweep — online or fully offline.

Importing ``expctl`` stays cheap: torch, wandb and optuna are imported only by the functions
that need them (``expctl --help`` must not pay for them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from expctl.train import RunResult


def train(cfg: Any, **kwargs: Any) -> RunResult:
    """Train from a composed config; see :func:`expctl.train.loop.train`."""
    from expctl.train import train as _train

    return _train(cfg, **kwargs)


__all__ = ["__version__", "train"]
