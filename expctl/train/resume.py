"""Finding the run to resume and its config (``expctl run --resume RUN_DIR|latest``).

A resumed run trains with the config it was started with (its ``config.yaml``); overrides given
on resume change it as they would change a fresh run's (``epochs=40`` also changes the
``trainer.epochs: ${epochs}`` that reads it: :func:`load_run_config`), but not the shape of the
config (config groups), since the checkpoint must still fit the model and optimizer. ``RUN`` is a
run reference as ``expctl runs show`` reads it (``latest``, ``latest~N``, an id prefix, a path).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expctl.config import ConfigSource
from expctl.errors import ConfigError, ExpctlError, NotFoundError, UsageError
from expctl.record.files import CHECKPOINT_DIR, CONFIG_FILE, LAST_CHECKPOINT_FILE

if TYPE_CHECKING:
    from omegaconf import DictConfig

LAST_CHECKPOINT = Path(CHECKPOINT_DIR) / LAST_CHECKPOINT_FILE


def find_resume_dir(ref: str, runs_root: str | Path | None = None) -> Path:
    """The run ``--resume REF`` names, which must have ``checkpoints/last.pt``.

    REF is a run reference as ``expctl runs show`` reads it (:func:`expctl.record.refs.
    resolve_run`): ``latest``, ``latest~N``, a run id or a unique prefix of one, or a path (a
    run directory, or its ``checkpoints/last.pt``)."""
    from expctl.record.refs import is_latest, resolve_run
    from expctl.rundir import runs_root as default_root

    path = Path(ref).expanduser()
    if path.name == LAST_CHECKPOINT_FILE and path.is_file():  # accept the checkpoint path too
        run_dir = path.parent.parent
    elif path.is_dir() and not is_latest(ref):  # nor is a folder named latest
        run_dir = path
    else:
        run_dir = resolve_run(ref, default_root(runs_root))
    run_dir = run_dir.resolve()
    if not (run_dir / LAST_CHECKPOINT).is_file():
        raise NotFoundError(
            f"nothing to resume in {run_dir}: no {LAST_CHECKPOINT}",
            hint=_not_resumable_hint(ref, run_dir, default_root(runs_root)),
        )
    return run_dir


def _not_resumable_hint(ref: str, run_dir: Path, root: Path) -> str:
    """Name the newest run that *can* be resumed: ``latest`` never silently means another run."""
    from expctl.record.refs import newest_runs

    hint = f"resume a run directory that has {LAST_CHECKPOINT}"
    if run_dir.is_dir() and not (run_dir / CONFIG_FILE).is_file():
        hint = f"{run_dir} is not a run directory ({hint})"
    if ref.startswith("latest"):
        for back, older in enumerate(newest_runs(root, 50)):
            if (older / LAST_CHECKPOINT).is_file():
                return f"{hint}; the newest resumable run is {older.name}: --resume latest~{back}"
    return hint


@dataclass
class ResumeConfig:
    """What a resumed run trains with: ``cfg``; ``redacted``, the keys whose values were
    redacted when saved (secrets are never written to disk: the caller asks for them again);
    ``new_overrides``, the overrides not already in the run's record; ``key_names``, for each
    resolved key they changed, the key the user wrote (``trainer.epochs`` → ``epochs``);
    ``notes``, what the user should hear (the config files changed since the run started)."""

    cfg: DictConfig
    redacted: list[str] = field(default_factory=list)
    new_overrides: list[str] = field(default_factory=list)
    key_names: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # for the user (config files changed since)


def load_run_config(
    run_dir: Path, overrides: Sequence[str] = (), source: ConfigSource | None = None
) -> ResumeConfig:
    """The run's saved config with the new ``overrides`` applied as a fresh run applies them.

    The saved config is resolved (``trainer.epochs: 60``, not ``${epochs}``), so an override
    cannot be set on it directly: ``epochs=3`` would change ``epochs`` and leave the trainer's
    60. Instead the config is composed twice from ``source`` (the project's config directory
    and name): with the overrides the run was started with, and with those plus the new ones.
    The resolved keys that differ between the two are what the new overrides change; exactly
    those are changed in the saved config (keys the config files changed since the run started
    keep their saved values). A config group cannot change (the checkpoint must still fit).
    """
    from omegaconf import DictConfig, OmegaConf

    from expctl.config import iter_key_paths, resolve_collecting_errors
    from expctl.secrets import is_redacted

    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise NotFoundError(f"no config.yaml in {run_dir}", hint="is this a run directory?")
    cfg = OmegaConf.load(path)
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{path} is not a mapping", hint="the run's record is damaged")
    recorded = _recorded_overrides(Path(run_dir))
    # already part of the saved config (a requeued job repeats its command line)
    new = [o for o in overrides if o not in recorded]
    key_names: dict[str, str] = {}
    notes: list[str] = []
    if new:
        source = source or ConfigSource(None, "config", ())
        key_names, notes = _apply_as_composed(cfg, Path(run_dir), source, recorded, new)
    resolve_collecting_errors(cfg)  # an override like x=${oc.env:UNSET} is bad input (exit 2)
    plain = OmegaConf.to_container(cfg, resolve=False)
    redacted = [key for key in iter_key_paths(plain) if is_redacted(OmegaConf.select(cfg, key))]
    return ResumeConfig(cfg, redacted, new, key_names, notes)


def _apply_as_composed(
    cfg: DictConfig, run_dir: Path, source: ConfigSource, recorded: list[str], new: list[str]
) -> tuple[dict[str, str], list[str]]:
    """Change in ``cfg`` what each of the ``new`` overrides changes in the composed config;
    returns, for each changed key, the key of the override that changed it, and a note when
    the config files no longer compose to what the run recorded."""
    from omegaconf import OmegaConf

    before = _composed(run_dir, source, recorded, new)
    from expctl.secrets import is_redacted

    saved = _leaves(OmegaConf.to_container(cfg, resolve=False))
    drifted = sorted(  # a secret is redacted in the record: it differs, and is never shown
        p
        for p in before.keys() & saved.keys()
        if before[p] != saved[p] and not is_redacted(saved[p])
    )
    key_names: dict[str, str] = {}
    applied: list[str] = []
    for override in new:
        key = _check_resumable(override, before)
        applied.append(override)
        after = _composed(run_dir, source, [*recorded, *applied], None)
        for path in sorted(before.keys() | after.keys()):
            if before.get(path, _ABSENT) != after.get(path, _ABSENT):
                _check_not_restored(override, path, before.get(path), after.get(path), run_dir)
                if path in drifted and path != key:  # setting it itself is always clear
                    raise _drift_error(override, path, saved[path], before[path], source)
            if path not in after:
                _delete(cfg, path)
            elif before.get(path, _ABSENT) != after[path]:
                OmegaConf.update(cfg, path, after[path], force_add=True)
            else:
                continue
            key_names[path] = key
        before = after
    notes = []
    if drifted:
        shown = ", ".join(f"{p}: {saved[p]!r} → {before[p]!r}" for p in drifted[:3])
        more = f" and {len(drifted) - 3} more" if len(drifted) > 3 else ""
        notes.append(
            f"config {source.config_name!r} no longer composes to what the run recorded "
            f"({shown}{more}); those keep their recorded values"
        )
    return key_names, notes


def _drift_error(
    override: str, path: str, recorded: Any, composed: Any, source: ConfigSource
) -> UsageError:
    """What ``override`` would change was composed from config files that no longer give the
    run's recorded value there: its effect cannot be known (a wrong --config-name, an edit)."""
    return UsageError(
        f"cannot apply {override} on resume: it changes {path}, which the run recorded as "
        f"{recorded!r} but config {source.config_name!r} now composes as {composed!r}",
        hint="resume with the --config-dir/--config-name the run was started with (and its "
        f"config files as they were), or set {path} itself",
    )


