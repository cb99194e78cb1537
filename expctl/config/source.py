"""Where a config comes from: the config directory, the primary config and the overrides.

``--config-dir``, else ``$EXPCTL_CONFIG_DIR``, else ``./configs``, else the example project
shipped in the package (with a warning, and named in unknown-key errors). Overrides are
Hydra's grammar; ``key=a=b`` means the value ``a=b``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from expctl.errors import ConfigError
from expctl.secrets import remember_overrides

PACKAGED_CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


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
        remember_overrides(overrides)
        for override in overrides:
            if not override.lstrip("+~").split("=", 1)[0].strip():
                raise ConfigError(
                    f"override {override!r} has no key",
                    hint="write KEY=VALUE, e.g. optim.lr=0.1 (or GROUP=OPTION: model=large)",
                )  # their values are scrubbed from every message from now on
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


def config_dir_note(config_dir: Path, how: str) -> str | None:
    """What to say on stderr about the config directory, when the user may not expect it.

    The example project (no ./configs here): typed outside a project, ``expctl run`` would
    otherwise train the example, the user's overrides silently missing. ``$EXPCTL_CONFIG_DIR``
    while a different ./configs is here: a variable exported for another project wins over the
    directory the user stands in. ``--config-dir``, ./configs and the variable alone: nothing.
    """
    if config_dir == PACKAGED_CONFIG_DIR:
        return (
            f"using the example config shipped with expctl ({PACKAGED_CONFIG_DIR}): no "
            "./configs here; pass --config-dir (or set EXPCTL_CONFIG_DIR) to use your project's"
        )
    # the CLI reads the variable as --config-dir's default, so `how` cannot tell: compare paths
    env = os.environ.get("EXPCTL_CONFIG_DIR")
    from_env = how == "$EXPCTL_CONFIG_DIR" or bool(
        env and Path(env).expanduser().resolve() == config_dir
    )
    local = Path("configs")
    if from_env and local.is_dir() and local.resolve() != config_dir:
        return (
            f"using EXPCTL_CONFIG_DIR={config_dir}, not ./configs here; unset it (or pass "
            "--config-dir configs) to use this directory's"
        )
    return None
