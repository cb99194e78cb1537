"""Sweep YAML → plain data plus the line of every key, so problems can point at ``file:line``.

YAML is read so that ``1e-5`` is a float: PyYAML's YAML 1.1 resolver reads it as a string, a
classic sweep bug.
"""

from __future__ import annotations

import re
from typing import Any

from expctl.errors import SpecError

# YAML 1.2 floats: unlike YAML 1.1, the mantissa needs no dot (`1e-5`, `1E5`).
_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


def _loader_class() -> type:
    # Built on call so that importing expctl stays free of PyYAML (`expctl --help` stays fast).
    import yaml

    class Loader(yaml.SafeLoader):
        """SafeLoader that reads ``1e-5`` and ``1E5`` as floats (YAML 1.2), not strings."""

    Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))
    return Loader


def load_yaml(text: str, source: str) -> tuple[Any, dict[str, int], list[tuple[str, str]]]:
    """Parse YAML; return (data, {dotted yaml path: line}, problems such as duplicate keys)."""
    import yaml

    loader = _loader_class()(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f"{source}:{mark.line + 1}" if mark else source
        raise SpecError(
            source,
            [(line, f"YAML syntax error: {e.problem or e.context}")],
            hint="fix the YAML at that line (indentation, quotes, brackets)",
        ) from None
    finally:
        loader.dispose()
    lines: dict[str, int] = {}
    problems: list[tuple[str, str]] = []
    if node is not None:
        _index_lines(node, "", lines, problems, source)
    return data, lines, problems


def _index_lines(
    node: Any, prefix: str, lines: dict[str, int], problems: list, source: str
) -> None:
    """Record the first line of every mapping key / list item under ``prefix``."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            path = f"{prefix}.{key}" if prefix else key
            if key in seen:
                # The constructed dict silently keeps the last value; only the nodes show it.
                problems.append(
                    (
                        f"{source}:{key_node.start_mark.line + 1}: {path}",
                        "duplicate key (YAML keeps only the last one)",
                    )
                )
            seen.add(key)
            lines.setdefault(path, key_node.start_mark.line + 1)
            _index_lines(value_node, path, lines, problems, source)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            path = f"{prefix}[{i}]"
            lines.setdefault(path, item.start_mark.line + 1)
            _index_lines(item, path, lines, problems, source)
