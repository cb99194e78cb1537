r"""Hydra's, OmegaConf's and YAML's exceptions as one-line :class:`ConfigError`\ s with hints.

Unknown keys get a did-you-mean computed from the config composed *without* the failing override.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from expctl.config.source import PACKAGED_CONFIG_DIR
from expctl.errors import ConfigError, did_you_mean, did_you_mean_hint, suggest

KnownKeys = Callable[[list[str]], list[str]]  # overrides -> every key of that composition


def translate_compose_error(
    e: Exception, config_dir: Path, config_name: str, overrides: list[str], known_keys: KnownKeys
) -> Exception:
    """A one-line ConfigError for anything composition raises on bad input; ``e`` itself when
    it is not about the input (a bug, to be reported)."""
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
        return _missing_config_error(e, config_dir, config_name, overrides)
    if isinstance(e, OverrideParseException):
        bad = _first_unparsable_override(overrides)
        return ConfigError(
            f"cannot parse override {bad!r}: {str(e).splitlines()[0]}",
            hint="use Hydra's grammar: key=value, +new=value, ++key=value, ~key, group=option; "
            "quote values with special characters: key='a,b'",
        )
    if isinstance(e, ConfigCompositionException):
        return _composition_error(e, config_dir, overrides, known_keys)
    if isinstance(e, RecursionError):
        return ConfigError(
            f"composing {config_name!r} recursed too deeply: a defaults list that includes "
            "itself (a cycle), or values nested thousands of levels deep",
            hint=f"check the defaults lists of {config_name!r} and of the configs it includes",
        )
    if isinstance(e, UnicodeDecodeError):
        return _not_text_error(config_dir)
    if isinstance(e, ValueError | TypeError):
        return _hydra_value_error(e, config_dir, overrides)
    return e


def _not_text_error(config_dir: Path) -> ConfigError:
    for path in sorted(config_dir.rglob("*.yaml")):
        try:
            path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            return ConfigError(
                "not a UTF-8 text file (a binary file?)",
                hint="config files are YAML text: fix or remove it",
                where=str(path),
            )
    return ConfigError(
        f"a config file under {config_dir} is not UTF-8 text",
        hint="config files are YAML text: fix or remove the binary file",
    )


def _hydra_value_error(e: Exception, config_dir: Path, overrides: list[str]) -> ConfigError:
    """Hydra's ValueErrors about overrides, e.g. choosing ``null`` for a config group."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if "Config group override must be a string or a list" in text:
        groups = sorted(d.name for d in config_dir.iterdir() if d.is_dir())
        chosen = [o for o in overrides if _override_key(o) in groups]
        group = _override_key(chosen[-1]) if chosen else "GROUP"
        options = sorted(p.stem for p in (config_dir / group).glob("*.yaml"))
        return ConfigError(
            f"cannot choose {chosen[-1] if chosen else 'that value'!r}: a config group takes an "
            "option name (or a list of them)",
            hint=f"choose one of {group}: {', '.join(options) or '(none)'}; to drop the "
            f"group's config use ~{group}",
        )
    return ConfigError(text, hint="check the overrides and the defaults lists they refer to")


def _missing_config_error(
    e: Any, config_dir: Path, config_name: str, overrides: list[str]
) -> ConfigError:
    missing = getattr(e, "missing_cfg_file", None) or ""
    options = getattr(e, "options", None)
    if options is not None or "/" in missing:
        group, _, option = missing.rpartition("/")
        on_disk = sorted(p.stem for p in (config_dir / group).glob("*.yaml"))
        choices = list(options or []) or on_disk
        inside = re.match(r"In '([^']+)'", str(e))
        typed = _typed_as(missing, overrides)
        if inside and typed is None:  # a config's own defaults list names it, not the command line
            return _defaults_list_error(inside.group(1), missing, choices, config_dir)
        typed_group = _override_group(typed[0]) if typed else ""
        if typed and not (config_dir / group).is_dir() and (config_dir / typed_group).is_dir():
            return _unknown_nested_choice(missing, typed[0], config_dir)
        if not (config_dir / group).is_dir() and not group.startswith("hydra/"):
            return ConfigError(
                f"unknown config group {group!r} (no directory {group}/ in {config_dir})",
                hint="groups an app registers in Python (Hydra's ConfigStore) are not visible "
                "to expctl: give them as YAML files in the config directory",
            )
        # a nested choice is typed `experiment=owt/gpt2s`: suggest it as the user writes it
        key, prefix = typed or (group, "")

        def shown(choice: str) -> str:
            return f"{key}={prefix}{choice}"

        hint = f"available options for {group}: {', '.join(choices) or '(none)'}"
        hint = did_you_mean_hint(option, choices, shown=shown) + hint
        message = f"unknown option {option!r} for config group {group!r}"
        if config_dir == PACKAGED_CONFIG_DIR:  # outside a project: the user means their own
            message += f" of the example config shipped with expctl ({config_dir})"
            hint += "; to use your project's configs run from its directory or pass --config-dir"
        return ConfigError(message, hint=hint)
    if missing == config_name or "primary config" in str(e):
        names = sorted(p.stem for p in config_dir.glob("*.yaml"))
        return ConfigError(
            f"no primary config {config_name!r} in {config_dir}",
            hint=f"configs there: {', '.join(names) or '(none)'}; choose one with --config-name",
        )
    return ConfigError(str(e).splitlines()[0], hint="check the defaults lists of your configs")


