"""Bootstrap machinery: resample weights, the process pool that runs refits, percentile intervals.

Resample weights are drawn up front from the seed and refits are split into fixed-size chunks
(:data:`BOOTSTRAP_CHUNK`), so the replicates are identical for any number of worker processes.
What is refitted on each resample is the estimator's business (:mod:`..fitting.approach3`,
:mod:`scaling.analysis.fitting.frontier`).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

Array = np.ndarray

BOOTSTRAP_CHUNK = 25  # resamples per task; fixed so results do not depend on the worker count


def resample_weights(
    n: int,
    n_resamples: int,
    seed: int,
    groups: Array | None = None,
    clusters: Array | None = None,
) -> Array:
    """Bootstrap counts (n_resamples, n): rows drawn with replacement (within ``groups``).

    With ``clusters`` (a label per row, e.g. seed replicates of one configuration) whole clusters
    are drawn with replacement, each bringing all its rows: replicates of one training are not
    independent points.  Without clusters the draws are the same as before for any seed.
    """
    rng = np.random.default_rng(seed)
    W = np.zeros((n_resamples, n))
    if clusters is not None and np.unique(clusters).size < n:
        return _cluster_weights(np.asarray(clusters), n_resamples, rng, groups)
    if groups is None:
        idx = rng.integers(0, n, size=(n_resamples, n))
        for r in range(n_resamples):
            W[r] = np.bincount(idx[r], minlength=n)
        return W
    members = [np.flatnonzero(groups == gval) for gval in np.unique(groups)]
    for r in range(n_resamples):
        for m in members:
            pick = m[rng.integers(0, m.size, size=m.size)]
            W[r] += np.bincount(pick, minlength=n)
    return W


def _cluster_weights(
    clusters: Array, n_resamples: int, rng: np.random.Generator, groups: Array | None
) -> Array:
    n = clusters.size
    labels, inverse = np.unique(clusters, return_inverse=True)
    # a cluster belongs to the group of its first row (replicates share a budget)
    first = np.array([np.flatnonzero(inverse == k)[0] for k in range(labels.size)])
    cluster_group = np.zeros(labels.size) if groups is None else np.asarray(groups)[first]
    strata = [np.flatnonzero(cluster_group == g) for g in np.unique(cluster_group)]
    W = np.zeros((n_resamples, n))
    for r in range(n_resamples):
        drawn = np.zeros(labels.size)
        for members in strata:
            pick = members[rng.integers(0, members.size, size=members.size)]
            drawn += np.bincount(pick, minlength=labels.size)
        W[r] = drawn[inverse]
    return W


def default_workers(workers: int | None) -> int:
    """``workers`` or the CPUs available to this process."""
    if workers is not None:
        return max(1, int(workers))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def run_chunks(fn: Callable[[tuple], Any], tasks: Sequence[tuple], workers: int | None) -> list:
    """Map ``fn`` over ``tasks`` in order, in worker processes when ``workers > 1``."""
    workers = default_workers(workers)
    if workers <= 1 or len(tasks) <= 1:
        return [fn(t) for t in tasks]
    # fork where available: workers inherit the data without re-importing the caller's script.
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=ctx) as pool:
        return list(pool.map(fn, tasks))


def percentile_interval(
    values: Array, level: float, min_values: int = 1
) -> tuple[float, float] | None:
    """Central percentile interval of the finite ``values`` at ``level`` (e.g. 0.95).

    ``None`` when fewer than ``min_values`` of them are finite.
    """
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size < max(1, min_values):
        return None
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return (float(lo), float(hi))
