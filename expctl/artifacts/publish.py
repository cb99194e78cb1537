"""Writing to the artifact store: publish files as a new version, or find the identical one.

The order of operations is what makes publishing safe to kill and to run concurrently:

1. each file is copied into ``tmp/`` (by the kernel where it can; a few files at a time), the
   copy hashed, fsync'ed, made read-only and hard-linked to its content address
   ``blobs/sha256/ab/ab12...`` (an existing blob is kept: same sha256, same bytes);
2. under the artifact's lock: find a version with the same digest, else claim the next number
   by linking a complete, fsync'ed manifest to ``vN.json`` (a link never overwrites); then
   move ``latest`` and the requested aliases by renaming a new ``aliases.json`` into place.

A publisher killed during 1 leaves only ``tmp/`` files (removed by the next publish); killed
during 2, the kernel drops its lock and the version is either wholly there or not at all.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from expctl.artifacts.fileio import Progress, copy_hashing, durable_temp, iter_tree
from expctl.artifacts.locking import remove_stale_temp
from expctl.artifacts.manifest import ArtifactVersion, FileEntry, content_digest, write_manifest
from expctl.artifacts.parallel import map_files
from expctl.artifacts.refs import check_relpaths, validate_alias, validate_name
from expctl.artifacts.store import ArtifactStore
from expctl.errors import RuntimeFailure, UsageError
from expctl.secrets import redact

DEFAULT_PUSH_TYPE = "dataset"  # what `wandb artifact put` defaults to


def collect_files(path: Path) -> list[tuple[str, Path]]:
    """``(artifact path, source)`` for a file (its name) or every file under a directory.

    Symlinks and special files are refused rather than followed: a link could smuggle in a
    file from anywhere on disk, and a pulled tree must be exactly what was published.
    """
    mode = _lstat(path).st_mode
    if stat.S_ISLNK(mode):
        raise UsageError(f"{path} is a symlink", hint="push the file or directory it points to")
    if stat.S_ISREG(mode):
        return [(path.name, path)]
    if not stat.S_ISDIR(mode):  # a device, FIFO or socket: refused before a byte is read
        raise UsageError(
            f"{path} is not a regular file or directory ({_kind(mode)})",
            hint=f"artifacts hold regular files: write the data to a file first "
            f"(e.g. head -c 10M {path} > data.bin) and push that file",
        )
    found: list[tuple[str, Path]] = []
    for relpath, full, entry_mode in iter_tree(path):
        if not stat.S_ISREG(entry_mode):
            kind = "a symlink" if stat.S_ISLNK(entry_mode) else "not a regular file"
            raise UsageError(
                f"{full} is {kind}", hint="artifacts hold regular files only; copy or remove it"
            )
        found.append((relpath, full))
    if not found:
        raise UsageError(f"{path} holds no files", hint="push a file or a non-empty directory")
    return found


def _kind(mode: int) -> str:
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    return "a socket" if stat.S_ISSOCK(mode) else "a special file"


def _lstat(path: Path) -> os.stat_result:
    try:
        return path.lstat()
    except FileNotFoundError:
        raise UsageError(f"{path} does not exist", hint="check the path") from None


def _store_blob(store: ArtifactStore, relpath: str, source: Path, progress: Progress) -> FileEntry:
    """Copy ``source`` into the blob store (deduplicated by sha256); its manifest entry. The
    sha256 is that of the copy in ``tmp/`` (hashed after the kernel wrote it), so the blob's
    content address is always true of the blob, even if ``source`` changed meanwhile."""
    try:
        if not stat.S_ISREG(_lstat(source).st_mode):
            raise UsageError(
                f"{source} is not a regular file (symlinks are refused)",
                hint="publish regular files only",
            )
        # durable before it is linked: the manifest will promise these bytes
        with durable_temp(
            store.tmp_dir, ".part", lambda fd: copy_hashing(source, fd, progress)
        ) as staged:
            tmp, (sha, size) = staged
            os.chmod(tmp, 0o444)  # blobs may be hard-linked into pulls: keep them read-only
            blob = store.blob_path(sha)
            blob.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(tmp, blob)
            except FileExistsError:
                if not _blob_is_intact(blob, sha, size):  # a damaged store: heal it
                    os.replace(tmp, blob)
    except OSError as e:  # disk full, unreadable source, read-only store: say which file
        raise _store_failure(store, f"{source} in ", e) from None
    return FileEntry(relpath, size, sha)


def _store_failure(store: ArtifactStore, what: str, e: OSError) -> RuntimeFailure:
    return RuntimeFailure(
        f"could not store {what}{store.root}: {e.strerror or e}",
        hint="check free space and permissions (no version was created)",
    )


def _blob_is_intact(blob: Path, sha: str, size: int) -> bool:
    """An existing blob is reused only after its bytes are checked: a blob modified in place
    (same size) would otherwise be promised by every new version that names it."""
    try:
        if blob.stat().st_size != size:
            return False
        found, _ = copy_hashing(blob)
    except OSError:
        return False
    return found == sha


def _store_blobs(store: ArtifactStore, files: Sequence[tuple[str, Path]]) -> tuple[FileEntry, ...]:
    """Every file stored as a blob, a few at a time (:mod:`~expctl.artifacts.parallel`)."""
    try:
        store.tmp_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temp(store.tmp_dir)
    except OSError as e:
        raise _store_failure(store, "files in ", e) from None

    def job(file: tuple[str, Path], tick: Progress) -> FileEntry:
        return _store_blob(store, *file, tick)

    return tuple(map_files(job, files))


def _plain_metadata(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """Strict JSON (paths and other objects become strings; NaN/inf become "nan"/"inf", which
    jq and other parsers accept) with credentials redacted."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise UsageError("artifact metadata must be a JSON object (a dict)")
    from expctl.record.jsonpolicy import output_value  # the one NaN/inf policy of output

    return redact(output_value(json.loads(json.dumps(metadata, default=str))))


