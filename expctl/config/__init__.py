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

from expctl.config.compose import compose_config, iter_key_paths
from expctl.config.resolve import missing_keys, resolve_config
from expctl.config.show import ShownConfig, dump_yaml, node_at, show_config
from expctl.config.source import (
    PACKAGED_CONFIG_DIR,
    ConfigSource,
    find_config_dir,
    quote_value_with_equals,
)

# the name callers have always used: resolution that collects every problem
resolve_collecting_errors = resolve_config

__all__ = [
    "PACKAGED_CONFIG_DIR",
    "ConfigSource",
    "ShownConfig",
    "compose_config",
    "dump_yaml",
    "find_config_dir",
    "iter_key_paths",
    "missing_keys",
    "node_at",
    "quote_value_with_equals",
    "resolve_collecting_errors",
    "resolve_config",
    "show_config",
]
