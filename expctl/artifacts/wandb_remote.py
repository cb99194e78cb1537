"""The thin W&B artifacts adapter: pull ``[entity/]project/name[:alias]`` from W&B, and log
files as a W&B artifact from a run.

W&B cannot fetch artifacts offline (``use_artifact`` raises "Cannot use artifact when in
offline mode"), so pulling checks first, without importing wandb or touching the network,
that W&B may be used at all: ``WANDB_MODE`` not offline/disabled and an API key configured.
Everything W&B-specific is here; tests replace ``wandb.Api`` at this boundary only.
"""

from __future__ import annotations

import netrc
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from expctl.artifacts.refs import NAME_RE, is_remote_ref
from expctl.artifacts.staging import (
    check_pull_target,
    install_dir,
    is_nonempty,
    staging_dir,
    target_exists_error,
    tree_listing,
    write_pull_marker,
)
from expctl.errors import RuntimeFailure, UsageError

__all__ = ["is_remote_ref", "log_files", "offline_reason", "pull"]

OFFLINE_MODES = {"offline", "disabled", "dryrun"}
LOCAL_HINT = (
    "W&B artifacts need a connection to W&B; offline, use the local store: "
    "`expctl artifacts list`, then `expctl artifacts pull NAME:ALIAS`"
)


def _has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    path = Path(os.environ.get("NETRC") or "~/.netrc").expanduser()
    try:
        return bool(netrc.netrc(path).hosts)
    except (OSError, netrc.NetrcParseError):
        return False


def offline_reason() -> str | None:
    """Why W&B cannot be reached from here, or None when it may be tried."""
    mode = os.environ.get("WANDB_MODE", "").strip().lower()
    if mode in OFFLINE_MODES:
        return f"WANDB_MODE={mode}"
    if not _has_api_key():
        return "no W&B API key (set WANDB_API_KEY or run `wandb login`)"
    return None


def _split(ref: str) -> tuple[str, str]:
    """The artifact's own name and alias (for the default directory), after checking that
    every part of ``[entity/]project/name[:alias]`` is a plain name (no ``..``, no ``/x``)."""
    path, _, alias = ref.partition(":")
    parts = path.split("/")
    alias = alias or "latest"
    if not 2 <= len(parts) <= 3 or not all(NAME_RE.fullmatch(p) for p in [*parts, alias]):
        raise UsageError(
            f"invalid W&B artifact reference {ref!r}",
            hint="use ENTITY/PROJECT/NAME:ALIAS (or NAME:ALIAS for the local store)",
        )
    return parts[-1], alias


def pull(
    ref: str, root: str | Path | None = None, *, type: str | None = None, force: bool = False
) -> Path:
    """Download a W&B artifact into ``root`` (default ``./artifacts/NAME-ALIAS``), atomically:
    into a temp dir next to it, renamed into place when complete."""
    name, alias = _split(ref)
    target = Path(root or Path("artifacts") / f"{name}-{alias}").absolute()
    from expctl.artifacts.store import resolve_store_root  # the store imports this module

    check_pull_target(target, resolve_store_root())
    reason = offline_reason()
    if reason:
        raise RuntimeFailure(f"cannot pull W&B artifact {ref!r}: {reason}", hint=LOCAL_HINT)
    import wandb

    with staging_dir(target) as stage:
        try:
            api = wandb.Api()
            artifact = api.artifact(ref, type=type)
            artifact.download(root=str(stage))
        except Exception as e:  # wandb raises many types (CommError, ValueError, UsageError)
            raise RuntimeFailure(
                f"could not download W&B artifact {ref!r}: {e}", hint=LOCAL_HINT
            ) from None
        if is_nonempty(target) and not force:
            if tree_listing(target) == tree_listing(stage):
                return target  # already pulled: idempotent (the staged copy is dropped)
            raise target_exists_error(target, ref)
        write_pull_marker(stage, ref, getattr(artifact, "digest", None))
        install_dir(stage, target, force=force)
    return target


def log_files(
    run: Any,
    name: str,
    files: Sequence[Path],
    *,
    type: str = "model",
    aliases: Sequence[str] = (),
    metadata: dict[str, Any] | None = None,
) -> Any:
    """Log ``files`` (flat, by file name) as W&B artifact ``name`` from ``run`` (online, or
    queued for `wandb sync` offline); W&B adds ``latest`` itself. Returns the wandb.Artifact."""
    import wandb

    artifact = wandb.Artifact(name, type=type, metadata=metadata or {})
    for path in files:
        artifact.add_file(str(path), name=Path(path).name)
    run.log_artifact(artifact, aliases=list(aliases))
    return artifact
