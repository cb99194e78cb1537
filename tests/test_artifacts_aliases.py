"""`best` moves only to a better run; aliases by hand; what `artifacts list` shows; a blob
damaged in place is never reused."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from expctl.artifacts import ArtifactStore, publish_checkpoints, publish_path


def _checkpoint(tmp: Path, name: str, content: bytes) -> Path:
    path = tmp / name
    path.write_bytes(content)
    return path


def _publish_run(tmp: Path, value: float, *, monitor: str = "val_loss", mode: str = "min"):
    ckpt = _checkpoint(tmp, f"epoch=001-{monitor}={value}.pt", os.urandom(64))
    meta = {"monitor": monitor, "mode": mode, "best_metrics": {monitor: value}}
    return publish_checkpoints("m", [ckpt], ckpt, meta, aliases=("best",))


def test_best_moves_only_when_the_monitored_metric_improves(isolated: Path):
    first = _publish_run(isolated, 0.159)
    assert first.moved == ("latest", "best")
    worse = _publish_run(isolated, 2.27)  # a later, worse run: latest only
    assert worse.moved == ("latest",)
    store = ArtifactStore()
    assert store.resolve("m:best").version == first.version
    assert store.resolve("m:latest").version == worse.version
    better = _publish_run(isolated, 0.1)
    assert "best" in better.moved and store.resolve("m:best").version == better.version


def test_best_is_compared_only_for_the_same_metric_and_mode(isolated: Path):
    _publish_run(isolated, 0.5)
    other = _publish_run(isolated, 0.9, monitor="val_acc", mode="max")
    assert other.moved == ("latest",)  # not comparable: best stays where it is
    assert ArtifactStore().resolve("m:best").version == 0


def test_maximised_metric(isolated: Path):
    _publish_run(isolated, 0.80, monitor="val_acc", mode="max")
    assert "best" in _publish_run(isolated, 0.90, monitor="val_acc", mode="max").moved
    assert "best" not in _publish_run(isolated, 0.85, monitor="val_acc", mode="max").moved


def test_alias_command_moves_and_removes_aliases(cli, isolated: Path):
    _publish_run(isolated, 0.5)
    _publish_run(isolated, 0.9)
    moved = cli("artifacts", "alias", "m:v1", "best")
    assert moved.exit_code == 0, moved.stderr
    assert moved.stdout == "m:v1\n"
    assert ArtifactStore().resolve("m:best").version == 1
    assert cli("artifacts", "alias", "m:v1", "production").exit_code == 0
    assert ArtifactStore().aliases("m") == {"latest": 1, "best": 1, "production": 1}
    removed = cli("artifacts", "alias", "m:v1", "production", "--remove")
    assert removed.exit_code == 0, removed.stderr
    assert "production" not in ArtifactStore().aliases("m")

    wrong = cli("artifacts", "alias", "m:v0", "best", "--remove")
    assert wrong.exit_code == 2 and "it names v1" in wrong.stderr
    latest = cli("artifacts", "alias", "m:v0", "latest")
    assert latest.exit_code == 2 and "hint:" in latest.stderr
    unknown = cli("artifacts", "alias", "m:v7", "best")
    assert unknown.exit_code == 2 and "hint:" in unknown.stderr


def test_list_shows_each_versions_monitored_metric(cli, isolated: Path):
    _publish_run(isolated, 0.159)
    _publish_run(isolated, 2.27)
    listed = cli("artifacts", "list")
    assert listed.exit_code == 0, listed.stderr
    header, _rule, *rows = listed.stdout.splitlines()  # an aligned table, as `runs list`
    at = header.index("metric")
    assert [r[at:].split()[0] for r in rows] == ["val_loss=0.159", "val_loss=2.27"]


@pytest.mark.skipif(shutil.which("script") is None, reason="needs util-linux `script` (a pty)")
def test_list_table_on_a_terminal_has_no_escape_codes_under_no_color(isolated: Path, expctl_exe):
    import shlex
    import subprocess

    _publish_run(isolated, 0.159)
    command = shlex.join([*expctl_exe, "artifacts", "list"])
    on_tty = subprocess.run(  # `script` gives the command a real terminal
        ["script", "-qec", command, "/dev/null"],
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1", "TERM": "xterm-256color"},
        check=False,
    )
    assert on_tty.returncode == 0 and "m:v0" in on_tty.stdout and "metric" in on_tty.stdout
    assert "\x1b[" not in on_tty.stdout


def _damage_in_place(blob: Path) -> None:
    os.chmod(blob, stat.S_IWUSR | stat.S_IRUSR)
    data = bytearray(blob.read_bytes())
    data[0] ^= 0xFF  # same size, other bytes
    blob.write_bytes(bytes(data))


def test_a_blob_modified_in_place_is_healed_not_reused(cli, isolated: Path):
    src = isolated / "src"
    src.mkdir()
    (src / "w.pt").write_bytes(os.urandom(5000))
    publish_path(src, "a")
    store = ArtifactStore()
    (entry,) = store.resolve("a").files
    _damage_in_place(store.blob_path(entry.sha256))
    again = cli("artifacts", "push", "src", "--name", "b")  # same content, new name
    assert again.exit_code == 0, again.stderr
    for ref in ("a", "b"):  # both versions pull: the blob was replaced by good bytes
        pulled = cli("artifacts", "pull", ref, "--root", f"out-{ref}")
        assert pulled.exit_code == 0, pulled.stderr
        assert (isolated / f"out-{ref}" / "w.pt").read_bytes() == (src / "w.pt").read_bytes()


def test_a_size_mismatch_says_sizes_not_equal_looking_digests(cli, isolated: Path):
    src = isolated / "src"
    src.mkdir()
    (src / "w.pt").write_bytes(os.urandom(5000))
    publish_path(src, "a")
    manifest = isolated / ".expctl" / "artifacts" / "names" / "a" / "v0.json"
    data = json.loads(manifest.read_text())
    data["files"][0]["size"] = 4999
    manifest.write_text(json.dumps(data))
    result = cli("artifacts", "pull", "a")
    assert result.exit_code == 1
    assert "5000 bytes, expected 4999" in result.stderr


@pytest.mark.slow
def test_concurrent_pushes_report_what_each_did(isolated: Path, expctl_exe):
    import subprocess

    procs = []
    for i in range(4):
        d = isolated / f"d{i}"
        d.mkdir()
        (d / "w.pt").write_bytes(os.urandom(20_000))
        procs.append(
            subprocess.Popen(
                [*expctl_exe, "artifacts", "push", str(d), "--name", "m"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = [p.communicate(timeout=60) for p in procs]
    refs = sorted(out.strip() for out, _ in outputs)
    assert refs == [f"m:v{i}" for i in range(4)]
    assert all("aliases moved here: latest" in err for _, err in outputs)
    assert ArtifactStore().aliases("m") == {"latest": 3}  # the last publish holds it
