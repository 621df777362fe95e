"""MLflow recording: the store, the run of one training job, and finding runs by key.

A run's record (docs/ARCHITECTURE.md, "MLflow record"): status FINISHED or FAILED (with the
reason as a tag), params = the resolved config flattened plus counted parameters and FLOPs,
metrics ``train/loss``,
``val/loss`` and ``throughput/tokens_per_s`` with step = tokens seen, artifacts = the resolved
config and ``summary.json``. We use :class:`mlflow.MlflowClient` directly (no fluent "active run"
globals, which joblib's reused workers would leak between runs) and batch every write.

Reading an experiment back into the run table is :mod:`scaling.training.collect`, through this
module's client: mlflow is imported here only.
"""

from __future__ import annotations

import functools
import os
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from scaling.config import DEFAULT_TRACKING_URI, tracking_uri_problem
from scaling.errors import TrackingError

KEY_TAG = "scaling.run_key"
REASON_TAG = "scaling.failure_reason"
_MAX_BATCH = 900  # MLflow allows 1000 metrics / 100 params per log_batch
_MAX_PARAMS = 100


def _quiet_mlflow() -> None:
    os.environ.setdefault("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    import logging

    for name in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.WARNING)


@functools.lru_cache(maxsize=8)
def mlflow_client(uri: str):  # type: ignore[no-untyped-def]
    """One client per store and process (building one costs ~0.15 s)."""
    _quiet_mlflow()
    from mlflow import MlflowClient

    _quiet_mlflow()  # mlflow resets its loggers' levels on import
    return MlflowClient(tracking_uri=uri)


SQLITE_HEADER = b"SQLite format 3\x00"


