"""collect: an MLflow experiment -> the run table (``scaling collect``, end of a sweep).

The columns and where each comes from are :mod:`scaling.analysis.table`'s contract; this module
only pages through MLflow's FINISHED runs (and their ``val/loss`` histories for curves).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Any

from scaling.analysis import table
from scaling.errors import TrackingError
from scaling.training.tracking import DIVERGED_TAG, KEY_TAG, check_reachable, mlflow_client

FINISHED = "attributes.status = 'FINISHED'"
# a FAILED run the detector or a non-finite loss ended: a row marked diverged, without a loss
DIVERGED_RUNS = f"attributes.status = 'FAILED' and tags.`{DIVERGED_TAG}` = 'true'"


def collect_runs(
    uri: str, experiment: str, curves: bool = False, where: Mapping[str, str] | None = None
):  # -> pandas.DataFrame
    """The run table (docs/ARCHITECTURE.md): one row per FINISHED run (or, with ``curves``, one
    row per logged validation point: ``tokens`` seen so far and ``loss`` at that point). The
    stable run of a WSD branch group (``branch_role`` stable) has curves but no final result.

    ``where`` keeps only runs whose MLflow params match each ``{key: value}``
    (:func:`param_matches`), e.g. ``{"data.process": "[]"}`` for the unprocessed runs of a
    sweep over ``data.process``.

    One run per key: when a key finished more than once (two sweeps of one grid at once), only
    its newest FINISHED run is kept, so a fit never counts one training twice; how many were
    dropped is in ``df.attrs["dropped_duplicates"]``.

    Runs that diverged (FAILED with the tag ``scaling.diverged=true``) are rows too, with
    ``diverged`` true and no ``loss`` (curves: their validation points so far), unless their key
    also FINISHED; fits leave them out (:func:`scaling.analysis.table.read_run_table`). Every
    row has ``diverged``, and ``spikes`` / ``skipped_steps`` where the run's detector was on
    (``rollbacks`` under ``train.spike.action=rollback``).
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
    where = dict(where or {})
    finished = _finished_runs(client, exp.experiment_id)  # newest first
    diverged = _finished_runs(client, exp.experiment_id, DIVERGED_RUNS)
    for run in itertools.chain(finished, diverged):
        if not all(param_matches(run.data.params.get(k), v) for k, v in where.items()):
            continue
        key = run.data.tags.get(KEY_TAG)
        failed = run.info.status != "FINISHED"
        if key is not None and key in seen:
            dropped += not failed  # a diverged attempt of a key that finished: not a row
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
        row[table.DIVERGED] = failed
        row[table.WALL_S] = _wall_s(run.info)
        if failed:
            row["loss"] = None  # its last val/loss is not at its horizon
        if curves:
            points = _curve(client, run.info.run_id)
            lrs = _lr_at(client, run.info.run_id, [t for t, _ in points])
            spikes = _spike_tokens(client, run.info.run_id, run.data.metrics)
            rows.extend(table.curve_rows(row, params, points, lrs, spikes))
        elif row.get("branch_role") != table.STABLE:  # a WSD group's stable run: no result
            rows.append(row)
    if not rows and where:
        shown = " ".join(f"{k}={v}" for k, v in where.items())
        raise TrackingError(
            f"no FINISHED run of experiment {experiment!r} in {uri} matches --where {shown}; "
            f"values there: {_values_seen(client, exp.experiment_id, list(where))}"
        )
    if not any(not r[table.DIVERGED] for r in rows):
        raise TrackingError(
            f"experiment {experiment!r} in {uri} has no FINISHED runs yet: run a sweep first"
        )
    if curves and any(r.get("lr") is None for r in rows):  # some run did not log it
        for r in rows:
            r.pop("lr", None)
    df = table.frame(rows)
    df.attrs["dropped_duplicates"] = dropped
    return df


def _wall_s(info: Any) -> float | None:
    """Seconds from the run's MLflow start to its end; None while it has no end."""
    if info.start_time is None or info.end_time is None:
        return None
    return (info.end_time - info.start_time) / 1000.0


def normal_param(text: str) -> Any:
    """An MLflow param in one spelling: a number as a float, a list or mapping without quotes
    and spaces (MLflow logs ``['dedup_exact', 'dedup_near']`` for a Hydra
    ``[dedup_exact,dedup_near]``), anything else as it is."""
    text = str(text).strip()
    try:
        return float(text)
    except ValueError:
        pass
    if text[:1] in "[{(":
        return "".join(c for c in text if c not in "'\" ")
    return text


def param_matches(logged: str | None, wanted: str) -> bool:
    """Whether a run's param (None: the run has no such param) equals ``wanted``."""
    return logged is not None and normal_param(logged) == normal_param(wanted)


def _values_seen(client: Any, experiment_id: str, keys: list[str]) -> str:
    """The distinct values of ``keys`` among the experiment's FINISHED runs, for an error."""
    seen: dict[str, set[str]] = {k: set() for k in keys}
    for run in _finished_runs(client, experiment_id):
        for k in keys:
            seen[k].add(str(run.data.params.get(k, "(not logged)")))
    return "; ".join(f"{k}: {', '.join(sorted(v)) or '(no runs)'}" for k, v in seen.items())


def _finished_runs(client: Any, experiment_id: str, where: str = FINISHED) -> Iterable[Any]:
    token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=where,
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


def _spike_tokens(client: Any, run_id: str, metrics: Mapping[str, float]) -> list[int] | None:
    """The tokens at which the run's detector saw each spike; None when it was off (the run
    logged no ``train/spikes``)."""
    if table.METRIC_COLUMNS["spikes"] not in metrics:
        return None
    if not metrics[table.METRIC_COLUMNS["spikes"]]:
        return []
    history = client.get_metric_history(run_id, table.SPIKE_EVENT_METRIC)
    return sorted({m.step for m in history})  # a resumed run may log a spike twice


def _lr_at(client: Any, run_id: str, tokens: list[int]) -> dict[int, float] | None:
    """The LR the run logged (metric ``lr``, every ``train.log_every`` steps and at its last
    step: the LR of the next update) at each of ``tokens``, linear between logged points; None
    when it logged none."""
    import numpy as np

    history = client.get_metric_history(run_id, table.LR_METRIC)
    if not history:
        return None
    logged = dict(sorted((m.step, m.value) for m in history))  # a resumed step: one value
    xs, ys = np.array(list(logged), dtype=float), np.array(list(logged.values()), dtype=float)
    return {t: float(np.interp(t, xs, ys)) for t in tokens}
