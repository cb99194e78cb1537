"""Moving and removing aliases by hand (``expctl artifacts alias NAME:VERSION ALIAS``).

Like every alias change, under the artifact's lock and by replacing ``aliases.json`` atomically:
concurrent publishers and alias commands never lose each other's changes.
"""

from __future__ import annotations

from expctl.artifacts.manifest import ArtifactVersion
from expctl.artifacts.refs import validate_alias
from expctl.artifacts.store import ArtifactStore
from expctl.errors import NotFoundError, UsageError


def set_alias(store: ArtifactStore, ref: str, alias: str) -> ArtifactVersion:
    """Point ``alias`` at the version ``ref`` names; returns that version."""
    _check_settable(alias)
    version = store.resolve(ref)
    with store.lock(version.name):
        table = store.aliases(version.name)
        table[alias] = version.version
        store.write_aliases(version.name, table)
        return store.version(version.name, version.version)


def remove_alias(store: ArtifactStore, ref: str, alias: str) -> ArtifactVersion:
    """Remove ``alias`` from the version ``ref`` names (an error if it names another one)."""
    _check_settable(alias)
    version = store.resolve(ref)
    with store.lock(version.name):
        table = store.aliases(version.name)
        holder = table.get(alias)
        if holder != version.version:
            where = f"it names v{holder}" if holder is not None else "no version has it"
            raise NotFoundError(
                f"{version.ref} has no alias {alias!r} ({where})",
                hint=f"aliases of {version.ref}: {', '.join(version.aliases) or 'none'}",
            )
        del table[alias]
        store.write_aliases(version.name, table)
        return store.version(version.name, version.version)


def _check_settable(alias: str) -> None:
    validate_alias(alias)
    if alias == "latest":
        raise UsageError(
            "'latest' always names the most recently published version; it is not moved by hand",
            hint="give the version another alias, e.g. expctl artifacts alias NAME:v3 production",
        )