def _composition_error(
    e: Exception, config_dir: Path, overrides: list[str], known_keys: KnownKeys
) -> ConfigError:
    text = str(e)
    m = re.search(r"Could not override '([^']+)'", text)
    if m:
        return _unknown_key_error(m.group(1), config_dir, overrides, known_keys)
    m = re.search(r"Ambiguous value for argument '([^']+)'", text)
    if m:
        key, _, value = m.group(1).partition("=")
        return ConfigError(
            f"override {m.group(1)!r} has several values (a comma-separated sweep)",
            hint=f"to run once per value add -m (multirun): expctl run -m {key}={value}; "
            f"for a list value write {key}=[{value}]; for a string quote it: \"{key}='{value}'\"",
        )
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


def _unknown_key_error(
    key: str, config_dir: Path, overrides: list[str], known_keys: KnownKeys
) -> ConfigError:
    """Names the config dir; the ``+key`` hint is not given for expctl's own example project
    (outside a project, following it would silently train the example)."""
    rest = [o for o in overrides if _override_key(o) != key]
    known = known_keys(rest)
    close = did_you_mean(key, known)
    leaf_close = [
        k
        for k in known
        if k.rsplit(".", 1)[-1]
        in did_you_mean(key.rsplit(".", 1)[-1], {k.rsplit(".", 1)[-1] for k in known})
    ]
    suggestions = close or leaf_close[:3]
    if config_dir == PACKAGED_CONFIG_DIR:
        hint = (
            "no ./configs in this directory, so this is expctl's example project: run from your "
            "project's directory or pass --config-dir DIR"
        )
        if suggestions:
            hint += f" (in the example, {suggest(suggestions, every=True).rstrip()})"
        return ConfigError(
            f"unknown config key {key!r} in override: not in the example config shipped with "
            f"expctl ({config_dir})",
            hint=hint,
        )
    value = next(  # `~key` has no value (and an IndexError here hid the real error)
        (o.split("=", 1)[1] for o in overrides if _override_key(o) == key and "=" in o), "..."
    )
    hint = f"to add a new key use +{key}={value}"
    if any(o.lstrip().startswith("~") and _override_key(o) == key for o in overrides):
        hint = f"~{key} on the same command line deleted it first: drop one of the two"
    elif suggestions:
        hint = f"{suggest(suggestions, every=True)}({hint})"
    return ConfigError(
        f"unknown config key {key!r} in override (config dir {config_dir})", hint=hint
    )


def _typed_as(missing: str, overrides: list[str]) -> tuple[str, str] | None:
    """``(key as typed, value prefix)`` of the command-line override that chose ``missing`` (a
    path like ``experiment/owt/gpt2s``: ``+experiment=owt/gpt2s`` gives ``("+experiment",
    "owt/")``), None when no override did."""
    for o in overrides:
        typed_key, _, value = o.partition("=")
        group = _override_group(o)
        for choice in (c.strip() for c in value.strip("[] ").split(",")):
            if f"{group}/{choice}" == missing:
                return typed_key, choice.rpartition("/")[0] + "/" if "/" in choice else ""
    return None


def _unknown_nested_choice(missing: str, typed_key: str, config_dir: Path) -> ConfigError:
    """``experiment=owtt/gpt2s``: no directory ``experiment/owtt``; the options of the group
    the user typed, as paths below it."""
    group = _override_group(typed_key)
    choice = missing[len(group) + 1 :]
    base = config_dir / group
    options = sorted(str(p.relative_to(base).with_suffix("")) for p in base.rglob("*.yaml"))

    def shown(option: str) -> str:
        return f"{typed_key}={option}"

    hint = f"available options for {group}: {', '.join(options) or '(none)'}"
    return ConfigError(
        f"unknown option {choice!r} for config group {group!r}",
        hint=did_you_mean_hint(choice, options, shown=shown) + hint,
    )


def _defaults_list_error(
    inside: str, missing: str, choices: list[str], config_dir: Path
) -> ConfigError:
    """``missing`` named by a defaults list: the file and line that name it where it is one of
    the user's (for Hydra's own ``hydra/config``, the user's ``override hydra/...: x``)."""
    group, _, option = missing.rpartition("/")
    listed = f"options for {group}: {', '.join(choices) or '(none)'}"
    named = config_dir / f"{inside}.yaml"
    if named.is_file():
        return ConfigError(
            f"its defaults list names {missing!r}, which does not exist",
            hint=listed,
            where=str(named),
        )
    pattern = re.compile(
        rf"^\s*-\s*(override\s+)?/?{re.escape(group)}(@\S+)?\s*:\s*"
        rf"(['\"]?){re.escape(option)}\3\s*(#.*)?$"
    )
    for path in sorted(config_dir.rglob("*.yaml")):
        with contextlib.suppress(OSError, UnicodeDecodeError):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if pattern.match(line):
                    plugin = (
                        " (a Hydra plugin's option: install its package)"
                        if group.startswith("hydra/")
                        else ""
                    )
                    return ConfigError(
                        f"{line.strip()!r} chooses {option!r}, which {group} does not have{plugin}",
                        hint=listed,
                        where=f"{path}:{number}",
                    )
    return ConfigError(
        f"{inside}: its defaults list names {missing!r}, which does not exist", hint=listed
    )


def _override_key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


def _override_group(override: str) -> str:
    """The config group an override chooses in (``+db@backup=mysql`` → ``db``)."""
    return _override_key(override).split("@", 1)[0]


def _first_unparsable_override(overrides: list[str]) -> str:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    for o in overrides:
        try:
            parser.parse_overrides([o])
        except Exception:
            return o
    return " ".join(overrides)
