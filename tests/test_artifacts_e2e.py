"""Issue 6's closing scenario, offline: `expctl run` publishes its top-k checkpoints, `artifacts
pull <run>-model:best` returns a verified directory, and `run --init-from` trains from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from expctl.artifacts import ArtifactStore

TINY = ["trainer.epochs=3", "trainer.device=cpu", "checkpoint.top_k=3"]


@pytest.mark.slow
def test_run_publishes_top_k_then_pull_and_init_from(cli, project: Path):
    first = cli("run", *TINY)
    assert first.exit_code == 0, first.stderr
    run_dir = Path(first.stdout.strip().splitlines()[-1])

    version = ArtifactStore().resolve("digits-mlp-model:best")
    assert version.ref == "digits-mlp-model:v0" and set(version.aliases) == {"best", "latest"}
    assert version.type == "model" and len(version.files) == 3  # the 3 best epochs
    assert version.metadata["run_dir"] == str(run_dir)
    assert "config" in version.metadata and version.metadata["best_file"] in {
        f.path for f in version.files
    }

    pulled = cli("artifacts", "pull", "digits-mlp-model:best")
    assert pulled.exit_code == 0, pulled.stderr
    ckpt_dir = Path(pulled.stdout.strip())
    assert ckpt_dir == project / "artifacts" / "digits-mlp-model-v0"
    best = ckpt_dir / version.metadata["best_file"]
    run_files = {p.name: p.read_bytes() for p in run_dir.rglob("*.pt")}
    assert best.read_bytes() == run_files[best.name]

    second = cli("run", *TINY, "--init-from", "digits-mlp-model:best")
    assert second.exit_code == 0, second.stderr
    assert [v.ref for v in ArtifactStore().versions("digits-mlp-model")] == [
        "digits-mlp-model:v0",
        "digits-mlp-model:v1",
    ]


@pytest.mark.slow
def test_init_from_an_unknown_artifact_is_bad_input(cli, project: Path):
    result = cli("run", *TINY, "--init-from", "nothing:best")
    assert result.exit_code == 2
    assert "no artifact named 'nothing'" in result.stderr and "hint:" in result.stderr
