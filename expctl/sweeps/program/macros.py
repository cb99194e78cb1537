"""W&B sweep `command:` macros, rendered exactly as W&B's agent renders them.

Reference: wandb 0.31 ``wandb/wandb_agent.py`` (``Agent._command_run``) and
``wandb/sdk/launch/sweeps/utils.py`` (``create_sweep_command_args``):

- an item that is exactly ``${name}`` is replaced by a *list* of argv items (possibly empty);
  any other item is kept verbatim — ``--lr=${args}`` is not a macro;
- values print with Python's ``str()``: ``0.001``, ``1e-05``, ``True``, ``None``, ``[32, 64]``,
  and a nested ``parameters:`` block prints as a dict, ``{'lr': 0.01}``;
- ``${envvar:NAME}`` (NAME matching ``[A-Z0-9_]*``) is substituted *inside* any item.

Two deliberate differences, both where W&B is silently wrong:

- ``${interpreter}`` is ``sys.executable``, not ``python``: under a virtual environment started as
  ``.venv/bin/expctl`` (not activated), the ``python`` on PATH is another interpreter, often one
  without wandb or torch. ``/usr/bin/env <abs path>`` runs exactly the agent's interpreter.
- an unknown macro, or ``${envvar:NAME}`` with NAME unset, is an error. W&B drops the former and
  replaces the latter by the literal text ``NAME``; both turn a typo into a confusing trial failure.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from expctl.errors import UsageError, did_you_mean, suggest
from expctl.fsutil import atomic_write_text

DEFAULT_COMMAND: tuple[str, ...] = ("${env}", "${interpreter}", "${program}", "${args}")

# The macros W&B's agent substitutes (besides ${envvar:NAME}), in its documented order.
MACRO_NAMES: tuple[str, ...] = (
    "env",
    "interpreter",
    "program",
    "args",
    "args_no_hyphens",
    "args_no_boolean_flags",
    "args_json",
    "args_json_file",
    "args_no_equals",
    "args_append_hydra",
    "args_override_hydra",
)
KNOWN_MACROS: frozenset[str] = frozenset(MACRO_NAMES)

# Same pattern as W&B: upper-case names only; `${envvar:path}` is left as it is.
ENVVAR_MACRO = re.compile(r"\$\{envvar\:([A-Z0-9_]*)\}")


def plain_value(value: Any) -> Any:
    """Turn numpy scalars/arrays and tuples into the JSON-like values W&B's server would send."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        return value.item()  # numpy scalar: np.float64(0.1) -> 0.1
    if hasattr(value, "tolist") and callable(value.tolist):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): plain_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_value(v) for v in value]
    return value


