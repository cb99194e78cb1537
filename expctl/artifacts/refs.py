"""Artifact names, aliases, references and the file paths inside an artifact.

Everything here becomes a path component or a path under a target directory, so it is
validated both when typed on a command line and when read back from a (possibly tampered) store.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from expctl.errors import UsageError

# W&B's rule (letters, digits, dashes, underscores, dots), first character alphanumeric, so a
# name or alias is always exactly one harmless path component ("." and ".." cannot match).
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
VERSION_RE = re.compile(r"v(\d+)")


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


def is_remote_ref(ref: str) -> bool:
    """``entity/project/name:alias`` (a slash before the alias) names a W&B artifact."""
    return "/" in ref.partition(":")[0]
