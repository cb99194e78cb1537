"""Real processes against one store: concurrent publishers, SIGKILL mid-copy, a dead lock holder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from expctl.artifacts import ArtifactStore, publish_path

# Waits for a "go" file so all publishers start together, then publishes each directory given
# (one after the other) as versions of "shared", printing the refs it got.
CONCURRENT_PUBLISHER = """
import sys, time
from pathlib import Path
from expctl.artifacts import publish_path
go, store, *paths = sys.argv[1:]
while not Path(go).exists():
    time.sleep(0.002)
for path in paths:
    print(publish_path(path, "shared", type="model", store_root=store).ref, flush=True)
"""

# Publishes a file with hashing slowed down, so the parent can kill it mid-way: with the
# kernel's copy (argv[3] == "kernel") the copy is whole and its hashing slow; without it (as on
# a filesystem lacking copy_file_range and sendfile) the one userspace pass is slow, mid-copy.
SLOW_PUBLISHER = """
import errno, hashlib, os, sys, time
import expctl.artifacts.fileio as fileio
from expctl.artifacts import publish_path

def unsupported(*args):
    raise OSError(errno.ENOSYS, "not here")

if sys.argv[3] == "userspace":
    os.copy_file_range = os.sendfile = unsupported

class SlowSha256:
    def __init__(self):
        self.inner = hashlib.sha256()
    def update(self, data):
        time.sleep(0.02)
        self.inner.update(data)
    def hexdigest(self):
        return self.inner.hexdigest()

fileio._new_hasher = SlowSha256
fileio.CHUNK_SIZE = 64 * 1024
publish_path(sys.argv[1], "big", type="model", store_root=sys.argv[2])
"""

# Takes an artifact's lock and holds it until killed.
LOCK_HOLDER = """
import sys, time
from expctl.artifacts import ArtifactStore
with ArtifactStore(sys.argv[1]).lock("m"):
    print("locked", flush=True)
    time.sleep(60)
"""


def python(script: str, *args: str | Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


@pytest.mark.slow
def test_four_concurrent_publishers_get_distinct_complete_versions(isolated):
    """4 processes x 5 publishes of different content to one name at once: 20 versions."""
    store = ArtifactStore(isolated / "store")
    go = isolated / "go"
    per_process = 5
    procs = []
    for p in range(4):
        sources = []
        for i in range(per_process):
            src = isolated / f"src{p}-{i}"
            src.mkdir()
            (src / "weights.pt").write_bytes(bytes([p, i]) * 100_000 + os.urandom(100))
            sources.append(src)
        procs.append(python(CONCURRENT_PUBLISHER, go, store.root, *sources))
    time.sleep(0.5)  # let the interpreters start and wait at the barrier
    go.touch()
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outputs

    refs = [ref for out, _ in outputs for ref in out.split()]
    assert sorted(refs, key=lambda r: int(r.split(":v")[1])) == [
        f"shared:v{n}" for n in range(4 * per_process)
    ]
    versions = store.versions("shared")
    assert len({v.digest for v in versions}) == 4 * per_process
    assert store.aliases("shared")["latest"] in range(4 * per_process)
    # every version is complete: each pulls with every sha256 verified, with its own content
    heads = set()
    for v in versions:
        pulled = store.pull(v, isolated / "pulled" / f"v{v.version}")
        heads.add((pulled / "weights.pt").read_bytes()[:2])
    assert heads == {bytes([p, i]) for p in range(4) for i in range(per_process)}
    assert not any(store.tmp_dir.iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("copy", ["userspace", "kernel"])
def test_publisher_killed_mid_copy_leaves_no_version_and_is_cleaned_up(isolated, cli, copy):
    store = ArtifactStore(isolated / "store")
    big = isolated / "big.bin"
    big.write_bytes(os.urandom(8 * 1024 * 1024))
    proc = python(SLOW_PUBLISHER, big, store.root, copy)

    deadline = time.monotonic() + 30
    partial: list[Path] = []
    while time.monotonic() < deadline and not partial:
        partial = [p for p in store.tmp_dir.glob("*.part") if p.stat().st_size >= 256 * 1024]
        time.sleep(0.01)
    assert partial, proc.communicate()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL

    # killed mid-copy (userspace) or mid-verify of a whole copy (kernel): the file in tmp/ is
    # not a blob yet, and no version of "big" exists
    assert partial[0].exists() and not any(store.blobs_dir.rglob("*"))
    if copy == "userspace":
        assert partial[0].stat().st_size < big.stat().st_size
    assert store.version_numbers("big") == []
    listed = cli("artifacts", "list", "--store", str(store.root), "--format", "json")
    assert json.loads(listed.stdout) == []
    pulled = cli("artifacts", "pull", "big", "--store", str(store.root))
    assert pulled.exit_code == 2 and "no artifact named 'big'" in pulled.stderr

    # the next publish removes the dead publisher's leftovers, and numbering starts at v0
    small = isolated / "small"
    small.mkdir()
    (small / "x.pt").write_bytes(b"x")
    assert publish_path(small, "big", type="model", store_root=store.root).ref == "big:v0"
    assert list(store.tmp_dir.iterdir()) == []


@pytest.mark.slow
def test_lock_of_a_killed_holder_is_released(isolated):
    store = ArtifactStore(isolated / "store")
    holder = python(LOCK_HOLDER, store.root)
    assert holder.stdout.readline().strip() == "locked"
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    holder.stdout.close()
    holder.stderr.close()

    src = isolated / "f.pt"
    src.write_bytes(b"weights")
    assert publish_path(src, "m", store_root=store.root).ref == "m:v0"
