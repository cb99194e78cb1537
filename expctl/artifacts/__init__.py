"""Versioned artifacts (models, datasets, ...): a local store that works offline, and W&B.

The local store lives in ``.expctl/artifacts`` under the current directory, unless
``$EXPCTL_ARTIFACTS`` or ``--store DIR`` (on every ``expctl artifacts`` command) says otherwise.
Its layout and guarantees are described in :mod:`expctl.artifacts.store`; publishing is in
:mod:`expctl.artifacts.publish`; W&B's registry is reached only through
:mod:`expctl.artifacts.wandb_remote`.

Only the standard library is imported here (``expctl --help`` stays fast).
"""

from __future__ import annotations

from expctl.artifacts.publish import publish, publish_checkpoints, publish_path
from expctl.artifacts.store import (
    ArtifactStore,
    ArtifactVersion,
    FileEntry,
    Ref,
    checkpoint_for_init,
    parse_ref,
    resolve_store_root,
)

__all__ = [
    "ArtifactStore",
    "ArtifactVersion",
    "FileEntry",
    "Ref",
    "checkpoint_for_init",
    "parse_ref",
    "publish",
    "publish_checkpoints",
    "publish_path",
    "resolve_store_root",
]
