"""The multi-power law of a loss curve under any learning-rate schedule, and its fit.

Luo et al. 2025, "A Multi-Power Law for Loss Curve Prediction Across Learning Rate Schedules"
(ICLR 2025, arXiv:2503.12811), eq. (5)::

    L(t)  = L0 + A * (S1(t) + S_W)^(-alpha) - LD(t)
    LD(t) = B * sum_{k=1..t} (eta_{k-1} - eta_k) * G(eta_k^(-gamma) * S_k(t))
    G(x)  = 1 - (C * x + 1)^(-beta),       S_k(t) = sum_{tau=k..t} eta_tau

the loss after ``t`` optimizer steps of a run whose update ``i`` (0-based) used the LR
``eta_i``.  With 0-based updates, as :mod:`scaling.schedule` counts them, a drop ``d_j =
eta_{j-1} - eta_j`` at update ``j`` (``d_0 = 0``) is worth ``B * d_j * G(eta_j^(-gamma) *
(S1(t) - S1(j)))`` at step ``t > j``: the benefit of an LR drop saturates as a power of the LR
area trained since.  ``S1(s) = sum_{i<s} eta_i`` includes the warmup, which is ``S_W`` (counted
at the peak LR unless the run's trace says otherwise: the curve law's convention).

**The sum.**  ``LD`` at ``n`` points of a ``T``-step run costs ``O(n T)`` exactly.  The drops are
summed in blocks instead: the block edges are a grid of ``ceil(T / max_blocks)`` updates plus
every evaluated step (so a point sees whole blocks only); each block carries its summed drop, its
drop-weighted ``log eta`` and drop-weighted ``S1(j)``.  A single sharp drop is therefore exact,
and a smooth decay is the midpoint rule over a block; ``max_blocks >= T`` is the exact sum.
The points of a fit hold one flat entry per (point, block before it), so the law and its
Jacobian are a few vectorised numpy passes and a ``bincount``.

**The fit** minimises the summed Huber loss (``delta = 1e-3``, the authors' choice) of the log
residuals with :func:`scipy.optimize.least_squares` (trust-region reflective, analytic Jacobian,
bounds :data:`BOUNDS`), started from the authors' initialisation: ``L0, A, alpha, B`` of the law
with ``G = 1`` (linear in ``L0, A, B`` for a fixed ``alpha``: the Tissue-law profile fit of
:mod:`.tissue`), then ``C, beta, gamma`` from :data:`STARTS`; the best end point wins.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

Array = np.ndarray

NAME = "mpl"
PARAMS = ("L0", "A", "alpha", "B", "C", "beta", "gamma")
EQUATION = (
    "L(t) = L0 + A*S1(t)^(-alpha) - LD(t), LD(t) = B*sum_k (eta_{k-1} - eta_k)*"
    "G(eta_k^(-gamma)*S_k(t)), G(x) = 1 - (C*x + 1)^(-beta)"
)
CITATION = (
    "Luo et al. 2025, A Multi-Power Law for Loss Curve Prediction Across Learning Rate "
    "Schedules (ICLR 2025, arXiv:2503.12811)"
)
DEFINITIONS = {
    "S1": "sum_{i<t} eta_i (the warmup area S_W included)",
    "S_k(t)": "sum_{i=k..t-1} eta_i (0-based updates: drop d_k = eta_{k-1} - eta_k)",
    "objective": "summed Huber loss (delta 1e-3) of log residuals, as the authors fit",
}
HUBER_DELTA = 1e-3
MAX_BLOCKS = 256  # blocks of LR drops per run (plus one edge per evaluated step)
# lower and upper bounds of (L0, A, alpha, B, C, beta, gamma)
BOUNDS = (
    np.array([0.0, 0.0, 1e-3, 0.0, 1e-4, 1e-3, 0.0]),
    np.array([np.inf, np.inf, 4.0, np.inf, 1e4, 5.0, 3.0]),
)
STARTS = ((1.0, 0.5, 0.5), (4.0, 0.5, 0.5), (0.25, 0.5, 0.5), (1.0, 0.3, 0.8))  # C, beta, gamma
_ETA_FLOOR = 1e-9  # of the run's largest LR: eta^(-gamma) of a zero LR stays finite


@dataclass(frozen=True)
class MPLPoints:
    """Evaluation points of the law: ``S1`` at each point, and the blocks of LR drops before the
    points as flat entries (``row``: the point an entry belongs to; ``drop``: the block's summed
    drop; ``log_eta``: its log LR; ``area``: the LR area from the block to the point, ``S_k(t)``).
    """

    S1: Array  # (n,)
    row: Array  # (m,) int
    drop: Array  # (m,)
    log_eta: Array  # (m,)
    area: Array  # (m,)

    @property
    def size(self) -> int:
        return int(self.S1.size)

    def per_point(self, values: Array) -> Array:
        """Entries' ``values`` summed per point, shape ``(n,)``."""
        return np.bincount(self.row, weights=values, minlength=self.size)

    @property
    def total_drop(self) -> Array:
        """``eta_0 - eta_{t-1}``: the summed drops before each point (the law with ``G = 1``)."""
        return self.per_point(self.drop)

    def take(self, mask: Array) -> MPLPoints:
        """The points where the boolean ``mask`` is true."""
        mask = np.asarray(mask, dtype=bool)
        new_row = np.cumsum(mask) - 1
        keep = mask[self.row]
        return MPLPoints(
            self.S1[mask],
            new_row[self.row[keep]],
            self.drop[keep],
            self.log_eta[keep],
            self.area[keep],
        )

    @staticmethod
    def concat(parts: Sequence[MPLPoints]) -> MPLPoints:
        """Points of several runs, one after another."""
        offsets = np.cumsum([0] + [p.size for p in parts[:-1]])
        return MPLPoints(
            np.concatenate([p.S1 for p in parts]),
            np.concatenate([p.row + o for p, o in zip(parts, offsets, strict=True)]),
            np.concatenate([p.drop for p in parts]),
            np.concatenate([p.log_eta for p in parts]),
            np.concatenate([p.area for p in parts]),
        )


