"""Reading run directories: list, show, compare and plot runs; sweep reports and best-of-sweep.

``expctl/train`` writes run directories (through ``expctl.record``); this package only reads them,
and never fails on a damaged one: a truncated ``summary.json`` or ``metrics.jsonl`` (a SIGKILLed
run, a full disk) is read as far as it goes and the run carries a note saying what was wrong.

* :mod:`expctl.runs.records` — load one run (:class:`RunInfo`) from its record (read by
  :mod:`expctl.record`); standard library (+ PyYAML for ``overrides.yaml``) only, so ``runs
  list`` is fast.
* :mod:`expctl.runs.query` — ``--where``/``--sort`` grammar, filters, loading referenced runs.
* :mod:`expctl.runs.compare` — config diff, metric tables, per-epoch series, sparklines.
* :mod:`expctl.runs.plot` — learning curves as PNG (matplotlib) or HTML (plotly).
* :mod:`expctl.runs.sweep_results` — a sweep's trials with their run records, best-N,
  publishing the best checkpoints, parameter importance.
* :mod:`expctl.runs.report` — the one-file, offline HTML report of a sweep (plotly).

Library code returns values or raises :class:`expctl.errors.ExpctlError`; only ``expctl.cli``
prints. Plotting libraries (plotly, matplotlib) and optuna are imported inside the functions
that need them.
"""

from __future__ import annotations

from expctl.runs.records import RunInfo, load_run

__all__ = ["RunInfo", "load_run"]
