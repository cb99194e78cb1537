"""Old home of the W&B tracker, kept importable: ``expctl.tracking`` *is*
:mod:`expctl.trackers.wandb` (the same module object, so patching one patches the other).

New code imports :mod:`expctl.trackers` (the seam and the factory) or its backends.
"""

import sys

from expctl.trackers import wandb as _wandb

sys.modules[__name__] = _wandb
