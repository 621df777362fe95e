"""Approach 3's doubt about its law's form beyond the largest fitted budget.

The same reading as approach 2's frontier (:mod:`.misfit`), on the law's own predictions: for
each ``k`` up to :data:`MAX_HELD` that leaves at least two budgets, the top ``k`` budgets are
held out, the law is refitted on the rest (cold, :func:`~.approach3.refit_subsets`) and
predicts every held-out run; a held-out budget's error ``r`` is the mean of its runs'
``ln(L / L_predicted)``. The noise of ``r`` comes from the same refits on :data:`SUBSAMPLES`
random subsets of the runs, each keeping :data:`KEEP` of them (delete-d subsampling: their
spread times ``KEEP / (1 - KEEP)`` is the refit's own), plus the held-out runs' noise
(``sigma^2 / runs``). The errors are read as a curvature of ``ln L`` in ``ln C``
(:func:`.misfit.weighted_curvature`), and ``predict`` draws a model error of sd
``sqrt(kappa^2 + V) * unit_miss(C)`` onto every resample of the law beyond the largest fitted
budget."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from scaling.analysis.columns import columns, predict_table
from scaling.analysis.fitting.approach3 import refit_subsets
from scaling.analysis.fitting.isoflop import BUDGET_RUNS, budget_labels
from scaling.analysis.fitting.laws import get_law
from scaling.analysis.fitting.misfit import unit_miss, weighted_curvature
from scaling.analysis.fitting.results import FitResult

SUBSAMPLES = 40
MAX_HELD = 3  # at most the top 3 budgets held out (k = 1 .. 3)
KEEP = 0.8  # share of the runs each subsample keeps
STREAM = 22  # the subsamples' random stream beside the fit's seed
METHOD = (
    f"the top k budgets held out (k <= {MAX_HELD}, each leaving >= 2), the law refitted cold on "
    "the rest and on "
    f"{SUBSAMPLES} random {KEEP:.0%} subsets of the runs, each held-out budget's mean log error; "
    "the curvature of ln L in ln C those errors imply (inverse-variance weighted least squares; "
    "variance from the subsets' spread x KEEP/(1-KEEP) plus the held-out runs' noise); model "
    "error sd = sqrt(curvature^2 + variance) * unit_miss(C) beyond the largest budget"
)


def law_misfit(runs: pd.DataFrame, result: FitResult) -> dict[str, Any] | None:
    """The form error of an approach-3 ``result`` beyond its budgets, or None: a law not of
    (N, D), fewer than 3 budgets, a table without IsoFLOP budgets (most hold fewer than
    :data:`~.isoflop.BUDGET_RUNS` runs: a grid where each run has its own compute), failed
    refits."""
    law = get_law(result.law)
    if law.inputs != ("N", "D") or law.frontier:
        return None
    C = columns(runs)[2]
    labels, _ = budget_labels(runs, C, result.options.isoflop_tolerance)
    _, labels = np.unique(labels, return_inverse=True)
    n = int(labels.max()) + 1
    if n < 3 or np.median(np.bincount(labels)) < BUDGET_RUNS:
        return None
    budget_c = np.exp([np.log(C[labels == b]).mean() for b in range(n)])
    rank = np.argsort(np.argsort(budget_c))[labels]  # each run's budget rank, 0 = smallest
    order = np.sort(budget_c)
    rng = np.random.default_rng([result.options.seed, STREAM])
    subsets = rng.random((SUBSAMPLES, len(runs))) < KEEP
    sigma = float((result.noise or {}).get("sigma_log") or 0.0)
    loss = runs["loss"].to_numpy(dtype=float)
    errors, rows, own, q, points = [], [], [], [], []
    for k in range(1, min(n - 2, MAX_HELD) + 1):
        m = n - k
        train = rank < m
        masks = np.vstack([train, subsets & train])
        got = refit_subsets(runs, result.law, masks, result.options)
        if got[0] is None:
            return None
        held = ~train
        r_all = [_budget_errors(law, g, runs, held, rank, loss, m, n) for g in got]
        errors.append(r_all[0])
        rows.append(np.vstack(r_all[1:]))
        counts = np.array([np.sum(rank == b) for b in range(m, n)])
        own.append(sigma**2 / counts)
        unit = unit_miss(np.log(order[:m]), np.log(order[m:]))
        q.append(unit)
        points += [
            {"fitted_up_to": float(order[m - 1]), "flops": float(c), "error": float(e),
             "unit_miss": float(u)}
            for c, e, u in zip(order[m:], r_all[0], unit, strict=True)
        ]  # fmt: skip
    R = np.concatenate(rows, axis=1)
    R = R[np.all(np.isfinite(R), axis=1)]
    if R.shape[0] < SUBSAMPLES // 2:
        return None
    S = np.atleast_2d(np.cov(R, rowvar=False)) * KEEP / (1 - KEEP) + np.diag(np.concatenate(own))
    estimate = weighted_curvature(np.concatenate(errors), S, np.concatenate(q))
    if estimate is None:
        return None
    kappa, variance = estimate
    return {
        "method": METHOD,
        "budgets": [float(c) for c in order],
        "curvature": kappa,
        "curvature_se": math.sqrt(variance),
        "scale": math.sqrt(kappa**2 + variance),
        "points": points,
    }


def _budget_errors(
    law: Any,
    got: tuple[dict[str, float], float] | None,
    runs: pd.DataFrame,
    held: np.ndarray,
    rank: np.ndarray,
    loss: np.ndarray,
    m: int,
    n: int,
) -> np.ndarray:
    """Mean ``ln(L / L_predicted)`` of each held-out budget (ranks ``m .. n-1``) under the
    refit ``got`` (NaN where it failed)."""
    if got is None:
        return np.full(n - m, np.nan)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        r = np.log(loss[held]) - np.log(predict_table(law, got[0], runs[held]))
    ranks = rank[held]
    return np.array([r[ranks == b].mean() for b in range(m, n)])
