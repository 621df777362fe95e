"""The prior of ``scaling plan``: the current best guess of the compute-optimal size ``N_opt(C)``.

A ladder centres each budget's sizes on it: from a fit of the user's own runs (``--prior
fit.json``, through :meth:`~scaling.analysis.prediction.predict.Predictor.at_budget`), or else
from a published law, :data:`HOFFMANN_EQ10`.

Pure: the analysis stack's fitting and prediction, no torch, Lightning or MLflow.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from scaling.analysis.fitting.allocation import chinchilla_optimal
from scaling.errors import UserError

# Hoffmann et al. 2022, eq. 10 (approach 3 on their runs): L = E + A/N^alpha + B/D^beta. Its
# allocation N_opt = G (C/6)^a, a = beta/(alpha+beta) = 0.45, puts N_opt(3e13) at 7.3e5 params
# (9 tokens/param). It is not calibrated on this project's corpus: a fit of your own runs
# (--prior) is better.
HOFFMANN_EQ10 = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
HOFFMANN_EQ10_NAME = "Hoffmann et al. 2022 eq. 10 (E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)"


@dataclass(frozen=True)
class Prior:
    """The current best guess of the compute-optimal size ``N_opt(C)``."""

    n_opt: Callable[[float], float]
    source: str


def default_prior() -> Prior:
    @lru_cache(maxsize=1024)
    def n_opt(C: float) -> float:
        return float(chinchilla_optimal(HOFFMANN_EQ10, C)[0])

    return Prior(n_opt=n_opt, source=HOFFMANN_EQ10_NAME)


def prior_from_fit(path: str | Path) -> Prior:
    """``N_opt(C)`` from a ``fit.json`` through :meth:`Predictor.at_budget`."""
    from scaling.analysis.fitting.results import load_fit
    from scaling.analysis.prediction.predict import Predictor

    predictor = Predictor(load_fit(path))
    health = predictor.health
    verdict = "healthy" if health.get("ok", True) else "UNHEALTHY, a rough centre only"

    @lru_cache(maxsize=1024)
    def n_opt(C: float) -> float:
        params = predictor.at_budget(C).params
        if params is None or not (math.isfinite(params) and params > 0):
            raise UserError(
                f"--prior {path}: the fit gives no finite compute-optimal size at {C:.3g} FLOPs; "
                "refit with more runs or drop --prior"
            )
        return float(params)

    what = f"approach {predictor.approach} {predictor.law_name}"
    return Prior(n_opt=n_opt, source=f"{path} ({what} fit, {verdict})")
