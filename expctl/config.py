"""The one config loader behind `run`, `config show`, `sweep create` and `sweep agent`.

Composition is Hydra's own compose API, so defaults lists, ``_self_`` order, ``# @package``,
``optional``, ``override /group: x`` and multi-select groups behave exactly as under
``@hydra.main``. What this module adds is what Hydra leaves to the app:

* finding the config directory (``--config-dir``, ``$EXPCTL_CONFIG_DIR``, ``./configs``, the
  examples shipped in the package),
* Hydra's runtime resolvers (``${hydra:runtime.output_dir}``, ``${hydra:job.name}``, ``${now:}``)
  pointing at the run directory,
* resolving interpolations while collecting *every* problem instead of stopping at the first,
* turning Hydra/OmegaConf/YAML exceptions into one-line :class:`ConfigError`\\ s with hints.

hydra and omegaconf are imported inside functions: ``expctl --help`` must not pay for them.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expctl.errors import ConfigError, MissingValuesError, did_you_mean
from expctl.secrets import redact, remember_config, remember_overrides

if TYPE_CHECKING:
    from omegaconf import DictConfig

PACKAGED_CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass(frozen=True)
class ConfigSource:
    """Where a config comes from: a directory, a primary config name and overrides."""

    config_dir: Path | None = None
    config_name: str = "config"
    overrides: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_cli(
        cls,
        config_dir: Path | None,
        config_name: str,
        positional: Sequence[str] | None,
        sets: Sequence[str] | None,
    ) -> ConfigSource:
        """Positional overrides first, then ``--set`` ones (later wins, as in Hydra)."""
        overrides = (*(positional or ()), *(sets or ()))
        remember_overrides(overrides)  # their values are scrubbed from every message from now on
        return cls(config_dir, config_name, tuple(quote_value_with_equals(o) for o in overrides))


def quote_value_with_equals(override: str) -> str:
    """Let ``key=a=b`` mean the value ``a=b`` (Hydra's grammar needs it quoted).

    Only overrides that do not parse as they are and whose value holds a bare ``=`` are
    rewritten, so every override Hydra accepts keeps Hydra's meaning.
    """
    key, sep, value = override.partition("=")
    if not sep or "=" not in value or value[:1] in "'\"[{":
        return override
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        OverridesParser.create().parse_overrides([override])
        return override
    except Exception:
        escaped = value.replace("\\", "\\\\").replace("'", "\\'")
        return f"{key}='{escaped}'"


def find_config_dir(explicit: Path | str | None = None) -> tuple[Path, str]:
    """Return the config directory and how it was found (for --debug output)."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_dir():
            raise ConfigError(
                f"config directory {str(path)!r} does not exist",
                hint="pass an existing directory to --config-dir (or EXPCTL_CONFIG_DIR)",
            )
        return path.resolve(), "--config-dir"
    env = os.environ.get("EXPCTL_CONFIG_DIR")
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise ConfigError(
                f"EXPCTL_CONFIG_DIR={env!r} is not a directory",
                hint="unset EXPCTL_CONFIG_DIR or point it at your configs/ directory",
            )
        return path.resolve(), "$EXPCTL_CONFIG_DIR"
    local = Path("configs")
    if local.is_dir():
        return local.resolve(), "./configs"
    return PACKAGED_CONFIG_DIR, "the example configs shipped with expctl"


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

    config_dir, _ = find_config_dir(source.config_dir)
    cfg = _compose_with_hydra(config_dir, source.config_name, list(source.overrides))
    _install_hydra_runtime(cfg, source.config_name, run_dir)
    OmegaConf.set_struct(cfg, False)
    del cfg["hydra"]
    if resolve:
        cfg = resolve_collecting_errors(cfg)
    if require_complete:
        missing = missing_keys(cfg)
        if missing:
            raise MissingValuesError(missing)
    OmegaConf.set_readonly(cfg, False)
    return cfg


# -- composition ----------------------------------------------------------------------------------


def _compose_with_hydra(config_dir: Path, config_name: str, overrides: list[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base=None):
            return compose(config_name, overrides=overrides, return_hydra_config=True)
    except Exception as e:  # translated below; anything unknown is re-raised untouched
        raise _translate_compose_error(e, config_dir, config_name, overrides) from e
    finally:
        GlobalHydra.instance().clear()


def _translate_compose_error(
    e: Exception, config_dir: Path, config_name: str, overrides: list[str]
) -> Exception:
    import yaml
    from hydra.errors import (
        ConfigCompositionException,
        MissingConfigException,
        OverrideParseException,
    )

    if isinstance(e, yaml.MarkedYAMLError):
        mark = e.problem_mark or e.context_mark
        where = f"{mark.name}:{mark.line + 1}" if mark else str(config_dir)
        problem = e.problem or e.context or "invalid YAML"
        return ConfigError(
            f"YAML syntax error: {problem}",
            hint="fix the YAML at that line (check indentation, quotes and brackets)",
            where=where,
        )
    if isinstance(e, MissingConfigException):
        return _missing_config_error(e, config_dir, config_name)
    if isinstance(e, OverrideParseException):
        bad = _first_unparsable_override(overrides)
        return ConfigError(
            f"cannot parse override {bad!r}: {str(e).splitlines()[0]}",
            hint="use Hydra's grammar: key=value, +new=value, ++key=value, ~key, group=option; "
            "quote values with special characters: key='a,b'",
        )
    if isinstance(e, ConfigCompositionException):
        return _composition_error(e, config_dir, config_name, overrides)
    return e


def _missing_config_error(e: Any, config_dir: Path, config_name: str) -> ConfigError:
    missing = getattr(e, "missing_cfg_file", None) or ""
    options = getattr(e, "options", None)
    if options is not None or "/" in missing:
        group, _, option = missing.rpartition("/")
        available = ", ".join(options or []) or "(none)"
        suggestion = did_you_mean(option, options or [])
        hint = f"available options for {group}: {available}"
        if suggestion:
            hint = f"did you mean {group}={suggestion[0]}? {hint}"
        return ConfigError(f"unknown option {option!r} for config group {group!r}", hint=hint)
    if missing == config_name or "primary config" in str(e):
        names = sorted(p.stem for p in config_dir.glob("*.yaml"))
        return ConfigError(
            f"no primary config {config_name!r} in {config_dir}",
            hint=f"configs there: {', '.join(names) or '(none)'}; choose one with --config-name",
        )
    return ConfigError(str(e).splitlines()[0], hint="check the defaults lists of your configs")


def _composition_error(
    e: Exception, config_dir: Path, config_name: str, overrides: list[str]
) -> ConfigError:
    text = str(e)
    m = re.search(r"Could not override '([^']+)'", text)
    if m:
        key = m.group(1)
        rest = [o for o in overrides if _override_key(o) != key]
        known = _known_keys(config_dir, config_name, rest)
        close = did_you_mean(key, known)
        leaf_close = [
            k
            for k in known
            if k.rsplit(".", 1)[-1]
            in did_you_mean(key.rsplit(".", 1)[-1], {k.rsplit(".", 1)[-1] for k in known})
        ]
        suggestions = close or leaf_close[:3]
        value = next((o.split("=", 1)[1] for o in overrides if _override_key(o) == key), "...")
        hint = f"to add a new key use +{key}={value}"
        if suggestions:
            hint = f"did you mean {' or '.join(suggestions)}? ({hint})"
        return ConfigError(f"unknown config key {key!r} in override", hint=hint)
    m = re.search(r"An item is already at '([^']+)'", text)
    if m:
        key = m.group(1)
        return ConfigError(
            f"cannot add {key!r} with '+': the key already exists",
            hint=f"set it with {key}=... (or force with ++{key}=...)",
        )
    first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
    cause = e.__cause__
    if cause is not None and str(cause).strip():
        first = f"{first} ({str(cause).splitlines()[0]})"
    return ConfigError(first, hint="check the override and the defaults list it refers to")


def _override_key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


def _first_unparsable_override(overrides: list[str]) -> str:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for o in overrides:
        try:
            parser.parse_overrides([o])
        except Exception:
            return o
    return " ".join(overrides)


def _known_keys(config_dir: Path, config_name: str, overrides: list[str]) -> list[str]:
    """Every dotted key path of the config composed without the failing override."""
    from omegaconf import OmegaConf

    try:
        cfg = _compose_with_hydra(config_dir, config_name, overrides)
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


# -- Hydra runtime values -------------------------------------------------------------------------


def _install_hydra_runtime(cfg: DictConfig, config_name: str, run_dir: Path | str | None) -> None:
    """Make ``${hydra:...}`` resolve after compose: the runtime node normally set by @hydra.main."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf, open_dict

    from expctl.rundir import plan_run_dir

    name = OmegaConf.select(cfg, "name", throw_on_missing=False, default=None)
    job_name = str(name) if isinstance(name, str) and name != "???" else config_name
    with open_dict(cfg):
        cfg.hydra.job.name = job_name
        output_dir = str(run_dir) if run_dir is not None else str(plan_run_dir(job_name))
        cfg.hydra.runtime.output_dir = output_dir
        cfg.hydra.run.dir = output_dir
    HydraConfig.instance().set_config(cfg)


# -- resolution and validation --------------------------------------------------------------------


def resolve_collecting_errors(cfg: DictConfig) -> DictConfig:
    """``cfg`` with every interpolation resolved as OmegaConf resolves it; one ConfigError
    listing all that cannot be. Interpolations leading to a ``???`` stay as written, so the
    missing-value check names the key to set (see :mod:`expctl.config_resolve`)."""
    from expctl.config_resolve import resolve_config

    return resolve_config(cfg)


def missing_keys(cfg: Any, prefix: str = "") -> list[str]:
    """Every ``???`` key path, in config order.

    Interpolations that point at a ``???`` are not listed: the key they point at is, and
    filling that one fixes both.
    """
    from omegaconf import DictConfig, ListConfig

    found: list[str] = []
    items: list[tuple[Any, Any]]
    if isinstance(cfg, DictConfig):
        items = [(k, cfg._get_node(k)) for k in cfg]
    elif isinstance(cfg, ListConfig):
        items = [(i, cfg._get_node(i)) for i in range(len(cfg))]
    else:
        return found
    for key, node in items:
        path = f"{prefix}.{key!s}" if prefix else str(key)
        if isinstance(node, DictConfig | ListConfig):
            if node._is_missing():
                found.append(path)
            else:
                found.extend(missing_keys(node, path))
        elif node is not None and node._value() == "???":
            found.append(path)
    return found


# -- rendering helpers (pure: they return strings, the CLI prints) --------------------------------


@dataclass(frozen=True)
class ShownConfig:
    """What ``config show`` prints: plain values (secrets redacted unless asked) and the
    ``???`` keys the shown part needs, in config order."""

    plain: Any
    missing: list[str]


def show_config(
    source: ConfigSource,
    *,
    select: str | None = None,
    resolve: bool = True,
    show_secrets: bool = False,
) -> ShownConfig:
    """Compose and render the config, or only the subtree at ``select``.

    With ``select`` only what that subtree needs is resolved, as Hydra would: a broken
    interpolation or an unknown resolver elsewhere does not matter. ``resolve=False`` shows
    interpolations as written.
    """
    from omegaconf import OmegaConf

    from expctl.config_resolve import raise_problems, resolved_container

    cfg = compose_config(source, resolve=False, require_complete=False)
    node = node_at(cfg, select) if select else cfg
    path = select or ""
    if resolve:
        plain, walk = resolved_container(node, path)
        raise_problems(walk)
        missing = _missing_within(node, path, walk.missing_refs)
    elif OmegaConf.is_config(node):
        plain = OmegaConf.to_container(node, resolve=False, throw_on_missing=False)
        missing = _missing_within(node, path, [])
    else:
        plain = node._value()
        missing = [path] if plain == "???" else []
    remember_config(plain)
    shown = plain if show_secrets else redact(plain, path)
    return ShownConfig(shown, missing)


def _missing_within(node: Any, path: str, referenced: list[str]) -> list[str]:
    """``???`` keys inside ``node`` (or ``node`` itself), then those its interpolations lead to."""
    from omegaconf import OmegaConf

    if node._is_missing():
        own = [path]
    elif OmegaConf.is_config(node):
        own = missing_keys(node, path)
    else:
        own = []
    return list(dict.fromkeys([*own, *referenced]))


def node_at(cfg: DictConfig, key: str) -> Any:
    """The node at dotted ``key`` (``a.b``, ``a[0].b``), not dereferenced if it is itself an
    interpolation (``--no-resolve`` shows it as written); a did-you-mean for unknown keys."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    node: Any = cfg
    parts = [p for p in re.split(r"\.|\[(\d+)\]", key) if p]
    for i, part in enumerate(parts):
        if i and node._is_interpolation():
            node = _dereference(node, ".".join(parts[:i]))
        if isinstance(node, DictConfig) and not node._is_none():
            node = node._get_node(part)  # None when absent (`in` is False for ??? values)
        elif isinstance(node, ListConfig) and part.isdigit() and int(part) < len(node):
            node = node._get_node(int(part))
        else:
            node = None
        if node is None:
            known = list(iter_key_paths(OmegaConf.to_container(cfg, resolve=False)))
            close = did_you_mean(key, known)
            top = ", ".join(str(k) for k in cfg)
            hint = f"did you mean {' or '.join(close)}?" if close else f"top-level keys: {top}"
            raise ConfigError(f"no key {key!r} in the composed config", hint=hint)
    return node


def _dereference(node: Any, path: str) -> Any:
    from expctl.config_resolve import describe_resolution_error

    try:
        return node._dereference_node()
    except Exception as e:
        message, hint = describe_resolution_error(e)
        raise ConfigError(message, hint=hint, where=path) from None


def dump(plain: Any, fmt: str) -> str:
    """Serialise a plain config as YAML (Hydra's key order) or JSON."""
    if fmt == "json":
        return json.dumps(plain, indent=2, default=str)
    import yaml

    if not isinstance(plain, dict | list):
        return yaml.safe_dump(plain, default_flow_style=False, sort_keys=False).removesuffix(
            "\n...\n"
        )
    return yaml.safe_dump(plain, default_flow_style=False, sort_keys=False, allow_unicode=True)
