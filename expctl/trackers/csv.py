"""CSV: the logged rows as ``RUN_DIR/metrics.csv`` (``logger.csv.file`` to name another), one
row per logged step, one column per metric (a row without a metric leaves its cell empty) —
for a spreadsheet or ``pandas.read_csv``. ``metrics.jsonl`` stays the record; this is a view.

A resumed run drops the rows from the step it resumes at onwards (as metrics.jsonl does), then
appends; a new column rewrites the file with the wider header. Standard library only.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from expctl.trackers.base import LocalTracker

DEFAULT_FILE = "metrics.csv"


class CsvTracker(LocalTracker):
    backend = "csv"
    label = "CSV logger"

    def __init__(self, file: Path):
        super().__init__()
        self.file = file
        self.location = str(file)
        self.columns: list[str] = []
        self._opened = False

    def _log(self, row: dict[str, float], step: int, wall: float | None) -> None:
        row = {"step": step, **row}
        if not self._opened:
            self._opened = True
            kept = [r for r in _read(self.file) if _step(r) < step]  # a resume drops the rest
            self.columns = list(dict.fromkeys(k for r in kept for k in r))
            if kept or self.file.exists():
                self._write_all(kept)
        new = [k for k in row if k not in self.columns]
        if new:
            rows = _read(self.file)
            self.columns += new
            self._write_all([*rows, row])
            return
        with self.file.open("a", newline="") as f:
            csv.DictWriter(f, self.columns).writerow(row)

    def _write_all(self, rows: list[dict[str, Any]]) -> None:
        tmp = self.file.with_name(self.file.name + ".tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, self.columns)
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(self.file)


def _read(file: Path) -> list[dict[str, Any]]:
    if not file.exists():
        return []
    with file.open(newline="") as f:
        return [{k: v for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)]


def _step(row: Mapping[str, Any]) -> float:
    try:
        return float(row.get("step", 0))
    except (TypeError, ValueError):
        return 0.0


def start_csv(settings: Mapping[str, Any], *, run_dir: Path | None) -> CsvTracker:
    base = Path(run_dir) if run_dir is not None else Path.cwd()
    file = Path(settings.get("file") or DEFAULT_FILE)
    if not file.is_absolute():
        file = base / file
    file.parent.mkdir(parents=True, exist_ok=True)
    return CsvTracker(file.resolve())
