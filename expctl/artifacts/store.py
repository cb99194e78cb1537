"""The local artifact store: versioned, content-addressed, verified, and usable with no network.

Location: ``--store DIR`` on every ``expctl artifacts`` command, else ``$EXPCTL_ARTIFACTS``,
else ``.expctl/artifacts`` under the current directory.

Layout (under the store root)::

    blobs/sha256/ab/ab12...      file contents, stored once per sha256, read-only (0444)
    names/NAME/v0.json           one manifest per version: every file's path, size and sha256,
                                 the type, the digest, the created time and the metadata
                                 (creating run dir, its config, its metrics)
    names/NAME/aliases.json      {"latest": 3, "best": 2, ...}
    names/NAME/.lock             flock'ed while a version number or an alias is being written
    tmp/                         files being written, named PID@HOST.TOKEN.part / .json

Guarantees:

* A version *is* its manifest, which is linked into place only after every blob it names is
  complete, so readers never see half a version. Version numbers and aliases change only under
  the per-name lock, so concurrent publishers get distinct versions and lose nothing.
* A publisher killed mid-copy leaves files only in ``tmp/``; the next publish removes those of
  processes that are dead on this host (and any older than a day, e.g. from another host).
* The digest of a version is the sha256 of its sorted ``path:sha256`` lines (W&B's manifest
  digest, with sha256 instead of md5). Publishing identical content returns the existing
  version. ``latest`` always names the most recently published version; other aliases move
  only when asked.
* Names, aliases, manifest paths and blob digests are validated when written *and* when read,
  so nothing typed on a command line or found in a (tampered) store can write outside the
  target directory.

This module is the read side (resolve, list, verify, pull) plus the pieces the write side in
:mod:`expctl.artifacts.publish` shares. It never prints; it returns values or raises
:class:`~expctl.errors.ExpctlError` subclasses.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from expctl.errors import NotFoundError, RuntimeFailure, UsageError, did_you_mean

DEFAULT_STORE = Path(".expctl") / "artifacts"
MANIFEST_FORMAT = 1
# W&B's rule (letters, digits, dashes, underscores, dots), first character alphanumeric, so a
# name or alias is always exactly one harmless path component ("." and ".." cannot match).
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
VERSION_RE = re.compile(r"v(\d+)")
SHA256_RE = re.compile(r"[0-9a-f]{64}")
CHUNK_SIZE = 1 << 20
STALE_AFTER_S = 24 * 3600
HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
TEMP_RE = re.compile(r"(?P<pid>\d+)@(?P<host>[A-Za-z0-9-]+)\.[0-9a-f]{12}\.\w+")

Progress = Callable[[int], None]
PullMode = Literal["auto", "copy", "link"]

# The hash used for every file; a module attribute so a fault-injection test can slow it down.
_new_hasher = hashlib.sha256


def resolve_store_root(root: str | Path | None = None) -> Path:
    """``--store`` if given, else ``$EXPCTL_ARTIFACTS``, else ``./.expctl/artifacts``."""
    return Path(root or os.environ.get("EXPCTL_ARTIFACTS") or DEFAULT_STORE).absolute()


# -- names, refs and paths --------------------------------------------------------------------


def validate_name(value: str, what: str = "artifact name") -> str:
    if not NAME_RE.fullmatch(value or ""):
        raise UsageError(
            f"invalid {what} {value!r}",
            hint="use 1-128 letters, digits, '-', '_' or '.', starting with a letter or digit",
        )
    return value


def validate_alias(alias: str) -> str:
    validate_name(alias, "alias")
    if VERSION_RE.fullmatch(alias):
        raise UsageError(
            f"alias {alias!r} looks like a version",
            hint="versions v0, v1, ... are "
            "assigned by the store; pick another alias (e.g. best, prod)",
        )
    return alias


def unsafe_path_reason(path: str) -> str | None:
    """Why ``path`` may not be a file path inside an artifact (None when it is fine)."""
    if not isinstance(path, str) or not path:
        return "empty path"
    if "\x00" in path or "\\" in path:
        return "NUL or backslash in path"
    if path.startswith("/"):
        return "absolute path"
    if any(part in ("", ".", "..") for part in path.split("/")):
        return "'..', '.' or empty component"
    return None


def check_relpaths(paths: Sequence[str]) -> str | None:
    """The first problem in a set of artifact paths (unsafe, duplicate, file-vs-dir), or None."""
    seen: set[str] = set()
    for path in paths:
        reason = unsafe_path_reason(path)
        if reason:
            return f"{path!r}: {reason}"
        if path in seen:
            return f"{path!r}: listed twice"
        seen.add(path)
    dirs = {p.rsplit("/", 1)[0] for p in seen if "/" in p}
    parents = {"/".join(d.split("/")[: i + 1]) for d in dirs for i in range(d.count("/") + 1)}
    clash = sorted(seen & parents)
    return f"{clash[0]!r}: both a file and a directory" if clash else None


@dataclass(frozen=True)
class Ref:
    """A local reference ``name[:alias|:vN]``; the selector defaults to ``latest``."""

    name: str
    selector: str = "latest"

    @property
    def version(self) -> int | None:
        m = VERSION_RE.fullmatch(self.selector)
        return int(m.group(1)) if m else None

    def __str__(self) -> str:
        return f"{self.name}:{self.selector}"


def parse_ref(ref: str) -> Ref:
    name, sep, selector = ref.partition(":")
    if ":" in selector or (sep and not selector):
        raise UsageError(
            f"invalid artifact reference {ref!r}", hint="use NAME, NAME:ALIAS or NAME:vN"
        )
    validate_name(name)
    if selector and not VERSION_RE.fullmatch(selector):
        validate_name(selector, "alias")
    return Ref(name, selector or "latest")


# -- versions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str


def content_digest(files: Sequence[FileEntry]) -> str:
    lines = "".join(f"{f.path}:{f.sha256}\n" for f in sorted(files, key=lambda f: f.path))
    return hashlib.sha256(lines.encode()).hexdigest()


@dataclass(frozen=True)
class ArtifactVersion:
    """One immutable version of an artifact, as recorded by its manifest."""

    name: str
    version: int
    type: str
    digest: str
    files: tuple[FileEntry, ...]
    created: str
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    aliases: tuple[str, ...] = ()
    # True when a publish found identical content and returned this existing version.
    reused: bool = field(default=False, compare=False)

    @property
    def ref(self) -> str:
        return f"{self.name}:v{self.version}"

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def run_dir(self) -> str | None:
        source = self.metadata.get("run_dir") or self.metadata.get("source")
        return str(source) if source else None

    def manifest(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "name": self.name,
            "version": self.version,
            "type": self.type,
            "digest": self.digest,
            "created": self.created,
            "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in self.files],
            "metadata": self.metadata,
        }

    def summary(self) -> dict[str, Any]:
        """The JSON shape of ``expctl artifacts list --format json``."""
        data = self.manifest()
        del data["format"]
        return {"ref": self.ref, "aliases": list(self.aliases), "size": self.size, **data}


def _manifest_error(path: Path, problem: str) -> RuntimeFailure:
    return RuntimeFailure(
        f"{path}: damaged manifest ({problem})",
        hint="the store was modified by hand or is corrupted; remove that version file or "
        "republish the artifact",
    )


def read_manifest(path: Path, name: str, version: int) -> ArtifactVersion:
    """Parse and validate a manifest; anything unexpected is a damaged store (exit 1)."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as e:
        raise _manifest_error(path, str(e)) from None
    try:
        files = tuple(
            FileEntry(str(f["path"]), int(f["size"]), str(f["sha256"])) for f in data["files"]
        )
        kind, digest, created = str(data["type"]), str(data["digest"]), str(data["created"])
        metadata = data.get("metadata") or {}
        ok = data["name"] == name and data["version"] == version and isinstance(metadata, dict)
    except (KeyError, TypeError, ValueError) as e:
        raise _manifest_error(path, f"missing or malformed field: {e}") from None
    if not ok:
        raise _manifest_error(path, "name or version does not match its file name")
    problem = check_relpaths([f.path for f in files])
    if problem:
        raise _manifest_error(path, f"unsafe file path {problem}")
    bad = [f.path for f in files if not SHA256_RE.fullmatch(f.sha256) or f.size < 0]
    if bad:
        raise _manifest_error(path, f"invalid sha256 or size for {bad[0]!r}")
    if not NAME_RE.fullmatch(kind):
        raise _manifest_error(path, f"invalid type {kind!r}")
    if content_digest(files) != digest:
        raise _manifest_error(path, "digest does not match its file list")
    return ArtifactVersion(name, version, kind, digest, files, created, metadata)


