"""Datasets named by the example configs (``data._target_``): real digits and a synthetic task.

Each returns a :class:`TensorData`: the whole train/val split as tensors plus the batch size.
Small datasets are moved to the device once and batched by indexing (see
:mod:`expctl.train.batches`), so there is no per-step host→device copy. A user ``_target_`` may
instead return a ``(train, val)`` pair of torch Datasets (or DataLoaders); the trainer then batches
them with a DataLoader.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import torch

from expctl.errors import ConfigError

DIGITS_FEATURES = 64
DIGITS_CLASSES = 10
DIGITS_MAX_PIXEL = 16.0  # the UCI digits are 8x8 images with values 0..16


@dataclass
class TensorData:
    """A train/val split held as tensors (features float32, labels int64)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    batch_size: int = 64
    num_workers: int = 0

    @property
    def nbytes(self) -> int:
        tensors = (self.train_x, self.train_y, self.val_x, self.val_y)
        return sum(t.element_size() * t.nelement() for t in tensors)


@dataclass
class DatasetPair:
    """User datasets (map-style ``torch.utils.data.Dataset`` or ready DataLoaders)."""

    train: Any
    val: Any
    batch_size: int = 64
    num_workers: int = 0


def digits(
    val_fraction: float = 0.2,
    batch_size: int = 64,
    num_workers: int = 0,
    num_features: int = DIGITS_FEATURES,
    num_classes: int = DIGITS_CLASSES,
    seed: int = 0,
) -> TensorData:
    """The 1797 UCI handwritten digits shipped with expctl, scaled to [0, 1].

    ``num_features``/``num_classes`` are in the config so the model can interpolate them; they
    must match the data. The split has its own ``seed`` (not the run's) so every run of a sweep
    is validated on the same images.
    """
    _check_fixed("data.num_features", num_features, DIGITS_FEATURES)
    _check_fixed("data.num_classes", num_classes, DIGITS_CLASSES)
    with resources.files("expctl.data").joinpath("digits.npz").open("rb") as fh:
        archive = np.load(fh)
        images = archive["images"].astype(np.float32) / DIGITS_MAX_PIXEL
        labels = archive["labels"].astype(np.int64)
    x = torch.from_numpy(images.reshape(len(images), -1))
    y = torch.from_numpy(labels)
    return _split(x, y, val_fraction, seed, batch_size, num_workers)


def synthetic(
    num_samples: int = 2048,
    val_fraction: float = 0.2,
    batch_size: int = 64,
    num_workers: int = 0,
    num_features: int = 64,
    num_classes: int = 10,
    noise: float = 0.1,
    seed: int = 0,
) -> TensorData:
    """Gaussian inputs labelled by a random linear teacher (+ noise): learnable, any size."""
    if num_samples < 2 or num_features < 1 or num_classes < 2:
        raise ConfigError(
            "synthetic data needs num_samples >= 2, num_features >= 1, num_classes >= 2",
            hint="e.g. data.num_samples=2048 data.num_features=64 data.num_classes=10",
            where="data",
        )
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(num_samples, num_features, generator=gen)
    teacher = torch.randn(num_features, num_classes, generator=gen)
    logits = x @ teacher + noise * torch.randn(num_samples, num_classes, generator=gen)
    y = logits.argmax(dim=1)
    return _split(x, y, val_fraction, seed, batch_size, num_workers)


def _split(
    x: torch.Tensor,
    y: torch.Tensor,
    val_fraction: float,
    seed: int,
    batch_size: int,
    num_workers: int,
) -> TensorData:
    if not 0.0 < float(val_fraction) < 1.0:
        raise ConfigError(
            f"val_fraction must be between 0 and 1, got {val_fraction!r}",
            hint="e.g. data.val_fraction=0.2",
            where="data.val_fraction",
        )
    if int(batch_size) < 1:
        raise ConfigError(
            f"batch_size must be a positive integer, got {batch_size!r}",
            hint="e.g. data.batch_size=64",
            where="data.batch_size",
        )
    n = len(x)
    n_val = min(max(1, round(n * float(val_fraction))), n - 1)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = order[:n_val], order[n_val:]
    return TensorData(
        train_x=x[train_idx].contiguous(),
        train_y=y[train_idx].contiguous(),
        val_x=x[val_idx].contiguous(),
        val_y=y[val_idx].contiguous(),
        batch_size=int(batch_size),
        num_workers=int(num_workers),
    )


def _check_fixed(key: str, given: int, actual: int) -> None:
    if int(given) != actual:
        raise ConfigError(
            f"the digits dataset has {actual} here, the config says {given}",
            hint=f"remove the override of {key} (it is {actual} for digits)",
            where=key,
        )
