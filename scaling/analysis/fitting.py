"""Estimators for scaling laws: approaches 1-3 of Hoffmann et al. 2022, Kaplan fits, bootstrap.

* **Approach 3** (parametric, :func:`fit_law`): minimise the Huber loss of log-residuals,

  ``sum_i Huber_delta(log L_i - LSE(a - alpha log N_i, b - beta log D_i, e))``      (1)

  (Hoffmann et al. 2022, eq. 2 and App. D.2; Besiroglu et al. 2024, eq. 3), *summed* over points
  (a mean makes L-BFGS stop early, the failure Besiroglu et al. found), from the published grid of
  4,500 starting points.  All starts run at once in a batched, bound-projected L-BFGS written in
  numpy with analytic gradients (:func:`batched_lbfgs`); the best few distinct optima are then
  polished with scipy's L-BFGS-B.  The same routine fits every law in :mod:`scaling.analysis.laws` (the
  Kaplan forms use the same Huber loss in log space).
* **Approach 2** (IsoFLOP, :func:`fit_isoflop`): group runs by compute budget, fit a parabola of
  loss against ``log N`` per budget, take its vertex, then least squares in log space for
  ``N_opt = k_N C^a`` and ``D_opt = k_D C^b``.
* **Approach 1** (envelope, :func:`fit_envelope`): from loss-vs-tokens curves, the run with the
  least loss at each FLOP count, then the same power-law fits.
* **Uncertainty**: a seeded bootstrap over runs (resample rows with replacement, refit).  Resample
  weights are drawn up front from the seed and refits are split into fixed-size chunks, so results
  are identical for any number of worker processes.

Fitters never print: they return frozen :class:`FitResult` objects that carry convergence status
and warnings.
"""

from __future__ import annotations

import math
import multiprocessing
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from scaling.errors import DataError
from scaling.analysis.laws import Law, get_law

Array = np.ndarray

HUBER_DELTA = 1e-3
TOKENS_PER_PARAM_RANGE = (1.0, 1000.0)  # outside this the allocation is flagged as extreme
OBJECTIVE_BLOCK = 192  # rows of the start batch evaluated together (cache-sized)
BOOTSTRAP_CHUNK = 25  # resamples per task; fixed so results do not depend on the worker count


# --------------------------------------------------------------------------------------------
# Result objects
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FitOptions:
    """Options of a fit; recorded in ``fit.json`` under ``options``."""

    huber_delta: float = HUBER_DELTA
    bootstrap: int = 0
    seed: int = 0
    level: float = 0.95
    workers: int | None = None
    grid_stride: int = 1  # use every k-th start of the law's grid (1 = the full published grid)
    polish: int = 8  # distinct optima polished with scipy L-BFGS-B
    isoflop_tolerance: float = 0.05  # decades of C within which runs share a budget
    extra_starts: tuple[tuple[float, ...], ...] = ()
    use_grid: bool = True  # False: start only from extra_starts (warm refits)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "huber_delta": self.huber_delta,
            "bootstrap": self.bootstrap,
            "seed": self.seed,
            "level": self.level,
            "grid_stride": self.grid_stride,
            "polish": self.polish,
            "isoflop_tolerance": self.isoflop_tolerance,
        }
        return out


@dataclass(frozen=True)
class Convergence:
    """How the optimiser finished: ``converged`` is False when the best start did not."""

    converged: bool
    message: str
    n_starts: int
    n_iterations: int
    on_bounds: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "converged": self.converged,
            "message": self.message,
            "n_starts": self.n_starts,
            "n_iterations": self.n_iterations,
            "on_bounds": list(self.on_bounds),
        }


@dataclass(frozen=True)
class IsoflopMinimum:
    """One compute budget of an IsoFLOP design and the vertex of its parabola in log N."""

    flops: float
    params: float
    tokens: float
    loss: float
    n_runs: int
    params_range: tuple[float, float]
    coeffs: tuple[float, float, float]  # loss = c2 u^2 + c1 u + c0, u = ln N
    at_edge: bool
    used: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "flops": self.flops,
            "params": self.params,
            "tokens": self.tokens,
            "loss": self.loss,
            "n_runs": self.n_runs,
            "params_range": list(self.params_range),
            "coeffs": list(self.coeffs),
            "at_edge": self.at_edge,
            "used": self.used,
        }


@dataclass(frozen=True)
class Bootstrap:
    """Bootstrap replicates (``samples[name][i]`` for resample ``i``; NaN where a refit failed)."""

    n_resamples: int
    seed: int
    level: float
    samples: Mapping[str, Array]
    n_failed: int = 0

    def interval(self, name: str) -> tuple[float, float]:
        """Percentile interval at :attr:`level` for ``name``."""
        return percentile_interval(self.samples[name], self.level)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_resamples": self.n_resamples,
            "seed": self.seed,
            "level": self.level,
            "n_failed": self.n_failed,
            "samples": {k: [_num(x) for x in v] for k, v in self.samples.items()},
        }


