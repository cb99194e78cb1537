"""Comparing runs side by side: the config keys that differ, what differs in code and
environment (commit, uncommitted diff by digest, package versions, host, devices), final/best
metrics, and one metric per epoch (or step) with a sparkline per run.

Everything returned is JSON-ready; the CLI renders it as tables (rich on a terminal).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from expctl.errors import UsageError, did_you_mean_hint
from expctl.record.jsonpolicy import is_finite_number as is_number
from expctl.record.read import (
    diff_digest,
    read_config,
    read_metrics,
    read_provenance,
    read_requirements,
)
from expctl.runs.records import RunInfo, provenance_fields

SPARK = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 40
AXES = ("step", "epoch")
_BOOKKEEPING = ("step", "epoch", "lr", "samples_per_s", "_step", "_runtime", "_timestamp")


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "l": [{"x": 2}]}`` → ``{"a.b": 1, "l.0.x": 2}`` (leaves only)."""
    flat: dict[str, Any] = {}
    if isinstance(node, dict):
        if not node and prefix:
            flat[prefix] = {}
        for k, v in node.items():
            flat.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(node, list) and any(isinstance(v, dict | list) for v in node):
        for i, v in enumerate(node):
            flat.update(flatten(v, f"{prefix}.{i}" if prefix else str(i)))
    else:
        flat[prefix] = node
    return flat


# -- series --------------------------------------------------------------------------------------


def metric_series(
    rows: Sequence[dict[str, Any]], metric: str, x: str = "step"
) -> list[tuple[float, float]]:
    """``(x, value)`` of every row logging ``metric`` (non-finite values dropped). With
    ``x="epoch"`` one point per epoch: the last row of each."""
    points: list[tuple[float, float]] = []
    for i, row in enumerate(rows):
        value = row.get(metric)
        if not is_number(value):
            continue
        if x == "epoch":
            position = row.get("epoch")
            if not is_number(position):
                continue
        else:
            position = row.get("step", row.get("_step", i))
            if not is_number(position):
                position = i
        points.append((float(position), float(value)))  # type: ignore[arg-type]
    if x == "epoch":
        last: dict[float, float] = {}
        for position, value in points:
            last[position] = value
        points = sorted(last.items())
    return points


def metric_names(
    rows_by_run: Sequence[Sequence[dict[str, Any]]], runs: Sequence[RunInfo]
) -> list[str]:
    """Numeric metrics any of the runs logged (rows, else their summary), bookkeeping last."""
    names: dict[str, None] = {}
    for rows in rows_by_run:
        for row in rows:
            for k, v in row.items():
                if is_number(v):
                    names[k] = None
    for run in runs:
        for k, v in run.final_metrics.items():
            if is_number(v):
                names[k] = None
    main = sorted(k for k in names if k not in _BOOKKEEPING)
    return main + [k for k in _BOOKKEEPING if k in names]


def default_metric(runs: Sequence[RunInfo], known: Sequence[str]) -> str | None:
    for run in runs:
        if run.monitor and run.monitor in known:
            return run.monitor
    for name in ("val_loss", "loss", "train_loss"):
        if name in known:
            return name
    return next((k for k in known if k not in _BOOKKEEPING), known[0] if known else None)


def check_metric(metric: str, known: Sequence[str], what: str = "these runs") -> None:
    """An unknown metric is exit 2, listing the metrics that exist."""
    if metric in known:
        return
    guess = did_you_mean_hint(metric, list(known), every=True)
    listed = ", ".join(known) if known else "none (nothing was logged)"
    raise UsageError(f"no metric {metric!r} in {what}", hint=f"{guess}metrics logged: {listed}")


def pick_axis(rows_by_run: Sequence[Sequence[dict[str, Any]]], metric: str) -> str:
    """``epoch`` when every run's rows of ``metric`` say their epoch, else ``step``."""
    for rows in rows_by_run:
        with_metric = [r for r in rows if metric in r]
        if with_metric and not all(is_number(r.get("epoch")) for r in with_metric):
            return "step"
    return "epoch"