# Nodes whose state last.pt restores over the config (the optimizer's lr and momentum, the
# scheduler's position): a new value there would be recorded but not trained with.
RESTORED_NODES = ("optim", "scheduler")


def _check_not_restored(override: str, path: str, old: Any, new: Any, run_dir: Path) -> None:
    if path.split(".")[0] not in RESTORED_NODES:
        return
    raise UsageError(
        f"{override} changes {path} ({old!r} → {new!r}), but a resumed run continues with the "
        "optimizer and scheduler state saved in its last.pt",
        hint=f"start a new run from its weights instead: expctl run --init-from {run_dir} ... "
        f"{override}; a resume may change the budget (trainer.epochs), logging and W&B",
    )


def _composed(
    run_dir: Path, source: ConfigSource, overrides: list[str], new: list[str] | None
) -> dict[str, Any]:
    """The leaves of the config ``source`` composes with ``overrides``, resolved into
    ``run_dir``, but for ``${now:...}`` values (they differ between any two composes, not by
    any override). ``new`` is given when composing what the run started with: its failure is
    then not the user's new overrides' fault, and says so."""
    from omegaconf import OmegaConf

    from expctl.config import compose_config, resolve_collecting_errors

    composing = ConfigSource(source.config_dir, source.config_name, tuple(overrides))
    try:
        cfg = compose_config(composing, run_dir=run_dir, resolve=False, require_complete=False)
        resolved = _leaves(OmegaConf.to_container(resolve_collecting_errors(cfg)))
    except ExpctlError as e:
        if new is None:
            raise
        raise UsageError(
            f"cannot apply {' '.join(new)} on resume: the run's config does not compose again "
            f"from config {source.config_name!r} ({e.message})",
            hint="resume from the project the run was started in (the same --config-dir and "
            "--config-name), or resume without overrides",
        ) from None
    for path, value in _leaves(OmegaConf.to_container(cfg, resolve=False)).items():
        if isinstance(value, str) and "${now:" in value:
            resolved.pop(path, None)
    return resolved


