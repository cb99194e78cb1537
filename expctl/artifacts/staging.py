"""Materialising a directory atomically, for local pulls and W&B downloads alike.

Files are written into a hidden staging dir next to the target (same filesystem, so the final
rename is atomic); a failure or a kill leaves nothing in the target, and the leftovers of a
killed pull are removed by the next pull of the same target.

What ``--force`` may replace is narrow on purpose (it deletes the old directory): only a
directory that is itself a previous pull, recognised by the :data:`PULL_MARKER` file every pull
leaves in it — never the store, a directory holding the store, or an arbitrary directory
(``--root . --force`` once wiped a project's runs).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

from expctl.artifacts.fileio import copy_hashing, iter_tree
from expctl.artifacts.locking import remove_path, remove_stale_temp, temp_name
from expctl.errors import UsageError

PULL_MARKER = ".expctl-pull.json"  # {"ref": ..., "digest": ...}: this directory is a pull


def check_pull_target(target: Path, store_root: Path) -> None:
    """Refuse a target inside the local store, or one that holds it (replacing it, or writing
    into it, would damage the store)."""
    real_target = Path(os.path.realpath(target))
    real_store = Path(os.path.realpath(store_root))
    if real_target == real_store or real_store in real_target.parents:
        raise UsageError(
            f"refusing to pull into {target}: it is inside the artifact store {store_root}",
            hint="choose a directory outside the store with --root (default: ./artifacts/NAME-vN)",
        )
    if real_target in real_store.parents:
        raise UsageError(
            f"refusing to pull into {target}: it holds the artifact store {store_root}",
            hint="choose a new or empty directory with --root (default: ./artifacts/NAME-vN)",
        )


def write_pull_marker(stage: Path, ref: str, digest: str | None) -> None:
    (stage / PULL_MARKER).write_text(json.dumps({"ref": ref, "digest": digest}) + "\n")


def is_previous_pull(directory: Path) -> bool:
    return not directory.is_symlink() and (directory / PULL_MARKER).is_file()


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
        if relpath == PULL_MARKER:
            continue
        if not stat.S_ISREG(mode):
            return None
        sha, size = copy_hashing(full)
        listing[relpath] = (size, sha)
    return listing


def target_exists_error(target: Path, what: str) -> UsageError:
    if not is_previous_pull(target):
        return _not_a_pull_error(target, what)
    return UsageError(
        f"{target} already exists and does not hold exactly {what}",
        hint="pass --force to replace that earlier pull, or choose another directory with --root",
    )


def _not_a_pull_error(target: Path, what: str) -> UsageError:
    return UsageError(
        f"{target} already exists and is not an earlier pull (no {PULL_MARKER} in it); "
        f"refusing to put {what} there",
        hint="choose a new or empty directory with --root; --force only replaces a directory "
        "that an earlier `expctl artifacts pull` made",
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
    """Rename ``stage`` to ``target``; a non-empty ``target`` is replaced only with ``force``,
    and only when it is an earlier pull."""
    if is_nonempty(target):
        if not force or not is_previous_pull(target):
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
