"""A trial's run directory, as the sweep agent reads and corrects it.

Two things the storage and the run record must agree on:

* a trial the agent *fails* although its run ended well (the metric was never logged, it is
  NaN, the trial timed out) says ``failed`` in its run dir's ``summary.json`` too, so
  ``expctl runs list`` shows what ``sweep status`` shows (:func:`fail_run_record`);
* a trial left RUNNING because its agent died while recording the result (a torn last journal
  record) but whose run finished is recorded from that run, not re-run
  (:func:`finished_run_of`).

Reads ``summary.json`` only (no torch, no metrics.jsonl).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expctl.record.files import SUMMARY_FILE
from expctl.record.read import read_summary

if TYPE_CHECKING:
    from expctl.status import OutcomeStatus, Verdict
    from expctl.sweeps.spec import SweepSpec

# run statuses that read as a success; a trial failed by the agent must not keep them
_ENDED_WELL = ("completed", "stopped")


def fail_run_record(run_dir: str | Path, message: str | None) -> bool:
    """Set ``summary.json``'s status to ``failed`` (with ``message`` as its error) when it says
    the run ended well; True when it was changed. Written atomically."""
    from expctl.fsutil import atomic_write_json

    path = Path(run_dir) / SUMMARY_FILE
    summary, _ = read_summary(Path(run_dir))
    if summary is None or summary.get("status") not in _ENDED_WELL:
        return False
    summary["status"] = "failed"
    summary["error"] = message or "failed by the sweep agent"
    atomic_write_json(path, summary)
    return True


@dataclass(frozen=True)
class FinishedRun:
    """What a trial's run directory says of how it ended."""

    run_dir: Path
    status: str  # completed | stopped | failed
    value: float | None  # the sweep metric's final value, if logged and finite
    metrics: dict[str, float]
    error: str | None


def finished_run_of(
    sweep_id: str, number: int, run_name: str, metric: str | None, root: str | Path | None = None
) -> FinishedRun | None:
    """The run directory of trial ``number`` of ``sweep_id`` under the runs root (where this
    agent writes runs: ``--runs-dir``/``$EXPCTL_RUNS_DIR``), when its summary says it ended
    (completed, stopped or failed); None when there is none, or it did not end."""
    from expctl.rundir import runs_root, safe_name

    base = runs_root(root) / safe_name(run_name)
    if not base.is_dir():
        return None
    for path in sorted(base.glob(f"*/{SUMMARY_FILE}"), reverse=True):  # newest first
        summary, _ = read_summary(path.parent)
        if summary is None:
            continue
        sweep = summary.get("sweep")
        if not isinstance(sweep, dict) or sweep.get("id") != sweep_id:
            continue
        if sweep.get("trial") != number or summary.get("status") not in (*_ENDED_WELL, "failed"):
            continue
        metrics = {
            k: float(v)
            for k, v in (summary.get("final_metrics") or {}).items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        value = metrics.get(metric) if metric else None
        if value is not None and not math.isfinite(value):
            value = None
        return FinishedRun(
            path.parent, str(summary["status"]), value, metrics, summary.get("error")
        )
    return None


def outcome_from_run(
    sweep_id: str, number: int, spec: SweepSpec
) -> tuple[Verdict, float | list[float] | None, dict[str, Any]] | None:
    """How trial ``number`` ended, read from its run directory when that run ended (see
    :func:`finished_run_of`): its verdict, value and the result the storage records; None
    when no ended run is found."""
    from expctl.sweeps.trial import TrialOutcome, judge

    metric = spec.metric.name if spec.metric else None
    run = finished_run_of(sweep_id, number, spec.name or f"sweep-{sweep_id}", metric)
    if run is None:
        return None
    # how a run ends, as the trial's outcome (a stopped run was stopped by the pruner)
    status: OutcomeStatus = (
        "completed"
        if run.status == "completed"
        else "pruned"
        if run.status == "stopped"
        else "failed"
    )
    outcome = TrialOutcome(status, run.metrics, str(run.run_dir), run.error, run.value)
    state, value = judge(outcome, spec)
    note = "recorded from its run directory (its agent died while recording the result)"
    result = {
        "run_dir": str(run.run_dir),
        "metrics": run.metrics,
        "message": f"{outcome.message}; {note}" if outcome.message else note,
    }
    return state, value, result
