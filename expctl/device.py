"""Which device, which precision and how many CPU threads a run uses.

The decisions are pure functions of what the machine has (:class:`Accelerators`), so they are
unit-tested without a GPU; :func:`resolve_device` and :func:`resolve_precision` ask torch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from expctl.errors import ConfigError

DEVICE_KEY = "trainer.device"
PRECISION_KEY = "trainer.precision"
THREADS_KEY = "trainer.num_threads"

_PRECISION_ALIASES = {
    "32": "32",
    "32-true": "32",
    "fp32": "32",
    "bf16": "bf16",
    "bf16-mixed": "bf16",
    "16": "16",
    "16-mixed": "16",
    "fp16": "16",
}


@dataclass(frozen=True)
class Accelerators:
    """What this machine offers: CUDA devices (by name) and whether MPS works."""

    cuda_names: tuple[str, ...] = ()
    mps: bool = False
    cuda_bf16: bool = False

    def listing(self) -> str:
        names = [f"cuda:{i} ({n})" for i, n in enumerate(self.cuda_names)]
        return ", ".join([*names, *(["mps"] if self.mps else []), "cpu"])


@dataclass(frozen=True)
class DeviceInfo:
    """The resolved device: ``name`` is what torch takes (``cuda:0``, ``mps``, ``cpu``)."""

    type: str
    name: str
    description: str

    def torch_device(self) -> Any:
        import torch

        return torch.device(self.name)


@dataclass(frozen=True)
class Precision:
    """``name`` is 32, bf16 or 16; autocast runs when ``autocast_dtype`` is set."""

    name: str
    autocast_dtype: str | None  # "bfloat16" | "float16" | None
    grad_scaler: bool


def detect_accelerators() -> Accelerators:
    import torch

    names: tuple[str, ...] = ()
    bf16 = False
    if torch.cuda.is_available():
        names = tuple(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        bf16 = bool(torch.cuda.is_bf16_supported())
    mps_backend = getattr(torch.backends, "mps", None)
    mps = bool(mps_backend is not None and mps_backend.is_available())
    return Accelerators(cuda_names=names, mps=mps, cuda_bf16=bf16)


def choose_device(requested: Any, available: Accelerators) -> DeviceInfo:
    """``auto`` → cuda:0, then mps, then cpu; an explicit device must exist (exit 2 if not)."""
    spec = str(requested if requested is not None else "auto").strip().lower()
    if spec == "auto":
        if available.cuda_names:
            return _cuda(0, available)
        return _mps() if available.mps else _cpu()
    if spec == "cpu":
        return _cpu()
    if spec == "mps":
        if available.mps:
            return _mps()
        raise _absent(spec, available)
    if spec == "cuda" or spec.startswith("cuda:"):
        index_text = spec.partition(":")[2] or "0"
        if not index_text.isdigit():
            raise ConfigError(
                f"cannot parse device {requested!r}",
                hint="use auto, cpu, mps, cuda or cuda:N",
                where=DEVICE_KEY,
            )
        index = int(index_text)
        if index < len(available.cuda_names):
            return _cuda(index, available)
        raise _absent(spec, available)
    raise ConfigError(
        f"unknown device {requested!r}",
        hint=f"use auto, cpu, mps, cuda or cuda:N; this machine has: {available.listing()}",
        where=DEVICE_KEY,
    )


def resolve_device(requested: Any = "auto", local_rank: int | None = None) -> DeviceInfo:
    """This process's device; ``local_rank`` under torchrun (see :func:`choose_rank_device`)."""
    if local_rank is None:
        return choose_device(requested, detect_accelerators())
    return choose_rank_device(requested, detect_accelerators(), local_rank)


def choose_rank_device(requested: Any, available: Accelerators, local_rank: int) -> DeviceInfo:
    """Under torchrun each process owns one device: ``cuda:LOCAL_RANK`` (or the CPU).

    ``auto`` and ``cuda`` mean ``cuda:LOCAL_RANK``; a fixed ``cuda:N`` would put every process on
    one GPU, and MPS has no multi-process backend, so both are errors.
    """
    spec = str(requested if requested is not None else "auto").strip().lower()
    if spec == "cpu" or (spec == "auto" and not available.cuda_names):
        return _cpu()
    if spec in ("auto", "cuda"):
        if local_rank < len(available.cuda_names):
            return _cuda(local_rank, available)
        raise ConfigError(
            f"process with LOCAL_RANK={local_rank} has no GPU: this machine has "
            f"{len(available.cuda_names)}",
            hint="start at most one process per GPU (torchrun --nproc-per-node, trainer.devices)",
            where=DEVICE_KEY,
        )
    if spec == "mps" or spec.startswith("cuda:"):
        raise ConfigError(
            f"trainer.device={spec} cannot be used by several processes",
            hint="use trainer.device=auto or cuda (each process takes cuda:LOCAL_RANK) or cpu",
            where=DEVICE_KEY,
        )
    return choose_device(requested, available)  # unknown spelling: the usual error


