"""A finished run's checkpoints published to the local artifact store (``artifact.publish``).

Training has succeeded by then: a failure to publish is a note, never the run's failure (the
checkpoints stay in the run dir). ``best`` moves only to a version that beats its holder.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from expctl.artifacts.manifest import ArtifactVersion
    from expctl.train.settings import TrainSettings


class Published(NamedTuple):
    version: ArtifactVersion | None  # None: publishing failed
    note: str | None  # for the user: why best did not move, or the failure


def publish_run(
    s: TrainSettings, files: list[Path], best: Path, metadata: dict[str, Any]
) -> Published:
    from expctl.artifacts.publish import publish_checkpoints

    try:
        version = publish_checkpoints(
            s.artifact_name, files, best, metadata, aliases=s.artifact_aliases
        )
    except Exception as e:  # training succeeded; the checkpoints stay in the run dir
        where = files[0].parent
        return Published(None, f"publishing checkpoints failed: {e} (they are in {where})")
    if "best" in s.artifact_aliases and "best" not in version.moved:
        holder = f"{version.name}:{_alias_holder(version.name, 'best')}"
        return Published(
            version,
            f"published {version.ref} as latest; best stays on {holder}: this run's "
            f"{s.monitor} does not beat it (to move it anyway: expctl artifacts "
            f"alias {version.ref} best)",
        )
    return Published(version, None)


def _alias_holder(name: str, alias: str) -> str:
    from expctl.artifacts.store import ArtifactStore

    number = ArtifactStore().aliases(name).get(alias)
    return f"v{number}" if number is not None else "?"
