"""MLflow tracking: the only module that imports mlflow.

A run's record (DESIGN.md contract): status FINISHED or FAILED (with the reason as a tag),
params = the resolved config flattened plus counted parameters and FLOPs, metrics ``train/loss``,
``val/loss`` and ``throughput/tokens_per_s`` with step = tokens seen, artifacts = the resolved
config and ``summary.json``. We use :class:`mlflow.MlflowClient` directly (no fluent "active run"
globals, which joblib's reused workers would leak between runs) and batch every write.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from scaling.errors import TrackingError

DEFAULT_URI = "sqlite:///results/mlflow.db"
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
def _client(uri: str):  # type: ignore[no-untyped-def]
    """One client per store and process (building one costs ~0.15 s)."""
    _quiet_mlflow()
    from mlflow import MlflowClient

    _quiet_mlflow()  # mlflow resets its loggers' levels on import
    return MlflowClient(tracking_uri=uri)


def check_reachable(uri: str, timeout: float = 3.0) -> None:
    """Fail fast, in one line, when the tracking store cannot be used.

    The MLflow client retries a dead server with backoff for minutes; we probe ``/health`` with a
    short timeout instead. For SQLite the parent folder must exist or be creatable.
    """
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
                f"the embedded store tracking.uri={DEFAULT_URI}"
            ) from None
    elif parsed.scheme == "sqlite":
        db = sqlite_path(uri)
        if db is not None:
            try:
                db.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise TrackingError(
                    f"tracking.uri={uri}: cannot create {db.parent} ({err.strerror})"
                ) from None
    elif parsed.scheme in ("", "file"):
        folder = uri.removeprefix("file://").rstrip("/") or "results"
        raise TrackingError(
            f"tracking.uri={uri}: MLflow 3 no longer supports the file store; use "
            f"tracking.uri=sqlite:///{folder}/mlflow.db"
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
    client = _client(uri)
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
    client = _client(uri)
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
        self.client = _client(uri)
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

    def log_json(self, obj: Any, name: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
            self.client.log_artifact(self.run_id, str(path))

    def log_text(self, text: str, name: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            path.write_text(text)
            self.client.log_artifact(self.run_id, str(path))

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


# ---- collect: MLflow experiment -> run table ----------------------------------------------------

RUN_TABLE_KEYS = {
    "params": "params",
    "params_nonembed": "params_nonembed",
    "params_embed": "params_embed",
    "tokens": "planned.tokens",
    "n_layer": "model.n_layer",
    "d_model": "model.d_model",
    "n_head": "model.n_head",
    "seq_len": "model.seq_len",
    "vocab_size": "model.vocab_size",
    "lr": "train.lr",
    "batch_size": "train.batch_size",
    "seed": "seed",
    "run_key": KEY_TAG,
    "flops_6N": "flops.6N",
    "flops_6N_attn": "flops.6N_attn",
    "flops_chinchilla": "flops.chinchilla",
    "flops_convention": "train.flops_convention",
    "planned_flops": "train.flops",
    "corpus": "data.corpus_id",
    "tokenizer": "data.tokenizer_id",
    "epochs": "data.epochs",
}


def _number(value: Any) -> Any:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return value
    return int(f) if f.is_integer() and abs(f) < 2**53 else f


def _iter_runs(client: Any, experiment_id: str, status: str | None) -> Iterable[Any]:
    token = None
    filt = f"attributes.status = '{status}'" if status else ""
    while True:
        page = client.search_runs(
            [experiment_id], filter_string=filt, max_results=1000, page_token=token
        )
        yield from page
        token = page.token
        if not token:
            return


def collect_runs(uri: str, experiment: str, curves: bool = False):  # -> pandas.DataFrame
    """The run table of DESIGN.md: one row per FINISHED run (or, with ``curves``, one row per
    logged validation point: ``tokens`` seen so far and ``loss`` at that point)."""
    import pandas as pd

    check_reachable(uri)
    client = _client(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = [e.name for e in client.search_experiments()]
        raise TrackingError(
            f"experiment {experiment!r} not found in {uri}; experiments there: "
            f"{', '.join(names) or '(none)'}"
        )
    rows: list[dict[str, Any]] = []
    for run in _iter_runs(client, exp.experiment_id, "FINISHED"):
        params, tags = run.data.params, run.data.tags
        base: dict[str, Any] = {
            "run_id": run.info.run_id,
            "run_name": run.info.run_name,
            "status": run.info.status,
        }
        for col, key in RUN_TABLE_KEYS.items():
            source = tags if key == KEY_TAG else params
            if key in source:
                base[col] = _number(source[key])
        for key, value in params.items():  # every config key, under its Hydra name
            if key.startswith(("model.", "train.", "data.", "trainer.")):
                base.setdefault(key, _number(value))
        base["loss"] = run.data.metrics.get("val/loss")
        base["tokens_per_s"] = run.data.metrics.get("throughput/tokens_per_s")
        base["flops"] = 6.0 * float(base.get("params", 0)) * float(base.get("tokens", 0))
        base["flops_exact"] = base.get("flops_chinchilla")
        if not curves:
            rows.append(base)
            continue
        # One point per token count (a resumed run may have logged a step twice: keep the last).
        by_step = {
            m.step: m
            for m in sorted(
                client.get_metric_history(run.info.run_id, "val/loss"), key=lambda m: m.timestamp
            )
        }
        history = list(by_step.values())
        per_token_flops = {
            k: float(base[f"flops_{k}"]) / float(base["tokens"])
            for k in ("6N", "6N_attn", "chinchilla")
            if f"flops_{k}" in base
        }
        for point in sorted(history, key=lambda m: m.step):
            row = dict(base, tokens=int(point.step), loss=point.value, final_tokens=base["tokens"])
            row["flops"] = 6.0 * float(base.get("params", 0)) * point.step
            for k, f in per_token_flops.items():
                row[f"flops_{k}"] = f * point.step
            row["flops_exact"] = row.get("flops_chinchilla")
            rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        raise TrackingError(
            f"experiment {experiment!r} in {uri} has no FINISHED runs yet: run a sweep first"
        )
    order = ["params", "tokens", "loss", "params_nonembed", "flops", "flops_exact", "run_id"]
    return df[[c for c in order if c in df] + [c for c in df if c not in order]]