@dataclass(frozen=True)
class FitResult:
    """Everything a fit produced; :meth:`to_dict` is the ``fit.json`` contract."""

    law: str
    approach: int
    params: Mapping[str, float]
    exponents: Mapping[str, float]
    allocation: Mapping[str, float]
    objective: float | None
    n_points: int
    ranges: Mapping[str, tuple[float, float]]
    options: FitOptions
    convergence: Convergence
    warnings: tuple[str, ...] = ()
    bootstrap: Bootstrap | None = None
    isoflop: tuple[IsoflopMinimum, ...] = ()
    frontier: Mapping[str, Any] | None = None
    theta: tuple[float, ...] = ()
    local_optima: tuple[tuple[float, ...], ...] = field(default=(), repr=False)

    @property
    def ci(self) -> dict[str, tuple[float, float]]:
        """Intervals for every bootstrapped quantity (parameters, exponents a and b, ...)."""
        if self.bootstrap is None:
            return {}
        return {k: self.bootstrap.interval(k) for k in self.bootstrap.samples}

    def to_dict(self) -> dict[str, Any]:
        """The ``fit.json`` document (DESIGN.md contracts; keys may be added, never renamed)."""
        law = get_law(self.law) if self.approach == 3 else None
        return {
            "law": self.law,
            "approach": self.approach,
            "equation": law.equation if law else None,
            "citation": law.citation if law else None,
            "params": {k: _num(v) for k, v in self.params.items()},
            "ci": {k: [_num(lo), _num(hi)] for k, (lo, hi) in self.ci.items()},
            "exponents": {k: _num(v) for k, v in self.exponents.items()},
            "allocation": {k: _num(v) for k, v in self.allocation.items()},
            "objective": _num(self.objective) if self.objective is not None else None,
            "n_points": self.n_points,
            "ranges": {k: [_num(lo), _num(hi)] for k, (lo, hi) in self.ranges.items()},
            "options": self.options.to_dict(),
            "convergence": self.convergence.to_dict(),
            "warnings": list(self.warnings),
            "isoflop": [m.to_dict() for m in self.isoflop],
            "frontier": _jsonable(self.frontier),
            "bootstrap": self.bootstrap.to_dict() if self.bootstrap else None,
        }