def mpl_points(eta: Array, steps: Array, max_blocks: int = MAX_BLOCKS) -> MPLPoints:
    """The law's points at ``steps`` (optimizer steps done, ``1 .. T``) of a run whose update
    ``i`` used LR ``eta[i]`` (``T = len(eta)``), its drops summed in blocks (module docstring)."""
    eta = np.asarray(eta, dtype=float)
    steps = np.asarray(steps, dtype=int)
    T = eta.size
    S1 = np.zeros(T + 1)
    np.cumsum(eta, out=S1[1:])
    drops = np.zeros(T)
    drops[1:] = eta[:-1] - eta[1:]
    stride = max(1, math.ceil(T / max(1, max_blocks)))
    edges = np.unique(np.concatenate([np.arange(0, T, stride), steps[steps < T], [T]]))
    starts, ends = edges[:-1], edges[1:]
    weight = np.abs(drops)
    log_eta = np.log(np.maximum(eta, _ETA_FLOOR * max(float(eta.max(initial=0.0)), 1e-300)))
    W = np.add.reduceat(weight, starts) if T else np.zeros(0)
    keep = W > 0
    D = np.add.reduceat(drops, starts)[keep] if T else W
    W = W[keep]
    block_log_eta = np.add.reduceat(weight * log_eta, starts)[keep] / W if T else W
    block_S1 = np.add.reduceat(weight * S1[:-1], starts)[keep] / W if T else W
    ends = ends[keep]
    row, block = np.nonzero(ends[None, :] <= steps[:, None])  # blocks wholly before each point
    S1_at = S1[steps]
    return MPLPoints(
        S1=S1_at,
        row=row,
        drop=D[block],
        log_eta=block_log_eta[block],
        area=np.maximum(S1_at[row] - block_S1[block], 1e-300),
    )


def _parts(theta: Sequence[float] | Array, pts: MPLPoints) -> tuple[Array, Array, Array]:
    """``x = eta^(-gamma) * S_k(t)``, ``u = C x + 1`` and ``u^(-beta)`` of every block."""
    _, _, _, _, C, beta, gamma = (float(v) for v in theta)
    with np.errstate(over="ignore", invalid="ignore"):
        x = np.exp(-gamma * pts.log_eta) * pts.area
        u = C * x + 1.0
        ub = u ** (-beta)
    return x, u, ub


def mpl_loss(theta: Sequence[float] | Array, pts: MPLPoints) -> Array:
    """The law at ``pts`` for ``theta = (L0, A, alpha, B, C, beta, gamma)``."""
    L0, A, alpha, B = (float(v) for v in theta[:4])
    _, _, ub = _parts(theta, pts)
    LD = B * pts.per_point(pts.drop * (1.0 - ub))
    with np.errstate(divide="ignore", over="ignore"):
        return L0 + A * pts.S1 ** (-alpha) - LD


