"""Where this process trains: its process group, device, precision and intra-op threads.

``trainer.device`` / ``trainer.precision`` / ``trainer.num_threads`` resolve here (expctl.device
does the choosing). Threads are shared: the process counts as a trainer on its CPUs for as long
as it trains (expctl.host_share), and ``num_threads: auto`` gives it its part of them —
with the other torchrun workers on this node and any other trainer on the same CPUs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from expctl import host_share
from expctl.device import (
    DeviceInfo,
    Precision,
    choose_num_threads,
    cpu_set,
    resolve_device,
    resolve_precision,
)
from expctl.train.distributed import Group
from expctl.train.settings import TrainSettings


@dataclass(frozen=True)
class Placement:
    group: Group
    device: DeviceInfo
    precision: Precision
    num_threads: int

    def autocast(self) -> Callable[[], contextlib.AbstractContextManager[Any]]:
        """What each forward pass runs in: torch.autocast at 16 bits, else nothing."""
        if self.precision.autocast_dtype is None:
            return contextlib.nullcontext  # a disabled torch.autocast still costs ~3 µs a step
        dtype = getattr(torch, self.precision.autocast_dtype)
        device_type = self.device.type
        return lambda: torch.autocast(device_type, dtype=dtype)

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """float16 needs its gradients scaled (bf16 and 32 bits do not)."""
        return torch.amp.GradScaler(self.device.type) if self.precision.grad_scaler else None


@contextlib.contextmanager
def placed(settings: TrainSettings, group: Group) -> Iterator[Placement]:
    """This process's placement, registered as a trainer on its CPUs while the block runs."""
    cpus = cpu_set()
    with host_share.registered(cpus):
        env = group.env
        device = resolve_device(settings.device, env.local_rank if group.distributed else None)
        precision = resolve_precision(settings.precision, device)
        # other trainers on these CPUs (sweep agents, another run) get their part of them too
        trainers = max(env.local_world_size, host_share.sharing(cpus))
        num_threads = choose_num_threads(settings.num_threads, processes=trainers)
        yield Placement(group, device, precision, num_threads)


@contextlib.contextmanager
def torch_globals(num_threads: int, deterministic: bool) -> Iterator[None]:
    """Set threads and determinism for the run; restore the caller's values afterwards."""
    threads_before = torch.get_num_threads()
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    cudnn_benchmark_before = torch.backends.cudnn.benchmark
    torch.set_num_threads(num_threads)
    if deterministic:
        # cuBLAS needs this workspace setting for deterministic results (PyTorch docs).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.set_num_threads(threads_before)
        torch.use_deterministic_algorithms(deterministic_before)
        torch.backends.cudnn.benchmark = cudnn_benchmark_before
