"""The run record: what one run directory holds, in one home.

A LOW layer (below ``train/`` and ``runs/``, beside :mod:`expctl.rundir` and
:mod:`expctl.fsutil`): it imports nothing of expctl but ``fsutil``, ``errors``, ``status``,
``secrets`` and ``rundir``, and nothing heavy at module level.

* :mod:`~expctl.record.files` — every file name of a run directory, the directory stamp
  (``<YYYYmmdd-HHMMSS>-<id>``) and how it is parsed;
* :mod:`~expctl.record.jsonpolicy` — the one NaN/inf/JSON policy (record files and ``--format
  json``);
* :mod:`~expctl.record.safe_read` — how any record file is opened (no FIFO, no device, size
  limits, YAML alias limit);
* :mod:`~expctl.record.read` — the one tolerant reader: ``(value, problem)`` for every file;
* :mod:`~expctl.record.write` — :class:`~expctl.record.write.RunRecord`, the writer;
* :mod:`~expctl.record.timings` — the summary's ``timings`` (start-up latency, loop seconds);
* :mod:`~expctl.record.scan` — finding run directories under a runs root;
* :mod:`~expctl.record.refs` — the one run-reference resolver (``latest``, ``latest~N``, id
  prefix, path).

Nothing is re-exported here: importing ``expctl.record`` costs nothing.
"""
