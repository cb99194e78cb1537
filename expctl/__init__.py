"""expctl: compose a config, train, track with W&B, and sweep — online or fully offline.

Importing ``expctl`` stays cheap: torch, wandb and optuna are imported only by the functions
that need them (``expctl --help`` must not pay for them).
"""

from __future__ import annotations

# No `import typing` here: this runs before the console script can install its signal handlers
# (expctl.cli.entry), and typing's imports are most of that window.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from expctl.train import RunResult

__version__ = "0.1.0"


def train(cfg: Any, **kwargs: Any) -> RunResult:
    """Train from a composed config; see :func:`expctl.train.loop.train`."""
    from expctl.train import train as _train

    return _train(cfg, **kwargs)


__all__ = ["__version__", "train"]
