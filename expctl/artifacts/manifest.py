"""What a version is on disk: its manifest (``vN.json``) and the name's alias table
(``aliases.json``), their model, digest, and validated reading and writing.

A version *is* its manifest: writing one links it into place exclusively (a link never
overwrites), so two publishers can never claim the same number.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expctl.artifacts.fileio import write_atomic
from expctl.artifacts.refs import NAME_RE, check_relpaths
from expctl.errors import RuntimeFailure

MANIFEST_FORMAT = 1
SHA256_RE = re.compile(r"[0-9a-f]{64}")
MANIFEST_FILE_RE = re.compile(r"v(\d+)\.json")


def manifest_file_name(number: int) -> str:
    return f"v{number}.json"


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str


def content_digest(files: Sequence[FileEntry]) -> str:
    """W&B's manifest digest (sorted ``path:hash`` lines), with sha256 instead of md5."""
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
    # The aliases that publish moved to this version (what it did, true even once superseded).
    moved: tuple[str, ...] = field(default=(), compare=False)

    @property
    def ref(self) -> str:
        return f"{self.name}:v{self.version}"

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def monitored(self) -> tuple[str, str, float] | None:
        """(metric, mode, best value) of the run that made this version, when it says so."""
        monitor, mode = self.metadata.get("monitor"), self.metadata.get("mode")
        value = (self.metadata.get("best_metrics") or {}).get(monitor)
        if not isinstance(monitor, str) or mode not in ("min", "max"):
            return None
        if not isinstance(value, int | float) or isinstance(value, bool):
            return None
        return (monitor, mode, float(value)) if math.isfinite(value) else None

    def beats(self, holder: ArtifactVersion | None) -> bool:
        """Whether this version's monitored metric is better than ``holder``'s, compared only
        when both monitor the same metric the same way (``best`` never moves to a worse run)."""
        if holder is None:
            return True  # nothing to beat
        mine = self.monitored
        theirs = holder.monitored
        if mine is None:
            return False
        if theirs is None or theirs[:2] != mine[:2]:
            return False
        return mine[2] < theirs[2] if mine[1] == "min" else mine[2] > theirs[2]

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


def manifest_error(path: Path, problem: str) -> RuntimeFailure:
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
        raise manifest_error(path, str(e)) from None
    try:
        files = tuple(
            FileEntry(str(f["path"]), int(f["size"]), str(f["sha256"])) for f in data["files"]
        )
        kind, digest, created = str(data["type"]), str(data["digest"]), str(data["created"])
        metadata = data.get("metadata") or {}
        ok = data["name"] == name and data["version"] == version and isinstance(metadata, dict)
    except (KeyError, TypeError, ValueError) as e:
        raise manifest_error(path, f"missing or malformed field: {e}") from None
    if not ok:
        raise manifest_error(path, "name or version does not match its file name")
    problem = check_relpaths([f.path for f in files])
    if problem:
        raise manifest_error(path, f"unsafe file path {problem}")
    bad = [f.path for f in files if not SHA256_RE.fullmatch(f.sha256) or f.size < 0]
    if bad:
        raise manifest_error(path, f"invalid sha256 or size for {bad[0]!r}")
    if not NAME_RE.fullmatch(kind):
        raise manifest_error(path, f"invalid type {kind!r}")
    if content_digest(files) != digest:
        raise manifest_error(path, "digest does not match its file list")
    return ArtifactVersion(name, version, kind, digest, files, created, metadata)


def write_manifest(path: Path, version: ArtifactVersion, tmp_dir: Path) -> None:
    """Link a complete manifest to ``path``; FileExistsError if that version is taken."""
    data = json.dumps(version.manifest(), indent=2).encode()
    write_atomic(path, data, tmp_dir, exclusive=True)


def read_aliases(path: Path) -> dict[str, int]:
    """``{alias: version number}``; a missing table is empty, a malformed one a damaged store."""
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except ValueError as e:
        raise manifest_error(path, str(e)) from None
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and NAME_RE.fullmatch(k) and type(v) is int for k, v in data.items()
    ):
        raise manifest_error(path, "aliases must map alias names to version numbers")
    return data


def write_aliases(path: Path, aliases: dict[str, int], tmp_dir: Path) -> None:
    """Replace the alias table atomically (readers see the old table or the new one)."""
    data = json.dumps(dict(sorted(aliases.items())), indent=2).encode()
    write_atomic(path, data, tmp_dir)
