"""What ``config show`` prints: the config, or one subtree of it, as plain values."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from expctl.config.compose import compose_config, iter_key_paths
from expctl.config.resolve import missing_keys, raise_problems, resolved_container
from expctl.config.source import ConfigSource
from expctl.errors import ConfigError, did_you_mean_hint
from expctl.secrets import redact, remember_config

if TYPE_CHECKING:
    from omegaconf import DictConfig


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
            top = ", ".join(str(k) for k in cfg)
            hint = did_you_mean_hint(key, known, every=True).rstrip() or f"top-level keys: {top}"
            raise ConfigError(f"no key {key!r} in the composed config", hint=hint)
    return node


def _dereference(node: Any, path: str) -> Any:
    from expctl.config.resolve import describe_resolution_error

    try:
        return node._dereference_node()
    except Exception as e:
        message, hint = describe_resolution_error(e)
        raise ConfigError(message, hint=hint, where=path) from None


def dump_yaml(plain: Any) -> str:
    """A plain config as YAML, byte for byte what ``OmegaConf.to_yaml`` (and so Hydra's
    ``--cfg job``) writes (JSON: expctl.cli.output.json_text).

    It is OmegaConf's own dumper: strings that a YAML 1.1 reader would take for a boolean or a
    number (``y``, ``no``, ``on``, ``1e3``) are quoted, keys included. PyYAML's SafeDumper
    quotes fewer (not ``y``/``n``/``1e3``), so another reader turned them into booleans/floats.
    The plain values are dumped directly, without building a DictConfig again.
    """
    import yaml
    from omegaconf._utils import get_omega_conf_dumper

    text: str = yaml.dump(
        plain,
        default_flow_style=False,
        allow_unicode=True,
        sort_keys=False,
        Dumper=get_omega_conf_dumper(),
    )
    # a bare scalar (`--select` of a leaf) is a document of its own: no end marker
    return text if isinstance(plain, dict | list) else text.removesuffix("\n...\n")
