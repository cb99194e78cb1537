"""Sweep YAML → plain data plus the line of every key, so problems can point at ``file:line``.

YAML is read so that ``1e-5`` is a float: PyYAML's YAML 1.1 resolver reads it as a string, a
classic sweep bug.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from expctl.errors import SpecError
from expctl.record.safe_read import MAX_YAML_NODES as MAX_NODES  # a sweep file has tens

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


def load_yaml(text: str, source: str) -> tuple[Any, dict[str, int], list[str]]:
    """Parse YAML; return (data, {dotted yaml path: line}, warnings such as a key written twice).

    YAML merge keys (``<<: *base``) work as YAML says: a key written next to them overrides
    the merged one. A key written twice in one mapping is kept last (as W&B does), with a
    warning naming both lines.
    """
    import yaml

    loader = _loader_class()(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _check_expanded_size(node, source)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f"{source}:{mark.line + 1}" if mark else source
        raise SpecError(
            source,
            [(line, f"YAML syntax error: {e.problem or e.context}")],
            hint="fix the YAML at that line (indentation, quotes, brackets)",
        ) from None
    except RecursionError:
        raise SpecError(
            source,
            [(source, f"nested more than {sys.getrecursionlimit()} levels deep")],
            hint="a sweep file is a few levels deep: check its brackets",
        ) from None
    finally:
        loader.dispose()
    lines: dict[str, int] = {}
    warnings: list[str] = []
    if node is not None:
        _index_lines(node, "", lines, warnings, source, set())
    return data, lines, warnings


def _check_expanded_size(root: Any, source: str) -> None:
    """Refuse files whose aliases expand to more than :data:`MAX_NODES` nodes ("billion
    laughs"); the count is the run records' too (:func:`expctl.record.safe_read.expanded_size`)."""
    from expctl.record.safe_read import expanded_size

    if expanded_size(root, MAX_NODES) > MAX_NODES:
        raise SpecError(
            source,
            [(source, f"the YAML expands to more than {MAX_NODES:,} values (nested aliases)")],
            hint="a sweep file names a few parameters: remove the nested `*alias` references",
        )


def _index_lines(
    node: Any, prefix: str, lines: dict[str, int], warnings: list[str], source: str, seen: set[int]
) -> None:
    """Record the first line of every mapping key / list item under ``prefix`` (an aliased
    node once: its other paths take the line of the key that names it)."""
    import yaml

    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            path = f"{prefix}.{key}" if prefix else key
            line = key_node.start_mark.line + 1
            # keys a merge (`<<: *base`) brought in are written elsewhere; one written here
            # overrides them, as YAML says
            here = node.start_mark.index <= key_node.start_mark.index <= node.end_mark.index
            if here and key in first_line:
                warnings.append(
                    f"{source}:{line}: {path} is written twice (lines {first_line[key]} and "
                    f"{line}); the last one is used, as W&B does"
                )
            if here:
                first_line.setdefault(key, line)
            lines.setdefault(path, line)
            _index_lines(value_node, path, lines, warnings, source, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            path = f"{prefix}[{i}]"
            lines.setdefault(path, item.start_mark.line + 1)
            _index_lines(item, path, lines, warnings, source, seen)