def choose_precision(requested: Any, device: DeviceInfo, available: Accelerators) -> Precision:
    """``auto`` = bf16 autocast on CUDA devices that support it, fp32 everywhere else."""
    spec = str(requested if requested is not None else "auto").strip().lower()
    if spec == "auto":
        if device.type == "cuda" and available.cuda_bf16:
            return Precision("bf16", "bfloat16", grad_scaler=False)
        return Precision("32", None, grad_scaler=False)
    name = _PRECISION_ALIASES.get(spec)
    if name is None:
        raise ConfigError(
            f"unknown precision {requested!r}",
            hint="use auto, 32, bf16 or 16",
            where=PRECISION_KEY,
        )
    if name == "32":
        return Precision("32", None, grad_scaler=False)
    if name == "bf16":
        if device.type == "cuda" and not available.cuda_bf16:
            raise ConfigError(
                f"{device.description} does not support bf16",
                hint="use trainer.precision=16 (fp16 with a gradient scaler) or 32",
                where=PRECISION_KEY,
            )
        return Precision("bf16", "bfloat16", grad_scaler=False)
    # fp16 needs a GradScaler to keep small gradients from underflowing; only CUDA has a
    # mature one, and CPU fp16 autocast is slower than fp32.
    if device.type != "cuda":
        raise ConfigError(
            f"precision 16 needs a CUDA device, this run uses {device.name}",
            hint="use trainer.precision=bf16 or 32 here",
            where=PRECISION_KEY,
        )
    return Precision("16", "float16", grad_scaler=True)


def resolve_precision(requested: Any, device: DeviceInfo) -> Precision:
    return choose_precision(requested, device, detect_accelerators())


def allotted_cpus(env: Mapping[str, str] | None = None, affinity: set[int] | None = None) -> int:
    """CPUs this process may use: SLURM's allotment, else the affinity mask, else the count."""
    env = os.environ if env is None else env
    slurm = env.get("SLURM_CPUS_PER_TASK", "").strip()
    if slurm.isdigit() and int(slurm) > 0:
        return int(slurm)
    if affinity is None and hasattr(os, "sched_getaffinity"):
        affinity = os.sched_getaffinity(0)
    if affinity:
        return len(affinity)
    return os.cpu_count() or 1


def cpu_set() -> set[int]:
    """The CPUs this process may run on (all of them where affinity is unknown)."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def choose_num_threads(
    setting: Any,
    env: Mapping[str, str] | None = None,
    affinity: set[int] | None = None,
    processes: int = 1,
) -> int:
    """``auto`` → the allotted CPUs (more threads than CPUs thrash: 0.05× measured at 2-on-2),
    shared by the ``processes`` training processes on this node (torchrun's LOCAL_WORLD_SIZE)."""
    if setting is None or str(setting).strip().lower() == "auto":
        return max(1, allotted_cpus(env, affinity) // max(1, processes))
    try:
        n = int(setting)
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise ConfigError(
            f"num_threads must be a positive integer or auto, got {setting!r}",
            hint="use trainer.num_threads=auto (CPUs allotted to this process) or e.g. 4",
            where=THREADS_KEY,
        )
    return n


def _cpu() -> DeviceInfo:
    return DeviceInfo("cpu", "cpu", "cpu")


def _mps() -> DeviceInfo:
    return DeviceInfo("mps", "mps", "mps (Apple GPU)")


def _cuda(index: int, available: Accelerators) -> DeviceInfo:
    name = f"cuda:{index}"
    return DeviceInfo("cuda", name, f"{name} ({available.cuda_names[index]})")


def _absent(spec: str, available: Accelerators) -> ConfigError:
    return ConfigError(
        f"device {spec!r} is not available on this machine",
        hint=f"available: {available.listing()}; use trainer.device=auto to pick the best one",
        where=DEVICE_KEY,
    )
