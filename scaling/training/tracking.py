"""MLflow recording: the store, finding runs by key, and the recorder of one run.

A run's record (docs/ARCHITECTURE.md, "MLflow record"): status FINISHED or FAILED (with the
reason as a tag), params = the resolved config flattened plus counted parameters and FLOPs,
metrics ``train/loss``,
``val/loss`` and ``throughput/tokens_per_s`` with step = tokens seen, artifacts = the resolved
config and ``summary.json``. We use :class:`mlflow.MlflowClient` directly (no fluent "active run"
globals, which joblib's reused workers would leak between runs) and batch every write.

Reading an experiment back into the run table is :mod:`scaling.training.collect`, through this
module's client: mlflow is imported here only. One run per key (a key's lock file, its holder,
the orphans a dead holder left RUNNING) is :mod:`scaling.training.leases`.
"""

from __future__ import annotations

import functools
import os
import socket
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
# a run that diverged (a non-finite loss, or stopped by the spike detector): "true", and the step
DIVERGED_TAG = "scaling.diverged"
DIVERGED_STEP_TAG = "scaling.diverged_step"
# train.spike.action=rollback: how many times the run rolled back (as train/rollbacks), at its end
ROLLBACKS_TAG = "scaling.rollbacks"
LEASE_TAG = "scaling.lease"  # the lock file of the run's key (absolute path)
HOLDER_TAG = "scaling.holder"  # host:pid of the process that trains (or last trained) the run
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
    """One client per store and process (building one is not free; runs ask for it often)."""
    _quiet_mlflow()
    from mlflow import MlflowClient

    _quiet_mlflow()  # mlflow resets its loggers' levels on import
    _create_sqlite_store(uri)
    return MlflowClient(tracking_uri=uri)