def _num(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return _num(float(obj))
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def percentile_interval(values: Array, level: float) -> tuple[float, float]:
    """Central percentile interval of the finite ``values`` at ``level`` (e.g. 0.95)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return (math.nan, math.nan)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return (float(lo), float(hi))


# --------------------------------------------------------------------------------------------
# Huber objective and the batched optimiser
# --------------------------------------------------------------------------------------------


def huber(r: Array, delta: float) -> Array:
    """Huber loss: ``r^2/2`` for ``|r| <= delta``, else ``delta (|r| - delta/2)`` (Huber 1964)."""
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def make_objective(
    law: Law, X: Array, log_loss: Array, delta: float, weights: Array | None = None
) -> Callable[[Array, Array | None], tuple[Array, Array]]:
    """Batched objective (1) and its gradient: ``fg(theta (k, P), rows (k,)) -> (f, grad)``.

    ``weights`` (R, n) gives each row of the batch its own point weights (bootstrap counts);
    ``rows`` selects which weight vector each parameter vector uses.  Rows are processed in
    blocks that fit in cache, which is about twice as fast as whole-batch numpy on large grids.
    """

    def block(theta: Array, rows: Array | None) -> tuple[Array, Array]:
        pred, vjp = law.log_model_vjp(theta, X)  # (k, n)
        r = np.subtract(log_loss, pred, out=pred)
        psi = np.clip(r, -delta, delta)  # dHuber/dr
        h = r - 0.5 * psi
        h *= psi  # Huber(r) = psi (r - psi/2)
        if weights is not None:
            w = weights[rows]
            h *= w
            psi *= w
        f = h.sum(axis=1)
        g = -vjp(psi)
        return f, g

    def fg(theta: Array, rows: Array | None = None) -> tuple[Array, Array]:
        k = theta.shape[0]
        f = np.empty(k)
        g = np.empty_like(theta, dtype=float)
        for s in range(0, k, OBJECTIVE_BLOCK):
            sl = slice(s, s + OBJECTIVE_BLOCK)
            f[sl], g[sl] = block(theta[sl], None if rows is None else rows[sl])
        bad = ~np.isfinite(f) | ~np.isfinite(g).all(axis=1)
        if bad.any():
            f[bad] = np.inf
            g[bad] = 0.0
        return f, g

    return fg


@dataclass(frozen=True)
class BatchResult:
    """Outcome of :func:`batched_lbfgs`: one row per start."""

    x: Array
    f: Array
    n_iter: Array
    status: Array  # 0 gradient small, 1 no further decrease, 2 max iterations, 3 line search failed


def batched_lbfgs(
    fg: Callable[[Array, Array], tuple[Array, Array]],
    x0: Array,
    lower: Array,
    upper: Array,
    *,
    rows: Array | None = None,
    maxiter: int = 500,
    memory: int = 10,
    gtol: float = 1e-10,
    ftol: float = 1e-14,
) -> BatchResult:
    """Minimise many independent problems at once with a bound-projected L-BFGS.

    Each row of ``x0`` is a start; ``fg`` evaluates the objective and gradient of a subset of rows.
    Per row this is L-BFGS (Nocedal & Wright 2006, Alg. 7.4-7.5) restricted to the free variables
    (those not pinned at a bound by their gradient), with a backtracking Armijo line search on the
    projected step.  Rows leave the batch as they converge, so late iterations are cheap.
    """
    x = np.clip(np.array(x0, dtype=float), lower, upper)
    S, P = x.shape
    rows = np.arange(S) if rows is None else np.asarray(rows)
    f, g = fg(x, rows)
    s_hist = np.zeros((S, memory, P))
    y_hist = np.zeros((S, memory, P))
    rho = np.zeros((S, memory))
    gamma = np.ones(S)
    has_hist = np.zeros(S, dtype=bool)
    n_iter = np.zeros(S, dtype=int)
    status = np.full(S, 2)
    active = np.isfinite(f)
    status[~active] = 3

    for _ in range(maxiter):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        xa, fa, ga = x[idx], f[idx], g[idx]
        free = ~(((xa <= lower) & (ga > 0)) | ((xa >= upper) & (ga < 0)))
        q = ga * free
        # Two-loop recursion, newest pair first (slot 0).
        sh, yh, rh = s_hist[idx], y_hist[idx], rho[idx]
        alphas = np.empty((idx.size, memory))
        for j in range(memory):
            alphas[:, j] = rh[:, j] * np.einsum("kp,kp->k", sh[:, j], q)
            q = q - alphas[:, j : j + 1] * yh[:, j]
        gnorm = np.sqrt(np.einsum("kp,kp->k", ga * free, ga * free))
        scale = np.where(has_hist[idx], gamma[idx], 1.0 / np.maximum(gnorm, 1e-300))
        r = scale[:, None] * q
        for j in reversed(range(memory)):
            beta = rh[:, j] * np.einsum("kp,kp->k", yh[:, j], r)
            r = r + sh[:, j] * (alphas[:, j] - beta)[:, None]
        d = -r * free
        slope = np.einsum("kp,kp->k", ga, d)
        reset = ~(slope < 0)
        if reset.any():
            d[reset] = -(ga[reset] * free[reset]) / np.maximum(gnorm[reset], 1e-300)[:, None]
            rho[idx[reset]] = 0.0
            has_hist[idx[reset]] = False
        # Backtracking Armijo line search on the projected path, vectorised over rows.
        t = np.ones(idx.size)
        x_new = np.empty_like(xa)
        f_new = np.full(idx.size, np.inf)
        g_new = np.zeros_like(ga)
        pending = np.arange(idx.size)
        for _ls in range(40):
            trial = np.clip(xa[pending] + t[pending, None] * d[pending], lower, upper)
            ft, gt = fg(trial, rows[idx[pending]])
            decrease = np.einsum("kp,kp->k", ga[pending], trial - xa[pending])
            ok = np.isfinite(ft) & (ft <= fa[pending] + 1e-4 * decrease)
            acc = pending[ok]
            x_new[acc], f_new[acc], g_new[acc] = trial[ok], ft[ok], gt[ok]
            pending = pending[~ok]
            if pending.size == 0:
                break
            t[pending] *= 0.5
        failed = np.zeros(idx.size, dtype=bool)
        failed[pending] = True
        ok = ~failed
        # Curvature pairs; keep only those with s'y > 0 so the inverse Hessian stays positive.
        s = x_new[ok] - xa[ok]
        yv = g_new[ok] - ga[ok]
        sy = np.einsum("kp,kp->k", s, yv)
        yy = np.einsum("kp,kp->k", yv, yv)
        upd = sy > 1e-12 * np.maximum(yy, 1e-300)
        ids = idx[ok][upd]
        if ids.size:
            s_hist[ids] = np.roll(s_hist[ids], 1, axis=1)
            y_hist[ids] = np.roll(y_hist[ids], 1, axis=1)
            rho[ids] = np.roll(rho[ids], 1, axis=1)
            s_hist[ids, 0] = s[upd]
            y_hist[ids, 0] = yv[upd]
            rho[ids, 0] = 1.0 / sy[upd]
            gamma[ids] = sy[upd] / yy[upd]
            has_hist[ids] = True
        moved = idx[ok]
        f_old = f[moved]
        x[moved], f[moved], g[moved] = x_new[ok], f_new[ok], g_new[ok]
        n_iter[idx] += 1
        status[idx[failed]] = 3
        active[idx[failed]] = False
        pg = np.clip(x[moved] - g[moved], lower, upper) - x[moved]
        small_g = np.abs(pg).max(axis=1) <= gtol
        stalled = (f_old - f[moved]) <= ftol * np.maximum(
            np.maximum(np.abs(f_old), np.abs(f[moved])), 1.0
        )
        status[moved[small_g]] = 0
        status[moved[stalled & ~small_g]] = 1
        active[moved[small_g | stalled]] = False
    return BatchResult(x=x, f=f, n_iter=n_iter, status=status)


def replace_result(first: Any, last: Any) -> Any:
    """``last`` with the iteration count of both runs and ``first``'s message if it succeeded."""
    last.nit = int(first.nit) + int(last.nit)
    if first.success and not last.success:  # stopping at machine precision is not a failure
        last.success, last.message = True, first.message
    return last


def _distinct_best(x: Array, f: Array, k: int, rtol: float = 1e-4) -> list[int]:
    """Indices of up to ``k`` lowest-objective rows whose parameters differ from each other."""
    order = np.argsort(np.where(np.isfinite(f), f, np.inf), kind="stable")
    chosen: list[int] = []
    for i in order:
        if not np.isfinite(f[i]):
            break
        if all(np.max(np.abs(x[i] - x[j]) / (1 + np.abs(x[j]))) > rtol for j in chosen):
            chosen.append(int(i))
        if len(chosen) >= k:
            break
    return chosen


def _polish(
    fg: Callable[[Array, Array], tuple[Array, Array]],
    x0: Array,
    lower: Array,
    upper: Array,
    final: bool = False,
) -> Any:
    """One scipy L-BFGS-B run from ``x0`` at tight tolerances (``final``: to machine precision)."""
    tol = (
        {"ftol": 0.0, "gtol": 0.0, "maxiter": 10_000}
        if final
        else {"ftol": 1e-14, "gtol": 1e-11, "maxiter": 3000}
    )

    def single(theta: Array) -> tuple[float, Array]:
        f, g = fg(theta[None, :], np.zeros(1, dtype=int))
        return float(f[0]), g[0]

    return minimize(
        single,
        x0,
        jac=True,
        method="L-BFGS-B",
        bounds=list(zip(lower, upper, strict=True)),
        options={**tol, "maxcor": 20},
    )


# --------------------------------------------------------------------------------------------
# Approach 3 / Kaplan: parametric fit of any registered law
# --------------------------------------------------------------------------------------------


def _check_points(law: Law, N: Array | None, D: Array | None, C: Array | None, n: int) -> None:
    if n < law.n_params:
        raise DataError(
            f"{n} point(s) cannot fit the {law.n_params} free parameters of law {law.name!r}; "
            "add runs or choose a law with fewer parameters"
        )
    names = {"N": ("params", "alpha"), "D": ("tokens", "beta"), "C": ("flops", "alpha_C")}
    for key, arr in (("N", N), ("D", D), ("C", C)):
        if key in law.inputs and np.unique(np.asarray(arr)).size < 2:
            col, exp = names[key]
            raise DataError(
                f"all runs have the same {col} ({np.asarray(arr)[0]:g}); law {law.name!r} cannot "
                f"fit its {key} exponent without at least two distinct values"
            )


def pareto_frontier(flops: Array, loss: Array) -> Array:
    """Indices of runs on the compute-efficient frontier (no cheaper run has lower loss)."""
    order = np.argsort(flops, kind="stable")
    best = np.inf
    keep = []
    for i in order:
        if loss[i] < best:
            keep.append(i)
            best = loss[i]
    return np.array(keep, dtype=int)


def _law_inputs(law: Law, N: Array, D: Array, C: Array, loss: Array) -> tuple[Array, Array, Array]:
    """(X, log_loss, indices) the law is fitted on; frontier laws use the Pareto frontier."""
    idx = pareto_frontier(C, loss) if law.frontier else np.arange(len(loss))
    X = law.design(N=N[idx], D=D[idx], C=C[idx])
    return X, np.log(loss[idx]), idx


def _on_bounds(law: Law, theta: Array) -> tuple[str, ...]:
    lo, hi = np.array(law.lower), np.array(law.upper)
    tol = 1e-6 * (hi - lo)
    hit = (theta <= lo + tol) | (theta >= hi - tol)
    return tuple(name for name, h in zip(law.param_names, hit, strict=True) if h)


def _minimise_law(
    law: Law,
    X: Array,
    log_loss: Array,
    options: FitOptions,
    starts: Array | None = None,
) -> tuple[Array, float, Convergence, list[Array]]:
    """Multi-start minimisation of (1); returns theta, objective, convergence, distinct optima."""
    lower, upper = np.array(law.lower), np.array(law.upper)
    if starts is None:
        starts = law.start_grid()[:: max(1, options.grid_stride)]
        if options.extra_starts:
            extra = np.array(options.extra_starts, dtype=float)
            starts = np.vstack([starts, extra]) if options.use_grid else extra
    fg = make_objective(law, X, log_loss, options.huber_delta)
    if options.polish <= 0:
        # Warm refits: the batch alone, run to tight tolerances.
        batch = batched_lbfgs(fg, starts, lower, upper, gtol=1e-9, ftol=1e-13, maxiter=1000)
        i = int(np.argmin(batch.f))
        theta = batch.x[i]
        status = int(batch.status[i])
        converged = status in (0, 1)
        message = [
            "gradient below tolerance",
            "no further decrease",
            "max iterations",
            "line search failed",
        ][status]
        n_iter = int(batch.n_iter[i])
        optima = [batch.x[j] for j in _distinct_best(batch.x, batch.f, 4)]
    else:
        # Explore with scipy's default stopping rule (ftol 2.2e-9, gtol 1e-5), then polish.
        batch = batched_lbfgs(fg, starts, lower, upper, gtol=1e-5, ftol=2.2e-9, maxiter=200)
        best_rows = _distinct_best(batch.x, batch.f, options.polish)
        if not best_rows:
            raise DataError(f"law {law.name!r}: the objective is not finite at any start")
        polished = []
        for i in best_rows:
            res = _polish(fg, batch.x[i], lower, upper)
            # Then to machine precision.  The summed Huber loss has kinks (|r| = delta) where
            # L-BFGS-B stops; restarting where it stopped (fresh memory) often goes further.
            for _ in range(5):
                last = _polish(fg, res.x, lower, upper, final=True)
                if not last.fun < res.fun:
                    break
                res = replace_result(res, last)
            polished.append((float(res.fun), res, i))
        polished.sort(key=lambda t: t[0])
        fun, res, i = polished[0]
        theta = np.asarray(res.x) if fun <= batch.f[i] else batch.x[i]  # never make it worse
        converged = bool(res.success)
        message = str(res.message)
        n_iter = int(batch.n_iter.max()) + int(res.nit)
        optima = [np.asarray(r.x) for _, r, _ in polished]
    if not np.isfinite(batch.f).any():
        raise DataError(f"law {law.name!r}: the objective is not finite at any start")
    f_chk, g_chk = fg(theta[None, :], np.zeros(1, dtype=int))
    pg = np.clip(theta - g_chk[0], lower, upper) - theta
    # Also converged when the projected gradient is negligible next to the gradient scale of
    # the Huber terms (L-BFGS-B's line search often ends "abnormally" at machine precision).
    small = float(np.abs(pg).max()) <= 1e-7 * max(1.0, options.huber_delta * len(log_loss))
    conv = Convergence(
        converged=converged or small,
        message=message,
        n_starts=len(starts),
        n_iterations=n_iter,
        on_bounds=_on_bounds(law, theta),
    )
    return theta, float(f_chk[0]), conv, optima


def fit_law(
    runs: pd.DataFrame,
    law: str = "chinchilla",
    options: FitOptions | None = None,
) -> FitResult:
    """Fit a registered law to a validated run table (approach 3 for ``chinchilla``).

    The loss is objective (1) with the law's own log-space model; the best of all starts is kept
    and polished.  With ``options.bootstrap > 0`` the fit is repeated on resampled runs (warm
    started from the distinct optima of the full fit) and intervals are attached.
    """
    options = options or FitOptions()
    lw = get_law(law)
    N, D, C, loss = _columns(runs)
    _check_points(lw, N, D, C, len(loss))
    X, log_loss, idx = _law_inputs(lw, N, D, C, loss)
    if len(idx) < lw.n_params:
        raise DataError(
            f"only {len(idx)} run(s) lie on the compute frontier; law {lw.name!r} needs "
            f"{lw.n_params}"
        )
    theta, objective, conv, optima = _minimise_law(lw, X, log_loss, options)
    params = lw.to_params(theta)
    warnings = _law_warnings(lw, theta, conv, N, D, C, params)
    exponents, allocation = _law_allocation(lw, params)
    boot = None
    if options.bootstrap > 0:
        boot = _bootstrap_law(lw, X, log_loss, options, optima)
        if boot.n_failed:
            warnings.append(
                f"{boot.n_failed} of {boot.n_resamples} bootstrap refits did not converge "
                "and were left out of the intervals"
            )
    return FitResult(
        law=lw.name,
        approach=3,
        params=params,
        exponents=exponents,
        allocation=allocation,
        objective=objective,
        n_points=len(idx),
        ranges=_ranges(N[idx], D[idx], C[idx], loss[idx]),
        options=options,
        convergence=conv,
        warnings=tuple(warnings),
        bootstrap=boot,
        theta=tuple(float(t) for t in theta),
        local_optima=tuple(tuple(float(v) for v in o) for o in optima),
    )


def _columns(runs: pd.DataFrame) -> tuple[Array, Array, Array, Array]:
    N = runs["params"].to_numpy(dtype=float)
    D = runs["tokens"].to_numpy(dtype=float)
    C = runs["flops"].to_numpy(dtype=float) if "flops" in runs else 6.0 * N * D
    loss = runs["loss"].to_numpy(dtype=float)
    return N, D, C, loss


def _ranges(N: Array, D: Array, C: Array, loss: Array) -> dict[str, tuple[float, float]]:
    return {
        "N": (float(N.min()), float(N.max())),
        "D": (float(D.min()), float(D.max())),
        "C": (float(C.min()), float(C.max())),
        "loss": (float(loss.min()), float(loss.max())),
    }


def _law_allocation(law: Law, params: Mapping[str, float]) -> tuple[dict, dict]:
    """Exponents a, b (``N_opt ∝ C^a``, ``D_opt ∝ C^b``) and allocation constants of a law."""
    from scaling.analysis.allocation import chinchilla_exponents

    if law.name == "chinchilla":
        a, b, G = chinchilla_exponents(params)
        return {"a": a, "b": b}, {"a": a, "b": b, "G": G}
    if law.name == "kaplan":
        # L(N, C/6N) is minimised at N^(p+1) = p N_c^p C / (6 D_c), p = alpha_N/alpha_D.
        p = params["alpha_N"] / params["alpha_D"]
        a = 1.0 / (1.0 + p)
        return {"a": a, "b": 1.0 - a}, {"a": a, "b": 1.0 - a}
    return {}, {}


def _law_warnings(
    law: Law,
    theta: Array,
    conv: Convergence,
    N: Array,
    D: Array,
    C: Array,
    params: Mapping[str, float],
) -> list[str]:
    from scaling.analysis.allocation import optimal_allocation

    out = []
    n_points = len(N)
    if n_points < 2 * law.n_params:
        out.append(
            f"only {n_points} runs for {law.n_params} free parameters: the fit is barely "
            "constrained and its intervals are wide; add runs (at least "
            f"{2 * law.n_params}) before trusting an extrapolation"
        )
    if not conv.converged:
        out.append(f"optimizer did not converge ({conv.message})")
    if conv.on_bounds:
        out.append(
            "parameter(s) on a bound of the search box: "
            + ", ".join(conv.on_bounds)
            + " (the law may be degenerate for this data, e.g. no visible curvature)"
        )
    if law.name == "chinchilla":
        terms = {
            "A/N^alpha": params["A"] * N ** -params["alpha"],
            "B/D^beta": params["B"] * D ** -params["beta"],
            "E": np.full(N.shape, params["E"]),
        }
        total = sum(terms.values())
        for name, term in terms.items():
            share = float(np.max(term / total))
            if share < 1e-4:
                out.append(
                    f"the {name} term is below {share:.1e} of the loss at every run: its "
                    "parameters are not identified by this data (degenerate fit)"
                )
    if "N" in law.inputs and "D" in law.inputs:
        for c in (C.min(), C.max()):
            n_opt, d_opt = optimal_allocation(law.name, params, np.array([c]))
            tpp = float(d_opt[0] / n_opt[0])
            lo, hi = TOKENS_PER_PARAM_RANGE
            if not lo <= tpp <= hi:
                out.append(
                    f"extreme compute-optimal tokens per parameter at C={c:.3g}: {tpp:.3g} "
                    f"(outside {lo:g}..{hi:g}; check the fit before using its allocation)"
                )
    return out


# --------------------------------------------------------------------------------------------
# Bootstrap for parametric fits
# --------------------------------------------------------------------------------------------


def _resample_weights(n: int, n_resamples: int, seed: int, groups: Array | None = None) -> Array:
    """Bootstrap counts (n_resamples, n): rows drawn with replacement (within ``groups``)."""
    rng = np.random.default_rng(seed)
    W = np.zeros((n_resamples, n))
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


def _bootstrap_chunk(args: tuple) -> tuple[Array, Array]:
    """Refit one chunk of resamples; top-level so worker processes can run it."""
    law_name, X, log_loss, W, starts, delta = args
    law = get_law(law_name)
    lower, upper = np.array(law.lower), np.array(law.upper)
    R, K = W.shape[0], starts.shape[0]
    fg = make_objective(law, X, log_loss, delta, weights=W)
    x0 = np.tile(starts, (R, 1))
    rows = np.repeat(np.arange(R), K)
    res = batched_lbfgs(fg, x0, lower, upper, rows=rows, maxiter=1000, gtol=1e-9, ftol=1e-13)
    f = res.f.reshape(R, K)
    best = np.argmin(np.where(np.isfinite(f), f, np.inf), axis=1)
    theta = res.x.reshape(R, K, -1)[np.arange(R), best]
    status = res.status.reshape(R, K)[np.arange(R), best]
    ok = np.isfinite(f[np.arange(R), best]) & (status != 2)
    return theta, ok


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


def default_workers(workers: int | None) -> int:
    """``workers`` or the CPUs available to this process."""
    if workers is not None:
        return max(1, int(workers))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _bootstrap_law(
    law: Law, X: Array, log_loss: Array, options: FitOptions, optima: Sequence[Array]
) -> Bootstrap:
    n = len(log_loss)
    W = _resample_weights(n, options.bootstrap, options.seed)
    starts = np.array(optima[: max(1, min(4, len(optima)))])
    tasks = [
        (law.name, X, log_loss, W[i : i + BOOTSTRAP_CHUNK], starts, options.huber_delta)
        for i in range(0, options.bootstrap, BOOTSTRAP_CHUNK)
    ]
    out = run_chunks(_bootstrap_chunk, tasks, options.workers)
    theta = np.vstack([t for t, _ in out])
    ok = np.concatenate([o for _, o in out])
    theta[~ok] = np.nan
    samples = {k: np.asarray(v, dtype=float) for k, v in law.to_params_array(theta).items()}
    if law.name in ("chinchilla", "kaplan"):
        from scaling.analysis.allocation import chinchilla_exponents

        if law.name == "chinchilla":
            a, b, G = chinchilla_exponents(samples)
            samples.update(a=np.asarray(a), b=np.asarray(b), G=np.asarray(G))
        else:
            a = 1.0 / (1.0 + samples["alpha_N"] / samples["alpha_D"])
            samples.update(a=a, b=1.0 - a)
    return Bootstrap(
        n_resamples=options.bootstrap,
        seed=options.seed,
        level=options.level,
        samples=samples,
        n_failed=int((~ok).sum()),
    )


# --------------------------------------------------------------------------------------------
# Approaches 1 and 2: compute-optimal points, then power laws in C
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PowerLaw:
    """``y = coef * C^exponent``, least squares in log space."""

    exponent: float
    coef: float

    def __call__(self, C: Array | float) -> Array:
        return self.coef * np.asarray(C, dtype=float) ** self.exponent


def fit_power_law(C: Array, y: Array) -> PowerLaw:
    """Least squares of ``log y = log coef + exponent log C`` (Hoffmann et al. 2022, §3.1-3.2)."""
    slope, intercept = np.polyfit(np.log(C), np.log(y), 1)
    return PowerLaw(exponent=float(slope), coef=float(np.exp(intercept)))


def group_budgets(flops: Array, tolerance_decades: float) -> Array:
    """Label runs with a budget id: sorted runs whose log10 C are within ``tolerance`` share one."""
    order = np.argsort(flops, kind="stable")
    logc = np.log10(flops[order])
    labels_sorted = np.concatenate([[0], np.cumsum(np.diff(logc) > tolerance_decades)])
    labels = np.empty_like(labels_sorted)
    labels[order] = labels_sorted
    return labels


def _parabola_minimum(u: Array, loss: Array) -> tuple[float, float, tuple[float, float, float]]:
    """Vertex (u*, loss*) of the least-squares parabola ``loss = c2 u^2 + c1 u + c0``."""
    c2, c1, c0 = np.polyfit(u, loss, 2)
    if c2 <= 0:
        return math.nan, math.nan, (float(c2), float(c1), float(c0))
    u_star = -c1 / (2 * c2)
    return float(u_star), float(c0 - c1 * c1 / (4 * c2)), (float(c2), float(c1), float(c0))


def isoflop_minima(
    N: Array, C: Array, loss: Array, labels: Array, weights: Array | None = None
) -> list[IsoflopMinimum]:
    """Per-budget parabola vertices (Hoffmann et al. 2022, approach 2; their Fig. 3)."""
    out = []
    for lab in np.unique(labels):
        m = labels == lab
        if weights is not None:
            m = m & (weights > 0)
        reps = weights[m].astype(int) if weights is not None else np.ones(m.sum(), dtype=int)
        n_m, l_m = np.repeat(N[m], reps), np.repeat(loss[m], reps)
        if np.unique(n_m).size < 3:
            continue
        c_budget = float(np.exp(np.mean(np.log(C[labels == lab]))))
        u = np.log(n_m)
        u_star, l_star, coeffs = _parabola_minimum(u, l_m)
        lo, hi = float(n_m.min()), float(n_m.max())
        if not math.isfinite(u_star):
            out.append(
                IsoflopMinimum(
                    c_budget,
                    math.nan,
                    math.nan,
                    math.nan,
                    int(m.sum()),
                    (lo, hi),
                    coeffs,
                    True,
                    False,
                )
            )
            continue
        n_star = float(np.exp(np.clip(u_star, -700.0, 700.0)))
        inside = lo < n_star < hi
        argmin_edge = n_m[np.argmin(l_m)] in (lo, hi)
        out.append(
            IsoflopMinimum(
                flops=c_budget,
                params=n_star,
                tokens=c_budget / (6 * n_star),
                loss=l_star,
                n_runs=int(m.sum()),
                params_range=(lo, hi),
                coeffs=coeffs,
                at_edge=(not inside) or bool(argmin_edge),
                used=inside,
            )
        )
    return out


def fit_isoflop(runs: pd.DataFrame, options: FitOptions | None = None) -> FitResult:
    """Approach 2: IsoFLOP parabolas, then ``N_opt = k_N C^a`` and ``D_opt = k_D C^b``."""
    options = options or FitOptions()
    N, D, C, loss = _columns(runs)
    labels = group_budgets(C, options.isoflop_tolerance)
    minima = isoflop_minima(N, C, loss, labels)
    warnings: list[str] = []
    for lab in np.unique(labels):
        spread = np.log10(C[labels == lab].max() / C[labels == lab].min())
        if spread > 0.3:
            warnings.append(
                f"runs grouped into one budget span {spread:.2f} decades of compute; the table may "
                "not be an IsoFLOP design (set --isoflop-tolerance)"
            )
            break
    usable = [m for m in minima if m.used]
    for m in minima:
        if not math.isfinite(m.params):
            warnings.append(f"budget C={m.flops:.3g}: loss is not convex in log N; budget skipped")
        elif m.at_edge:
            where = "outside (beyond the edge of)" if not m.used else "at the edge of"
            warnings.append(
                f"budget C={m.flops:.3g}: IsoFLOP minimum N={m.params:.3g} is {where} the sampled "
                f"sizes {m.params_range[0]:.3g}..{m.params_range[1]:.3g}"
                + ("; budget left out of the fit" if not m.used else "")
            )
    if len(usable) < 2:
        raise DataError(
            f"approach 2 needs at least two compute budgets with three or more model sizes and "
            f"an interior loss minimum; found {len(usable)} "
            f"(budgets are runs within {options.isoflop_tolerance} decades of compute; "
            "use --approach 3 for runs that are not an IsoFLOP design)"
        )
    return _frontier_result(
        approach=2,
        points=usable,
        runs_n=len(loss),
        ranges=_ranges(N, D, C, loss),
        options=options,
        warnings=warnings,
        minima=tuple(minima),
        bootstrap_fn=lambda W: _isoflop_boot(N, C, loss, labels, W),
        bootstrap_groups=labels,
        n_rows=len(loss),
    )


def _isoflop_boot(N: Array, C: Array, loss: Array, labels: Array, W: Array) -> tuple[Array, Array]:
    pts = [m for m in isoflop_minima(N, C, loss, labels, weights=W) if m.used]
    if len(pts) < 2:
        return np.array([]), np.array([])
    return np.array([m.flops for m in pts]), np.array([m.params for m in pts])


def envelope(runs: pd.DataFrame, n_grid: int = 250) -> tuple[Array, Array, Array, Array, Array]:
    """Approach 1 envelope: at each FLOP count, the run with the least (interpolated) loss.

    Returns (C grid, N of the best run, loss, run index per grid point, loss matrix (runs, grid)).
    Only FLOP counts reached by at least two runs are kept.
    """
    groups = list(runs.groupby("run_id", sort=True))
    c_lo = min(g["flops"].min() for _, g in groups)
    c_hi = max(g["flops"].max() for _, g in groups)
    grid = np.geomspace(c_lo, c_hi, n_grid)
    M = np.full((len(groups), n_grid), np.inf)
    sizes = np.empty(len(groups))
    for i, (_, g) in enumerate(groups):
        c = g["flops"].to_numpy(dtype=float)
        ell = g["loss"].to_numpy(dtype=float)
        sizes[i] = float(g["params"].iloc[-1])
        if c.size == 1:
            continue
        inside = (grid >= c.min()) & (grid <= c.max())
        M[i, inside] = np.exp(np.interp(np.log(grid[inside]), np.log(c), np.log(ell)))
    covered = np.isfinite(M).sum(axis=0) >= 2
    best = np.argmin(M, axis=0)
    return grid[covered], sizes[best[covered]], M.min(axis=0)[covered], best[covered], M[:, covered]


def fit_envelope(curves: pd.DataFrame, options: FitOptions | None = None) -> FitResult:
    """Approach 1: minimum loss per FLOP over all curves, then the power-law fits in C."""
    options = options or FitOptions()
    if curves["run_id"].nunique() < 2:
        raise DataError("approach 1 needs loss curves from at least two runs (run_id)")
    grid, n_best, l_best, best, M = envelope(curves)
    sizes = curves.groupby("run_id", sort=True)["params"].last().to_numpy(dtype=float)
    if grid.size < 2 or np.unique(n_best).size < 2:
        raise DataError(
            "approach 1: the loss envelope is won by a single model size at every FLOP count; "
            "the curves cannot determine how N_opt grows with compute"
        )
    warnings = []
    for label, size in (("smallest", sizes.min()), ("largest", sizes.max())):
        share = float(np.mean(n_best == size))
        if share > 0.4:
            warnings.append(
                f"the {label} model wins {share:.0%} of the envelope: the sizes may not bracket "
                "the compute-optimal size"
            )
    points = [
        IsoflopMinimum(
            float(c),
            float(n),
            float(c / (6 * n)),
            float(ell),
            1,
            (n, n),
            (0.0, 0.0, 0.0),
            False,
            True,
        )
        for c, n, ell in zip(grid, n_best, l_best, strict=True)
    ]
    last = curves.groupby("run_id", sort=True).tail(1)
    N, D, C, loss = _columns(last)

    def boot(W: Array) -> tuple[Array, Array]:
        chosen = W > 0
        Mb = np.where(chosen[:, None], M, np.inf)
        ok = np.isfinite(Mb).sum(axis=0) >= 2
        if ok.sum() < 2:
            return np.array([]), np.array([])
        nb = sizes[np.argmin(Mb[:, ok], axis=0)]
        return grid[ok], nb

    return _frontier_result(
        approach=1,
        points=points,
        runs_n=int(curves["run_id"].nunique()),
        ranges=_ranges(N, D, C, loss),
        options=options,
        warnings=warnings,
        minima=(),
        bootstrap_fn=boot,
        bootstrap_groups=None,
        n_rows=len(sizes),
    )


def _frontier_result(
    *,
    approach: int,
    points: Sequence[IsoflopMinimum],
    runs_n: int,
    ranges: Mapping[str, tuple[float, float]],
    options: FitOptions,
    warnings: list[str],
    minima: tuple[IsoflopMinimum, ...],
    bootstrap_fn: Callable[[Array], tuple[Array, Array]],
    bootstrap_groups: Array | None,
    n_rows: int,
) -> FitResult:
    Cs = np.array([p.flops for p in points])
    Ns = np.array([p.params for p in points])
    Ls = np.array([p.loss for p in points])
    fit_n = fit_power_law(Cs, Ns)
    fit_d = fit_power_law(Cs, Cs / (6 * Ns))
    exponents = {"a": fit_n.exponent, "b": fit_d.exponent}
    allocation = {
        "a": fit_n.exponent,
        "b": fit_d.exponent,
        "N_coef": fit_n.coef,
        "D_coef": fit_d.coef,
    }
    frontier = _fit_loss_frontier(Cs, Ls, options)
    lo, hi = TOKENS_PER_PARAM_RANGE
    for c in (Cs.min(), Cs.max()):
        tpp = float(fit_d(c) / fit_n(c))
        if not lo <= tpp <= hi:
            warnings.append(
                f"extreme compute-optimal tokens per parameter at C={c:.3g}: {tpp:.3g} "
                f"(outside {lo:g}..{hi:g})"
            )
    boot = None
    if options.bootstrap > 0:
        W = _resample_weights(n_rows, options.bootstrap, options.seed, groups=bootstrap_groups)
        a_s, b_s, kn_s, kd_s = (np.full(options.bootstrap, np.nan) for _ in range(4))
        for r in range(options.bootstrap):
            c_r, n_r = bootstrap_fn(W[r])
            if c_r.size < 2 or np.unique(c_r).size < 2:
                continue
            pn = fit_power_law(c_r, n_r)
            pd_ = fit_power_law(c_r, c_r / (6 * n_r))
            a_s[r], kn_s[r], b_s[r], kd_s[r] = pn.exponent, pn.coef, pd_.exponent, pd_.coef
        boot = Bootstrap(
            n_resamples=options.bootstrap,
            seed=options.seed,
            level=options.level,
            samples={"a": a_s, "b": b_s, "N_coef": kn_s, "D_coef": kd_s},
            n_failed=int(np.isnan(a_s).sum()),
        )
    objective = None
    conv = Convergence(True, "closed-form least squares", 1, 0)
    return FitResult(
        law="chinchilla",
        approach=approach,
        params={},
        exponents=exponents,
        allocation=allocation,
        objective=objective,
        n_points=runs_n,
        ranges=ranges,
        options=options,
        convergence=conv,
        warnings=tuple(warnings),
        bootstrap=boot,
        isoflop=minima if minima else (),
        frontier=frontier,
    )


def _fit_loss_frontier(Cs: Array, Ls: Array, options: FitOptions) -> dict[str, Any] | None:
    """``L_opt(C) = E + (C_c/C)^alpha_C`` through the compute-optimal losses (Kaplan eq. 1.3)."""
    if Cs.size < 2 or np.unique(Cs).size < 2:
        return None
    name = "kaplan_c_e" if Cs.size >= 5 else "kaplan_c"
    law = get_law(name)
    X = law.design(C=Cs)
    opts = replace(options, grid_stride=1, polish=3, extra_starts=())
    theta, objective, conv, _ = _minimise_law(law, X, np.log(Ls), opts)
    return {
        "law": name,
        "equation": law.equation,
        "params": law.to_params(theta),
        "objective": objective,
        "converged": conv.converged,
        "points": {"flops": Cs.tolist(), "loss": Ls.tolist()},
    }


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


def result_from_dict(doc: Mapping[str, Any]) -> FitResult:
    """Rebuild a :class:`FitResult` from a ``fit.json`` document (for re-rendering reports)."""
    opts = doc.get("options") or {}
    known = {
        f
        for f in FitOptions.__dataclass_fields__
        if f not in ("workers", "extra_starts", "use_grid")
    }
    options = FitOptions(**{k: v for k, v in opts.items() if k in known})
    conv = doc.get("convergence") or {}
    boot_doc = doc.get("bootstrap")
    boot = None
    if boot_doc:
        boot = Bootstrap(
            n_resamples=int(boot_doc["n_resamples"]),
            seed=int(boot_doc["seed"]),
            level=float(boot_doc["level"]),
            samples={
                k: np.array([np.nan if x is None else x for x in v], dtype=float)
                for k, v in boot_doc["samples"].items()
            },
            n_failed=int(boot_doc.get("n_failed", 0)),
        )
    minima = tuple(
        IsoflopMinimum(
            flops=m["flops"],
            params=_nan(m["params"]),
            tokens=_nan(m["tokens"]),
            loss=_nan(m["loss"]),
            n_runs=m["n_runs"],
            params_range=tuple(m["params_range"]),
            coeffs=tuple(m["coeffs"]),
            at_edge=m["at_edge"],
            used=m["used"],
        )
        for m in doc.get("isoflop") or []
    )
    law = get_law(doc["law"])
    params = {k: float(v) for k, v in (doc.get("params") or {}).items() if v is not None}
    theta = tuple(law.from_params(params)) if doc.get("approach", 3) == 3 else ()
    return FitResult(
        law=doc["law"],
        approach=int(doc.get("approach", 3)),
        params=params,
        exponents={k: _nan(v) for k, v in (doc.get("exponents") or {}).items()},
        allocation={k: _nan(v) for k, v in (doc.get("allocation") or {}).items()},
        objective=doc.get("objective"),
        n_points=int(doc.get("n_points", 0)),
        ranges={k: (float(v[0]), float(v[1])) for k, v in (doc.get("ranges") or {}).items()},
        options=options,
        convergence=Convergence(
            converged=bool(conv.get("converged", True)),
            message=str(conv.get("message", "")),
            n_starts=int(conv.get("n_starts", 0)),
            n_iterations=int(conv.get("n_iterations", 0)),
            on_bounds=tuple(conv.get("on_bounds", ())),
        ),
        warnings=tuple(doc.get("warnings") or ()),
        bootstrap=boot,
        isoflop=minima,
        frontier=doc.get("frontier"),
        theta=tuple(float(t) for t in theta),
        local_optima=(tuple(float(t) for t in theta),) if theta else (),
    )


def _nan(x: float | None) -> float:
    return math.nan if x is None else float(x)
