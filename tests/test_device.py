"""Device, precision and thread decisions (pure functions; the real machine checked too)."""

from __future__ import annotations

import pytest

from expctl.device import (
    Accelerators,
    DeviceInfo,
    choose_device,
    choose_num_threads,
    choose_precision,
    resolve_device,
)
from expctl.errors import EXIT_USAGE, ConfigError

CPU_ONLY = Accelerators()
ONE_GPU = Accelerators(cuda_names=("NVIDIA H200",), cuda_bf16=True)
OLD_GPU = Accelerators(cuda_names=("Tesla V100", "Tesla V100"), cuda_bf16=False)
MAC = Accelerators(mps=True)


def test_auto_prefers_cuda_then_mps_then_cpu():
    assert choose_device("auto", ONE_GPU).name == "cuda:0"
    assert choose_device("auto", Accelerators(cuda_names=("A",), mps=True)).name == "cuda:0"
    assert choose_device("auto", MAC).name == "mps"
    assert choose_device("auto", CPU_ONLY).name == "cpu"
    assert choose_device(None, CPU_ONLY).name == "cpu"


def test_cuda_device_description_names_the_gpu():
    device = choose_device("cuda", ONE_GPU)
    assert (device.type, device.name) == ("cuda", "cuda:0")
    assert "NVIDIA H200" in device.description
    assert choose_device("CUDA:1", OLD_GPU).name == "cuda:1"


@pytest.mark.parametrize(
    ("requested", "available", "listed"),
    [
        ("cuda", CPU_ONLY, "cpu"),
        ("cuda:0", MAC, "mps"),
        ("mps", ONE_GPU, "cuda:0 (NVIDIA H200)"),
        ("cuda:2", OLD_GPU, "cuda:1 (Tesla V100)"),
    ],
)
def test_explicit_absent_device_is_a_usage_error_naming_what_exists(requested, available, listed):
    with pytest.raises(ConfigError) as info:
        choose_device(requested, available)
    error = info.value
    assert error.exit_code == EXIT_USAGE
    assert error.where == "trainer.device"
    assert requested.lower() in error.message
    assert listed in error.hint
    assert "cpu" in error.hint


@pytest.mark.parametrize("requested", ["tpu", "cuda:x", "gpu0"])
def test_unparsable_device(requested):
    with pytest.raises(ConfigError) as info:
        choose_device(requested, CPU_ONLY)
    assert info.value.where == "trainer.device"


def test_this_machine_resolves_auto_and_cpu():
    assert resolve_device("cpu").name == "cpu"
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}


def _cuda() -> DeviceInfo:
    return choose_device("cuda", ONE_GPU)


def test_precision_auto_is_bf16_on_capable_cuda_else_fp32():
    auto_gpu = choose_precision("auto", _cuda(), ONE_GPU)
    assert (auto_gpu.name, auto_gpu.autocast_dtype, auto_gpu.grad_scaler) == (
        "bf16",
        "bfloat16",
        False,
    )
    old = choose_device("cuda", OLD_GPU)
    assert choose_precision("auto", old, OLD_GPU).name == "32"
    cpu = choose_device("cpu", CPU_ONLY)
    assert choose_precision("auto", cpu, CPU_ONLY).autocast_dtype is None
    assert choose_precision("auto", choose_device("mps", MAC), MAC).name == "32"


def test_precision_values_and_aliases():
    cpu = choose_device("cpu", CPU_ONLY)
    assert choose_precision(32, cpu, CPU_ONLY).name == "32"
    assert choose_precision("bf16-mixed", cpu, CPU_ONLY).autocast_dtype == "bfloat16"
    fp16 = choose_precision(16, _cuda(), ONE_GPU)
    assert (fp16.autocast_dtype, fp16.grad_scaler) == ("float16", True)


def test_fp16_needs_cuda_and_bf16_needs_support():
    with pytest.raises(ConfigError) as info:
        choose_precision("16", choose_device("cpu", CPU_ONLY), CPU_ONLY)
    assert info.value.where == "trainer.precision"
    assert "bf16" in info.value.hint
    with pytest.raises(ConfigError):
        choose_precision("bf16", choose_device("cuda", OLD_GPU), OLD_GPU)
    with pytest.raises(ConfigError):
        choose_precision("fp8", choose_device("cpu", CPU_ONLY), CPU_ONLY)


def test_num_threads_auto_uses_slurm_allotment_then_affinity():
    assert choose_num_threads("auto", env={"SLURM_CPUS_PER_TASK": "3"}, affinity={0, 1}) == 3
    assert choose_num_threads("auto", env={}, affinity={0, 5, 7}) == 3
    assert choose_num_threads(None, env={"SLURM_CPUS_PER_TASK": ""}, affinity={2}) == 1
    assert choose_num_threads("auto", env={}) >= 1  # the real affinity mask


def test_num_threads_explicit_and_invalid():
    assert choose_num_threads(4, env={"SLURM_CPUS_PER_TASK": "1"}) == 4
    assert choose_num_threads("2", env={}) == 2
    for bad in (0, -1, "many"):
        with pytest.raises(ConfigError) as info:
            choose_num_threads(bad, env={})
        assert info.value.where == "trainer.num_threads"