def mpl_jacobian(theta: Sequence[float] | Array, pts: MPLPoints) -> Array:
    """``d L / d theta``, shape ``(n, 7)``."""
    _, A, alpha, B, C, beta, _ = (float(v) for v in theta)
    x, u, ub = _parts(theta, pts)
    p = pts.S1 ** (-alpha)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        dG_du = np.where(np.isfinite(x), beta * ub / u, 0.0)  # d(1 - u^-beta)/du
        dG_dC = dG_du * np.where(np.isfinite(x), x, 0.0)
        dG_dgamma = -C * dG_du * np.where(np.isfinite(x), x, 0.0) * pts.log_eta
        dG_dbeta = np.where(np.isfinite(u), ub * np.log(u), 0.0)
    J = np.empty((pts.size, 7))
    J[:, 0] = 1.0
    J[:, 1] = p
    J[:, 2] = -A * p * np.log(pts.S1)
    J[:, 3] = -pts.per_point(pts.drop * (1.0 - ub))
    J[:, 4] = -B * pts.per_point(pts.drop * dG_dC)
    J[:, 5] = -B * pts.per_point(pts.drop * dG_dbeta)
    J[:, 6] = -B * pts.per_point(pts.drop * dG_dgamma)
    return J


def _solve(
    start: Array, pts: MPLPoints, y: Array, sw: Array, free: Array, max_nfev: int
) -> tuple[Array, float]:
    """One bounded least-squares run from ``start`` over the parameters ``free`` (the others
    held), Huber loss of weighted log residuals; returns ``(theta, objective)``."""
    lo, hi = BOUNDS[0][free], BOUNDS[1][free]
    theta = np.array(start, dtype=float)

    def full(z: Array) -> Array:
        out = theta.copy()
        out[free] = z
        return out

    def resid(z: Array) -> Array:
        pred = np.maximum(mpl_loss(full(z), pts), 1e-10)
        return sw * (np.log(y) - np.log(pred))

    def jac(z: Array) -> Array:
        th = full(z)
        pred = np.maximum(mpl_loss(th, pts), 1e-10)
        return -(sw / pred)[:, None] * mpl_jacobian(th, pts)[:, free]

    span = np.where(np.isfinite(hi - lo), hi - lo, 1.0)
    z0 = np.clip(theta[free], lo + 1e-9 * span, np.where(np.isfinite(hi), hi - 1e-9 * span, hi))
    res = least_squares(
        resid,
        z0,
        jac=jac,
        bounds=(lo, hi),
        loss="huber",
        f_scale=HUBER_DELTA,
        x_scale="jac",
        max_nfev=max_nfev,
        method="trf",
    )
    return full(res.x), float(res.cost)


def fit_mpl(
    pts: MPLPoints,
    loss: Array,
    weights: Array | None = None,
    start: Array | None = None,
    max_nfev: int = 200,
) -> tuple[Array, float]:
    """``theta = (L0, A, alpha, B, C, beta, gamma)`` minimising the summed Huber loss of the
    (``weights``-weighted) log residuals; from ``start`` alone when given (a bootstrap refit),
    else from the authors' initialisation and :data:`STARTS`.  Returns ``(theta, objective)``.
    Without any LR drop in the points, ``B = 0`` and ``C, beta, gamma`` stay at their start."""
    from scaling.analysis.curves.tissue import fit_points

    y = np.asarray(loss, dtype=float)
    sw = np.ones_like(y) if weights is None else np.sqrt(np.asarray(weights, dtype=float))
    anneals = bool(np.any(pts.drop != 0))
    free = np.ones(7, dtype=bool) if anneals else np.array([1, 1, 1, 0, 0, 0, 0], dtype=bool)
    if start is not None:
        return _solve(np.asarray(start, dtype=float), pts, y, sw, free, max_nfev)
    L0, A, alpha, B = fit_points(pts.S1, pts.total_drop, y, weights)[0]  # G = 1: Tissue's form
    best: tuple[Array, float] | None = None
    for C, beta, gamma in STARTS if anneals else STARTS[:1]:
        init = np.array([L0, A, alpha, B if anneals else 0.0, C, beta, gamma])
        got = _solve(init, pts, y, sw, free, max_nfev)
        if best is None or got[1] < best[1]:
            best = got
    assert best is not None
    return best
