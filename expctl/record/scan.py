"""Finding run directories under a runs root (``<root>/<name>/<YYYYmmdd-HHMMSS>-<id>``).

This is where a runs index (issue 23: ``runs list`` over 100,000 run dirs) plugs in: an
``index.py`` beside this module, consulted by :func:`scan_runs_root` (the one enumeration every
caller — ``runs *``, the resolver, lineage — goes through) and refreshed from directory mtimes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from expctl.record.files import RECORD_FILES, RUN_DIR_NAME


@dataclass
class RunDirs:
    """The run directories under a runs root, and the directories that could not be read."""

    dirs: list[Path] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # "<path>: <why>", skipped


def scan_runs_root(root: Path) -> RunDirs:
    """Every run directory two levels under ``root`` (``<name>/<stamp>-<id>``).

    A directory counts when its name is a run directory's, or when it holds ``summary.json``
    or ``metrics.jsonl`` (a run dir renamed by hand; a config dir's config.yaml is not one).
    A missing root has no runs; a root that is not a readable directory is a
    :class:`~expctl.errors.UsageError`; a directory inside it that cannot be read (another
    user's, ``/proc``'s) is skipped and named in ``unreadable``.
    """
    found = RunDirs()
    for name_entry in root_entries(Path(root)):
        if name_entry.name.startswith(".") or not is_dir_entry(name_entry):
            continue
        try:
            entries = list(os.scandir(name_entry.path))
        except FileNotFoundError:  # removed while we looked
            continue
        except OSError as e:
            found.unreadable.append(f"{name_entry.path}: {e.strerror or e}")
            continue
        for entry in entries:
            if not is_dir_entry(entry):
                continue
            path = Path(entry.path)
            if RUN_DIR_NAME.match(entry.name):  # named as a run dir: no need to look inside
                found.dirs.append(path)
                continue
            try:
                marked = any(_lexists(path / f) for f in RECORD_FILES)
            except OSError as e:  # cannot look inside it
                found.unreadable.append(f"{path}: {e.strerror or e}")
                continue
            if marked:
                found.dirs.append(path)
    return found


def find_run_dirs(root: Path) -> list[Path]:
    """The run directories of :func:`scan_runs_root` ([] if none; unreadable ones left out)."""
    return scan_runs_root(root).dirs


def root_entries(root: Path) -> list[os.DirEntry[str]]:
    from expctl.errors import UsageError

    try:
        with os.scandir(root) as entries:
            return list(entries)
    except FileNotFoundError:
        return []  # nothing has run here yet: no runs, not an error
    except NotADirectoryError:
        # the words of `expctl run` (expctl.rundir.create_run_dir) for the same mistake
        what = "a file, not a directory" if root.is_file() else "not a directory"
        raise UsageError(
            f"the runs directory {root} is {what}",
            hint="pass a directory with --runs-dir (or EXPCTL_RUNS_DIR)",
        ) from None
    except OSError as e:
        raise UsageError(
            f"cannot read the runs directory {root}: {e.strerror or e}",
            hint="check its permissions, or pass another directory with --runs-dir "
            "(or EXPCTL_RUNS_DIR)",
        ) from None


def is_dir_entry(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()  # follows a symlink: a copied tree may link its run dirs
    except OSError:
        return False


def _lexists(path: Path) -> bool:
    """Whether ``path`` exists (a symlink counts, even dangling); OSError when the directory
    cannot be searched."""
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return True


def looks_like_run_dir(path: Path) -> bool:
    try:
        return path.is_dir() and (
            bool(RUN_DIR_NAME.match(path.name)) or any(_lexists(path / f) for f in RECORD_FILES)
        )
    except OSError:
        return False