def sparkline(
    values: Sequence[float],
    lo: float | None = None,
    hi: float | None = None,
    width: int = SPARK_WIDTH,
) -> str:
    """Values as ``▁▂▃▅▇``, on the scale ``lo..hi`` (shared by the runs compared), at most
    ``width`` characters (longer series: the last value of each of ``width`` buckets)."""
    values = [v for v in values if is_number(v)]
    if not values:
        return ""
    if len(values) > width:
        n = len(values)
        values = [values[min(n - 1, ((i + 1) * n) // width - 1)] for i in range(width)]
    lo = min(values) if lo is None else lo
    hi = max(values) if hi is None else hi
    span = hi - lo
    if span <= 0:
        return SPARK[len(SPARK) // 2] * len(values)
    top = len(SPARK) - 1
    return "".join(SPARK[max(0, min(top, round((v - lo) / span * top)))] for v in values)


# -- compare -------------------------------------------------------------------------------------


def run_config(run: RunInfo) -> tuple[dict[str, Any], str | None]:
    """A run's config as flat dotted keys: config.yaml, plus a program trial's parameters."""
    config, note = read_config(run.path)
    flat = flatten(config) if config else {}
    if run.kind == "program":
        flat.update({f"params.{k}": v for k, v in run.params.items()})
    return flat, note


# What `runs compare` compares of each run's provenance, by its provenance_fields name.
PROVENANCE_COMPARED = (
    ("commit", "git.commit"),
    ("branch", "git.branch"),
    ("dirty", "git.dirty"),
    ("untracked dir", "git.workdir_untracked"),
    ("host", "env.host"),
    ("device", "env.device"),
    ("gpus", "env.gpus"),
    ("processes", "env.processes"),
    ("cuda", "env.cuda"),
    ("python", "env.python"),
    ("expctl", "env.expctl"),
)


def compare_provenance(runs: Sequence[RunInfo]) -> dict[str, Any]:
    """What differs in code and environment: ``{"facts": {name: [value per run]}`` for the
    facts that differ (the uncommitted diff as ``sha256:...`` of diff.patch, so "same" and
    "different" show without printing it), ``"packages": {name: [version per run]}`` for the
    installed distributions whose versions differ (requirements.txt, else provenance.json's
    key packages), and ``"missing"``: the runs without a readable provenance.json."""
    fields, packages, missing = [], [], []
    notes: dict[str, list[str]] = {}
    for run in runs:
        record, _ = read_provenance(run.path)
        if record is None:
            missing.append(run.id)
        found = provenance_fields(record)
        digest, digest_note = diff_digest(run.path) if found.get("git.dirty") else (None, None)
        fields.append({**found, "diff": digest, "missing": record is None})
        listed, _ = read_requirements(run.path)
        keyed = {k[len("pkg.") :]: v for k, v in found.items() if k.startswith("pkg.")}
        packages.append(listed if listed is not None else keyed)
        extra = [n for n in (digest_note,) if n]
        if extra:
            notes[run.id] = extra
    named = [*PROVENANCE_COMPARED[:3], ("diff", "diff"), *PROVENANCE_COMPARED[3:]]
    facts: dict[str, list[Any]] = {}
    if missing:  # a run without a record differs from one with it, whatever else matches
        facts["provenance"] = ["missing" if f.get("missing") else "recorded" for f in fields]
    for label, key in named:
        values = [f.get(key) for f in fields]
        if key == "git.workdir_untracked":  # records before it was recorded: not a difference
            values = [bool(v) for v in values]
        if any(v != values[0] for v in values[1:]):
            facts[label] = values
    names = sorted(set().union(*packages)) if packages else []
    versions = {}
    for name in names:
        values = [p.get(name) for p in packages]
        if any(v != values[0] for v in values[1:]):
            versions[name] = values
    return {"facts": facts, "packages": versions, "missing": missing, "notes": notes}


def compare_runs(
    runs: Sequence[RunInfo], metric: str | None = None, x: str | None = None
) -> dict[str, Any]:
    """What ``runs compare`` shows (JSON-ready)."""
    if x is not None and x not in AXES:
        raise UsageError(f"unknown axis {x!r}", hint="--x step or --x epoch")
    rows_by_run = []
    notes: dict[str, list[str]] = {}
    configs = []
    for run in runs:
        rows, row_notes = read_metrics(run.path)
        rows_by_run.append(rows)
        config, note = run_config(run)
        configs.append(config)
        extra = [*run.notes, *row_notes, *([note] if note else [])]
        if extra:
            notes[run.id] = extra
    known = metric_names(rows_by_run, runs)
    chosen = metric or default_metric(runs, known)
    if metric is not None:
        check_metric(metric, known)
    keys = sorted(set().union(*configs)) if configs else []
    differ = {}
    for key in keys:
        values = [c.get(key, _ABSENT) for c in configs]
        if any(_key(v) != _key(values[0]) for v in values[1:]):
            differ[key] = [None if v is _ABSENT else v for v in values]
    metric_keys = [
        k for k in known if any(k in r.final_metrics or k in r.best_metrics for r in runs)
    ]
    axis = x or (pick_axis(rows_by_run, chosen) if chosen else "step")
    series = [metric_series(rows, chosen, axis) if chosen else [] for rows in rows_by_run]
    every = [v for s in series for _, v in s]
    lo, hi = (min(every), max(every)) if every else (None, None)
    provenance = compare_provenance(runs)
    for run_id, extra in provenance.pop("notes").items():
        notes.setdefault(run_id, []).extend(extra)
    return {
        "runs": [
            {"id": r.id, "name": r.name, "status": r.status, "run_dir": str(r.path)} for r in runs
        ],
        "config": differ,
        "provenance": provenance,
        "final_metrics": {k: [r.final_metrics.get(k) for r in runs] for k in metric_keys},
        "best_metrics": {k: [r.best_metrics.get(k) for r in runs] for k in metric_keys},
        "monitor": [r.monitor for r in runs],
        "metric": chosen,
        "x": axis,
        "series": [
            {
                "id": r.id,
                "points": [{axis: px, "value": v} for px, v in s],
                "sparkline": sparkline([v for _, v in s], lo, hi),
                "first": s[0][1] if s else None,
                "last": s[-1][1] if s else None,
                "min": min(v for _, v in s) if s else None,
                "max": max(v for _, v in s) if s else None,
            }
            for r, s in zip(runs, series, strict=True)
        ],
        "metrics": known,
        "notes": notes,
    }


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


_ABSENT = _Absent()


def _key(value: Any) -> Any:
    import json

    if value is _ABSENT:
        return ("absent",)
    return json.dumps(value, sort_keys=True, default=str)
