"""Finding the run to resume and its config (``expctl run --resume RUN_DIR|latest``).

A resumed run trains with the config it was started with (its ``config.yaml``); overrides given
on resume may change values such as the budget (``trainer.epochs=40``) but not the shape of the
config (config groups), since the checkpoint must still fit the model and optimizer.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expctl.errors import ConfigError, NotFoundError, UsageError

if TYPE_CHECKING:
    from omegaconf import DictConfig

LAST_CHECKPOINT = Path("checkpoints") / "last.pt"


def find_resume_dir(ref: str, runs_root: str | Path | None = None) -> Path:
    """``latest`` (the newest run under the runs root) or a run directory with last.pt."""
    from expctl.rundir import latest_run_dir
    from expctl.rundir import runs_root as default_root

    if ref == "latest":
        found = latest_run_dir(runs_root, having=str(LAST_CHECKPOINT))
        if found is None:
            raise NotFoundError(
                f"no resumable run under {default_root(runs_root)} (none has {LAST_CHECKPOINT})",
                hint="start one with `expctl run`, or pass --runs-dir / EXPCTL_RUNS_DIR",
            )
        run_dir = found
    else:
        run_dir = Path(ref).expanduser()
        if run_dir.name == "last.pt" and run_dir.is_file():  # accept the checkpoint path too
            run_dir = run_dir.parent.parent
    run_dir = run_dir.resolve()
    if not (run_dir / LAST_CHECKPOINT).is_file():
        hint = "resume a run directory that has checkpoints/last.pt"
        if run_dir.is_dir() and not (run_dir / "config.yaml").is_file():
            hint = f"{run_dir} is not a run directory ({hint})"
        raise NotFoundError(f"nothing to resume in {run_dir}: no {LAST_CHECKPOINT}", hint=hint)
    return run_dir


def load_run_config(run_dir: Path, overrides: Sequence[str] = ()) -> tuple[DictConfig, list[str]]:
    """The run's saved config with ``key=value`` overrides applied.

    Returns the config and the keys whose values were redacted when saved (secrets are never
    written to disk); the caller should tell the user to pass those again.
    """
    from omegaconf import DictConfig, OmegaConf

    from expctl.config import iter_key_paths, resolve_collecting_errors
    from expctl.secrets import is_redacted

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise NotFoundError(f"no config.yaml in {run_dir}", hint="is this a run directory?")
    cfg = OmegaConf.load(path)
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{path} is not a mapping", hint="the run's record is damaged")
    started_with = set(_recorded_overrides(Path(run_dir)))
    for override in overrides:
        if override in started_with:
            continue  # already part of the saved config (a requeued job repeats its command line)
        _apply(cfg, override)
    resolve_collecting_errors(cfg)  # an override like x=${oc.env:UNSET} is bad input (exit 2)
    plain = OmegaConf.to_container(cfg, resolve=False)
    redacted = [key for key in iter_key_paths(plain) if is_redacted(OmegaConf.select(cfg, key))]
    return cfg, redacted


def _recorded_overrides(run_dir: Path) -> list[str]:
    """The overrides the run was started with (its overrides.yaml), or none if unreadable."""
    import yaml

    from expctl.train.record import OVERRIDES_FILE

    try:
        recorded = yaml.safe_load((run_dir / OVERRIDES_FILE).read_text())
    except (OSError, yaml.YAMLError):
        return []
    return [str(o) for o in recorded] if isinstance(recorded, list) else []


def _apply(cfg: DictConfig, override: str) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import DictConfig, OmegaConf

    try:
        (parsed,) = OverridesParser.create().parse_overrides([override])
    except Exception as e:
        raise ConfigError(
            f"cannot parse override {override!r}: {str(e).splitlines()[0]}",
            hint="use key=value",
        ) from None
    key = parsed.key_or_group
    if parsed.is_delete() or parsed.is_sweep_override():
        raise UsageError(
            f"override {override!r} cannot be used with --resume",
            hint="on resume only key=value overrides apply (e.g. trainer.epochs=40)",
        )
    current = OmegaConf.select(cfg, key, default=None)
    value: Any = parsed.value()
    if isinstance(current, DictConfig) and not isinstance(value, dict):
        raise UsageError(
            f"cannot change config group {key!r} when resuming",
            hint="a resumed run keeps its model/optimizer; start a new run to change them",
        )
    adding = parsed.is_add() or parsed.is_force_add()
    if not adding and OmegaConf.select(cfg, key, default="<absent>") == "<absent>":
        raise ConfigError(
            f"unknown config key {key!r} in override",
            hint=f"to add a new key use +{override}",
        )
    OmegaConf.update(cfg, key, value, force_add=True)