def wandb_params(
    flat: Mapping[str, Any], parameters_spec: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The run's top-level W&B parameters from expctl's flat dotted names.

    W&B keeps a literal dotted name (``optim.lr: {values: ...}``) as one key — Hydra users rely on
    ``${args_no_hyphens}`` printing ``optim.lr=0.01`` — but re-nests a nested ``parameters:`` block,
    so ``optim: {parameters: {lr: ...}}`` reaches the program as ``optim={'lr': 0.01}`` and as
    ``wandb.config.optim.lr``. The flat names alone cannot tell the two apart, so pass the sweep's
    raw ``parameters`` mapping to re-nest exactly as W&B; without it names are taken literally.
    Values that are already dicts are kept as they are.
    """
    paths = _nested_block_paths(parameters_spec or {})
    params: dict[str, Any] = {}
    for name, value in flat.items():
        path = paths.get(name, (name,))
        node = params
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = plain_value(value)
    return params


def _nested_block_paths(spec: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[str, tuple]:
    """Map "a.b.c" to ("a", "b", "c") for every parameter that sits inside a nested block."""
    paths: dict[str, tuple] = {}
    for key, node in spec.items():
        path = (*prefix, str(key))
        if isinstance(node, Mapping) and "parameters" in node and _is_block(node):
            paths.update(_nested_block_paths(node["parameters"], path))
        elif len(path) > 1:
            paths[".".join(path)] = path
    return paths


def _is_block(node: Mapping[str, Any]) -> bool:
    distribution_keys = {"value", "values", "distribution", "min", "max", "mu", "sigma", "q"}
    return isinstance(node["parameters"], Mapping) and not (distribution_keys & set(node))


def render(value: Any) -> str:
    """A value as W&B's agent prints it on the command line (``f"{value}"``)."""
    return str(value)


def command_args(params: Mapping[str, Any]) -> dict[str, list[str]]:
    """Every ``${args*}`` rendering of ``params`` (top-level W&B names, see ``wandb_params``)."""
    args: list[str] = []
    no_hyphens: list[str] = []
    no_booleans: list[str] = []
    no_equals: list[str] = []
    append_hydra: list[str] = []
    override_hydra: list[str] = []
    for name, value in params.items():
        flag = f"{name}={render(value)}"
        args.append(f"--{flag}")
        no_hyphens.append(flag)
        no_equals += [f"--{name}", render(value)]
        append_hydra.append(f"+{flag}")
        override_hydra.append(f"++{flag}")
        if isinstance(value, bool):
            if value:  # a false boolean flag is simply left out
                no_booleans.append(f"--{name}")
        else:
            no_booleans.append(f"--{flag}")
    return {
        "args": args,
        "args_no_hyphens": no_hyphens,
        "args_no_boolean_flags": no_booleans,
        "args_no_equals": no_equals,
        "args_json": [args_json(params)],
        "args_append_hydra": append_hydra,
        "args_override_hydra": override_hydra,
    }


def args_json(params: Mapping[str, Any]) -> str:
    """``${args_json}``: W&B's ``json.dumps`` with default separators (NaN stays ``NaN``)."""
    return json.dumps(dict(params))


def sweep_file(wandb_dir: Path | str, sweep_id: str, run_id: str, suffix: str) -> Path:
    """``$WANDB_DIR/wandb/sweep-<id>/config-<run>.<suffix>``, where W&B's agent writes them."""
    return Path(wandb_dir) / "wandb" / f"sweep-{sweep_id}" / f"config-{run_id}.{suffix}"


def unknown_macros(command: Iterable[str]) -> list[str]:
    """The ``${name}`` items of ``command`` that are not W&B macros (for spec validation)."""
    items = [str(item) for item in command]
    return [
        item
        for item in items
        if item.startswith("${")
        and item.endswith("}")
        and item[2:-1] not in KNOWN_MACROS
        and not ENVVAR_MACRO.fullmatch(item)
    ]


def build_command(
    command: list[str] | None,
    program: str,
    params: Mapping[str, Any],
    *,
    sweep_id: str,
    run_id: str,
    wandb_dir: Path | str,
    environ: Mapping[str, str] | None = None,
    write_files: bool = True,
) -> list[str]:
    """The trial's argv (run it without a shell), as W&B's agent would build it.

    ``params`` are the run's top-level W&B parameters (see ``wandb_params``). ``environ`` is
    where ``${envvar:NAME}`` is looked up (default ``os.environ``). When the command uses
    ``${args_json_file}``, the JSON file is written at the path it names, as W&B does
    (unless ``write_files`` is false: the command is only being shown).
    """
    environ = os.environ if environ is None else environ
    items = [str(item) for item in (command or DEFAULT_COMMAND)]
    bad = unknown_macros(items)
    if bad:
        names = [b[2:-1] for b in bad]
        close = sorted({c for n in names for c in did_you_mean(n, set(KNOWN_MACROS))})
        raise UsageError(
            f"unknown macro{'s' if len(bad) > 1 else ''} in sweep command: {', '.join(bad)}",
            hint=suggest(close, every=True, shown=lambda c: "${" + c + "}", joiner=", ")
            + "known: "
            + ", ".join("${" + m + "}" for m in sorted(KNOWN_MACROS))
            + ", ${envvar:NAME}",
        )
    items = [_substitute_envvars(item, environ) for item in items]

    params = {name: plain_value(value) for name, value in params.items()}
    json_file = sweep_file(wandb_dir, sweep_id, run_id, "json")
    macros: dict[str, list[str]] = {
        **command_args(params),
        "env": [] if sys.platform == "win32" else ["/usr/bin/env"],
        "interpreter": [sys.executable],
        "program": [program],
        "args_json_file": [str(json_file)],
    }
    if write_files and "${args_json_file}" in items:
        atomic_write_text(json_file, macros["args_json"][0], fsync=False)

    argv: list[str] = []
    for item in items:
        if item.startswith("${") and item.endswith("}"):
            argv += macros[item[2:-1]]
        else:
            argv.append(item)
    return argv


def _substitute_envvars(item: str, environ: Mapping[str, str]) -> str:
    def value_of(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise UsageError(
                f"sweep command item {item!r} uses ${{envvar:{name}}} but {name} is not set",
                hint=f"export {name}=... in the agent's environment before starting it",
            )
        return environ[name]

    return ENVVAR_MACRO.sub(value_of, item)
