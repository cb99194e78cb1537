"""Resolving a composed config exactly as OmegaConf does, while collecting *every* problem.

The result of a config that resolves is ``OmegaConf.to_container(cfg, resolve=True)``, value for
value (tested over every config tree in the test suite): the walk below is OmegaConf's own
``_to_content`` — dereference each interpolation, then convert the node it lands on *in its own
place*, so an interpolation inside a node that another node references resolves relative to where
it was written, as in Hydra. What it adds:

* a failing interpolation does not stop the walk: each is recorded once, at the key where it is
  written (also when it is reached through a reference), and all are raised together;
* an interpolation that leads to a ``???`` value — directly or inside a string — is kept as
  written (OmegaConf raises there), so `config show` displays it; an interpolation to a *node*
  holding a ``???`` gives that node, ``???`` included, as OmegaConf does. Either way the
  missing-value check names the ``???`` key the user can set, never the key that refers to it
  (``missing_refs``; ``missing_keys`` of the unresolved config lists no copies).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from expctl.errors import Problems

if TYPE_CHECKING:
    from omegaconf import DictConfig
    from omegaconf.base import Node

_MISSING_KEY = re.compile(r"Missing mandatory value: (\S+)")
BUILTIN_RESOLVERS = (
    "oc.env, oc.decode, oc.create, oc.select, oc.deprecated, oc.dict.keys, oc.dict.values, "
    "now, hydra"
)


class _Walk:
    """What one walk found (a plain class: a dataclass costs more to define than to use)."""

    def __init__(self) -> None:
        self.problems = Problems()  # at the keys where the interpolations are written
        self.kept: set[str] = set()  # paths of interpolations left as written
        self.missing_refs: list[str] = []  # ??? keys that kept ones lead to


def resolve_config(cfg: DictConfig) -> DictConfig:
    """A new config with every interpolation resolved (those leading to a ``???`` value kept).

    Raises one :class:`ConfigError` naming every interpolation that cannot be resolved.
    """
    plain, walk = resolved_container(cfg)
    raise_problems(walk)
    return to_config(plain, walk.kept)


def resolved_container(node: Node, path: str = "") -> tuple[Any, _Walk]:
    """``node`` as plain values, resolved as far as it can be, and what the walk found."""
    walk = _Walk()
    return _content(node, path, walk), walk


def raise_problems(walk: _Walk) -> None:
    walk.problems.raise_config_error("interpolations cannot be resolved", hint="")


def to_config(plain: Any, kept: set[str]) -> DictConfig:
    """A DictConfig of resolved values: literal ``${`` in resolved strings is escaped so it stays
    a literal; the interpolations in ``kept`` stay interpolations."""
    from omegaconf import OmegaConf

    return OmegaConf.create(_escape(plain, "", kept))


def _escape(value: Any, path: str, kept: set[str]) -> Any:
    if isinstance(value, dict):
        return {k: _escape(v, _join(path, k), kept) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape(v, _join(path, i), kept) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value and path not in kept:
        return value.replace("\\", "\\\\").replace("${", "\\${")
    return value


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


# -- the walk (OmegaConf's BaseContainer._to_content, made error-collecting) ----------------


def _content(node: Any, path: str, walk: _Walk) -> Any:
    from omegaconf import DictConfig, ListConfig

    if isinstance(node, DictConfig | ListConfig):
        if node._is_none():
            return None
        if node._is_missing():
            return "???"
        if node._is_interpolation():
            return _interpolated(node, path, walk)
        if isinstance(node, DictConfig):
            return {key: _content(node._get_node(key), _join(path, key), walk) for key in node}
        return [_content(node._get_node(i), _join(path, i), walk) for i in range(len(node))]
    if node._is_interpolation():
        return _interpolated(node, path, walk)
    return node._value()


def _interpolated(node: Any, path: str, walk: _Walk) -> Any:
    from omegaconf import DictConfig, ListConfig
    from omegaconf.errors import InterpolationToMissingValueError

    where = _written_at(node, path)
    try:
        target = node._dereference_node()
    except InterpolationToMissingValueError as e:
        walk.kept.add(path)
        found = _MISSING_KEY.search(str(e))
        if found and found.group(1) not in walk.missing_refs:
            walk.missing_refs.append(found.group(1))
        return node._value()
    except Exception as e:
        walk.problems.add(where, *describe_resolution_error(e), once=True)
        walk.kept.add(path)
        return node._value()
    if isinstance(target, DictConfig | ListConfig):
        if _holds_missing(target):  # `--set` the ??? inside the referenced node, not this key
            base = _written_at(target, "")
            for key in [base] if target._is_missing() else missing_keys(target, base):
                if key not in walk.missing_refs:
                    walk.missing_refs.append(key)
        # converted where it lives, as OmegaConf does (a ??? inside stays "???"): its own
        # interpolations resolve relative to that place, and their problems are recorded
        # once, at the keys where they are written
        return _content(target, path, walk)
    return target._value()


def _written_at(node: Any, path: str) -> str:
    """The full key where ``node`` is written (differs from ``path`` inside a reference)."""
    try:
        key = node._get_full_key(None)
    except Exception:
        return path
    return str(key) if key else path


def _holds_missing(node: Any) -> bool:
    from omegaconf import DictConfig, ListConfig

    if node._is_missing():
        return True
    if node._is_none() or node._is_interpolation():
        return False
    children = (
        (node._get_node(k) for k in node)
        if isinstance(node, DictConfig)
        else (node._get_node(i) for i in range(len(node)))
    )
    for child in children:
        if child is None:
            continue
        if isinstance(child, DictConfig | ListConfig):
            if _holds_missing(child):
                return True
        elif child._is_missing():
            return True
    return False


# -- messages -------------------------------------------------------------------------------


def describe_resolution_error(e: Exception) -> tuple[str, str]:
    """(one-line message, hint) for an OmegaConf resolution error."""
    from omegaconf.errors import (
        InterpolationKeyError,
        InterpolationResolutionError,
        UnsupportedInterpolationType,
    )

    text = str(e).splitlines()[0] if str(e).strip() else type(e).__name__
    if isinstance(e, UnsupportedInterpolationType):
        name = re.search(r"Unsupported interpolation type (\S+)", text)
        resolver = name.group(1) if name else text
        return (
            f"unknown resolver {resolver!r}",
            f"built-in resolvers: {BUILTIN_RESOLVERS}; a resolver your app registers with "
            "OmegaConf.register_new_resolver is unknown here: see the config as written with "
            "--no-resolve",
        )
    if isinstance(e, InterpolationKeyError):
        target = re.search(r"Interpolation key '([^']+)'", text)
        return (
            f"interpolation refers to missing key {target.group(1) if target else text!r}",
            "fix the ${...} reference or add the key it names",
        )
    env = re.search(r"Environment variable '([^']+)' not found", str(e))
    if env:
        return (
            f"environment variable {env.group(1)} is not set",
            f"export {env.group(1)}=... or give a default: ${{oc.env:{env.group(1)},default}}",
        )
    if isinstance(e, InterpolationResolutionError):
        return (f"cannot resolve interpolation: {text}", "fix the ${...} expression")
    return (f"{type(e).__name__}: {text}", "fix the value at this key")


# -- missing values -------------------------------------------------------------------------


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
