"""Tissue et al. 2024's loss-curve law as a curve form: its points, Jacobian and profile fit.

``L(s) = L0 + A * S1(s)^(-alpha) - C * S2(s)`` (:mod:`.law` defines the areas).  For a fixed
``alpha`` the law is linear in ``(L0, A, C)``, so those are solved exactly by non-negative least
squares (``scipy.optimize.nnls``: ``L0, A, C >= 0``) and ``alpha`` alone is searched: a grid of
:data:`ALPHA_GRID_SIZE` starts in :data:`ALPHA_BOUNDS`, then a bounded Brent refinement around
the best local minima (variable projection; every start reaches the exact optimum of the other
three parameters).  The objective is the sum of squared *relative* residuals
``((L - L_hat) / L)^2``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar, nnls

from scaling.analysis.curves.law import law_loss

Array = np.ndarray

ALPHA_BOUNDS = (1e-3, 4.0)
ALPHA_GRID_SIZE = 41  # alpha starts, log-spaced in ALPHA_BOUNDS
BOOT_GRID_SIZE = 17  # fewer starts for bootstrap refits (they start near the estimate)


@dataclass(frozen=True)
class TissuePoints:
    """Evaluation points of Tissue's law: the forward and annealing areas at each point."""

    S1: Array
    S2: Array

    @property
    def size(self) -> int:
        return int(self.S1.size)

    def take(self, index: Array) -> TissuePoints:
        return TissuePoints(self.S1[index], self.S2[index])

    @staticmethod
    def concat(parts: Sequence[TissuePoints]) -> TissuePoints:
        return TissuePoints(
            np.concatenate([p.S1 for p in parts]), np.concatenate([p.S2 for p in parts])
        )


def tissue_loss(theta: Sequence[float] | Array, pts: TissuePoints) -> Array:
    return law_loss(theta, pts.S1, pts.S2)


def tissue_jacobian(theta: Sequence[float] | Array, pts: TissuePoints) -> Array:
    """``d L / d (L0, A, alpha, C)``, shape ``(n, 4)``."""
    _, A, alpha, _ = (float(v) for v in theta)
    p1 = pts.S1 ** (-alpha)
    return np.column_stack([np.ones_like(p1), p1, -A * p1 * np.log(pts.S1), -pts.S2])


def _profile(alpha: float, S1: Array, S2: Array, y: Array, w: Array) -> tuple[Array, float]:
    """Exact (L0, A, C) >= 0 at this ``alpha`` and the weighted residual sum of squares."""
    X = np.column_stack([np.ones_like(S1), S1 ** (-alpha), -S2]) * w[:, None]
    coef, rnorm = nnls(X, y * w, maxiter=50 * X.shape[1])
    return coef, float(rnorm) ** 2


def fit_points(
    S1: Array,
    S2: Array,
    loss: Array,
    weights: Array | None = None,
    grid_size: int = ALPHA_GRID_SIZE,
) -> tuple[Array, float]:
    """``theta = (L0, A, alpha, C)`` minimising ``sum weights * ((loss - L_hat) / loss)^2`` with
    ``L0, A, C >= 0`` and ``alpha`` in :data:`ALPHA_BOUNDS`; returns ``(theta, objective)``."""
    y = np.asarray(loss, dtype=float)
    w = 1.0 / y if weights is None else np.sqrt(np.asarray(weights, dtype=float)) / y
    lo, hi = (math.log(b) for b in ALPHA_BOUNDS)
    grid = np.linspace(lo, hi, grid_size)
    ss = np.array([_profile(math.exp(g), S1, S2, y, w)[1] for g in grid])
    # refine around the best local minima of the grid (a few "starts")
    minima = [
        k
        for k in range(grid_size)
        if (k == 0 or ss[k] <= ss[k - 1]) and (k == grid_size - 1 or ss[k] <= ss[k + 1])
    ]
    minima = sorted(minima, key=lambda k: ss[k])[:3]
    best_g, best_ss = grid[minima[0]], ss[minima[0]]
    for k in minima:
        a, b = grid[max(k - 1, 0)], grid[min(k + 1, grid_size - 1)]
        res = minimize_scalar(
            lambda g: _profile(math.exp(g), S1, S2, y, w)[1],
            bounds=(a, b),
            method="bounded",
            options={"xatol": 1e-6},
        )
        if res.fun < best_ss:
            best_g, best_ss = float(res.x), float(res.fun)
    alpha = math.exp(best_g)
    (L0, A, C), best_ss = _profile(alpha, S1, S2, y, w)
    return np.array([L0, A, alpha, C]), best_ss
