"""collect: an MLflow experiment -> the run table (``scaling collect``, end of a sweep).

The columns and where each comes from are :mod:`scaling.analysis.table`'s contract; this module
only pages through MLflow's FINISHED runs (and their ``val/loss`` histories for curves).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from scaling.analysis import table
from scaling.errors import TrackingError
from scaling.training.tracking import KEY_TAG, check_reachable, mlflow_client


def collect_runs(uri: str, experiment: str, curves: bool = False):  # -> pandas.DataFrame
    """The run table (docs/ARCHITECTURE.md): one row per FINISHED run (or, with ``curves``, one
    row per logged validation point: ``tokens`` seen so far and ``loss`` at that point).

    One run per key: when a key finished more than once (two sweeps of one grid at once), only
    its newest FINISHED run is kept, so a fit never counts one training twice; how many were
    dropped is in ``df.attrs["dropped_duplicates"]``.
    """
    check_reachable(uri)
    client = mlflow_client(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = [e.name for e in client.search_experiments()]
        raise TrackingError(
            f"experiment {experiment!r} not found in {uri}; experiments there: "
            f"{', '.join(names) or '(none)'}"
        )
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    dropped = 0
    for run in _finished_runs(client, exp.experiment_id):  # newest first
        key = run.data.tags.get(KEY_TAG)
        if key is not None and key in seen:
            dropped += 1
            continue
        seen.add(key)
        params = run.data.params
        row = table.run_row(
            params,
            run.data.metrics,
            run_id=run.info.run_id,
            run_name=run.info.run_name,
            status=run.info.status,
            run_key=key,
        )
        if curves:
            rows.extend(table.curve_rows(row, params, _curve(client, run.info.run_id)))
        else:
            rows.append(row)
    if not rows:
        raise TrackingError(
            f"experiment {experiment!r} in {uri} has no FINISHED runs yet: run a sweep first"
        )
    df = table.frame(rows)
    df.attrs["dropped_duplicates"] = dropped
    return df


def _finished_runs(client: Any, experiment_id: str) -> Iterable[Any]:
    token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string="attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=1000,
            page_token=token,
        )
        yield from page
        token = page.token
        if not token:
            return


def _curve(client: Any, run_id: str) -> list[tuple[int, float]]:
    """(tokens, loss) of each validation point; a resumed run may have logged a step twice:
    the later value wins."""
    history = sorted(
        client.get_metric_history(run_id, table.CURVE_METRIC), key=lambda m: m.timestamp
    )
    return list({m.step: (m.step, m.value) for m in history}.values())
