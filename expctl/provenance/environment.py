"""Where a run ran: interpreter, host, library versions, SLURM job, GPUs; and every installed
distribution (requirements.txt).

Nothing here imports torch: its CUDA/cuDNN versions are read only when the process has already
imported it, and the devices a run actually uses are given by the caller, which chose them.
"""

from __future__ import annotations

import os
import platform
import re
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import expctl

# Versions recorded by name in provenance.json (all distributions are in requirements.txt).
KEY_PACKAGES = ("torch", "hydra-core", "omegaconf", "optuna", "wandb", "numpy")
_SEPARATORS = re.compile(r"[-_.]+")
SLURM_VARIABLES = (
    "SLURM_JOB_ID",
    "SLURM_ARRAY_JOB_ID",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_JOB_NODELIST",
    "SLURM_JOB_NAME",
    "SLURM_PROCID",
)


def environment_facts(
    env: Mapping[str, str], device_info: Mapping[str, Any] | None, packages: dict[str, str]
) -> dict[str, Any]:
    """The ``environment`` section of provenance.json; ``packages`` maps normalized
    distribution names to versions (see :func:`installed_distributions`)."""
    return {
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "expctl": expctl.__version__,
        "packages": {name: packages.get(name) for name in KEY_PACKAGES},
        "torch": torch_facts(packages.get("torch"), device_info),
        "slurm": {name: env[name] for name in SLURM_VARIABLES if env.get(name)},
        "cuda_visible_devices": env.get("CUDA_VISIBLE_DEVICES"),
    }


def torch_facts(version: str | None, device_info: Mapping[str, Any] | None) -> dict[str, Any]:
    facts: dict[str, Any] = {"version": version, "cuda": None, "cudnn": None}
    torch = sys.modules.get("torch")  # importing it here would cost a run seconds
    if torch is not None:
        facts["cuda"] = getattr(getattr(torch, "version", None), "cuda", None)
        try:
            facts["cudnn"] = torch.backends.cudnn.version()
        except Exception as e:  # a broken CUDA install is worth a note, not a failed run
            facts["cudnn"] = f"unknown ({type(e).__name__})"
    facts["devices"] = dict(device_info) if device_info is not None else None
    return facts


def installed_distributions(path: list[str] | None = None) -> dict[str, str]:
    """Every distribution importable from ``path`` (default ``sys.path``): normalized name →
    version, the first on the path winning (as ``import`` and ``importlib.metadata`` do).

    A ``NAME-VERSION.dist-info`` directory says both in its name (the wheel spec), which is read
    without parsing its METADATA; anything else (egg-info, an odd name) asks
    ``importlib.metadata``. Parsing 100 METADATA files holds the GIL for ~40 ms, which a run's
    main thread would feel.
    """
    found: dict[str, str] = {}
    for entry in path if path is not None else sys.path:
        try:
            names = sorted(os.listdir(entry or "."))
        except OSError:
            continue  # a zip, or a directory that does not exist
        for name in names:
            if not name.endswith((".dist-info", ".egg-info")):
                continue
            parsed = _from_dir_name(name) or _from_metadata(Path(entry or ".") / name)
            if parsed is not None and parsed[0] not in found:
                found[parsed[0]] = parsed[1]
    return found


def requirements_text(distributions: Mapping[str, str]) -> str:
    """``name==version`` lines, sorted: what ``pip install -r`` takes."""
    return "".join(f"{name}=={distributions[name]}\n" for name in sorted(distributions))


def normalize(name: str) -> str:
    """PEP 503: ``Hydra_Core`` and ``hydra.core`` are ``hydra-core``."""
    return _SEPARATORS.sub("-", name).lower()


def _from_dir_name(name: str) -> tuple[str, str] | None:
    if not name.endswith(".dist-info"):
        return None
    stem = name[: -len(".dist-info")]
    dist, sep, version = stem.partition("-")
    if not (sep and dist and version) or "-" in version:
        return None  # not NAME-VERSION (an old tool's spelling): ask its METADATA
    return normalize(dist), version


def _from_metadata(path: Path) -> tuple[str, str] | None:
    from importlib.metadata import PathDistribution

    try:
        meta = PathDistribution(path).metadata
        name, version = meta["Name"], meta["Version"]
    except Exception:  # unreadable or half-installed: pip would skip it too
        return None
    if not name or not version:
        return None
    return normalize(name), version
