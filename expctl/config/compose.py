"""Composing with Hydra's compose API, and Hydra's runtime values (``${hydra:...}``).

Composition is Hydra's own, so defaults lists, ``_self_`` order, ``# @package``, ``optional``,
``override /group: x`` and multi-select groups behave exactly as under ``@hydra.main``.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expctl.config.resolve import missing_keys, resolve_config
from expctl.config.source import ConfigSource, config_dir_note, find_config_dir
from expctl.errors import ConfigWarning, MissingValuesError

if TYPE_CHECKING:
    from omegaconf import DictConfig


def compose_config(
    source: ConfigSource,
    *,
    run_dir: Path | str | None = None,
    resolve: bool = True,
    require_complete: bool = True,
) -> DictConfig:
    """Compose, set Hydra's runtime values, resolve and validate a config.

    ``run_dir`` is what ``${hydra:runtime.output_dir}`` resolves to (``expctl run`` passes the
    run directory; ``config show`` passes nothing and gets the path a run would use).
    Raises :class:`ConfigError` for any bad input and :class:`MissingValuesError` listing every
    ``???`` left when ``require_complete``.
    """
    from omegaconf import OmegaConf

    config_dir, how = find_config_dir(source.config_dir)
    note = config_dir_note(config_dir, how)  # e.g. the example project, outside a project
    if note:
        _warn_once(note)
    cfg = _compose_with_hydra(config_dir, source.config_name, list(source.overrides))
    _install_hydra_runtime(cfg, source.config_name, run_dir)
    OmegaConf.set_struct(cfg, False)
    del cfg["hydra"]
    _remember_secret_values(cfg)
    # the ??? keys as composed: an interpolation to a node holding one resolves to a copy with
    # "???" inside (as in OmegaConf), but the key to set is the original, listed here once
    missing = missing_keys(cfg) if require_complete else []
    if resolve:
        cfg = resolve_config(cfg)
    if missing:
        raise MissingValuesError(missing)
    OmegaConf.set_readonly(cfg, False)
    return cfg


def _remember_secret_values(cfg: DictConfig) -> None:
    """Note the value of every secret key (from a config file, an override, an env resolver)
    so that a message echoing it elsewhere — ``trainer.device=${db.password}`` failing as
    ``unknown device '...'`` — is scrubbed; URL passwords in any literal string too."""
    from omegaconf import OmegaConf

    from expctl.secrets import is_secret_path, remember, remember_config

    plain = OmegaConf.to_container(cfg, resolve=False)
    remember_config(plain)
    for path in iter_key_paths(plain):
        if not is_secret_path(path):
            continue
        try:  # resolved where it can be; a broken one is reported by resolution, not here
            value = OmegaConf.select(cfg, path, throw_on_missing=False)
        except Exception:
            continue
        if value is not None and not OmegaConf.is_config(value):
            remember(value)


def _compose_with_hydra(config_dir: Path, config_name: str, overrides: list[str]) -> DictConfig:
    """Hydra 1.3's rules (``version_base=None``), unless ``$EXPCTL_HYDRA_VERSION_BASE`` says
    otherwise or the configs use Hydra 1.0's ``# @package _group_`` header: under 1.3 rules it
    becomes a literal ``_group_`` key, so such a tree is composed as its own app must run it,
    with ``version_base="1.1"`` (and a warning). A tree is recognised by that key, or, when the
    1.3 composition fails (``group.key=1`` names no key there), by the header in its files.
    Hydra's warnings are re-issued as :class:`~expctl.errors.ConfigWarning` (one line, no file
    path of Hydra's)."""
    version_base = os.environ.get("EXPCTL_HYDRA_VERSION_BASE") or None
    try:
        cfg, caught = _compose_once(config_dir, config_name, overrides, version_base)
        legacy = version_base is None and "_group_" in cfg
    except Exception:
        # `overrides.num_steps=5` fails under 1.3's rules, where the key is `_group_.num_steps`
        if version_base is not None or not _uses_group_header(config_dir):
            raise
        legacy = True
    if legacy:
        cfg, caught = _compose_once(config_dir, config_name, overrides, "1.1")
        caught = [
            "these configs use Hydra 1.0's `# @package _group_` header: composed with Hydra "
            "1.1's rules (version_base=1.1), as their app must; set EXPCTL_HYDRA_VERSION_BASE "
            "to choose",
            *(m for m in caught if "_group_" not in m and "version_base" not in m),
        ]
    for message in caught:
        _warn_once(message)
    return cfg


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    """A :class:`ConfigWarning`, once per process: `run` composes twice, a sweep agent once per
    trial, and Python's own once-per-place memory is reset by every ``catch_warnings`` (each
    compose opens one)."""
    if message not in _WARNED:
        _WARNED.add(message)
        warnings.warn(ConfigWarning(message), stacklevel=4)


