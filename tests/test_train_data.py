"""Datasets and batching: the shipped digits, the synthetic task, both batching paths."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from expctl.errors import ConfigError
from expctl.train.batches import (
    LoaderBatches,
    ResidentBatches,
    epoch_permutation,
    make_batches,
)
from expctl.train.data import DatasetPair, TensorData, digits, synthetic

CPU = torch.device("cpu")


def test_digits_is_the_real_dataset_scaled_and_split():
    data = digits(val_fraction=0.2, batch_size=32)
    assert data.train_x.shape == (1438, 64) and data.val_x.shape == (359, 64)  # 20% of 1797
    assert data.train_x.dtype == torch.float32 and data.train_y.dtype == torch.int64
    everything = torch.cat([data.train_x, data.val_x])
    assert everything.min() == 0.0 and everything.max() == 1.0
    labels = torch.cat([data.train_y, data.val_y])
    assert sorted(labels.unique().tolist()) == list(range(10))
    assert data.batch_size == 32


def test_digits_split_depends_only_on_its_own_seed():
    a, b, c = digits(seed=0), digits(seed=0), digits(seed=1)
    assert torch.equal(a.val_x, b.val_x)
    assert not torch.equal(a.val_x, c.val_x)


def test_digits_rejects_shape_overrides_that_do_not_match():
    with pytest.raises(ConfigError) as info:
        digits(num_features=32)
    assert info.value.where == "data.num_features"
    with pytest.raises(ConfigError) as info:
        digits(val_fraction=1.5)
    assert info.value.where == "data.val_fraction"


def test_synthetic_is_deterministic_and_sized():
    a = synthetic(num_samples=500, num_features=8, num_classes=3, seed=3)
    b = synthetic(num_samples=500, num_features=8, num_classes=3, seed=3)
    assert len(a.train_x) + len(a.val_x) == 500
    assert a.train_x.shape[1] == 8
    assert set(a.train_y.unique().tolist()) <= {0, 1, 2}
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.train_y, b.train_y)
    with pytest.raises(ConfigError):
        synthetic(num_samples=1)


def test_epoch_permutation_is_a_pure_function_of_seed_and_epoch():
    assert torch.equal(epoch_permutation(7, 3, 100), epoch_permutation(7, 3, 100))
    assert not torch.equal(epoch_permutation(7, 3, 100), epoch_permutation(7, 4, 100))
    assert not torch.equal(epoch_permutation(7, 3, 100), epoch_permutation(8, 3, 100))
    assert sorted(epoch_permutation(1, 0, 50).tolist()) == list(range(50))


def _small() -> TensorData:
    return synthetic(num_samples=230, num_features=4, num_classes=3, batch_size=16, seed=1)


def _all(batches) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y in batches]


def test_small_tensors_stay_resident_large_ones_use_a_dataloader():
    data = _small()
    assert isinstance(make_batches(data, CPU, seed=0), ResidentBatches)
    assert isinstance(make_batches(data, CPU, seed=0, max_resident_bytes=0), LoaderBatches)


def test_both_paths_give_the_same_batches_in_the_same_order_and_skip_alike():
    data = _small()
    resident = make_batches(data, CPU, seed=5)
    loader = make_batches(data, CPU, seed=5, max_resident_bytes=0)
    assert resident.batches_per_epoch == loader.batches_per_epoch == 12  # ceil(184 / 16)
    for start in (0, 7):
        a = _all(resident.train_epoch(epoch=2, start_batch=start))
        b = _all(loader.train_epoch(epoch=2, start_batch=start))
        assert len(a) == len(b) == 12 - start
        for (xa, ya), (xb, yb) in zip(a, b, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    full = _all(resident.train_epoch(epoch=2))
    assert torch.equal(full[7][0], _all(resident.train_epoch(epoch=2, start_batch=7))[0][0])
    val = _all(resident.val_batches())
    assert sum(len(y) for _, y in val) == len(data.val_y)


def test_an_epoch_covers_every_training_sample_once():
    data = _small()
    seen = torch.cat([x for x, _ in make_batches(data, CPU, seed=0).train_epoch(0)])
    assert seen.shape == data.train_x.shape
    as_rows = lambda t: sorted(map(tuple, t.tolist()))  # noqa: E731
    assert as_rows(seen) == as_rows(data.train_x)


def test_user_map_style_datasets_are_batched_by_a_dataloader():
    x, y = torch.randn(50, 3), torch.randint(0, 2, (50,))
    pair = DatasetPair(TensorDataset(x[:40], y[:40]), TensorDataset(x[40:], y[40:]), 16)
    batches = make_batches(pair, CPU, seed=0)
    train = _all(batches.train_epoch(0))
    assert [len(b[1]) for b in train] == [16, 16, 8]
    order = epoch_permutation(0, 0, 40)
    assert torch.equal(train[0][0], x[:40][order[:16]])
    assert sum(len(b[1]) for b in batches.val_batches()) == 10


def test_a_batch_that_is_not_a_pair_is_a_config_error():
    class Singles(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 4

        def __getitem__(self, i: int) -> torch.Tensor:
            return torch.zeros(2)

    batches = make_batches(DatasetPair(Singles(), Singles(), 2), CPU, seed=0)
    with pytest.raises(ConfigError) as info:
        next(iter(batches.train_epoch(0)))
    assert "(inputs, targets)" in info.value.message