def publish(
    name: str,
    files: Sequence[tuple[str, Path]],
    *,
    type: str | None = None,
    aliases: Sequence[str] = (),
    metadata: dict[str, Any] | None = None,
    store: ArtifactStore | str | Path | None = None,
    if_better: Sequence[str] = (),
) -> ArtifactVersion:
    """Publish ``files`` (``(artifact path, source)`` pairs) as a version of ``name``.

    ``type`` defaults to the existing artifact's type, else ``dataset``; it may not change
    between versions. ``latest`` moves here automatically, ``aliases`` move here as asked, and
    those also in ``if_better`` only when this version's monitored metric beats the current
    holder's (:meth:`ArtifactVersion.beats`). Identical content returns the existing version
    (``reused=True``), aliases still moved. ``moved`` on the result says which aliases moved.
    """
    # The numbered order of operations of the module docstring, step by step, in one place.
    store = store if isinstance(store, ArtifactStore) else ArtifactStore(store)
    validate_name(name)
    if type is not None:
        validate_name(type, "artifact type")
    wanted = ["latest", *(validate_alias(a) for a in aliases if a != "latest")]
    if not files:
        raise UsageError(f"nothing to publish for {name!r}", hint="give at least one file")
    problem = check_relpaths([relpath for relpath, _ in files])
    if problem:
        raise UsageError(
            f"invalid file path in artifact {name!r}: {problem}",
            hint="use relative paths without '..'",
        )
    plain_metadata = _plain_metadata(metadata)
    numbers = store.version_numbers(name)
    if numbers:  # fail before copying anything (checked again under the lock)
        _check_type(name, store.version(name, numbers[0]).type, type)

    entries = _store_blobs(store, files)
    digest = content_digest(entries)

    with store.lock(name):
        existing = store.versions(name) if store.version_numbers(name) else []
        kind = existing[0].type if existing else (type or DEFAULT_PUSH_TYPE)
        _check_type(name, kind, type)
        same = next((v for v in existing if v.digest == digest), None)
        number = (
            same.version
            if same
            else _claim_version(store, name, kind, entries, digest, plain_metadata)
        )
        table = store.aliases(name)
        mine = store.version(name, number)
        moved = [
            alias
            for alias in wanted
            if alias not in if_better
            or table.get(alias) == number
            or mine.beats(_holder(store, name, table.get(alias)))
        ]
        table.update(dict.fromkeys(moved, number))
        store.write_aliases(name, table)
        result = store.version(name, number)  # read under the lock: as this publish left it
    return replace(result, reused=same is not None, moved=tuple(moved))


def _holder(store: ArtifactStore, name: str, number: int | None) -> ArtifactVersion | None:
    if number is None or number not in store.version_numbers(name):
        return None
    return store.version(name, number)


def _check_type(name: str, kind: str, wanted: str | None) -> None:
    if wanted is not None and wanted != kind:
        raise UsageError(
            f"artifact {name!r} is of type {kind!r}, not {wanted!r}",
            hint=f"use --type {kind}, or another name",
        )


def _claim_version(
    store: ArtifactStore,
    name: str,
    kind: str,
    entries: tuple[FileEntry, ...],
    digest: str,
    metadata: dict[str, Any],
) -> int:
    """Link a complete manifest to the next free ``vN.json``. The lock already serialises
    publishers; the exclusive link also keeps numbers unique where flock is a no-op (some NFS)."""
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    while True:
        number = max(store.version_numbers(name), default=-1) + 1
        version = ArtifactVersion(name, number, kind, digest, entries, created, metadata)
        try:
            write_manifest(store.manifest_path(name, number), version, store.tmp_dir)
        except FileExistsError:
            continue  # another publisher claimed this number first: take the next
        return number


def publish_path(
    path: str | Path,
    name: str,
    *,
    type: str | None = None,
    aliases: Sequence[str] = (),
    metadata: dict[str, Any] | None = None,
    store_root: str | Path | None = None,
) -> ArtifactVersion:
    """``expctl artifacts push``: publish a file or a directory tree."""
    path = Path(path)
    files = collect_files(path)
    meta = {"source": str(path.absolute()), **(metadata or {})}
    return publish(name, files, type=type, aliases=aliases, metadata=meta, store=store_root)


def publish_checkpoints(
    name: str,
    checkpoint_files: list[Path],
    best_file: Path,
    metadata: dict,
    store_root: Path | None = None,
    aliases: Sequence[str] = ("best",),
) -> ArtifactVersion:
    """The trainer's end-of-run publish: top-k checkpoints, flat by file name, type ``model``,
    aliases ``latest`` (always) and ``aliases`` (``best`` by default, moved only when this run's
    ``metadata["best_metrics"][monitor]`` beats the holder's; sweep trials pass none);
    ``metadata["best_file"]`` names the best file.

    ``metadata`` should hold ``run_dir``, ``config`` and ``metrics`` (credentials redacted here).
    """
    paths = [Path(p) for p in checkpoint_files]
    if Path(best_file).name not in {p.name for p in paths}:
        paths.append(Path(best_file))
    names = [p.name for p in paths]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise UsageError(
            f"two checkpoints named {duplicate!r} for artifact {name!r}",
            hint="checkpoint files are published flat, by file name",
        )
    meta = {**(metadata or {}), "best_file": Path(best_file).name}
    return publish(
        name,
        [(p.name, p) for p in paths],
        type="model",
        aliases=list(aliases),
        metadata=meta,
        store=store_root,
        if_better=("best",),  # a later, worse run must not take `best`
    )
