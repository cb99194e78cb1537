"""MLflow: one MLflow run per expctl run — params (the flattened, redacted config), metrics by
step, tags (the run's tags and notes, its directory, its sweep), and the best checkpoint as an
artifact (``checkpoints/``).

Where: ``logger.mlflow.tracking_uri``, else ``MLFLOW_TRACKING_URI``, else MLflow's default local
backend (a SQLite database) inside the run directory — ``RUN_DIR/mlruns/mlflow.db`` with the
artifacts under ``RUN_DIR/mlruns/artifacts`` — so the run directory stays the whole record.
Read it with ``mlflow ui --backend-store-uri sqlite:///RUN_DIR/mlruns/mlflow.db`` or
``MlflowClient(tracking_uri=...)``.

Only MLflow's client API is used (no global active run, nothing printed); ``mlflow`` (``pip
install expctl[mlflow]``) is imported only when this backend starts.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from expctl.errors import EXIT_SIGINT, EXIT_SIGTERM
from expctl.secrets import scrub
from expctl.trackers.base import LocalTracker, flatten

DEFAULT_DIR = "mlruns"
MAX_PARAM_CHARS = 6000  # MLflow's limit for a param value
BATCH = 100  # MLflow's limit of params per log_batch call


class MlflowTracker(LocalTracker):
    backend = "mlflow"
    label = "MLflow"

    def __init__(self, client: Any, run_id: str, tracking_uri: str, experiment: str):
        super().__init__()
        self.client = client
        self.ident = run_id
        self.location = tracking_uri
        self.experiment = experiment
        self.last_step = 0

    def describe(self) -> list[dict[str, Any]]:
        entry = super().describe()[0]
        entry["experiment"] = self.experiment
        return [entry]

    def _log(self, row: dict[str, float], step: int, wall: float | None) -> None:
        from mlflow.entities import Metric

        stamp = int((wall if wall is not None else time.time()) * 1000)
        metrics = [
            Metric(key, float(value), stamp, step)
            for key, value in row.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        ]
        self.client.log_batch(self.ident, metrics=metrics)
        self.last_step = max(self.last_step, step)

    def _log_checkpoints(
        self, name: str, files: Sequence[Path], best: Path | None, metadata: Mapping[str, Any]
    ) -> None:
        chosen = best if best is not None else files[0]
        self.client.log_artifact(self.ident, str(chosen), artifact_path="checkpoints")
        self.client.set_tag(self.ident, "expctl.best_checkpoint", f"checkpoints/{chosen.name}")

    def _summarize(self, values: dict[str, float]) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        metrics = [Metric(k, float(v), stamp, self.last_step) for k, v in values.items()]
        self.client.log_batch(self.ident, metrics=metrics)

    def _finish(self, exit_code: int) -> None:
        status = (
            "FINISHED"
            if exit_code == 0
            else "KILLED"
            if exit_code in (EXIT_SIGINT, EXIT_SIGTERM)
            else "FAILED"
        )
        self.client.set_terminated(self.ident, status)


def start_mlflow(
    settings: Mapping[str, Any],
    *,
    run_name: str,
    config: Mapping[str, Any],
    run_dir: Path | None,
    run_id: str | None = None,
    group: str | None = None,
    env: Mapping[str, str] | None = None,
) -> MlflowTracker:
    """Open (or, resuming, reopen) the MLflow run; ``config`` is already redacted."""
    env = os.environ if env is None else env
    from mlflow.entities import Param, RunTag
    from mlflow.tracking import MlflowClient

    for name in ("mlflow", "alembic"):  # its database set-up talks on stderr at INFO
        logging.getLogger(name).setLevel(logging.WARNING)

    base = Path(run_dir).resolve() if run_dir is not None else Path.cwd()
    uri = settings.get("tracking_uri") or env.get("MLFLOW_TRACKING_URI")
    artifact_location = None
    if not uri:
        store = base / DEFAULT_DIR
        store.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{store / 'mlflow.db'}"
        artifact_location = (store / "artifacts").as_uri()
    client = MlflowClient(tracking_uri=uri)
    experiment_name = str(settings.get("experiment_name") or "expctl")
    experiment = client.get_experiment_by_name(experiment_name)
    experiment_id = (
        experiment.experiment_id
        if experiment is not None
        else client.create_experiment(experiment_name, artifact_location=artifact_location)
    )
    if run_id:  # a resumed expctl run continues its MLflow run
        client.update_run(run_id, status="RUNNING")
        return MlflowTracker(client, run_id, uri, experiment_name)
    tags = {f"expctl.tag.{scrub(str(t))}": "true" for t in settings.get("tags") or []}
    tags.update({str(k): scrub(str(v)) for k, v in (settings.get("extra_tags") or {}).items()})
    if settings.get("notes"):
        tags["mlflow.note.content"] = scrub(str(settings["notes"]))
    if run_dir is not None:
        tags["expctl.run_dir"] = str(base)
    if group:
        tags["expctl.sweep"] = group
    run = client.create_run(
        experiment_id, run_name=scrub(str(settings.get("run_name") or run_name)), tags=tags
    )
    ident = run.info.run_id
    params = [Param(k[:250], _param(v)) for k, v in flatten(config).items()]
    for i in range(0, len(params), BATCH):
        client.log_batch(ident, params=params[i : i + BATCH])
    if settings.get("tags"):
        labels = [scrub(str(t)) for t in settings["tags"]]
        client.log_batch(ident, tags=[RunTag("expctl.tags", json.dumps(labels))])
    return MlflowTracker(client, ident, uri, experiment_name)


def _param(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text[:MAX_PARAM_CHARS]
