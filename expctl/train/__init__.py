"""The trainer: ``train(cfg) -> RunResult`` for the CLI, notebooks and the sweep agent.

Importing this package imports torch; the CLI imports it inside the command function only.
"""

from __future__ import annotations

from expctl.train.loop import EpochCallback, RunResult, train
from expctl.train.progress import ProgressSink, StartInfo, default_progress
from expctl.train.state import request_stop

__all__ = [
    "EpochCallback",
    "ProgressSink",
    "RunResult",
    "StartInfo",
    "default_progress",
    "request_stop",
    "train",
]