_ABSENT = object()


def _delete(cfg: DictConfig, path: str) -> None:
    from omegaconf import DictConfig, OmegaConf

    parent, _, key = path.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    if isinstance(node, DictConfig) and key in node:
        del node[key]


def _leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"trainer.epochs": 60, ...}``: every leaf (lists count as leaves) by its dotted path."""
    if not isinstance(node, dict) or (prefix and not node):
        return {prefix: node}
    found: dict[str, Any] = {}
    for k, v in node.items():
        found.update(_leaves(v, f"{prefix}.{k}" if prefix else str(k)))
    return found


def _recorded_overrides(run_dir: Path) -> list[str]:
    """The overrides the run was started with (its overrides.yaml), or none if unreadable."""
    from expctl.record.read import read_overrides

    return read_overrides(run_dir)[0]


def _check_resumable(override: str, leaves: dict[str, Any]) -> str:
    """The key ``override`` sets; refused (exit 2) when it deletes a key, sweeps, or changes a
    config group: a resumed run keeps its model and optimizer."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        (parsed,) = OverridesParser.create().parse_overrides([override])
    except Exception as e:
        raise ConfigError(
            f"cannot parse override {override!r}: {str(e).splitlines()[0]}",
            hint="use key=value",
        ) from None
    key = str(parsed.key_or_group)
    if parsed.is_delete() or parsed.is_sweep_override():
        raise UsageError(
            f"override {override!r} cannot be used with --resume",
            hint="on resume only key=value overrides apply (e.g. trainer.epochs=40)",
        )
    group = key not in leaves and any(p.startswith(f"{key}.") for p in leaves)
    if group and not isinstance(parsed.value(), dict):
        raise UsageError(
            f"cannot change config group {key!r} when resuming",
            hint="a resumed run keeps its model/optimizer; start a new run to change them",
        )
    return key


def budget_spent(run_dir: Path, pos: Any, budget: str, key_names: Mapping[str, str]) -> UsageError:
    """A resumed run with nothing left to train: say how far it got (``pos``: its step and
    epoch) and name the keys as the user wrote them (``epochs=3`` sets ``trainer.epochs`` in
    the course config: ``key_names``)."""
    names = {k: key_names.get(k, k) for k in ("trainer.epochs", "trainer.max_steps")}
    asked = [f"{user} sets {key}" for key, user in names.items() if user != key]
    because = f" ({'; '.join(asked)})" if asked else ""
    return UsageError(
        f"run {run_dir} has trained {pos.epoch} epochs ({pos.step} "
        f"steps): its budget of {budget}{because} is spent",
        hint="to train longer, resume with a larger budget: "
        f"{names['trainer.epochs']}=N or {names['trainer.max_steps']}=N",
    )