# -- small filesystem helpers -------------------------------------------------------------------


def temp_name(suffix: str) -> str:
    """A temp file name that says which process owns it (see :func:`remove_stale_temp`)."""
    return f"{os.getpid()}@{HOST}.{secrets.token_hex(6)}{suffix}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_stale(name: str, path: str, now: float) -> bool:
    """A temp entry whose owner died on this host, or that nobody touched for a day."""
    m = TEMP_RE.fullmatch(name)
    if not m:
        return False
    pid = int(m["pid"])
    if m["host"] == HOST and pid != os.getpid() and not _pid_alive(pid):
        return True
    try:
        return now - os.lstat(path).st_mtime > STALE_AFTER_S
    except OSError:
        return False


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def remove_stale_temp(directory: Path, prefix: str = "") -> list[Path]:
    """Remove leftovers of killed writers in ``directory`` (named ``prefix`` + temp_name)."""
    removed = []
    now = time.time()
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            name = entry.name
            if name.startswith(prefix) and _is_stale(name[len(prefix) :], entry.path, now):
                _remove(Path(entry.path))
                removed.append(Path(entry.path))
    return removed


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, tmp_dir: Path, *, exclusive: bool = False) -> None:
    """Write to a temp file, fsync, then rename into place (or link: fails if ``path`` exists)."""
    tmp = tmp_dir / temp_name(".json")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if exclusive:
            os.link(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    fsync_dir(path.parent)


def _write_all(fd: int, chunk: memoryview) -> None:
    while chunk:
        chunk = chunk[os.write(fd, chunk) :]


def copy_hashing(
    src: Path, dst_fd: int | None = None, progress: Progress | None = None
) -> tuple[str, int]:
    """sha256 and size of ``src``, copying it to ``dst_fd`` in the same single read pass."""
    hasher = _new_hasher()
    size = 0
    buf = bytearray(CHUNK_SIZE)
    view = memoryview(buf)
    with open(src, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            chunk = view[:n]
            hasher.update(chunk)
            if dst_fd is not None:
                _write_all(dst_fd, chunk)
            size += n
            if progress:
                progress(n)
    return hasher.hexdigest(), size


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """flock on ``path``: released by the kernel if the holder dies, so it can never go stale."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


# -- the store ----------------------------------------------------------------------------------


class ArtifactStore:
    """A store directory; cheap to create (nothing is read or written until asked)."""

    def __init__(self, root: str | Path | None = None):
        self.root = resolve_store_root(root)
        self.blobs_dir = self.root / "blobs" / "sha256"
        self.artifacts_dir = self.root / "names"
        self.tmp_dir = self.root / "tmp"

    def __repr__(self) -> str:
        return f"ArtifactStore({str(self.root)!r})"

    # paths
    def blob_path(self, sha256: str) -> Path:
        if not SHA256_RE.fullmatch(sha256):
            raise RuntimeFailure(f"invalid sha256 {sha256!r} in {self.root}")
        return self.blobs_dir / sha256[:2] / sha256

    def name_dir(self, name: str) -> Path:
        return self.artifacts_dir / validate_name(name)

    def lock(self, name: str) -> contextlib.AbstractContextManager[None]:
        directory = self.name_dir(name)
        directory.mkdir(parents=True, exist_ok=True)
        return exclusive_lock(directory / ".lock")

    # reading
    def names(self) -> list[str]:
        if not self.artifacts_dir.is_dir():
            return []
        return sorted(
            d.name
            for d in self.artifacts_dir.iterdir()
            if NAME_RE.fullmatch(d.name) and d.is_dir() and self.version_numbers(d.name)
        )

    def version_numbers(self, name: str) -> list[int]:
        directory = self.name_dir(name)
        if not directory.is_dir():
            return []
        numbers = []
        for entry in os.scandir(directory):
            m = re.fullmatch(r"v(\d+)\.json", entry.name)
            if m:
                numbers.append(int(m.group(1)))
        return sorted(numbers)

    def aliases(self, name: str) -> dict[str, int]:
        path = self.name_dir(name) / "aliases.json"
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            return {}
        except ValueError as e:
            raise _manifest_error(path, str(e)) from None
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and NAME_RE.fullmatch(k) and type(v) is int for k, v in data.items()
        ):
            raise _manifest_error(path, "aliases must map alias names to version numbers")
        return data

    def write_aliases(self, name: str, aliases: dict[str, int]) -> None:
        """Replace the alias table (call with :meth:`lock` held)."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        data = json.dumps(dict(sorted(aliases.items())), indent=2).encode()
        write_atomic(self.name_dir(name) / "aliases.json", data, self.tmp_dir)

    def _with_aliases(self, version: ArtifactVersion, aliases: dict[str, int]) -> ArtifactVersion:
        mine = tuple(sorted(a for a, v in aliases.items() if v == version.version))
        return replace(version, aliases=mine)

    def version(self, name: str, number: int) -> ArtifactVersion:
        path = self.name_dir(name) / f"v{number}.json"
        if not path.is_file():
            raise self._unknown(Ref(name, f"v{number}"))
        return self._with_aliases(read_manifest(path, name, number), self.aliases(name))

    def versions(self, name: str) -> list[ArtifactVersion]:
        """Every version of ``name``, oldest first (NotFoundError if there is none)."""
        numbers = self.version_numbers(name)
        if not numbers:
            raise self._unknown(Ref(name))
        aliases = self.aliases(name)
        directory = self.name_dir(name)
        return [
            self._with_aliases(read_manifest(directory / f"v{n}.json", name, n), aliases)
            for n in numbers
        ]

    def all_versions(self) -> list[ArtifactVersion]:
        return [v for name in self.names() for v in self.versions(name)]

    def resolve(self, ref: str | Ref, *, type: str | None = None) -> ArtifactVersion:
        """The version ``name[:alias|:vN]`` names (default alias ``latest``)."""
        ref = parse_ref(ref) if isinstance(ref, str) else ref
        numbers = self.version_numbers(ref.name)
        if not numbers:
            raise self._unknown(ref)
        number = ref.version
        if number is None:
            aliases = self.aliases(ref.name)
            number = aliases.get(ref.selector)
            if number is None and ref.selector == "latest":
                number = numbers[-1]  # an alias table lost by hand: latest is still knowable
        if number is None or number not in numbers:
            raise self._unknown(ref)
        found = self.version(ref.name, number)
        if type is not None and found.type != type:
            raise UsageError(
                f"{found.ref} is of type {found.type!r}, not {type!r}",
                hint=f"drop --type or use --type {found.type}",
            )
        return found

    def _unknown(self, ref: Ref) -> NotFoundError:
        numbers = self.version_numbers(ref.name) if NAME_RE.fullmatch(ref.name) else []
        if not numbers:
            names = self.names()
            close = did_you_mean(ref.name, names)
            if not names:
                hint = (
                    f"the store {self.root} is empty; publish with `expctl run` or "
                    "`expctl artifacts push PATH --name NAME`"
                )
            else:
                hint = (f"did you mean {' or '.join(close)}? " if close else "") + (
                    f"artifacts in {self.root}: {', '.join(names)}"
                )
            return NotFoundError(f"no artifact named {ref.name!r}", hint=hint)
        aliases = self.aliases(ref.name)
        alias_list = ", ".join(f"{a}=v{v}" for a, v in sorted(aliases.items())) or "none"
        versions = f"v{numbers[0]}..v{numbers[-1]}" if len(numbers) > 1 else f"v{numbers[0]}"
        return NotFoundError(
            f"artifact {ref.name!r} has no {'version' if ref.version is not None else 'alias'} "
            f"{ref.selector!r}",
            hint=f"versions: {versions}; aliases: {alias_list}",
        )

    def set_alias(self, ref: str, alias: str) -> ArtifactVersion:
        """Point ``alias`` at the version ``ref`` names (atomically, under the name's lock)."""
        validate_alias(alias)
        target = self.resolve(ref)
        with self.lock(target.name):
            aliases = self.aliases(target.name)
            aliases[alias] = target.version
            self.write_aliases(target.name, aliases)
        return self.version(target.name, target.version)

    # verification and pulling
    def _verify_entry(
        self,
        version: ArtifactVersion,
        entry: FileEntry,
        dst_fd: int | None = None,
        progress: Progress | None = None,
    ) -> Path:
        blob = self.blob_path(entry.sha256)
        try:
            sha, size = copy_hashing(blob, dst_fd, progress)
        except FileNotFoundError:
            raise RuntimeFailure(
                f"{version.ref}: file {entry.path!r} is missing from the store ({blob})",
                hint="the store is damaged; republish the artifact (or restore the blob)",
            ) from None
        if sha != entry.sha256 or size != entry.size:
            raise RuntimeFailure(
                f"{version.ref}: file {entry.path!r} is corrupted in the store "
                f"(sha256 {sha[:12]}…, expected {entry.sha256[:12]}…; {blob})",
                hint="the store is damaged; republish the artifact (or restore the blob)",
            )
        return blob

    def verified_blob(self, version: ArtifactVersion, path: str) -> Path:
        """The blob holding ``path`` of ``version``, after checking its sha256 (read-only use)."""
        entry = next((f for f in version.files if f.path == path), None)
        if entry is None:
            raise NotFoundError(
                f"{version.ref} has no file {path!r}",
                hint=f"files: {', '.join(f.path for f in version.files)}",
            )
        return self._verify_entry(version, entry)

    def verify(self, version: ArtifactVersion, progress: Progress | None = None) -> None:
        for entry in version.files:
            self._verify_entry(version, entry, progress=progress)

    def links_are_safe(self, target_parent: Path) -> bool:
        """Hard links share the inode with the store, which only read-only blobs protect: not
        for root (it ignores permission bits) and not across filesystems (impossible anyway)."""
        if os.geteuid() == 0:
            return False
        try:
            return os.stat(target_parent).st_dev == os.stat(self.blobs_dir).st_dev
        except OSError:
            return False

    def pull(
        self,
        what: str | Ref | ArtifactVersion,
        root: str | Path | None = None,
        *,
        type: str | None = None,
        force: bool = False,
        mode: PullMode = "auto",
        progress: Progress | None = None,
    ) -> Path:
        """Materialise a version in ``root`` (default ``./artifacts/NAME-vN``), verified.

        Every file's sha256 is checked in the same read pass that copies it (or, for hard
        links, in one read of the blob). The files land in a hidden temp dir next to ``root``
        that is renamed into place at the end, so a failure leaves nothing in ``root``.
        """
        version = what if isinstance(what, ArtifactVersion) else self.resolve(what, type=type)
        if type is not None and version.type != type:
            raise UsageError(
                f"{version.ref} is of type {version.type!r}, not {type!r}",
                hint=f"drop --type or use --type {version.type}",
            )
        target = Path(root or Path("artifacts") / f"{version.name}-v{version.version}").absolute()
        expected = {f.path: (f.size, f.sha256) for f in version.files}
        if is_nonempty(target):
            if tree_listing(target) == expected:
                return target  # already pulled: idempotent
            if not force:
                raise target_exists_error(target, version.ref)
        current = None
        try:
            with staging_dir(target) as stage:
                link = mode == "link" or (mode == "auto" and self.links_are_safe(stage.parent))
                for current in version.files:
                    self._materialise(version, current, stage / current.path, link, progress)
                install_dir(stage, target, force=force)
        except OSError as e:  # disk full, permissions, I/O errors: say where
            what = f"file {current.path!r} " if current else ""
            raise RuntimeFailure(
                f"{version.ref}: could not pull {what}into {target}: {e.strerror or e}",
                hint="check free space and permissions there (nothing was left behind)",
            ) from None
        return target

    def _materialise(
        self,
        version: ArtifactVersion,
        entry: FileEntry,
        dest: Path,
        link: bool,
        progress: Progress | None,
    ) -> None:
        """Hard-link (after verifying the blob) or copy-while-verifying one file to ``dest``."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        if link:
            blob = self._verify_entry(version, entry, progress=progress)
            if _try_link(blob, dest):
                return
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            self._verify_entry(version, entry, fd, progress)
        finally:
            os.close(fd)


def _try_link(blob: Path, dest: Path) -> bool:
    try:
        os.link(blob, dest)
    except OSError as e:
        if e.errno in (errno.EXDEV, errno.EMLINK, errno.EPERM, errno.EACCES, errno.ENOTSUP):
            return False
        raise
    return True


# -- materialising a directory atomically (shared with the W&B adapter) --------------------------


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
    for current, dirs, files in os.walk(directory):
        for name in dirs + files:
            full = Path(current, name)
            mode = full.lstat().st_mode
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                return None
            sha, size = copy_hashing(full)
            listing[full.relative_to(directory).as_posix()] = (size, sha)
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
        _remove(old)
        return
    try:
        os.rename(stage, target)  # replaces an empty directory atomically
    except OSError as e:
        if e.errno in (errno.ENOTEMPTY, errno.EEXIST):  # someone filled it meanwhile
            raise target_exists_error(target, "this artifact") from None
        raise


# -- for the trainer -------------------------------------------------------------------------------

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")


def checkpoint_for_init(ref: str, store_root: Path | None = None) -> Path:
    """The verified best checkpoint of ``name[:alias|:vN]`` (default ``latest``) in the store.

    The file is the one ``metadata["best_file"]`` names, else the sole ``.pt`` file. The path
    returned is the read-only blob inside the store (its sha256 checked just now); load it
    with ``torch.load(path, weights_only=True)`` and never write to it.
    """
    if "/" in ref.partition(":")[0]:
        raise UsageError(
            f"{ref!r} is a W&B artifact; --init-from takes one from the local store",
            hint=f"pull it with `expctl artifacts pull {ref} --root DIR`, then push DIR to the "
            "local store with `expctl artifacts push DIR --name NAME`",
        )
    store = ArtifactStore(store_root)
    version = store.resolve(ref)
    paths = [f.path for f in version.files]
    best = version.metadata.get("best_file")
    if isinstance(best, str) and best in paths:
        return store.verified_blob(version, best)
    checkpoints = [p for p in paths if p.endswith(CHECKPOINT_SUFFIXES)]
    if len(checkpoints) == 1:
        return store.verified_blob(version, checkpoints[0])
    raise UsageError(
        f"{version.ref} does not say which file is its best checkpoint "
        f"({len(checkpoints)} checkpoint files)",
        hint=f"files: {', '.join(paths)}; publish with metadata best_file, or push one file",
    )
