"""Fitting scaling laws: the entry point, :func:`fit`, and what it returns.

* **Approach 3** (parametric, :func:`fit_law`, :mod:`..fitting.approach3`): minimise the
  summed Huber loss of log-residuals of any registered law (:mod:`..fitting.laws`) from a
  grid of starts (Hoffmann et al. 2022, App. D.2; Besiroglu et al. 2024).
* **Approach 2** (IsoFLOP, :func:`fit_isoflop`, :mod:`..fitting.isoflop`): parabola of loss
  against ``log N`` per compute budget, then ``N_opt = k_N C^a`` and ``D_opt = k_D C^b``.
* **Approach 1** (envelope, :func:`fit_envelope`, :mod:`..fitting.envelope`): the least
  loss at each FLOP count over loss curves, then the same power laws.
* **Uncertainty**: a seeded bootstrap over runs (:mod:`..fitting.bootstrap`), identical for
  any number of worker processes.

Every estimator returns a frozen :class:`FitResult` (:mod:`..fitting.results`, which also
writes and reads ``fit.json``).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from scaling.analysis.columns import columns, predict_table
from scaling.analysis.fitting.approach3 import fit_law, pareto_frontier
from scaling.analysis.fitting.envelope import fit_envelope
from scaling.analysis.fitting.isoflop import budget_fits, budget_labels, fit_isoflop
from scaling.analysis.fitting.law_misfit import law_misfit
from scaling.analysis.fitting.laws import get_law
from scaling.analysis.fitting.noise import estimate_noise
from scaling.analysis.fitting.results import FitOptions, FitResult
from scaling.errors import DataError

__all__ = ["FitOptions", "FitResult", "fit", "fit_envelope", "fit_isoflop", "fit_law"]


def fit(
    runs: pd.DataFrame,
    law: str = "chinchilla",
    approach: int = 3,
    options: FitOptions | None = None,
) -> FitResult:
    """Dispatch to the estimator: approach 1 (curves), 2 (IsoFLOP) or 3 (parametric law).

    The result carries the run-to-run noise of log loss (:mod:`scaling.analysis.fitting.noise`) that
    prediction intervals add to the fit's own uncertainty; approach 1 has none.
    """
    if approach == 3:
        result = fit_law(runs, law, options)
        result = replace(result, noise=_law_noise(runs, result))
        if result.bootstrap is not None:
            result = replace(result, misfit=law_misfit(runs, result))
        return result
    if approach == 2:
        result = fit_isoflop(runs, options)
        return replace(result, noise=_isoflop_noise(runs, result))
    if approach == 1:
        return fit_envelope(runs, options)
    raise DataError(f"unknown approach {approach}; use 1, 2 or 3")


def _law_noise(runs: pd.DataFrame, result: FitResult) -> dict | None:
    """Noise from seed replicates, else from the law's log residuals on the runs it fitted."""
    law = get_law(result.law)
    _, _, C, loss = columns(runs)
    rows = runs.iloc[pareto_frontier(C, loss)] if law.frontier else runs
    residuals = np.log(rows["loss"].to_numpy(dtype=float)) - np.log(
        predict_table(law, result.params, rows)
    )
    noise = estimate_noise(rows, residuals, law.n_params)
    return noise.to_dict() if noise else None


def _isoflop_noise(runs: pd.DataFrame, result: FitResult) -> dict | None:
    """Noise from seed replicates, else from the log residuals of the used budgets' parabolas."""
    N, _, C, loss = columns(runs)
    labels, _ = budget_labels(runs, C, result.options.isoflop_tolerance)
    used = [b for b in budget_fits(N, C, loss, labels) if b.minimum.used and b.parabola is not None]
    if not used:
        return None
    members = np.concatenate([b.members for b in used])
    with np.errstate(invalid="ignore", divide="ignore"):
        residuals = np.concatenate(
            [np.log(loss[b.members]) - np.log(b.parabola.fitted) for b in used]
        )
    noise = estimate_noise(runs.iloc[members], residuals, 3 * len(used))
    return noise.to_dict() if noise else None