def check_reachable(uri: str, timeout: float = 3.0, create: bool = True) -> None:
    """Fail fast, in one line, when the tracking store cannot be used.

    The MLflow client retries a dead server with backoff for minutes; we probe ``/health`` with a
    short timeout instead. A SQLite database must be a database file (or not exist yet: MLflow
    creates it) whose folder exists or can be created; ``create=False`` checks that without
    creating it, so a run refused later has written nothing.
    """
    problem = tracking_uri_problem(uri)
    if problem:
        raise TrackingError(f"tracking.uri={uri} {problem}")
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310
                if resp.status != 200:
                    raise TrackingError(
                        f"tracking.uri={uri} answered HTTP {resp.status} on /health"
                    )
        except (TimeoutError, urllib.error.URLError, ConnectionError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise TrackingError(
                f"tracking.uri={uri} is unreachable ({reason}): start the MLflow server or use "
                f"the embedded store tracking.uri={DEFAULT_TRACKING_URI}"
            ) from None
    elif parsed.scheme == "sqlite":
        db = sqlite_path(uri)
        if db is not None:
            _check_sqlite_file(uri, db)
            if create:
                try:
                    db.parent.mkdir(parents=True, exist_ok=True)
                except OSError as err:
                    raise TrackingError(
                        f"tracking.uri={uri}: cannot create {db.parent} ({err.strerror})"
                    ) from None


def _check_sqlite_file(uri: str, db: Path) -> None:
    """A SQLite store's path: an existing database (or an empty file), or a new file in a folder
    that exists or can be created. Reads only."""
    fix = "point tracking.uri at a new or existing MLflow database file"
    if db.is_dir():
        raise TrackingError(
            f"tracking.uri={uri}: {db} is a folder, not a database file: {fix}, e.g. "
            f"tracking.uri=sqlite:///{db}/mlflow.db"
        )
    if db.exists():
        try:
            with db.open("rb") as fh:
                head = fh.read(len(SQLITE_HEADER))
        except OSError as err:
            raise TrackingError(f"tracking.uri={uri}: cannot read {db} ({err.strerror})") from None
        if head and head != SQLITE_HEADER:
            raise TrackingError(f"tracking.uri={uri}: {db} is not a SQLite database: {fix}")
        return
    folder = db.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise TrackingError(
            f"tracking.uri={uri}: cannot create {db.parent} ({folder} is a file): {fix}"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise TrackingError(
            f"tracking.uri={uri}: cannot create {db} ({folder} is not writable): {fix}"
        )


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative or absolute), or None."""
    if not uri.startswith("sqlite:///"):
        return None
    rest = uri[len("sqlite:///") :]
    return Path(rest) if not rest.startswith("/") else Path("/" + rest.lstrip("/"))


def artifact_location(uri: str) -> str | None:
    """Artifacts of a SQLite store live beside the database (``results/artifacts``), not in
    ``./mlruns`` of whatever directory a run happened to start in. Servers choose their own."""
    db = sqlite_path(uri)
    return (db.parent.resolve() / "artifacts").as_uri() if db is not None else None


def ensure_experiment(uri: str, experiment: str) -> str:
    """Create the store (SQLite migrations) and the experiment; return its id.

    Call this in the driver before parallel jobs start: two processes creating a new SQLite store
    at once fail (``table ... already exists``).
    """
    check_reachable(uri)
    client = mlflow_client(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    try:
        return client.create_experiment(experiment, artifact_location=artifact_location(uri))
    except Exception:  # created concurrently by another process
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            raise
        return exp.experiment_id


def find_runs(uri: str, experiment: str, run_key: str) -> list[Any]:
    """All runs of ``experiment`` carrying ``run_key``, newest first."""
    client = mlflow_client(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`{KEY_TAG}` = '{run_key}'",
        order_by=["attributes.start_time DESC"],
    )


def finished_run_id(uri: str, experiment: str, run_key: str) -> str | None:
    """The id of a FINISHED run with this key, if one exists (sweeps skip it)."""
    for run in find_runs(uri, experiment, run_key):
        if run.info.status == "FINISHED":
            return run.info.run_id
    return None


class RunRecorder:
    """One MLflow run; buffers metrics and writes them in batches."""

    def __init__(self, uri: str, experiment: str) -> None:
        self.uri = uri
        self.experiment_id = ensure_experiment(uri, experiment)
        self.client = mlflow_client(uri)
        self.run_id: str | None = None
        self._metrics: list[Any] = []
        self._last_flush = time.monotonic()

    def start(
        self,
        run_name: str,
        run_key: str,
        tags: Mapping[str, str] | None = None,
        resume_run_id: str | None = None,
    ) -> str:
        """Create the run (or reopen ``resume_run_id``, a run that was killed mid-way)."""
        all_tags = {KEY_TAG: run_key, **(tags or {})}
        if resume_run_id is not None:
            self.client.update_run(resume_run_id, status="RUNNING")
            self.run_id = resume_run_id
        else:
            run = self.client.create_run(self.experiment_id, run_name=run_name, tags=all_tags)
            self.run_id = run.info.run_id
        return self.run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        existing = self.client.get_run(self.run_id).data.params if self.run_id else {}
        items = [Param(k, str(v)[:6000]) for k, v in params.items() if k not in existing]
        for i in range(0, len(items), _MAX_PARAMS):
            self.client.log_batch(self.run_id, params=items[i : i + _MAX_PARAMS])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_metrics(
        self, metrics: Mapping[str, float], step: int, flush_after_s: float = 30.0
    ) -> None:
        """Queue metrics at ``step`` (tokens seen); written in a batch at most every 30 s."""
        from mlflow.entities import Metric

        now_ms = int(time.time() * 1000)
        self._metrics.extend(Metric(k, float(v), now_ms, int(step)) for k, v in metrics.items())
        if len(self._metrics) >= _MAX_BATCH or time.monotonic() - self._last_flush > flush_after_s:
            self.flush()

    def flush(self) -> None:
        while self._metrics:
            batch, self._metrics = self._metrics[:_MAX_BATCH], self._metrics[_MAX_BATCH:]
            self.client.log_batch(self.run_id, metrics=batch)
        self._last_flush = time.monotonic()

    def log_dict(self, obj: dict[str, Any], name: str) -> None:
        """``obj`` as the artifact ``name`` (JSON for ``.json``, YAML for ``.yaml``)."""
        self.client.log_dict(self.run_id, obj, name)

    def log_text(self, text: str, name: str) -> None:
        self.client.log_text(self.run_id, text, name)

    def finish(self, status: str = "FINISHED", reason: str | None = None) -> None:
        """Flush and close the run; FAILED runs carry the reason as a tag."""
        if self.run_id is None:
            return
        try:
            self.flush()
        finally:
            if reason:
                self.set_tags({REASON_TAG: reason[:5000]})
            self.client.set_terminated(self.run_id, status=status)
