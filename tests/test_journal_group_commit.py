"""Where a journal append's fsync goes, and how often a process parses a record.

On a local filesystem an append is fsynced after the lock is released (agents' flushes overlap:
a group commit), always before the writer goes on; on a network filesystem, or one not known to
be local, before the lock is released (another host sees the record only once it is flushed).
Each process parses each record once, however many times appends check the tail first."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from sweep_helpers import flock_held

from expctl.sweeps.storage import filesystems, journal, open_storage

MOUNTINFO = [
    ("/", "ext4"),
    ("/scratch", "nfs4"),
    ("/scratch/local", "xfs"),
    ("/lustre", "lustre"),
    ("/home/me/sshfs", "fuse.sshfs"),
]


@pytest.mark.parametrize(
    ("path", "under_lock"),
    [
        ("/data/sweeps.journal", False),
        ("/scratch/team/sweeps.journal", True),
        ("/scratch/local/sweeps.journal", False),  # the innermost mount decides
        ("/scratchpad/sweeps.journal", False),  # a prefix of the name is not a parent
        ("/lustre/p/sweeps.journal", True),
        ("/home/me/sshfs/sweeps.journal", True),  # unknown: as a network filesystem
    ],
)
def test_the_fsync_waits_for_the_lock_only_on_a_filesystem_not_known_to_be_local(
    monkeypatch, path, under_lock
):
    monkeypatch.setattr(filesystems, "_mounts", lambda: tuple(MOUNTINFO))
    assert filesystems.fsync_under_lock(path) is under_lock


def test_without_a_mount_table_every_filesystem_counts_as_network(monkeypatch):
    monkeypatch.setattr(filesystems, "_mounts", lambda: ())
    assert filesystems.fsync_under_lock("/tmp/sweeps.journal")


def test_the_mount_table_of_this_machine_is_read(tmp_path):
    """CI's disk is local: the suite's journals take the group-commit path."""
    assert filesystems.filesystem_type(str(tmp_path / "x.journal")) is not None


def _lock_held(journal_path: Path) -> bool:
    return flock_held(str(journal_path) + ".flock")


@pytest.mark.parametrize("under_lock", [False, True])
def test_an_append_is_fsynced_before_it_returns_with_or_without_the_lock(
    tmp_path, monkeypatch, under_lock
):
    path = tmp_path / "s.journal"
    monkeypatch.setattr(journal, "fsync_under_lock", lambda p: under_lock)
    storage = open_storage(str(path)).storage
    synced: list[tuple[int, bool]] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        real_fsync(fd)
        synced.append((os.fstat(fd).st_size, _lock_held(path)))

    monkeypatch.setattr(os, "fsync", fsync)
    study_id = storage.create_new_study([], "s")
    storage.set_study_user_attr(study_id, "k", "v")
    size = path.stat().st_size
    assert synced, "no fsync"
    assert synced[-1][0] == size  # the last append was on disk when the call returned
    assert {held for _, held in synced} == {under_lock}


def test_each_record_is_parsed_once_per_process(tmp_path, monkeypatch):
    """Two storages on one journal, taking turns to append: an append checks what the other
    appended (under the lock) and the replay then applies it, from one parse."""
    path = str(tmp_path / "s.journal")
    a, b = open_storage(path).storage, open_storage(path).storage
    parsed: list[int] = []
    real = journal.parse_lines

    def counting(numbered, where: object) -> list:
        numbered = list(numbered)
        parsed.extend(number for number, _ in numbered)
        return real(numbered, where)

    monkeypatch.setattr(journal, "parse_lines", counting)
    study_id = a.create_new_study([], "s")
    for i in range(20):
        writer, reader = (a, b) if i % 2 else (b, a)
        writer.set_study_user_attr(study_id, f"k{i}", i)
        assert reader.get_study_user_attrs(study_id)[f"k{i}"] == i
    assert len(Path(path).read_bytes().splitlines()) == 21
    # each process parses every line once: its replay reads its own records back from the
    # file too, and the others' records from the parse its appends made checking the tail
    assert len(parsed) == 2 * 21, sorted(parsed)


@pytest.mark.parametrize("under_lock", [False, True])
def test_an_append_whose_block_then_raises_is_still_fsynced(tmp_path, monkeypatch, under_lock):
    path = tmp_path / "s.journal"
    monkeypatch.setattr(journal, "fsync_under_lock", lambda p: under_lock)
    storage = open_storage(str(path)).storage
    storage.create_new_study([], "s")
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (real_fsync(fd), synced.append(fd)))
    record = {"op_code": 3, "worker_id": "w", "study_id": 0, "system_attr": {"k": 1}}
    with pytest.raises(RuntimeError), storage._backend.locked() as f:
        journal.write(f, [record])
        raise RuntimeError("after the write")
    assert len(synced) == 1
    assert path.read_bytes().endswith(b'"system_attr":{"k":1}}\n')
    assert not _lock_held(path)


def test_out_of_descriptors_the_append_is_fsynced_under_the_lock(tmp_path, monkeypatch):
    """The after-the-lock fsync needs a duplicate descriptor: without one, flush at once."""
    path = tmp_path / "s.journal"
    monkeypatch.setattr(journal, "fsync_under_lock", lambda p: False)
    storage = open_storage(str(path)).storage
    storage.create_new_study([], "s")

    def no_descriptors(fd: int) -> int:
        raise OSError(errno.EMFILE, "Too many open files")

    synced: list[bool] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "dup", no_descriptors)
    monkeypatch.setattr(os, "fsync", lambda fd: (real_fsync(fd), synced.append(_lock_held(path))))
    storage.set_study_user_attr(0, "k", "v")
    assert synced == [True]
