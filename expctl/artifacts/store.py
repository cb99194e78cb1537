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

This module is the :class:`ArtifactStore` facade (locate, resolve, list, verify, pull) over
single-purpose modules: :mod:`~expctl.artifacts.refs` (names, aliases, refs, paths),
:mod:`~expctl.artifacts.manifest` (versions and alias tables on disk),
:mod:`~expctl.artifacts.locking` (the per-name lock, temp names, leftover cleanup),
:mod:`~expctl.artifacts.fileio` (hashing copies, atomic writes), :mod:`~expctl.artifacts.staging`
(atomic directory installs) and :mod:`~expctl.artifacts.pull` (verified pulls). Publishing is
in :mod:`expctl.artifacts.publish`. The names they define are re-exported here, where callers
have always imported them. Nothing here prints; errors are :class:`~expctl.errors.ExpctlError`.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import replace
from pathlib import Path

# Re-exported: callers import these from here (see __all__).
from expctl.artifacts.fileio import Progress
from expctl.artifacts.locking import (
    exclusive_lock,
    remove_stale_temp,
    temp_name,
)
from expctl.artifacts.manifest import (
    MANIFEST_FILE_RE,
    SHA256_RE,
    ArtifactVersion,
    FileEntry,
    content_digest,
    manifest_file_name,
    read_aliases,
    read_manifest,
    write_aliases,
)
from expctl.artifacts.pull import PullMode, pull_version, verify_entry
from expctl.artifacts.refs import (
    NAME_RE,
    Ref,
    is_remote_ref,
    parse_ref,
    validate_alias,
    validate_name,
)
from expctl.errors import NotFoundError, RuntimeFailure, UsageError, did_you_mean_hint

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "DEFAULT_STORE",
    "NAME_RE",
    "SHA256_RE",
    "ArtifactStore",
    "ArtifactVersion",
    "FileEntry",
    "Progress",
    "PullMode",
    "Ref",
    "checkpoint_for_init",
    "content_digest",
    "exclusive_lock",
    "human_size",
    "parse_ref",
    "read_manifest",
    "remove_stale_temp",
    "resolve_store_root",
    "temp_name",
    "validate_alias",
    "validate_name",
]

DEFAULT_STORE = Path(".expctl") / "artifacts"


def resolve_store_root(root: str | Path | None = None) -> Path:
    """``--store`` if given, else ``$EXPCTL_ARTIFACTS``, else ``./.expctl/artifacts``."""
    return Path(root or os.environ.get("EXPCTL_ARTIFACTS") or DEFAULT_STORE).absolute()


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _require_type(version: ArtifactVersion, type: str | None) -> None:
    if type is not None and version.type != type:
        raise UsageError(
            f"{version.ref} is of type {version.type!r}, not {type!r}",
            hint=f"drop --type or use --type {version.type}",
        )


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

    def manifest_path(self, name: str, number: int) -> Path:
        return self.name_dir(name) / manifest_file_name(number)

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
            m = MANIFEST_FILE_RE.fullmatch(entry.name)
            if m:
                numbers.append(int(m.group(1)))
        return sorted(numbers)

    def aliases(self, name: str) -> dict[str, int]:
        return read_aliases(self.name_dir(name) / "aliases.json")

    def write_aliases(self, name: str, aliases: dict[str, int]) -> None:
        """Replace the alias table (call with :meth:`lock` held)."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        write_aliases(self.name_dir(name) / "aliases.json", aliases, self.tmp_dir)

    def _with_aliases(self, version: ArtifactVersion, aliases: dict[str, int]) -> ArtifactVersion:
        mine = tuple(sorted(a for a, v in aliases.items() if v == version.version))
        return replace(version, aliases=mine)

    def version(self, name: str, number: int) -> ArtifactVersion:
        path = self.manifest_path(name, number)
        if not path.is_file():
            raise self._unknown(Ref(name, f"v{number}"))
        return self._with_aliases(read_manifest(path, name, number), self.aliases(name))

    def versions(self, name: str) -> list[ArtifactVersion]:
        """Every version of ``name``, oldest first (NotFoundError if there is none)."""
        numbers = self.version_numbers(name)
        if not numbers:
            raise self._unknown(Ref(name))
        aliases = self.aliases(name)
        return [
            self._with_aliases(read_manifest(self.manifest_path(name, n), name, n), aliases)
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
        _require_type(found, type)
        return found

    def _unknown(self, ref: Ref) -> NotFoundError:
        numbers = self.version_numbers(ref.name) if NAME_RE.fullmatch(ref.name) else []
        if not numbers:
            names = self.names()
            if not names:
                hint = (
                    f"the store {self.root} is empty; publish with `expctl run` or "
                    "`expctl artifacts push PATH --name NAME`"
                )
            else:
                hint = did_you_mean_hint(ref.name, names, every=True) + (
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

    # verification and pulling
    def verified_blob(self, version: ArtifactVersion, path: str) -> Path:
        """The blob holding ``path`` of ``version``, after checking its sha256 (read-only use)."""
        entry = next((f for f in version.files if f.path == path), None)
        if entry is None:
            raise NotFoundError(
                f"{version.ref} has no file {path!r}",
                hint=f"files: {', '.join(f.path for f in version.files)}",
            )
        return verify_entry(self, version, entry)

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
        _require_type(version, type)
        target = Path(root or Path("artifacts") / f"{version.name}-v{version.version}").absolute()
        return pull_version(self, version, target, force=force, mode=mode, progress=progress)


# -- for the trainer -------------------------------------------------------------------------------

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")


def checkpoint_for_init(ref: str, store_root: Path | None = None) -> Path:
    """The verified best checkpoint of ``name[:alias|:vN]`` (default ``latest``) in the store.

    The file is the one ``metadata["best_file"]`` names, else the sole ``.pt`` file. The path
    returned is the read-only blob inside the store (its sha256 checked just now); load it
    with ``torch.load(path, weights_only=True)`` and never write to it.
    """
    return find_init_checkpoint(ref, store_root)[2]


def find_init_checkpoint(
    ref: str, store_root: Path | None = None
) -> tuple[ArtifactVersion, FileEntry, Path]:
    """:func:`checkpoint_for_init` with what it found: the version, the file's manifest entry
    and the verified blob."""
    if is_remote_ref(ref):
        raise UsageError(
            f"{ref!r} is a W&B artifact; --init-from takes one from the local store",
            hint=f"pull it with `expctl artifacts pull {ref} --root DIR`, then push DIR to the "
            "local store with `expctl artifacts push DIR --name NAME`",
        )
    store = ArtifactStore(store_root)
    version = store.resolve(ref)
    paths = [f.path for f in version.files]
    best = version.metadata.get("best_file")
    checkpoints = [p for p in paths if p.endswith(CHECKPOINT_SUFFIXES)]
    chosen = best if isinstance(best, str) and best in paths else None
    if chosen is None and len(checkpoints) == 1:
        chosen = checkpoints[0]
    if chosen is not None:
        entry = next(f for f in version.files if f.path == chosen)
        return version, entry, store.verified_blob(version, chosen)
    raise UsageError(
        f"{version.ref} does not say which file is its best checkpoint "
        f"({len(checkpoints)} checkpoint files)",
        hint=f"files: {', '.join(paths)}; publish with metadata best_file, or push one file",
    )
