"""Materialising a directory atomically, for local pulls and W&B downloads alike.

Files are written into a hidden staging dir next to the target (same filesystem, so the final
rename is atomic); a failure or a kill leaves nothing in the target, and the leftovers of a
killed pull are removed by the next pull of the same target.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

from expctl.artifacts.fileio import copy_hashing, iter_tree
from expctl.artifacts.locking import remove_path, remove_stale_temp, temp_name
from expctl.errors import UsageError


def is_nonempty(path: Path) -> bool:
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        return True
    return path.is_dir() and any(path.iterdir())


def tree_listing(directory: Path) -> dict[str, tuple[int, str]] | None:
    """``{relpath: (size, sha256)}`` of every file under ``directory``; None if it holds
    anything but plain files and directories (a symlink is never 'the same content')."""
    if directory.is_symlink() or not directory.is_dir():
        return None
    listing: dict[str, tuple[int, str]] = {}
    for relpath, full, mode in iter_tree(directory):
        if not stat.S_ISREG(mode):
            return None
        sha, size = copy_hashing(full)
        listing[relpath] = (size, sha)
    return listing


def target_exists_error(target: Path, what: str) -> UsageError:
    return UsageError(
        f"{target} already exists and does not hold exactly {what}",
        hint="pass --force to replace it, or choose another directory with --root",
    )


@contextlib.contextmanager
def staging_dir(target: Path) -> Iterator[Path]:
    """A fresh hidden dir next to ``target`` (same filesystem, so renaming it is atomic),
    removed unless it was installed; leftovers of killed pulls of ``target`` go first."""
    parent = target.parent
    created = [p for p in (parent, *parent.parents) if not p.exists()]
    parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{target.name}."
    remove_stale_temp(parent, prefix)
    stage = parent / f"{prefix}{temp_name('.pulling')}"
    stage.mkdir()
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        for directory in created:  # innermost first: leave no empty dirs we made behind
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise
    else:
        shutil.rmtree(stage, ignore_errors=True)  # not installed (the target already had it)


def install_dir(stage: Path, target: Path, *, force: bool) -> None:
    """Rename ``stage`` to ``target``; a non-empty ``target`` is replaced only with ``force``."""
    if is_nonempty(target):
        if not force:
            raise target_exists_error(target, "this artifact")
        old = target.parent / f".{target.name}.{temp_name('.replaced')}"
        os.rename(target, old)
        try:
            os.rename(stage, target)
        except BaseException:
            os.rename(old, target)
            raise
        remove_path(old)
        return
    try:
        os.rename(stage, target)  # replaces an empty directory atomically
    except OSError as e:
        if e.errno in (errno.ENOTEMPTY, errno.EEXIST):  # someone filled it meanwhile
            raise target_exists_error(target, "this artifact") from None
        raise