def _compose_once(
    config_dir: Path, config_name: str, overrides: list[str], version_base: str | None
) -> tuple[DictConfig, list[str]]:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with (
            warnings.catch_warnings(record=True) as caught,
            initialize_config_dir(config_dir=str(config_dir), version_base=version_base),
        ):
            warnings.simplefilter("always")
            cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    except Exception as e:  # translated below; anything unknown is re-raised untouched
        from expctl.config.compose_errors import translate_compose_error  # only on errors

        raise translate_compose_error(
            e,
            config_dir,
            config_name,
            overrides,
            lambda rest: _known_keys(config_dir, config_name, rest, version_base),
        ) from e
    finally:
        GlobalHydra.instance().clear()
    messages = [
        str(w.message).strip().splitlines()[0]
        for w in caught
        if issubclass(w.category, UserWarning) and str(w.message).strip()
    ]
    return cfg, messages


def _uses_group_header(config_dir: Path) -> bool:
    """Whether a config file starts with Hydra 1.0's ``# @package _group_`` header (read only
    when a composition failed: on success the ``_group_`` key it leaves tells)."""
    header = re.compile(r"^\s*#\s*@package\s+_group_\b", re.MULTILINE)
    for path in config_dir.rglob("*.yaml"):
        try:
            with path.open(encoding="utf-8", errors="replace") as f:
                head = f.read(4096)  # Hydra reads the header from the comments at the top
        except OSError:
            continue
        if header.search(head):
            return True
    return False


def _known_keys(
    config_dir: Path, config_name: str, overrides: list[str], version_base: str | None
) -> list[str]:
    """Every dotted key path of the config composed without the failing override, under the
    same Hydra rules as the composition that failed."""
    from omegaconf import OmegaConf

    try:
        cfg, _ = _compose_once(config_dir, config_name, overrides, version_base)
    except Exception:
        return []
    OmegaConf.set_struct(cfg, False)
    del cfg["hydra"]
    return list(iter_key_paths(OmegaConf.to_container(cfg, resolve=False)))


def iter_key_paths(node: Any, prefix: str = "") -> Iterable[str]:
    """Dotted paths of every key (inner and leaf) of a plain container."""
    if isinstance(node, dict):
        for k, v in node.items():
            path = f"{prefix}.{k}" if prefix else str(k)
            yield path
            yield from iter_key_paths(v, path)


def _install_hydra_runtime(cfg: DictConfig, config_name: str, run_dir: Path | str | None) -> None:
    """Make ``${hydra:...}`` resolve after compose: the runtime node normally set by @hydra.main."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict

    from expctl.rundir import plan_run_dir

    try:
        name = OmegaConf.select(cfg, "name", throw_on_missing=False, default=None)
    except Exception:  # `name: ${oc.env:UNSET}`: resolution reports it, with its hint
        name = None
    job_name = str(name) if isinstance(name, str) and name != "???" else config_name
    with open_dict(cfg):
        cfg.hydra.job.name = job_name
        output_dir = str(run_dir) if run_dir is not None else str(plan_run_dir(job_name))
        cfg.hydra.runtime.output_dir = output_dir
        cfg.hydra.run.dir = output_dir
    HydraConfig.instance().set_config(cfg)
