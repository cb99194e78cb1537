"""A sweep file's ``command:``: W&B's macros, checked so that none silently vanishes.

W&B's agent substitutes only list items that are exactly one macro (``${args}``), and drops
unknown ones; a misspelt macro or a parameter written as a macro (``${lr}``) therefore runs the
program without its arguments. Each is an error here, with a did-you-mean.
"""

from __future__ import annotations

import re
from typing import Any

from expctl.errors import Problems, did_you_mean_hint
from expctl.sweeps.program.macros import ENVVAR_MACRO, MACRO_NAMES

MACROS = MACRO_NAMES
_MACRO = re.compile(r"\$\{([^}]*)\}")


def top_names(data: dict) -> set[str]:
    params = data.get("parameters")
    return {str(k) for k in params} if isinstance(params, dict) else set()


def check_command(
    raw: Any, program: str | None, problems: Problems, parameter_names: set[str]
) -> tuple[str, ...] | None:
    if not isinstance(raw, list) or not all(isinstance(x, str | int | float) for x in raw):
        problems.add(
            "command",
            "must be a list of strings, e.g. [${env}, ${interpreter}, ${program}, ${args}]",
        )
        return None
    items = tuple(str(x) for x in raw)
    known = [*MACROS, "envvar:NAME"]
    for i, item in enumerate(items):
        for name in _MACRO.findall(item):
            if name.startswith("envvar:"):
                # W&B substitutes ${envvar:NAME} anywhere in an item, for upper-case NAMEs only.
                if not ENVVAR_MACRO.fullmatch(f"${{{name}}}") or name == "envvar:":
                    problems.add(
                        f"command[{i}]",
                        f"${{{name}}} is never substituted: NAME must match [A-Z0-9_]+",
                    )
                continue
            if name not in MACROS and name in parameter_names:
                problems.add(
                    f"command[{i}]",
                    f"${{{name}}} is a parameter, not a W&B macro (W&B's agent drops it); "
                    "parameters reach the program through ${args} (--" + name + "=...), "
                    "${args_no_hyphens} or ${args_json_file}",
                )
            elif name not in MACROS:
                macros = ", ".join("${" + m + "}" for m in known)
                guess = did_you_mean_hint(name, known, shown=lambda c: "${" + c + "}")
                suffix = guess.rstrip() or f"macros: {macros}"
                problems.add(f"command[{i}]", f"unknown macro ${{{name}}}; {suffix}")
            elif item != f"${{{name}}}":
                problems.add(
                    f"command[{i}]",
                    f"macro ${{{name}}} inside {item!r} is not substituted: "
                    "W&B replaces only list items that are exactly one macro",
                )
            elif name == "program" and not program:
                problems.add(f"command[{i}]", "${program} is used but the sweep has no `program`")
    return items
