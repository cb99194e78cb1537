"""The ``provenance:`` config node: which parts of a run's provenance are recorded.

```yaml
provenance:            # absent: everything on; `provenance: false`: nothing but the command
  git: true            # commit, branch, describe, remote, dirty state (provenance.json)
  diff: true           # diff.patch of changed tracked files (needs git)
  max_diff_bytes: 1000000
  packages: true       # requirements.txt
  environment: true    # Python, host, library versions, SLURM, GPUs
```
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from expctl.errors import Problems

DEFAULT_MAX_DIFF_BYTES = 1_000_000
_SWITCHES = ("git", "diff", "packages", "environment")


@dataclass(frozen=True)
class ProvenanceSettings:
    git: bool = True
    diff: bool = True
    max_diff_bytes: int = DEFAULT_MAX_DIFF_BYTES
    packages: bool = True
    environment: bool = True

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> ProvenanceSettings:
        """Read the ``provenance`` node of a composed config (a DictConfig or a plain dict);
        every invalid value in one ConfigError (exit 2)."""
        node = cfg.get("provenance") if cfg is not None else None
        return cls.from_node(node)

    @classmethod
    def from_node(cls, node: Any) -> ProvenanceSettings:
        """The settings from the ``provenance`` node itself: None (all on), a bool (all on or
        all off) or a mapping of the keys above."""
        if node is None:
            return cls()
        if isinstance(node, bool):
            return cls(**dict.fromkeys(_SWITCHES, node))
        problems = Problems()
        if not isinstance(node, Mapping):
            problems.add("provenance", f"expected true, false or a mapping, got {node!r}")
            problems.raise_config_error("invalid provenance settings", "see README, 'Provenance'")
        values: dict[str, Any] = {}
        allowed = [*_SWITCHES, "max_diff_bytes"]
        for key, value in node.items():
            path = f"provenance.{key}"
            if key not in allowed:
                problems.unknown_key("provenance", str(key), allowed)
            elif key == "max_diff_bytes":
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    problems.add(path, f"expected a whole number of bytes >= 0, got {value!r}")
                else:
                    values[key] = value
            elif not isinstance(value, bool):
                problems.add(path, f"expected true or false, got {value!r}")
            else:
                values[key] = value
        problems.raise_config_error(
            "invalid provenance settings",
            "set provenance.git/diff/packages/environment to true or false",
        )
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
