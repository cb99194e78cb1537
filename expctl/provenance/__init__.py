"""A run's provenance, written into its directory when it starts (README, "Provenance").

* ``provenance.json``: git (commit, branch, describe, remote URL without credentials, dirty
  state, changed/untracked counts; "not a git repository" said plainly), the environment
  (Python, host, expctl and key library versions, torch's CUDA/cuDNN and the devices used,
  SLURM job, ``CUDA_VISIBLE_DEVICES``), the command line (secrets redacted), working directory
  and config directory;
* ``diff.patch``: ``git diff HEAD`` of changed tracked files, capped (``max_diff_bytes``);
* ``requirements.txt``: every installed distribution, ``name==version``.

``provenance.{git,diff,packages,environment}=false`` turn parts off. Cheap to import: no torch,
no omegaconf, no importlib.metadata at module level.
"""

from __future__ import annotations

from expctl.provenance.capture import (
    DIFF_FILE,
    PROVENANCE_FILE,
    REQUIREMENTS_FILE,
    Provenance,
    ProvenanceCapture,
    capture_provenance,
    start_capture,
)
from expctl.provenance.git import strip_credentials
from expctl.provenance.settings import ProvenanceSettings

__all__ = [
    "DIFF_FILE",
    "PROVENANCE_FILE",
    "REQUIREMENTS_FILE",
    "Provenance",
    "ProvenanceCapture",
    "ProvenanceSettings",
    "capture_provenance",
    "start_capture",
    "strip_credentials",
]
