"""Fitting scaling laws: the entry point, :func:`fit`, and what it returns.

* **Approach 3** (parametric, :func:`fit_law`, :mod:`scaling.analysis.approach3`): minimise the
  summed Huber loss of log-residuals of any registered law (:mod:`scaling.analysis.laws`) from a
  grid of starts (Hoffmann et al. 2022, App. D.2; Besiroglu et al. 2024).
* **Approach 2** (IsoFLOP, :func:`fit_isoflop`, :mod:`scaling.analysis.isoflop`): parabola of loss
  against ``log N`` per compute budget, then ``N_opt = k_N C^a`` and ``D_opt = k_D C^b``.
* **Approach 1** (envelope, :func:`fit_envelope`, :mod:`scaling.analysis.envelope`): the least
  loss at each FLOP count over loss curves, then the same power laws.
* **Uncertainty**: a seeded bootstrap over runs (:mod:`scaling.analysis.bootstrap`), identical for
  any number of worker processes.

Every estimator returns a frozen :class:`FitResult` (:mod:`scaling.analysis.results`, which also
writes and reads ``fit.json``).
"""

from __future__ import annotations

import pandas as pd

from scaling.analysis.approach3 import fit_law
from scaling.analysis.envelope import fit_envelope
from scaling.analysis.isoflop import fit_isoflop
from scaling.analysis.results import FitOptions, FitResult
from scaling.errors import DataError

__all__ = ["FitOptions", "FitResult", "fit", "fit_envelope", "fit_isoflop", "fit_law"]


def fit(
    runs: pd.DataFrame,
    law: str = "chinchilla",
    approach: int = 3,
    options: FitOptions | None = None,
) -> FitResult:
    """Dispatch to the estimator: approach 1 (curves), 2 (IsoFLOP) or 3 (parametric law)."""
    if approach == 3:
        return fit_law(runs, law, options)
    if approach == 2:
        return fit_isoflop(runs, options)
    if approach == 1:
        return fit_envelope(runs, options)
    raise DataError(f"unknown approach {approach}; use 1, 2 or 3")
