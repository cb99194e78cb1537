"""The local artifact store as a library: versions, dedup, aliases, pulls, corruption, safety."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from expctl.artifacts import (
    ArtifactStore,
    checkpoint_for_init,
    parse_ref,
    publish,
    publish_checkpoints,
    publish_path,
)
from expctl.artifacts.aliases import set_alias
from expctl.artifacts.pull import links_are_safe
from expctl.artifacts.staging import PULL_MARKER
from expctl.artifacts.store import content_digest, remove_stale_temp, temp_name
from expctl.errors import NotFoundError, RuntimeFailure, UsageError


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


@pytest.fixture
def store(isolated: Path) -> ArtifactStore:
    return ArtifactStore(isolated / "store")


@pytest.fixture
def src(isolated: Path) -> Path:
    """A small directory tree to publish."""
    root = isolated / "src"
    write(root / "weights.pt", os.urandom(3000))
    write(root / "config.yaml", "lr: 0.1\n")
    write(root / "sub" / "notes.txt", "hello\n")
    return root


def blob_of(store: ArtifactStore, ref: str, path: str) -> Path:
    version = store.resolve(ref)
    entry = next(f for f in version.files if f.path == path)
    return store.blob_path(entry.sha256)


# -- location -------------------------------------------------------------------------------------


def test_default_location_is_project_local_and_env_overrides(isolated, monkeypatch):
    assert ArtifactStore().root == isolated / ".expctl" / "artifacts"
    monkeypatch.setenv("EXPCTL_ARTIFACTS", str(isolated / "elsewhere"))
    assert ArtifactStore().root == isolated / "elsewhere"
    assert ArtifactStore(isolated / "explicit").root == isolated / "explicit"


# -- versions and dedup ---------------------------------------------------------------------------


def test_versions_are_numbered_and_identical_content_is_not_a_new_version(store, src):
    v0 = publish_path(src, "data", store_root=store.root)
    again = publish_path(src, "data", store_root=store.root, metadata={"note": "ignored"})
    write(src / "config.yaml", "lr: 0.2\n")
    v1 = publish_path(src, "data", store_root=store.root)

    assert (v0.ref, v0.reused) == ("data:v0", False)
    assert (again.ref, again.reused, again.digest) == ("data:v0", True, v0.digest)
    assert (v1.ref, v1.reused) == ("data:v1", False)
    assert v1.digest != v0.digest
    assert [v.version for v in store.versions("data")] == [0, 1]
    assert store.resolve("data").ref == "data:v1"  # default alias: latest


def test_manifest_records_files_digest_type_and_metadata(store, src):
    meta = {
        "run_dir": "runs/x/1",
        "config": {"lr": 0.1, "wandb": {"api_key": "s3cret"}},
        "metrics": {"val_loss": 0.3, "train_loss": float("nan")},
    }
    version = publish_path(src, "data", type="dataset", metadata=meta, store_root=store.root)
    manifest = json.loads((store.artifacts_dir / "data" / "v0.json").read_text())

    files = {f["path"]: f for f in manifest["files"]}
    assert sorted(files) == ["config.yaml", "sub/notes.txt", "weights.pt"]
    weights = (src / "weights.pt").read_bytes()
    assert files["weights.pt"] == {
        "path": "weights.pt",
        "size": len(weights),
        "sha256": hashlib.sha256(weights).hexdigest(),
    }
    lines = "".join(f"{p}:{files[p]['sha256']}\n" for p in sorted(files))
    assert manifest["digest"] == hashlib.sha256(lines.encode()).hexdigest() == version.digest
    assert manifest["type"] == "dataset" and manifest["created"]
    assert manifest["metadata"]["metrics"] == {"val_loss": 0.3, "train_loss": "nan"}  # strict JSON
    assert manifest["metadata"]["run_dir"] == "runs/x/1" == version.run_dir
    assert manifest["metadata"]["config"]["wandb"]["api_key"] == "********"  # never stored


def test_content_is_stored_once_and_blobs_are_read_only(store, src, isolated):
    publish_path(src, "a", store_root=store.root)
    copy = isolated / "copy"
    write(copy / "renamed.pt", (src / "weights.pt").read_bytes())
    publish_path(copy, "b", store_root=store.root)

    blobs = [p for p in store.blobs_dir.rglob("*") if p.is_file()]
    assert len(blobs) == 3  # weights.pt and renamed.pt share one blob
    assert all(p.stat().st_mode & 0o777 == 0o444 for p in blobs)
    assert not any(store.tmp_dir.iterdir())  # nothing left behind


def test_type_is_fixed_per_name(store, src):
    publish_path(src, "m", type="model", store_root=store.root)
    write(src / "config.yaml", "changed\n")
    assert publish_path(src, "m", store_root=store.root).type == "model"  # inherited
    blobs = sorted(store.blobs_dir.rglob("*"))
    write(src / "config.yaml", "new content\n")
    with pytest.raises(UsageError, match="is of type 'model', not 'dataset'"):
        publish_path(src, "m", type="dataset", store_root=store.root)
    assert sorted(store.blobs_dir.rglob("*")) == blobs  # refused before copying anything


# -- aliases --------------------------------------------------------------------------------------


def test_latest_moves_automatically_other_aliases_only_when_asked(store, src):
    publish_path(src, "m", aliases=["best", "prod"], store_root=store.root)
    write(src / "config.yaml", "v1\n")
    v1 = publish_path(src, "m", store_root=store.root)
    assert v1.aliases == ("latest",)
    assert store.aliases("m") == {"best": 0, "latest": 1, "prod": 0}

    write(src / "config.yaml", "v2\n")
    publish_path(src, "m", aliases=["best"], store_root=store.root)
    assert store.aliases("m") == {"best": 2, "latest": 2, "prod": 0}
    assert store.resolve("m:prod").version == 0 and store.resolve("m:v1").version == 1

    moved = set_alias(store, "m:v1", "prod")
    assert moved.aliases == ("prod",) and store.aliases("m")["prod"] == 1


def test_republishing_identical_content_still_moves_requested_aliases(store, src):
    publish_path(src, "m", store_root=store.root)
    write(src / "config.yaml", "v1\n")
    publish_path(src, "m", store_root=store.root)
    write(src / "config.yaml", "lr: 0.1\n")  # back to v0's content
    again = publish_path(src, "m", aliases=["best"], store_root=store.root)
    assert again.reused and again.version == 0
    assert store.aliases("m") == {"best": 0, "latest": 0}


def test_unknown_name_alias_or_version_lists_what_exists(store, src):
    with pytest.raises(NotFoundError, match="no artifact named 'm'") as empty:
        store.resolve("m")
    assert "empty" in empty.value.hint
    publish_path(src, "model-a", aliases=["best"], store_root=store.root)

    with pytest.raises(NotFoundError) as name:
        store.resolve("model-b")
    assert "did you mean model-a" in name.value.hint
    with pytest.raises(NotFoundError, match="no alias 'prod'") as alias:
        store.resolve("model-a:prod")
    assert "best=v0" in alias.value.hint and "latest=v0" in alias.value.hint
    with pytest.raises(NotFoundError, match="no version 'v7'") as version:
        store.resolve("model-a:v7")
    assert version.value.exit_code == 2 and "versions: v0" in version.value.hint


# -- names, refs and paths can never escape -------------------------------------------------------


@pytest.mark.parametrize("name", ["../evil", "/abs", "a/b", ".hidden", "", "a:b", "x" * 129])
def test_bad_names_are_refused(store, src, name):
    with pytest.raises(UsageError):
        publish_path(src, name, store_root=store.root)
    assert not store.artifacts_dir.exists() or not any(store.artifacts_dir.iterdir())


@pytest.mark.parametrize("alias", ["../evil", "a/b", "v3", ".x"])
def test_bad_aliases_are_refused(store, src, alias):
    with pytest.raises(UsageError):
        publish_path(src, "m", aliases=[alias], store_root=store.root)


@pytest.mark.parametrize("ref", ["m:", "m:a:b", "m:../x", "../m", "m:.."])
def test_bad_refs_are_refused(ref):
    with pytest.raises(UsageError):
        parse_ref(ref)


@pytest.mark.parametrize("relpath", ["../evil.pt", "/etc/evil", "a/../../evil", "a//b", "./a"])
def test_unsafe_file_paths_are_refused_when_publishing(store, src, relpath):
    with pytest.raises(UsageError, match="invalid file path"):
        publish("m", [(relpath, src / "weights.pt")], store=store)


def test_file_and_directory_with_one_name_are_refused(store, src):
    with pytest.raises(UsageError, match="both a file and a directory"):
        publish("m", [("a", src / "weights.pt"), ("a/b", src / "config.yaml")], store=store)


def test_symlinks_in_a_pushed_directory_are_refused(store, src, isolated):
    (src / "link.pt").symlink_to(isolated / "outside.pt")
    with pytest.raises(UsageError, match=re.escape("link.pt is a symlink")):
        publish_path(src, "m", store_root=store.root)
    (src / "link.pt").unlink()
    (src / "subdir-link").symlink_to(isolated, target_is_directory=True)
    with pytest.raises(UsageError, match="subdir-link is a symlink"):
        publish_path(src, "m", store_root=store.root)


def test_pushing_a_symlink_itself_is_refused(store, src, isolated):
    (isolated / "link").symlink_to(src)
    with pytest.raises(UsageError, match="is a symlink"):
        publish_path(isolated / "link", "m", store_root=store.root)


def craft_manifest(store: ArtifactStore, name: str, version: int, files: list[dict]) -> None:
    """Write a manifest by hand, as an attacker with write access to the store would."""
    from expctl.artifacts.store import FileEntry

    entries = [FileEntry(f["path"], f["size"], f["sha256"]) for f in files]
    manifest = {
        "format": 1,
        "name": name,
        "version": version,
        "type": "model",
        "digest": content_digest(entries),
        "created": "now",
        "files": files,
        "metadata": {},
    }
    (store.artifacts_dir / name).mkdir(parents=True, exist_ok=True)
    (store.artifacts_dir / name / f"v{version}.json").write_text(json.dumps(manifest))


def test_crafted_manifest_with_traversal_paths_is_refused_on_pull(store, src, isolated):
    good = publish_path(src / "weights.pt", "m", store_root=store.root)
    sha = good.files[0].sha256
    craft_manifest(store, "m", 1, [{"path": "../../escaped.pt", "size": 3000, "sha256": sha}])

    with pytest.raises(RuntimeFailure, match="unsafe file path") as e:
        store.pull("m:v1", isolated / "out" / "x")
    assert e.value.exit_code == 1
    assert not list(isolated.rglob("escaped.pt"))
    assert not (isolated / "out").exists()


def test_crafted_manifest_with_a_traversal_digest_is_refused(store, src, isolated):
    publish_path(src / "weights.pt", "m", store_root=store.root)
    craft_manifest(store, "m", 1, [{"path": "w.pt", "size": 1, "sha256": "../../../etc/passwd"}])
    with pytest.raises(RuntimeFailure, match="invalid sha256"):
        store.pull("m:v1", isolated / "out")


def test_crafted_alias_table_is_refused(store, src):
    publish_path(src, "m", store_root=store.root)
    (store.artifacts_dir / "m" / "aliases.json").write_text('{"../x": 0}')
    with pytest.raises(RuntimeFailure, match="aliases must map"):
        store.resolve("m:latest")


# -- pulling ----------------------------------------------------------------------------------------


def tree(root: Path) -> dict[str, bytes]:
    """The files of a directory, without the marker a pull leaves (checked on its own)."""
    files = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    if files.pop(PULL_MARKER, None) is not None:
        assert json.loads((root / PULL_MARKER).read_text())["ref"]
    return files


def test_pull_copies_verified_files_into_the_default_directory(store, src, isolated):
    publish_path(src, "m", store_root=store.root)
    path = store.pull("m:latest")
    assert path == isolated / "artifacts" / "m-v0"
    assert tree(path) == tree(src)
    assert (path / "weights.pt").stat().st_ino != blob_of(store, "m", "weights.pt").stat().st_ino
    assert [p.name for p in path.parent.iterdir()] == ["m-v0"]  # no staging leftovers


def test_link_mode_hard_links_read_only_blobs_after_verifying(store, src, isolated):
    publish_path(src, "m", store_root=store.root)
    path = store.pull("m", isolated / "linked", mode="link")
    assert tree(path) == tree(src)
    assert (path / "weights.pt").stat().st_ino == blob_of(store, "m", "weights.pt").stat().st_ino


def test_auto_mode_copies_when_running_as_root(store, src, isolated):
    """Root ignores the read-only bit, so a hard link would let it write into the store."""
    publish_path(src, "m", store_root=store.root)
    assert links_are_safe(store, isolated) == (os.geteuid() != 0)


def test_pull_is_idempotent_and_refuses_to_overwrite_other_content(store, src, isolated):
    publish_path(src, "m", store_root=store.root)
    root = isolated / "ckpt"
    assert store.pull("m", root) == root
    assert store.pull("m", root) == root  # same content: fine, nothing changes

    write(src / "config.yaml", "v1\n")
    publish_path(src, "m", store_root=store.root)
    with pytest.raises(UsageError, match="already exists") as e:
        store.pull("m:v1", root)
    assert e.value.exit_code == 2
    assert (root / "config.yaml").read_text() == "lr: 0.1\n"  # untouched

    store.pull("m:v1", root, force=True)
    assert (root / "config.yaml").read_text() == "v1\n"
    assert [p.name for p in isolated.iterdir() if p.name.startswith(".ckpt")] == []


def test_pull_into_an_existing_empty_directory(store, src, isolated):
    publish_path(src, "m", store_root=store.root)
    (isolated / "empty").mkdir()
    assert tree(store.pull("m", isolated / "empty")) == tree(src)


def test_pull_type_mismatch_is_bad_input(store, src):
    publish_path(src, "m", type="model", store_root=store.root)
    with pytest.raises(UsageError, match="of type 'model', not 'dataset'"):
        store.pull("m", type="dataset")


@pytest.mark.parametrize("mode", ["copy", "link"])
def test_corrupted_blob_fails_the_pull_naming_the_file_and_leaves_nothing(
    store, src, isolated, mode
):
    publish_path(src, "m", store_root=store.root)
    blob = blob_of(store, "m", "weights.pt")
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[100] ^= 0x01
    blob.write_bytes(bytes(data))

    root = isolated / "out" / "m"
    with pytest.raises(RuntimeFailure, match=re.escape("'weights.pt' is corrupted")) as e:
        store.pull("m", root, mode=mode)
    assert e.value.exit_code == 1
    assert not (isolated / "out").exists()  # not even the parent we would have created


def test_missing_blob_fails_the_pull_naming_the_file(store, src, isolated):
    publish_path(src, "m", store_root=store.root)
    blob_of(store, "m", "sub/notes.txt").unlink()
    with pytest.raises(RuntimeFailure, match=re.escape("'sub/notes.txt' is missing")):
        store.pull("m", isolated / "out")
    assert not (isolated / "out").exists()


def test_failed_forced_pull_keeps_the_old_directory(store, src, isolated):
    publish_path(src, "m", store_root=store.root)
    root = isolated / "ckpt"
    write(root / "mine.txt", "keep me")
    blob_of(store, "m", "weights.pt").unlink()
    with pytest.raises(RuntimeFailure):
        store.pull("m", root, force=True)
    assert tree(root) == {"mine.txt": b"keep me"}


def test_publish_heals_a_truncated_blob(store, src):
    publish_path(src, "m", store_root=store.root)
    blob = blob_of(store, "m", "weights.pt")
    blob.chmod(0o644)
    blob.write_bytes(b"short")
    publish_path(src, "again", store_root=store.root)
    assert blob.read_bytes() == (src / "weights.pt").read_bytes()


# -- temp leftovers ---------------------------------------------------------------------------------


def test_stale_temp_files_of_dead_processes_are_removed(tmp_path):
    import subprocess
    import sys

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(dead.stdout)
    mine = temp_name(".part")
    theirs = mine.replace(f"{os.getpid()}@", f"{pid}@", 1)
    other_host = f"{pid}@some-other-host.0123456789ab.part"
    for name in (mine, theirs, other_host, "unrelated.txt"):
        (tmp_path / name).write_text("x")
    removed = remove_stale_temp(tmp_path)
    assert [p.name for p in removed] == [theirs]
    old = tmp_path / other_host
    os.utime(old, (0, 0))  # untouched for decades: its owner is surely gone
    assert [p.name for p in remove_stale_temp(tmp_path)] == [other_host]


# -- the trainer's entry points ---------------------------------------------------------------------


def make_checkpoints(run_dir: Path) -> list[Path]:
    return [write(run_dir / "checkpoints" / f"epoch={i}.pt", os.urandom(500 + i)) for i in range(3)]


def test_publish_checkpoints_then_checkpoint_for_init(isolated):
    run_dir = isolated / "runs" / "digits" / "1"
    ckpts = make_checkpoints(run_dir)
    meta = {"run_dir": str(run_dir), "config": {"optim": {"lr": 0.1}}, "metrics": {"val": 1}}
    version = publish_checkpoints("digits-mlp-model", ckpts, ckpts[1], meta)

    assert (version.name, version.version, version.ref) == (
        "digits-mlp-model",
        0,
        "digits-mlp-model:v0",
    )
    assert set(version.aliases) == {"latest", "best"} and version.type == "model"
    assert len(version.digest) == 64
    assert sorted(f.path for f in version.files) == ["epoch=0.pt", "epoch=1.pt", "epoch=2.pt"]
    assert version.metadata["best_file"] == "epoch=1.pt"
    assert version.metadata["run_dir"] == str(run_dir)

    best = checkpoint_for_init("digits-mlp-model:best")
    assert best.read_bytes() == ckpts[1].read_bytes()
    assert checkpoint_for_init("digits-mlp-model").read_bytes() == ckpts[1].read_bytes()
    assert checkpoint_for_init("digits-mlp-model:v0").read_bytes() == ckpts[1].read_bytes()


def test_best_file_outside_the_list_is_added(isolated):
    ckpts = make_checkpoints(isolated / "run")
    version = publish_checkpoints("m", ckpts[:2], ckpts[2], {})
    assert len(version.files) == 3 and version.metadata["best_file"] == "epoch=2.pt"


def test_duplicate_checkpoint_names_are_refused(isolated):
    a = write(isolated / "a" / "best.pt", b"1")
    b = write(isolated / "b" / "best.pt", b"2")
    with pytest.raises(UsageError, match=re.escape("two checkpoints named 'best.pt'")):
        publish_checkpoints("m", [a, b], a, {})


def test_checkpoint_for_init_uses_the_sole_pt_file_else_lists_files(store, src):
    publish_path(src, "pushed", store_root=store.root)  # one .pt among other files
    assert (
        checkpoint_for_init("pushed", store.root).read_bytes() == (src / "weights.pt").read_bytes()
    )

    write(src / "other.pt", b"x")
    write(src / "config.yaml", "v1\n")
    publish_path(src, "pushed", store_root=store.root)
    with pytest.raises(UsageError, match="does not say which file") as e:
        checkpoint_for_init("pushed", store.root)
    assert "other.pt" in e.value.hint and "weights.pt" in e.value.hint


def test_checkpoint_for_init_verifies_the_file(isolated):
    ckpts = make_checkpoints(isolated / "run")
    publish_checkpoints("m", ckpts, ckpts[0], {})
    store = ArtifactStore()
    blob = blob_of(store, "m", "epoch=0.pt")
    blob.chmod(0o644)
    blob.write_bytes(b"tampered" + blob.read_bytes()[8:])
    with pytest.raises(RuntimeFailure, match=re.escape("'epoch=0.pt' is corrupted")):
        checkpoint_for_init("m:best")


def test_checkpoint_for_init_refuses_w_and_b_refs_and_unknown_names(isolated):
    with pytest.raises(UsageError, match="W&B artifact"):
        checkpoint_for_init("team/proj/model:best")
    with pytest.raises(NotFoundError):
        checkpoint_for_init("nothing:best")


@pytest.mark.slow
def test_pulled_checkpoint_loads_with_weights_only(isolated):
    """--init-from's path: a real torch checkpoint round-trips through the store."""
    import torch

    run = isolated / "run"
    run.mkdir()
    state = {"model": {"w": torch.arange(6.0).reshape(2, 3)}, "epoch": 3}
    torch.save(state, run / "best.pt")
    publish_checkpoints("m", [run / "best.pt"], run / "best.pt", {})
    loaded = torch.load(checkpoint_for_init("m:best"), weights_only=True)
    assert torch.equal(loaded["model"]["w"], state["model"]["w"]) and loaded["epoch"] == 3


def test_leftovers_of_a_killed_pull_are_removed_by_the_next_pull(store, src, isolated):
    import subprocess
    import sys

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    publish_path(src, "m", store_root=store.root)
    stage_name = ".m-v0." + temp_name(".pulling").replace(
        f"{os.getpid()}@", f"{dead.stdout.strip()}@"
    )
    write(isolated / "artifacts" / stage_name / "weights.pt", b"partial")
    store.pull("m")
    assert sorted(p.name for p in (isolated / "artifacts").iterdir()) == ["m-v0"]
