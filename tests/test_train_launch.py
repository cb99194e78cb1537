"""``expctl.train.launch.train_new_run``: the one path from config + overrides to a new run dir and
``train()`` (``expctl run``, multirun and the sweep agent take it), and the launcher's imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from expctl.config import ConfigSource
from expctl.errors import ConfigError, MissingValuesError, RuntimeFailure
from expctl.train.launch import train_new_run

FAST = ("trainer.num_threads=1", "trainer.log_every_n_steps=10", "trainer.epochs=1")


@pytest.fixture(autouse=True)
def no_wandb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")


def source(project: Path, *overrides: str) -> ConfigSource:
    return ConfigSource(project / "configs", "config", (*FAST, *overrides))


def run_dirs(runs: Path) -> list[Path]:
    return sorted(p for p in runs.glob("*/*") if p.is_dir()) if runs.exists() else []


def test_a_new_run_is_named_as_asked_and_records_only_the_users_overrides(project: Path):
    runs = project / "elsewhere"
    seen: list[int] = []

    def on_epoch(epoch: int, metrics: dict[str, float]) -> bool:
        seen.append(epoch)
        return False

    result = train_new_run(
        source(project, "optim.lr=0.01"),
        runs_dir=runs,
        name="trial-7",
        extra_overrides=("artifact.publish=false",),
        callbacks=[on_epoch],
    )
    assert result.status == "completed" and seen == [1]
    assert result.run_dir.parent == (runs / "trial-7").resolve()
    assert result.artifact is None  # the extra override was composed in
    saved = (result.run_dir / "overrides.yaml").read_text()
    assert "optim.lr=0.01" in saved and "artifact.publish" not in saved
    assert json.loads((result.run_dir / "summary.json").read_text())["status"] == "completed"


def test_the_run_dir_resolves_hydra_runtime_values(project: Path):
    result = train_new_run(
        source(project, "artifact.publish=false", "+where=${hydra:runtime.output_dir}"),
        runs_dir=project / "runs",
    )
    config = (result.run_dir / "config.yaml").read_text()
    assert f"where: {result.run_dir}" in config


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        (("optim.lr=???",), MissingValuesError),  # found while composing
        # found resolving into the run dir (composed twice: it refers to the run dir)
        (("+where=${hydra:runtime.output_dir}", "+v=${oc.env:EXPCTL_NO_SUCH_VAR}"), ConfigError),
        (("checkpoint.monitor=val_los",), ConfigError),  # found by train() before any record
    ],
)
def test_a_bad_config_leaves_no_run_dir(project: Path, overrides: tuple[str, ...], error: type):
    runs = project / "runs"
    with pytest.raises(error) as info:
        train_new_run(source(project, *overrides), runs_dir=runs)
    assert getattr(info.value, "run_dir", "unset") is None
    assert getattr(info.value, "result", None) is None
    assert run_dirs(runs) == []


def test_a_failed_run_keeps_its_dir_and_says_which(project: Path):
    runs = project / "runs"
    with pytest.raises(RuntimeFailure) as info:
        train_new_run(source(project, "optim.lr=1e30", "artifact.publish=false"), runs_dir=runs)
    (run_dir,) = run_dirs(runs)
    assert Path(info.value.run_dir).resolve() == run_dir.resolve()  # type: ignore[attr-defined]
    assert info.value.result.status == "failed"  # type: ignore[attr-defined]
    assert info.value.result.run_dir == run_dir.resolve()  # type: ignore[attr-defined]


def test_the_launcher_imports_no_torch():
    """`trainer.devices=N` re-runs the command under torchrun: its process needs no torch."""
    code = (
        "import sys\n"
        "import expctl.train.launch\n"
        "from expctl.train import RunResult\n"
        "print(sorted(m for m in ('torch', 'wandb') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize("value", ["abc", ""])
def test_text_where_a_number_goes_names_the_key_and_value(project: Path, value: str):
    """`learning_rate=abc` reached Adam as lr='abc': Python's message ('<=' not supported
    between 'float' and 'str') named neither the key nor the value."""
    runs = project / "runs"
    with pytest.raises(ConfigError) as info:
        train_new_run(source(project, f"optim.lr={value}"), runs_dir=runs)
    assert f"optim.lr={value!r} is text where a number goes" in str(info.value)
    assert "give a number" in (info.value.hint or "")
    assert run_dirs(runs) == []


def test_text_where_a_number_goes_never_prints_a_secret():
    from expctl.train.build import _text_for_a_number

    detail = "'<=' not supported between instances of 'float' and 'str'"
    arguments = {"lr": "abc", "api_key": "sk-live-123", "n": 1}
    assert (
        _text_for_a_number(detail, "optim", arguments)
        == f"optim.lr='abc' is text where a number goes ({detail})"
    )
    # other str errors are not this one: a name where a callable goes, a None where text goes
    for other in ("'str' object is not callable", "expected str, bytes or os.PathLike object"):
        assert _text_for_a_number(other, "optim", arguments) is None
