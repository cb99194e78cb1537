"""The W&B adapter: `entity/project/name:alias` refs, offline refusal, and the calls it makes.

wandb.Api is replaced by a fake at the adapter's boundary only (no network, ever); logging
files as an artifact uses a real offline wandb run.
"""

from __future__ import annotations

from pathlib import Path

import pytest


class FakeArtifact:
    def __init__(self, calls: list, files: dict[str, bytes]):
        self.calls, self.files = calls, files

    def download(self, root: str | None = None) -> str:
        self.calls.append(("download", root))
        for name, data in self.files.items():
            path = Path(root) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return root


def fake_api(monkeypatch, files: dict[str, bytes] | None = None, fail: Exception | None = None):
    """Replace wandb.Api; returns the list of calls it receives."""
    import wandb

    calls: list = []

    class FakeApi:
        def __init__(self, *args, **kwargs):
            calls.append(("Api",))

        def artifact(self, name: str, type: str | None = None) -> FakeArtifact:
            calls.append(("artifact", name, type))
            if fail:
                raise fail
            return FakeArtifact(calls, files or {"model.pt": b"weights"})

    monkeypatch.setattr(wandb, "Api", FakeApi)
    return calls


@pytest.fixture
def online(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)


def test_pull_from_w_and_b_downloads_into_a_staging_dir_then_renames(
    cli, online, monkeypatch, isolated
):
    calls = fake_api(monkeypatch, {"model.pt": b"w", "sub/cfg.yaml": b"lr: 1"})
    result = cli("artifacts", "pull", "team/proj/digits-model:best", "--type", "model")
    assert result.exit_code == 0, result.stderr
    target = isolated / "artifacts" / "digits-model-best"
    assert result.stdout == f"{target}\n"
    assert calls[:2] == [("Api",), ("artifact", "team/proj/digits-model:best", "model")]
    staged = Path(calls[2][1])
    assert calls[2][0] == "download" and staged.parent == target.parent and staged != target
    assert (target / "model.pt").read_bytes() == b"w"
    assert (target / "sub" / "cfg.yaml").read_bytes() == b"lr: 1"
    assert sorted(p.name for p in target.parent.iterdir()) == ["digits-model-best"]


def test_pull_from_w_and_b_with_root_idempotent_and_force(cli, online, monkeypatch, isolated):
    fake_api(monkeypatch, {"model.pt": b"v1"})
    root = str(isolated / "ckpt")
    assert cli("artifacts", "pull", "proj/m", "--root", root).stdout == f"{root}\n"
    assert cli("artifacts", "pull", "proj/m", "--root", root).exit_code == 0  # same files

    fake_api(monkeypatch, {"model.pt": b"v2"})
    clash = cli("artifacts", "pull", "proj/m", "--root", root)
    assert clash.exit_code == 2 and "--force" in clash.stderr
    assert (Path(root) / "model.pt").read_bytes() == b"v1"
    assert cli("artifacts", "pull", "proj/m", "--root", root, "--force").exit_code == 0
    assert (Path(root) / "model.pt").read_bytes() == b"v2"
    assert [p.name for p in isolated.iterdir() if p.name.startswith(".ckpt")] == []


def test_failed_download_exits_1_and_leaves_nothing(cli, online, monkeypatch, isolated):
    fake_api(monkeypatch, fail=ValueError("artifact 'team/proj/m:best' not found"))
    result = cli("artifacts", "pull", "team/proj/m:best", "--root", str(isolated / "out" / "m"))
    assert result.exit_code == 1
    assert "could not download W&B artifact" in result.stderr and "not found" in result.stderr
    assert not (isolated / "out").exists()


@pytest.mark.parametrize("mode", ["offline", "disabled"])
def test_offline_pull_fails_clearly_without_touching_w_and_b(cli, monkeypatch, mode):
    calls = fake_api(monkeypatch)
    monkeypatch.setenv("WANDB_MODE", mode)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    result = cli("artifacts", "pull", "team/proj/m:best")
    assert result.exit_code == 1
    assert f"WANDB_MODE={mode}" in result.stderr
    assert "need a connection" in result.stderr and "local store" in result.stderr
    assert calls == [] and result.stdout == ""


def test_pull_without_an_api_key_fails_clearly(cli, monkeypatch, isolated):
    calls = fake_api(monkeypatch)
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("NETRC", str(isolated / "no-netrc"))
    result = cli("artifacts", "pull", "team/proj/m:best")
    assert result.exit_code == 1 and "no W&B API key" in result.stderr
    assert calls == []


def test_netrc_login_counts_as_an_api_key(monkeypatch, isolated):
    from expctl.artifacts.wandb_remote import offline_reason

    netrc = isolated / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("NETRC", str(netrc))
    assert offline_reason() is None


@pytest.mark.parametrize("ref", ["team/proj/../m:best", "/abs/m", "a/b/c/d:x", "team/proj/m:../x"])
def test_malformed_w_and_b_refs_are_bad_input(cli, online, monkeypatch, ref):
    calls = fake_api(monkeypatch)
    result = cli("artifacts", "pull", ref)
    assert result.exit_code == 2 and "invalid W&B artifact reference" in result.stderr
    assert calls == []


@pytest.mark.slow
def test_log_files_logs_a_w_and_b_artifact_from_an_offline_run(isolated):
    import wandb

    from expctl.artifacts.wandb_remote import log_files

    ckpt = isolated / "ckpt"
    ckpt.mkdir()
    files = [ckpt / "epoch=1.pt", ckpt / "epoch=2.pt"]
    for i, f in enumerate(files):
        f.write_bytes(bytes([i]) * 100)
    run = wandb.init(mode="offline", project="expctl-test")
    try:
        artifact = log_files(
            run, "digits-mlp-model", files, aliases=["best"], metadata={"best_file": "epoch=2.pt"}
        )
    finally:
        run.finish()
    assert artifact.type == "model" and artifact.metadata == {"best_file": "epoch=2.pt"}
    assert sorted(artifact.manifest.entries) == ["epoch=1.pt", "epoch=2.pt"]
