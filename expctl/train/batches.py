"""Turning a dataset into per-epoch batches on the training device.

Two paths, one ordering:

* :class:`ResidentBatches` — the dataset fits comfortably on the device: it is copied there once,
  shuffled with one gather per epoch and cut into batches by slicing (views: no per-step copy).
  On CPU this matches a hand-written loop; a DataLoader over the same tensors measured ~30% slower.
* :class:`LoaderBatches` — large tensors and user datasets go through a DataLoader with pinned
  memory and ``non_blocking`` copies so the host→device transfer overlaps compute.

Either way the epoch's order is :func:`epoch_permutation` (a pure function of seed and epoch),
so a resumed run replays the interrupted epoch exactly by skipping the batches already done.

Under DDP (``rank``/``world_size``) each rank takes every ``world_size``-th index of that same
permutation and cuts it into ``batch_size / world_size`` pieces: global batch ``i`` is exactly the
single-process batch ``i`` and every rank yields ``batches_per_epoch`` batches (an epoch's last
shard may be empty; the loop still runs it so DDP's gradient all-reduce has every rank). A user's
own DataLoader is rebuilt around a DistributedSampler (``set_epoch`` each epoch) instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler

from expctl.errors import ConfigError
from expctl.train.data import DatasetPair, TensorData
from expctl.train.distributed import local_batch_size, shard_scale

# Datasets up to this size live on the device for the whole run (digits: 0.5 MB).
MAX_RESIDENT_BYTES = 1 << 30

Batch = tuple[torch.Tensor, torch.Tensor]


class Batches(Protocol):
    num_train_samples: int
    batches_per_epoch: int
    last_batch_scale: float | None  # loss factor of this rank's last shard (None: 1)

    def train_epoch(self, epoch: int, start_batch: int = 0) -> Iterator[Batch]: ...

    def val_batches(self) -> Iterator[Batch]: ...


def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The training order of ``epoch``: reproducible without saving any generator state."""
    generator = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(epoch)) % (1 << 62))
    return torch.randperm(n, generator=generator)