def _create_sqlite_store(uri: str) -> None:
    """Create a new SQLite store whole or not at all, before MLflow would create it in place.

    MLflow builds a store's schema in place with dozens of migrations: a process killed
    half-way leaves a store that every later attempt fails on (``table _alembic_tmp_metrics
    already exists``), and two processes creating it at once fail (``table experiments already
    exists``). Here the schema is built in a private temporary file, then linked into place.

    Not :func:`scaling.files.atomic_write`: that replaces the target, so the last of two
    creators would win, and a store the first one has already written runs into would be
    swapped for an empty one under it. ``os.link`` never replaces: the first store published
    wins, and every later creator drops its own copy and uses that one.
    """
    db = sqlite_path(uri)
    if db is None or db.exists() or not db.parent.is_dir():
        return
    try:
        import sqlalchemy
        from mlflow.store.db.utils import _initialize_tables
    except ImportError:  # an MLflow without it: it creates the store in place
        return
    for stale in db.parent.glob(f".{db.name}.*.creating*"):  # left by a creator killed half-way
        try:
            if time.time() - stale.stat().st_mtime > 3600:
                stale.unlink()
        except OSError:
            pass
    tmp = db.with_name(f".{db.name}.{socket.gethostname()}.{os.getpid()}.creating")
    tmp.unlink(missing_ok=True)
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp}")
    try:
        _initialize_tables(engine)
    finally:
        engine.dispose()
    try:
        os.link(tmp, db)
    except FileExistsError:  # created meanwhile by another process: use that one
        pass
    except OSError:  # a file system without hard links: a replace, unless one appeared meanwhile
        if not db.exists():
            os.replace(tmp, db)
    finally:
        tmp.unlink(missing_ok=True)


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

    A new SQLite store is created whole (:func:`_create_sqlite_store`), so processes may do this
    at once; a sweep's driver still does it before its jobs start.
    """
    check_reachable(uri)
    client = mlflow_client(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":  # restoring it would bring back the runs it held
            raise TrackingError(
                f"experiment {experiment!r} in {uri} was deleted in MLflow but its runs still "
                f"exist (id {exp.experiment_id}): to start over, remove it for good (`mlflow gc "
                f"--backend-store-uri {uri} --experiment-ids {exp.experiment_id}`) or use "
                "another tracking.experiment; to keep its runs, `mlflow experiments restore "
                f"--experiment-id {exp.experiment_id}`"
            )
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


def finished_keys(uri: str, experiment: str) -> set[str]:
    """The run keys of ``experiment`` that have a FINISHED run: one paged query for a whole grid,
    where :func:`finished_run_id` asks about one key."""
    client = mlflow_client(uri)
    exp = client.get_experiment_by_name(experiment)
    keys: set[str] = set()
    token = None
    while exp is not None:
        page = client.search_runs(
            [exp.experiment_id],
            filter_string="attributes.status = 'FINISHED'",
            max_results=1000,
            page_token=token,
        )
        keys.update(r.data.tags[KEY_TAG] for r in page if KEY_TAG in r.data.tags)
        token = page.token
        if not token:
            break
    return keys


def finished_run_id(uri: str, experiment: str, run_key: str) -> str | None:
    """The id of a FINISHED run with this key, if one exists (sweeps skip it)."""
    for run in find_runs(uri, experiment, run_key):
        if run.info.status == "FINISHED":
            return run.info.run_id
    return None


def end_run(uri: str, run_id: str, status: str, reason: str) -> None:
    """Close a run another process left open (an orphan superseded by a newer attempt)."""
    from mlflow.entities import RunTag

    client = mlflow_client(uri)
    client.log_batch(run_id, tags=[RunTag(REASON_TAG, reason[:5000])])
    client.set_terminated(run_id, status=status)


class RunRecorder:
    """One MLflow run; buffers metrics and writes them in batches.

    A reopened run (``start(resume_run_id=...)``, an attempt killed mid-way and taken over)
    never logs a metric again at a step it already holds: a resumed run replays the steps after
    its last checkpoint, and what the killed attempt flushed of them is kept, not duplicated.
    """

    def __init__(self, uri: str, experiment: str) -> None:
        self.uri = uri
        self.experiment_id = ensure_experiment(uri, experiment)
        self.client = mlflow_client(uri)
        self.run_id: str | None = None
        self._metrics: list[Any] = []
        self._last_flush = time.monotonic()
        self._logged: dict[str, set[int]] = {}  # steps a reopened run already holds, per metric

    def start(
        self,
        run_name: str,
        run_key: str,
        tags: Mapping[str, str] | None = None,
        resume_run_id: str | None = None,
    ) -> str:
        """Create the run (or reopen ``resume_run_id``, a run that was killed mid-way: status
        RUNNING again, its old failure reason and divergence tags removed)."""
        all_tags = {KEY_TAG: run_key, **(tags or {})}
        if resume_run_id is not None:
            run = self.client.get_run(resume_run_id)
            self.client.update_run(resume_run_id, status="RUNNING")
            self.run_id = resume_run_id
            for old in (REASON_TAG, DIVERGED_TAG, DIVERGED_STEP_TAG):
                if old in run.data.tags:
                    self.client.delete_tag(resume_run_id, old)
            if tags:
                self.set_tags(tags)
            self._logged = {
                key: {m.step for m in self.client.get_metric_history(resume_run_id, key)}
                for key in run.data.metrics
            }
        else:
            run = self.client.create_run(self.experiment_id, run_name=run_name, tags=all_tags)
            self.run_id = run.info.run_id
            self._logged = {}
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
        self._metrics.extend(
            Metric(k, float(v), now_ms, int(step))
            for k, v in metrics.items()
            if int(step) not in self._logged.get(k, ())
        )
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
        """Flush and close the run; FAILED and KILLED runs carry the reason as a tag, a FINISHED
        run none (a resumed run's old reason is removed)."""
        if self.run_id is None:
            return
        try:
            self.flush()
        finally:
            if reason:
                self.set_tags({REASON_TAG: reason[:5000]})
            elif status == "FINISHED":
                tags = self.client.get_run(self.run_id).data.tags
                if REASON_TAG in tags:
                    self.client.delete_tag(self.run_id, REASON_TAG)
            self.client.set_terminated(self.run_id, status=status)
