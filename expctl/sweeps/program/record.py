"""A program trial's record: the same ``metrics.jsonl`` and ``summary.json`` as a trainer run.

The program logged with ``wandb.log``; its offline W&B run holds the rows, read back from the
transaction log. Written into the trial's run directory after the program ends, so every run of
any kind is listed and compared the same way (``expctl runs``).
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from expctl.record.write import RunRecord
from expctl.secrets import redact_argv, redact_params
from expctl.status import PROGRAM_RUN_STATUS
from expctl.sweeps.program.runner import ProgramResult


def write_program_record(
    run_dir: Path,
    result: ProgramResult,
    *,
    name: str,
    sweep_id: str,
    trial: int,
    params: dict[str, Any],
    metric: str | None,
    maximize: bool,
    started: datetime,
) -> None:
    record = RunRecord(run_dir)
    for row in result.rows:
        record.append_metrics(row)
    record.close()
    final = _last_values(result.rows)
    best = _best_row(result.rows, metric, maximize)
    sync_dirs = [str(result.wandb_run_dir)] if result.wandb_run_dir else []
    wandb = {
        "mode": "offline",
        "path": None,
        "run_id": result.wandb_run_dir.name.rsplit("-", 1)[-1] if result.wandb_run_dir else None,
        "sync_command": "wandb sync " + " ".join(sync_dirs) if sync_dirs else None,
        "sync_dirs": sync_dirs,
    }
    record.write_summary(
        {
            "status": PROGRAM_RUN_STATUS.get(result.status, "failed"),
            "kind": "program",
            "name": name,
            "run_dir": str(record.run_dir),
            "started_at": started.isoformat(timespec="milliseconds"),
            "ended_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "error": None if result.status == "completed" else result.message,
            "sweep": {"id": sweep_id, "trial": trial},
            "params": redact_params(params),
            "command": redact_argv(result.command) if result.command else result.command,
            "exit_code": result.exit_code,
            "device": None,
            "step": int(result.rows[-1].get("step", len(result.rows))) if result.rows else 0,
            "final_metrics": final,
            "best_metrics": best,
            "monitor": {"metric": metric, "mode": "max" if maximize else "min"} if metric else None,
            "tracking": [{"backend": "wandb", **wandb}],  # the program logs with wandb only
            "wandb": wandb,  # as before the tracking list, for one more version
            "timings": {"total_s": round(result.duration, 4)},
        }
    )


def _last_values(rows: list[dict[str, float]]) -> dict[str, float]:
    final: dict[str, float] = {}
    for row in rows:
        final.update(row)
    return final


def _best_row(rows: list[dict[str, float]], metric: str | None, maximize: bool) -> dict[str, float]:
    scored = [r for r in rows if metric and isinstance(r.get(metric), float)]
    scored = [r for r in scored if math.isfinite(r[metric])]  # type: ignore[index]
    if not scored:
        return {}
    pick = max if maximize else min
    return dict(pick(scored, key=lambda r: r[metric]))  # type: ignore[index]
