"""The copy path of pulls and publishes: the kernel's copy, its fallbacks, the hash of the copy,
several files at once — and that none of it lets a damaged or wrong byte through."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
import threading
from pathlib import Path

import pytest

import expctl.artifacts.fileio as fileio
from expctl.artifacts import ArtifactStore, publish_path
from expctl.artifacts.parallel import map_files
from expctl.errors import RuntimeFailure

REAL_COPY_FILE_RANGE = os.copy_file_range


def unsupported(code: int):
    def fail(*args):
        raise OSError(code, os.strerror(code))

    return fail


@pytest.fixture
def small_chunks(monkeypatch):
    """Kernel copies in 64 KiB steps and hashing alongside from 256 KiB: small test files take
    every branch (several chunks, the overlapped copy) that large ones take."""
    monkeypatch.setattr(fileio, "KERNEL_CHUNK", 64 * 1024)
    monkeypatch.setattr(fileio, "OVERLAP_MIN_SIZE", 256 * 1024)


@pytest.fixture
def src(isolated: Path) -> Path:
    root = isolated / "src"
    (root / "sub").mkdir(parents=True)
    (root / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 17))  # overlapped copy
    (root / "small.bin").write_bytes(os.urandom(100_000))  # copy, then hash
    (root / "sub" / "empty.txt").write_bytes(b"")
    return root


@pytest.fixture
def store(isolated: Path) -> ArtifactStore:
    return ArtifactStore(isolated / "store")


def files_of(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".expctl")
    }


def blob_of(store: ArtifactStore, path: str) -> Path:
    entry = next(f for f in store.resolve("m").files if f.path == path)
    return store.blob_path(entry.sha256)


def corrupt(blob: Path, at: int) -> None:
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[at] ^= 0x01
    blob.write_bytes(bytes(data))


# Ways the kernel may refuse or misbehave; each must give the same files as a plain copy.
KERNEL_FAULTS = {
    "copy_file_range EXDEV, sendfile works": {"copy_file_range": unsupported(errno.EXDEV)},
    "copy_file_range ENOSYS, sendfile EINVAL": {
        "copy_file_range": unsupported(errno.ENOSYS),
        "sendfile": unsupported(errno.EINVAL),
    },
    "both EOPNOTSUPP": {
        "copy_file_range": unsupported(errno.EOPNOTSUPP),
        "sendfile": unsupported(errno.EOPNOTSUPP),
    },
    "neither exists (another OS)": {"copy_file_range": None, "sendfile": None},
}


def apply_faults(monkeypatch, faults: dict) -> None:
    for name, replacement in faults.items():
        if replacement is None:
            monkeypatch.delattr(os, name)
        else:
            monkeypatch.setattr(os, name, replacement)


@pytest.mark.parametrize("fault", KERNEL_FAULTS)
def test_pull_and_publish_fall_back_where_the_kernel_cannot_copy(
    store, src, isolated, monkeypatch, small_chunks, fault
):
    apply_faults(monkeypatch, KERNEL_FAULTS[fault])
    version = publish_path(src, "m", store_root=store.root)
    for entry in version.files:  # the content address is the sha256 of the bytes
        data = (src / entry.path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry.sha256 and len(data) == entry.size
        assert store.blob_path(entry.sha256).read_bytes() == data
    pulled = store.pull("m", isolated / "out", mode="copy")
    assert files_of(pulled) == files_of(src)


@pytest.mark.parametrize("fault", KERNEL_FAULTS)
@pytest.mark.parametrize("path", ["big.bin", "small.bin"])
def test_corrupted_blob_is_refused_on_every_copy_path(
    store, src, isolated, monkeypatch, small_chunks, fault, path
):
    publish_path(src, "m", store_root=store.root)
    corrupt(blob_of(store, path), at=os.path.getsize(src / path) - 1)  # the very last byte
    apply_faults(monkeypatch, KERNEL_FAULTS[fault])
    with pytest.raises(RuntimeFailure, match=re.escape(f"{path!r} is corrupted in the store")):
        store.pull("m", isolated / "out" / "m", mode="copy")
    assert not (isolated / "out").exists()


@pytest.mark.parametrize("path", ["big.bin", "small.bin"])
def test_corrupted_blob_is_refused_with_the_kernel_copy(store, src, isolated, small_chunks, path):
    publish_path(src, "m", store_root=store.root)
    corrupt(blob_of(store, path), at=70_000)
    with pytest.raises(RuntimeFailure, match=re.escape(f"{path!r} is corrupted")) as e:
        store.pull("m", isolated / "out" / "m", mode="copy")
    assert "sha256" in str(e.value) and e.value.exit_code == 1
    assert not (isolated / "out").exists()


def test_a_blob_of_the_wrong_size_is_refused_before_copying(store, src, isolated, monkeypatch):
    from expctl.artifacts import pull as pull_module

    publish_path(src, "m", store_root=store.root)
    blob = blob_of(store, "big.bin")
    blob.chmod(0o644)
    with open(blob, "ab") as f:
        f.write(b"x" * 10)
    copied = []
    real = pull_module.copy_hashing
    monkeypatch.setattr(pull_module, "copy_hashing", lambda *a: copied.append(a[0]) or real(*a))
    with pytest.raises(RuntimeFailure, match=r"'big.bin' is corrupted .*bytes, expected"):
        store.pull("m", isolated / "out", mode="copy")
    assert blob not in copied
    assert not (isolated / "out").exists()


@pytest.mark.parametrize("path", ["big.bin", "small.bin"])
def test_kernel_stopping_short_is_finished_in_userspace(
    store, src, isolated, monkeypatch, small_chunks, path
):
    """copy_file_range copies one chunk, then says "nothing to copy" (as some filesystems do)
    and sendfile is refused: the rest is copied in userspace and the whole copy hashed."""
    publish_path(src / path, "one", store_root=store.root)
    calls = []

    def short(src_fd, dst_fd, count, *args):
        calls.append(count)
        return REAL_COPY_FILE_RANGE(src_fd, dst_fd, count, *args) if len(calls) == 1 else 0

    monkeypatch.setattr(os, "copy_file_range", short)
    monkeypatch.setattr(os, "sendfile", unsupported(errno.EINVAL))
    pulled = store.pull("one", isolated / "out", mode="copy")
    assert (pulled / path).read_bytes() == (src / path).read_bytes()
    assert len(calls) == 2


def test_a_wrong_copy_of_an_intact_blob_is_refused_and_named_as_such(
    store, src, isolated, monkeypatch
):
    """The digest is of the copy, not of the blob: a copy the kernel got wrong never lands."""
    publish_path(src, "m", store_root=store.root)

    damaged = set()

    def wrong(src_fd, dst_fd, count, *args):
        n = REAL_COPY_FILE_RANGE(src_fd, dst_fd, count, *args)
        if n and dst_fd not in damaged:  # flip one bit of the copy's first byte, once
            damaged.add(dst_fd)
            os.pwrite(dst_fd, bytes([os.pread(dst_fd, 1, 0)[0] ^ 1]), 0)
        return n

    monkeypatch.setattr(os, "copy_file_range", wrong)
    with pytest.raises(
        RuntimeFailure, match=re.escape("does not match its sha256 (the blob is intact)")
    ) as e:
        store.pull("m", isolated / "out" / "m", mode="copy")
    assert "could not pull file" in str(e.value) and e.value.exit_code == 1
    assert not (isolated / "out").exists()


def test_a_disk_error_from_the_kernel_copy_is_not_papered_over(store, src, isolated, monkeypatch):
    publish_path(src, "m", store_root=store.root)
    monkeypatch.setattr(os, "copy_file_range", unsupported(errno.ENOSPC))
    with pytest.raises(RuntimeFailure, match=r"could not pull file .* No space left") as e:
        store.pull("m", isolated / "out" / "m", mode="copy")
    assert "free space" in e.value.hint
    assert not (isolated / "out").exists()


def test_pulled_copies_keep_sizes_and_get_ordinary_writable_modes(store, src, isolated):
    version = publish_path(src, "m", store_root=store.root)
    for entry in version.files:  # blobs stay read-only
        assert stat.S_IMODE(store.blob_path(entry.sha256).stat().st_mode) == 0o444
    umask = os.umask(0)
    os.umask(umask)
    pulled = store.pull("m", isolated / "out", mode="copy")
    for entry in version.files:
        copy = (pulled / entry.path).stat()
        assert copy.st_size == entry.size
        assert stat.S_IMODE(copy.st_mode) == 0o644 & ~umask  # not the blob's 0444
        assert copy.st_ino != store.blob_path(entry.sha256).stat().st_ino


@pytest.mark.parametrize("mode", ["copy", "link"])
def test_progress_counts_every_byte_once(store, src, isolated, mode):
    version = publish_path(src, "m", store_root=store.root)
    seen: list[int] = []

    def progress(n: int) -> None:
        seen.append(n)

    store.pull("m", isolated / "out", mode=mode, progress=progress)
    assert sum(seen) == version.size and all(n > 0 for n in seen)


def test_a_failing_job_stops_the_others_and_the_pull_leaves_nothing(store, src, isolated):
    publish_path(src, "m", store_root=store.root)

    class Boom(Exception):
        pass

    calls = {"n": 0}

    def progress(n: int) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise Boom

    with pytest.raises(Boom):
        store.pull("m", isolated / "out" / "m", mode="copy", progress=progress)
    assert not (isolated / "out").exists()


def test_map_files_keeps_order_and_raises_the_first_failure_in_order():
    assert map_files(lambda x, tick: x * 2, [1, 2, 3, 4], workers=3) == [2, 4, 6, 8]
    started = threading.Barrier(2, timeout=10)

    def job(x: int, tick) -> int:
        if x in (1, 2):
            started.wait()  # both fail, the later one possibly first
            raise ValueError(f"bad {x}")
        return x

    with pytest.raises(ValueError, match="bad 1"):
        map_files(job, [0, 1, 2, 3], workers=2)


def test_map_files_stops_running_jobs_at_their_next_tick():
    stopped = threading.Event()
    failing = threading.Event()

    def job(x: int, tick) -> int:
        if x == 0:
            failing.wait(10)
            raise ValueError("first")
        failing.set()
        try:
            for _ in range(10_000):
                tick(1)
                threading.Event().wait(0.001)
        except Exception:
            stopped.set()
            raise
        return x

    with pytest.raises(ValueError, match="first"):
        map_files(job, [0, 1], workers=2)
    assert stopped.is_set()


def test_publishing_two_files_with_the_same_bytes_at_once_stores_one_blob(store, isolated):
    src = isolated / "dup"
    src.mkdir()
    data = os.urandom(2 * 1024 * 1024)
    for name in ("a.bin", "b.bin", "c.bin"):
        (src / name).write_bytes(data)
    version = publish_path(src, "m", store_root=store.root)
    assert len({f.sha256 for f in version.files}) == 1
    assert [p for p in store.blobs_dir.rglob("*") if p.is_file()] == [
        store.blob_path(version.files[0].sha256)
    ]
    assert list(store.tmp_dir.iterdir()) == []
    assert files_of(store.pull("m", isolated / "out")) == files_of(src)
