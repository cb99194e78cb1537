"""Selecting runs: ``--where`` conditions, ``--sort`` keys, ``--status``/``--name`` filters, and
loading the runs ``RUN`` references name (the references themselves: :mod:`expctl.record.refs`).

``--where`` grammar (repeat the option: every condition must hold)::

    CONDITION := KEY OP VALUE
    OP        := <  <=  >  >=  =  ==  !=  ~ (glob match)  !~ (glob does not match)
    KEY       := a dotted name, looked up in this order:
                   run fields   id name status kind device started ended duration sweep
                   final metrics (val_loss, train_acc, ...: the run's last logged values)
                   overrides / program parameters (optim.lr, model, batch_size, ...)
                   the resolved config (config.yaml: optim.weight_decay, data.batch_size, ...)
                 or with an explicit prefix: final.KEY  best.KEY  config.KEY  param.KEY
                 provenance (provenance.json, read only when a condition names it):
                   git.commit git.branch git.describe git.dirty git.remote
                   env.host env.python env.expctl env.device env.gpus env.cuda
                   env.slurm_job env.slurm_array  pkg.torch pkg.numpy ... (key packages)
                   provenance.PATH (any key of provenance.json: environment.platform)
    VALUE     := a number (1e-3), true/false, null, or text (quotes optional; * ? [ ] glob)

``<``/``>`` compare numbers; ``=`` compares numbers by value and anything else as text (a VALUE
with glob characters matches by glob). ``git.commit=abc123`` matches a commit by its prefix
(4 or more hex digits), as git does. A run without the KEY never matches. A KEY that no run
has is an error listing the keys that exist.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expctl.errors import UsageError, did_you_mean_hint
from expctl.record.read import read_config, read_provenance
from expctl.record.refs import resolve_run
from expctl.record.scan import find_run_dirs, looks_like_run_dir
from expctl.runs.overrides import parse_scalar
from expctl.runs.records import RunInfo, load_run, provenance_fields

FIELDS = (
    *("id", "name", "status", "kind", "device", "started", "ended", "duration", "sweep"),
    *("tag", "notes"),  # labels (runs/labels.py)
)
PROVENANCE_PREFIXES = ("git.", "env.", "pkg.", "provenance.")
PROVENANCE_KEYS = (
    *("git.commit", "git.branch", "git.describe", "git.dirty", "git.remote"),
    *("env.host", "env.python", "env.expctl", "env.device", "env.gpus", "env.cuda"),
    *("env.slurm_job", "env.slurm_array", "pkg.torch"),
)
COMMIT_KEY = "git.commit"
_HEX_PREFIX = re.compile(r"^[0-9a-fA-F]{4,64}$")
_CONDITION = re.compile(r"^\s*([^<>=!~\s]+)\s*(<=|>=|!=|==|!~|=|<|>|~)\s*(.*?)\s*$")
_MISSING = object()


class RunView:
    """A run with lazy access to its resolved config and its provenance (each read only when a
    key needs it: `runs list` reads neither unless a condition, sort or column names them)."""

    def __init__(self, run: RunInfo):
        self.run = run
        self._config: dict[str, Any] | object | None = _MISSING
        self._provenance: dict[str, Any] | object | None = _MISSING
        self._provenance_fields: dict[str, Any] | None = None

    @property
    def config(self) -> dict[str, Any] | None:
        if self._config is _MISSING:
            self._config, _ = read_config(self.run.path)
        return self._config  # type: ignore[return-value]

    @property
    def provenance(self) -> dict[str, Any] | None:
        """provenance.json (None when the run has none or it cannot be read)."""
        if self._provenance is _MISSING:
            self._provenance, _ = read_provenance(self.run.path)
            self._provenance_fields = provenance_fields(self._provenance)
        return self._provenance  # type: ignore[return-value]

    def provenance_lookup(self, key: str) -> tuple[bool, Any]:
        record = self.provenance
        if key.startswith("provenance."):
            return _dotted(record, key[len("provenance.") :])
        fields = self._provenance_fields or {}
        return (key in fields, fields.get(key))

    def config_value(self, dotted: str) -> tuple[bool, Any]:
        """``(found, value)`` of a key of the resolved config (the runs index serves it from
        its columns: :class:`expctl.runs.selection.IndexedView`)."""
        return _dotted(self.config, dotted)

    def lookup(self, key: str) -> tuple[bool, Any]:
        run = self.run
        if key.startswith(PROVENANCE_PREFIXES):
            found, value = self.provenance_lookup(key)
            if found or key.startswith("provenance."):
                return found, value
            # not a provenance fact: a config of one's own may have an `env:` node (RL)
        for prefix, source in (
            ("final.", run.final_metrics),
            ("best.", run.best_metrics),
            ("param.", run.params),
        ):
            if key.startswith(prefix):
                name = key[len(prefix) :]
                return (name in source, source.get(name))
        if key.startswith("config."):
            return self.config_value(key[len("config.") :])
        if key in FIELDS:
            return True, field_value(run, key)
        if key in run.final_metrics:
            return True, run.final_metrics[key]
        if key in run.params:
            return True, run.params[key]
        if run.kind == "trainer":
            return self.config_value(key)
        return False, None


def field_value(run: RunInfo, key: str) -> Any:
    """The value of the run field ``key`` (one of :data:`FIELDS`), as ``--where`` reads it."""
    return {
        "id": run.id,
        "name": run.name,
        "status": run.status,
        "kind": run.kind,
        "device": run.device,
        "started": run.started_at,
        "ended": run.ended_at,
        "duration": run.duration_s,
        "sweep": (run.sweep or {}).get("id"),
        "tag": run.labels.tags,  # a set: --where tag=x holds when one of them is x
        "notes": run.labels.notes,
    }[key]


def _dotted(node: Any, key: str) -> tuple[bool, Any]:
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False, None
    return True, node


# -- --where -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Condition:
    key: str
    op: str
    text: str  # the VALUE as written
    value: Any  # parsed

    def __str__(self) -> str:
        return f"{self.key}{self.op}{self.text}"

    def holds(self, found: bool, actual: Any) -> bool:
        if not found:
            return False
        op = self.op
        if self.key == COMMIT_KEY and op in ("=", "==", "!=") and _HEX_PREFIX.match(self.text):
            # a commit is named by a prefix, as git names it (an all-digit prefix is no number)
            hit = isinstance(actual, str) and actual.lower().startswith(self.text.lower())
            return hit if op != "!=" else not hit
        if isinstance(actual, tuple):  # tags: = and ~ hold when one tag matches, != !~ when none
            from expctl.runs.labels import matches_tag

            hit = matches_tag(actual, self.text)
            return {"=": hit, "==": hit, "~": hit, "!=": not hit, "!~": not hit}.get(op, False)
        if op in ("<", "<=", ">", ">="):
            if not _is_number(actual):
                return False
            a, b = float(actual), float(self.value)
            return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
        if op in ("~", "!~"):
            matched = fnmatch.fnmatchcase(_as_text(actual), self.text)
            return matched if op == "~" else not matched
        equal = self._equal(actual)
        return equal if op in ("=", "==") else not equal

    def _equal(self, actual: Any) -> bool:
        if _is_number(actual) and _is_number(self.value):
            return math.isclose(float(actual), float(self.value), rel_tol=1e-9, abs_tol=0.0)
        if isinstance(self.value, bool) or self.value is None:
            return actual is self.value or _as_text(actual) == _as_text(self.value)
        if any(c in self.text for c in "*?["):
            return fnmatch.fnmatchcase(_as_text(actual), self.text)
        return _as_text(actual) == str(self.value)


def parse_condition(text: str) -> Condition:
    m = _CONDITION.match(text)
    if not m or not m.group(3):
        raise UsageError(
            f"cannot read --where {text!r}",
            hint="write KEY OP VALUE, e.g. --where 'optim.lr<0.01' --where status=completed "
            "(OP: < <= > >= = != ~ !~)",
        )
    key, op, raw = m.groups()
    value = parse_scalar(raw)
    if op in ("<", "<=", ">", ">=") and not _is_number(value):
        raise UsageError(
            f"--where {text!r}: {op} needs a number, not {raw!r}",
            hint="use = or ~ (glob) to compare text, e.g. --where 'model=large'",
        )
    return Condition(key, op, raw.strip().strip("'\""), value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return repr(value)
    return str(value)


def available_keys(views: Iterable[RunView]) -> list[str]:
    """Keys ``--where``/``--sort`` can name without a prefix (fields, metrics, parameters)."""
    metrics: set[str] = set()
    params: set[str] = set()
    for v in views:
        metrics |= {k for k, val in v.run.final_metrics.items() if not isinstance(val, dict)}
        params |= set(v.run.params)
    return [*FIELDS, *sorted(metrics), *sorted(params - metrics)]


def check_keys(keys: Sequence[str], views: Sequence[RunView], what: str) -> None:
    """A key that no run has is an error (exit 2) listing the keys that exist."""
    if not views:
        return
    for key in keys:
        if any(v.lookup(key)[0] for v in views):
            continue
        known = available_keys(views)
        guess = did_you_mean_hint(key, known, every=True)
        if key.startswith(PROVENANCE_PREFIXES):
            guess = did_you_mean_hint(key, list(PROVENANCE_KEYS), every=True)
            raise UsageError(
                f"no run has {key!r} ({what}): provenance.json lacks it in every run",
                hint=f"{guess}provenance keys: {', '.join(PROVENANCE_KEYS)}, pkg.NAME; "
                "or provenance.PATH for any key of provenance.json",
            )
        raise UsageError(
            f"no run has {key!r} ({what})",
            hint=f"{guess}keys: {', '.join(known)}; or config.KEY for any key of the resolved "
            f"config; provenance: {', '.join(PROVENANCE_KEYS[:4])}, env.host, ...",
        )


def apply_where(views: list[RunView], conditions: Sequence[Condition]) -> list[RunView]:
    check_keys([c.key for c in conditions], views, "--where")
    return [v for v in views if all(c.holds(*v.lookup(c.key)) for c in conditions)]


# -- --sort --------------------------------------------------------------------------------------


def sort_views(views: list[RunView], sort: str | None) -> list[RunView]:
    """``None``: newest first. ``KEY``: ascending; ``-KEY``: descending; runs without a value
    for KEY come last either way."""
    if not sort:
        return sorted(views, key=lambda v: v.run.sort_key, reverse=True)
    descending = sort.startswith("-")
    key = sort.lstrip("-+")
    check_keys([key], views, "--sort")
    by_time = sorted(views, key=lambda v: v.run.sort_key)  # stable tie order
    have: list[tuple[Any, RunView]] = []
    missing: list[RunView] = []
    for v in by_time:
        found, value = v.lookup(key)
        if not found or value is None or (isinstance(value, float) and math.isnan(value)):
            missing.append(v)
        else:
            have.append((_sort_key(value), v))
    have.sort(key=lambda pair: pair[0], reverse=descending)
    return [v for _, v in have] + missing


def _sort_key(value: Any) -> tuple[int, Any]:
    if _is_number(value):
        return (0, float(value))
    return (1, _as_text(value))


def sort_key_name(sort: str | None) -> str | None:
    return sort.lstrip("-+") if sort else None


# -- --status / --name ---------------------------------------------------------------------------


def check_statuses(statuses: Sequence[str]) -> list[str]:
    from expctl.status import RUN_STATUSES

    wanted = []
    for item in statuses:
        for s in item.split(","):
            s = s.strip().lower()
            if not s:
                continue
            if s not in RUN_STATUSES:
                guess = did_you_mean_hint(s, list(RUN_STATUSES))
                raise UsageError(
                    f"unknown --status {s!r}",
                    hint=f"{guess}statuses: {', '.join(RUN_STATUSES)}",
                )
            wanted.append(s)
    return wanted


def filter_runs(
    runs: Iterable[RunInfo], *, name: str | None = None, statuses: Sequence[str] = ()
) -> list[RunInfo]:
    wanted = set(check_statuses(statuses))
    return [
        r
        for r in runs
        if (name is None or fnmatch.fnmatchcase(r.name, name))
        and (not wanted or r.status in wanted)
    ]


# -- RUN references ------------------------------------------------------------------------------


def resolve_runs(refs: Sequence[str], root: Path) -> list[RunInfo]:
    """Each reference as a loaded run, in the order given (duplicates kept once)."""
    seen: dict[Path, RunInfo] = {}
    for ref in refs:
        path = resolve_run(ref, root)
        if path not in seen:
            seen[path] = load_run(path)
    return list(seen.values())


def sweep_runs(sweep_id: str, storage: str | None, root: Path) -> list[RunInfo]:
    """The sweep's trials: the run dirs its storage names, plus records under the runs root
    that say they belong to it (program trials)."""
    from expctl.errors import NotFoundError
    from expctl.runs.sweep_results import sweep_run_dirs

    paths: dict[Path, int] = {}
    error: NotFoundError | None = None
    try:
        for p, number in sweep_run_dirs(sweep_id, storage):
            if looks_like_run_dir(p):
                paths[p.absolute()] = number
    except NotFoundError as e:
        error = e
    runs = []
    for p, number in paths.items():
        run = load_run(p)
        run.sweep = run.sweep or {"id": sweep_id, "trial": number}
        runs.append(run)
    for p in find_run_dirs(root):
        if p.absolute() in paths:
            continue
        run = load_run(p)
        if (run.sweep or {}).get("id") == sweep_id:
            runs.append(run)
    if error is not None and not runs:
        raise error
    return runs
