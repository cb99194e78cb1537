"""Verified reads from the store: check a blob against its manifest entry, and pull a version
into a directory by copying or hard-linking, every sha256 checked on the way.

Every copied file's sha256 is that of the copy itself, read back from the page cache after
the kernel wrote it (or, where the kernel cannot copy, of each buffer as it is written); a
hard-linked file's is checked in one read of the blob. So a damaged store is reported, never
silently passed on, and nothing is visible in the target before every digest matched: files
land in a staging dir that is renamed into place last. Files are copied and verified on a few
threads at once (:mod:`~expctl.artifacts.parallel`).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from expctl.artifacts.fileio import Progress, copy_hashing
from expctl.artifacts.manifest import ArtifactVersion, FileEntry
from expctl.artifacts.parallel import map_files
from expctl.artifacts.staging import (
    check_pull_target,
    install_dir,
    is_nonempty,
    staging_dir,
    target_exists_error,
    tree_listing,
    write_pull_marker,
)
from expctl.errors import RuntimeFailure

if TYPE_CHECKING:  # the store calls into this module; only its type is needed here
    from expctl.artifacts.store import ArtifactStore

PullMode = Literal["auto", "copy", "link"]
DAMAGED_HINT = "the store is damaged; republish the artifact (or restore the blob)"


def verify_entry(
    store: ArtifactStore,
    version: ArtifactVersion,
    entry: FileEntry,
    dst_fd: int | None = None,
    progress: Progress | None = None,
) -> Path:
    """The blob of ``entry``, after hashing it — or, given ``dst_fd`` (new, empty, O_RDWR),
    after copying it there and hashing the copy."""
    blob = store.blob_path(entry.sha256)
    try:
        size = os.stat(blob).st_size  # a blob of the wrong size is refused without a copy
        sha, size = copy_hashing(blob, dst_fd, progress) if size == entry.size else ("", size)
    except FileNotFoundError:
        raise RuntimeFailure(
            f"{version.ref}: file {entry.path!r} is missing from the store ({blob})",
            hint=DAMAGED_HINT,
        ) from None
    if size != entry.size:
        raise _corrupted(version, entry, blob, f"{size} bytes, expected {entry.size}")
    if sha != entry.sha256:
        if dst_fd is not None and copy_hashing(blob)[0] == entry.sha256:
            raise OSError(errno.EIO, "the copy does not match its sha256 (the blob is intact)")
        raise _corrupted(version, entry, blob, f"sha256 {sha[:12]}…, expected {entry.sha256[:12]}…")
    return blob


def _corrupted(
    version: ArtifactVersion, entry: FileEntry, blob: Path, found: str
) -> RuntimeFailure:
    return RuntimeFailure(
        f"{version.ref}: file {entry.path!r} is corrupted in the store ({found}; {blob})",
        hint=DAMAGED_HINT,
    )


def links_are_safe(store: ArtifactStore, target_parent: Path) -> bool:
    """Hard links share the inode with the store, which only read-only blobs protect: not
    for root (it ignores permission bits) and not across filesystems (impossible anyway)."""
    if os.geteuid() == 0:
        return False
    try:
        return os.stat(target_parent).st_dev == os.stat(store.blobs_dir).st_dev
    except OSError:
        return False


def pull_version(
    store: ArtifactStore,
    version: ArtifactVersion,
    target: Path,
    *,
    force: bool,
    mode: PullMode,
    progress: Progress | None,
) -> Path:
    """Materialise ``version`` in ``target`` via a staging dir, so a failure leaves nothing."""
    check_pull_target(target, store.root)
    expected = {f.path: (f.size, f.sha256) for f in version.files}
    if is_nonempty(target):
        if tree_listing(target) == expected:
            return target  # already pulled: idempotent
        if not force:
            raise target_exists_error(target, version.ref)
    try:
        with staging_dir(target) as stage:
            link = mode == "link" or (mode == "auto" and links_are_safe(store, stage.parent))
            for directory in sorted({(stage / f.path).parent for f in version.files}):
                directory.mkdir(parents=True, exist_ok=True)

            def job(entry: FileEntry, tick: Progress) -> None:
                _materialise(store, version, entry, stage / entry.path, link, tick, target)

            map_files(job, version.files, progress)
            write_pull_marker(stage, version.ref, version.digest)
            install_dir(stage, target, force=force)
    except OSError as e:  # disk full, permissions, I/O errors: say where
        raise _pull_failure(version, target, None, e) from None
    return target


def _pull_failure(
    version: ArtifactVersion, target: Path, entry: FileEntry | None, e: OSError
) -> RuntimeFailure:
    what = f"file {entry.path!r} " if entry else ""
    return RuntimeFailure(
        f"{version.ref}: could not pull {what}into {target}: {e.strerror or e}",
        hint="check free space and permissions there (nothing was left behind)",
    )


def _materialise(
    store: ArtifactStore,
    version: ArtifactVersion,
    entry: FileEntry,
    dest: Path,
    link: bool,
    progress: Progress,
    target: Path,
) -> None:
    """Hard-link (after verifying the blob) or copy-then-verify one file to ``dest``."""
    try:
        if link:
            blob = verify_entry(store, version, entry, progress=progress)
            if _try_link(blob, dest):
                return
        fd = os.open(dest, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            verify_entry(store, version, entry, fd, progress)
        finally:
            os.close(fd)
    except OSError as e:
        raise _pull_failure(version, target, entry, e) from None


def _try_link(blob: Path, dest: Path) -> bool:
    """False where linking is impossible here (another filesystem, no permission): copy then."""
    try:
        os.link(blob, dest)
    except OSError as e:
        if e.errno in (errno.EXDEV, errno.EMLINK, errno.EPERM, errno.EACCES, errno.ENOTSUP):
            return False
        raise
    return True