def make_batches(
    data: TensorData | DatasetPair,
    device: torch.device,
    seed: int,
    max_resident_bytes: int | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> Batches:
    limit = MAX_RESIDENT_BYTES if max_resident_bytes is None else max_resident_bytes
    if isinstance(data, TensorData) and data.nbytes <= limit:
        return ResidentBatches(data, device, seed, rank, world_size)
    return LoaderBatches(data, device, seed, rank, world_size)


def _last_batch_scale(n: int, batch_size: int, rank: int, world_size: int) -> float | None:
    if world_size == 1:
        return None
    scale = shard_scale(n - (-(-n // batch_size) - 1) * batch_size, world_size, rank)
    return None if scale == 1.0 else scale


def _device_dtype(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    # MPS has no float64: bring doubles down to float32 before they reach the device.
    if device.type == "mps" and t.dtype == torch.float64:
        return t.float()
    return t


class ResidentBatches:
    def __init__(
        self, data: TensorData, device: torch.device, seed: int, rank: int = 0, world_size: int = 1
    ):
        self.device = device
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self.batch_size = local_batch_size(data.batch_size, world_size)  # this rank's share
        self.train_x = _device_dtype(data.train_x, device).to(device)
        self.train_y = data.train_y.to(device)
        self.val_x = _device_dtype(data.val_x, device).to(device)
        self.val_y = data.val_y.to(device)
        self.num_train_samples = len(self.train_x)
        self.batches_per_epoch = -(-self.num_train_samples // data.batch_size)
        self.last_batch_scale = _last_batch_scale(
            self.num_train_samples, data.batch_size, rank, world_size
        )
        if world_size > 1:  # validation is sharded too (the loop sums it over ranks)
            self.val_x = self.val_x[rank::world_size]
            self.val_y = self.val_y[rank::world_size]

    def train_epoch(self, epoch: int, start_batch: int = 0) -> Iterator[Batch]:
        perm = epoch_permutation(self.seed, epoch, self.num_train_samples)
        if self.world_size > 1:
            perm = perm[self.rank :: self.world_size]
        perm = perm.to(self.device)
        xs, ys = self.train_x[perm], self.train_y[perm]
        bs = self.batch_size
        for start in range(start_batch * bs, self.batches_per_epoch * bs, bs):
            yield xs[start : start + bs], ys[start : start + bs]

    def val_batches(self) -> Iterator[Batch]:
        bs = self.batch_size
        for start in range(0, len(self.val_x), bs):
            yield self.val_x[start : start + bs], self.val_y[start : start + bs]


class _IndexedTensors(Dataset):
    """Tensors indexed by a whole batch of indices at once (one gather, no per-item collate)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, indices: Any) -> Batch:
        return self.x[indices], self.y[indices]


class LoaderBatches:
    def __init__(
        self,
        data: TensorData | DatasetPair,
        device: torch.device,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.device = device
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self.global_batch_size = data.batch_size
        self.batch_size = local_batch_size(data.batch_size, world_size)
        self.num_workers = data.num_workers
        self.pin_memory = device.type == "cuda"
        if isinstance(data, TensorData):
            self.train: Any = _IndexedTensors(data.train_x, data.train_y)
            self.val: Any = _IndexedTensors(data.val_x, data.val_y)
            self.indexed = True
        else:
            self.train, self.val = data.train, data.val
            self.indexed = False
        self.user_loaders = isinstance(self.train, DataLoader)
        self.num_train_samples = _length(self.train, "train")
        self.last_batch_scale: float | None = None
        if self.user_loaders:
            if world_size > 1:
                self.train = self._distributed_loader(self.train, shuffle=True)
                if isinstance(self.val, DataLoader):
                    self.val = self._distributed_loader(self.val, shuffle=False)
            self.batches_per_epoch = len(self.train)
        else:
            self.batches_per_epoch = -(-self.num_train_samples // self.global_batch_size)
            self.last_batch_scale = _last_batch_scale(
                self.num_train_samples, self.global_batch_size, rank, world_size
            )

    def _distributed_loader(self, loader: DataLoader, *, shuffle: bool) -> DataLoader:
        """The user's DataLoader rebuilt around a DistributedSampler (its order is theirs, so
        the global batch is not the single-process one; it pads shards to equal length)."""
        sampler: DistributedSampler = DistributedSampler(
            loader.dataset,
            num_replicas=self.world_size,
            rank=self.rank,
            shuffle=shuffle and isinstance(loader.sampler, RandomSampler),
            seed=self.seed,
        )
        return DataLoader(
            loader.dataset,
            batch_size=max(1, (loader.batch_size or 1) // self.world_size),
            sampler=sampler,
            num_workers=loader.num_workers,
            collate_fn=loader.collate_fn,
            pin_memory=loader.pin_memory,
            drop_last=loader.drop_last,
        )

    def train_epoch(self, epoch: int, start_batch: int = 0) -> Iterator[Batch]:
        if self.user_loaders:
            if isinstance(self.train.sampler, DistributedSampler):
                self.train.sampler.set_epoch(epoch)
            # The user's DataLoader owns the order; replaying it is exact only if it is seeded.
            for i, batch in enumerate(self.train):
                if i >= start_batch:
                    yield self._to_device(batch)
            return
        order = epoch_permutation(self.seed, epoch, self.num_train_samples)
        if self.world_size > 1:
            order = order[self.rank :: self.world_size]
        bs = self.batch_size
        chunks = [order[i * bs : (i + 1) * bs] for i in range(start_batch, self.batches_per_epoch)]
        yield from self._iterate(self.train, chunks)

    def val_batches(self) -> Iterator[Batch]:
        if isinstance(self.val, DataLoader):
            for batch in self.val:
                yield self._to_device(batch)
            return
        indices = torch.arange(_length(self.val, "val"))[self.rank :: self.world_size]
        yield from self._iterate(self.val, list(indices.split(self.batch_size)))

    def _iterate(self, dataset: Any, chunks: list[torch.Tensor]) -> Iterator[Batch]:
        empty = [i for i, c in enumerate(chunks) if len(c) == 0]  # DDP: a rank's empty last shard
        chunks = [c for c in chunks if len(c)]
        previous: Batch | None = None
        for batch in self._load(dataset, chunks):
            previous = batch
            yield batch
        if empty and previous is not None:
            yield previous[0][:0], previous[1][:0]

    def _load(self, dataset: Any, chunks: list[torch.Tensor]) -> Iterator[Batch]:
        workers, pin = self.num_workers, self.pin_memory
        loader: DataLoader
        if self.indexed:
            loader = DataLoader(
                dataset, sampler=chunks, batch_size=None, num_workers=workers, pin_memory=pin
            )
        else:
            batches = [c.tolist() for c in chunks]
            loader = DataLoader(dataset, batch_sampler=batches, num_workers=workers, pin_memory=pin)
        for batch in loader:
            yield self._to_device(batch)

    def _to_device(self, batch: Any) -> Batch:
        if not isinstance(batch, list | tuple) or len(batch) < 2:
            raise ConfigError(
                f"a batch must be an (inputs, targets) pair, got {type(batch).__name__}",
                hint="make the dataset's __getitem__ return (x, y)",
                where="data",
            )
        x, y = batch[0], batch[1]
        x = _device_dtype(x, self.device).to(self.device, non_blocking=self.pin_memory)
        y = y.to(self.device, non_blocking=self.pin_memory)
        return x, y


def _length(dataset: Any, which: str) -> int:
    if isinstance(dataset, DataLoader):
        dataset = dataset.dataset
    try:
        return len(dataset)
    except TypeError:
        raise ConfigError(
            f"the {which} dataset has no length (iterable datasets are not supported)",
            hint="return map-style datasets (with __len__ and __getitem__) from data._target_",
            where="data",
        ) from None
