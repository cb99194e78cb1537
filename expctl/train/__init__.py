"""The trainer: ``train(cfg) -> RunResult`` for the CLI, notebooks and the sweep agent.

The names below are imported on first use (PEP 562), so importing ``expctl.train.launch`` — the
`trainer.devices=N` launcher, which only re-runs the command under torchrun — does not pay for
torch; ``train`` imports it (``RunResult`` does not).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from expctl.signals import request_stop
    from expctl.train.loop import EpochCallback, train
    from expctl.train.outcome import RunResult
    from expctl.train.progress import ProgressSink, StartInfo, default_progress

_EXPORTS = {
    "EpochCallback": "expctl.train.loop",
    "RunResult": "expctl.train.outcome",
    "train": "expctl.train.loop",
    "ProgressSink": "expctl.train.progress",
    "StartInfo": "expctl.train.progress",
    "default_progress": "expctl.train.progress",
    "request_stop": "expctl.signals",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'expctl.train' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "EpochCallback",
    "ProgressSink",
    "RunResult",
    "StartInfo",
    "default_progress",
    "request_stop",
    "train",
]
