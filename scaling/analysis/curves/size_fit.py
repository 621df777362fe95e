"""The fit of the loss-curve law to the runs of one model size, and its bootstrap.

**Fit.** One law per model size (rows grouped by ``params``), pooling every run of that size
(horizons and schedules differ; a ``branch_role`` of ``stable`` / ``branch`` is a WSD cooldown
branch and the constant-LR run it starts from: each run's schedule is rebuilt from step 0 from
its own config, so a branch's short curve sits on the full WSD schedule).  Points up to the end
of warmup and before ``skip`` (10%) of the size's longest horizon are left out: early loss is
not a power law in ``S1``.  The objective is the sum of squared *relative* residuals
``((L - L_hat) / L)^2`` (the log-loss residual to first order).  For a fixed ``alpha`` the law
is linear in ``(L0, A, C)``, so those are solved exactly by non-negative least squares
(``scipy.optimize.nnls``: ``L0, A, C >= 0``) and ``alpha`` alone is searched: a grid of
:data:`ALPHA_GRID_SIZE` starts in :data:`ALPHA_BOUNDS`, then a bounded Brent refinement around
the best local minima (variable projection; every start reaches the exact optimum of the other
three parameters).

**Uncertainty** (:attr:`CurveOptions.resample`), at ``level``:

- ``blocks`` (default): the fit's log residuals, leverage-adjusted (divided by ``sqrt(1 - h)``,
  Davison & Hinkley 1997, eq. 6.9) and centred, in blocks of consecutive points of one run
  (:attr:`CurveOptions.block`, default ``round(points per run ** (1/3))``), are redrawn onto the
  fitted curves and the law refitted.  The interval covers
  the estimate's sensitivity to the curves' measurement noise (serially correlated within a
  block), for *these* runs' schedules: not seed-to-seed offsets of whole curves, not the law's
  own misfit, not ``lam``.
- ``runs``: whole runs of a size are drawn with replacement and refitted.  It also covers which
  runs were trained, but with two or three runs per size many draws lose the annealed run and
  leave ``C`` (or ``A, alpha``) poorly identified, so intervals are wide.

The run-to-run noise of a size's predictions (:mod:`.size_law`) comes from seed replicates among
the runs' final losses when the table has them, else the root mean square of the fit's log
residuals over all points, which measures evaluation noise and misfit but not seed offsets.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar, nnls

from scaling.analysis.curves.law import LAMBDA_GRID, PARAMS, CurveOptions, Schedule, law_loss
from scaling.analysis.curves.runs import RunCurve
from scaling.analysis.curves.size_law import CurveLaw
from scaling.analysis.fitting.bootstrap import percentile_interval, resample_weights
from scaling.analysis.fitting.noise import Noise, pooled_noise, residual_noise
from scaling.errors import DataError
from scaling.schedule import warmup_length

Array = np.ndarray

ALPHA_BOUNDS = (1e-3, 4.0)
ALPHA_GRID_SIZE = 41  # alpha starts, log-spaced in ALPHA_BOUNDS
BOOT_GRID_SIZE = 17  # fewer starts for bootstrap refits (they start near the estimate)
MIN_POINTS = 6  # a size needs more points than the law's 4 parameters, with room for noise


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


@dataclass(frozen=True)
class SizePoints:
    """The fitted points of one size: areas, losses, and which run each point belongs to."""

    S1: Array
    S2: Array
    loss: Array
    run: Array  # index into the size's runs, points in step order within a run


def used_mask(run: RunCurve, runs: Sequence[RunCurve], options: CurveOptions) -> Array:
    """Which of ``run``'s points the fit of its size (``runs``) uses: not those up to the end of
    warmup, nor those before ``skip`` of the size's longest horizon."""
    start = options.skip * max(r.total_steps for r in runs)
    warm = warmup_length(run.total_steps, run.schedule)
    return (run.steps > warm) & (run.steps >= start) & (run.steps >= 1)


def size_points(runs: Sequence[RunCurve], options: CurveOptions, lam: float) -> SizePoints:
    """The points the fit of one size (``runs``) uses (:func:`used_mask`), with their areas at
    annealing decay ``lam``."""
    parts = []
    for k, r in enumerate(runs):
        keep = used_mask(r, runs, options)
        S1, S2 = r.areas(options, lam)
        parts.append((S1[keep], S2[keep], r.loss[keep], np.full(int(keep.sum()), k)))
    return SizePoints(*(np.concatenate([p[i] for p in parts]) for i in range(4)))


def _block_residuals(resid: Sequence[Array], block: int, rng: np.random.Generator) -> list[Array]:
    """Each run's residuals redrawn as blocks of ``block`` consecutive residuals of any run of
    the size (a run shorter than a block gives its whole sequence)."""
    pool = []
    for r in resid:
        length = min(block, r.size)
        pool.extend(r[s : s + length] for s in range(r.size - length + 1))
    out = []
    for r in resid:
        got: list[Array] = []
        n = 0
        while n < r.size:
            piece = pool[int(rng.integers(len(pool)))]
            got.append(piece)
            n += piece.size
        out.append(np.concatenate(got)[: r.size])
    return out


def _leverage(theta: Array, pts: SizePoints) -> Array:
    """Leverage of each point in the fit linearised at ``theta`` (relative residuals): a
    residual's variance is ``sigma^2 (1 - h)``, so dividing by ``sqrt(1 - h)`` gives the
    bootstrap residuals of full variance (Davison & Hinkley 1997, eq. 6.9); the high-leverage
    points are the annealed ones that identify ``C``."""
    L0, A, alpha, C = theta
    p1 = pts.S1 ** (-alpha)
    J = np.column_stack([np.ones_like(p1), p1, -A * p1 * np.log(pts.S1), -pts.S2])
    J = J / pts.loss[:, None]
    J = J[:, np.any(J != 0, axis=0)]  # a zero column (no annealing) has no leverage
    try:
        Q, _ = np.linalg.qr(J)
    except np.linalg.LinAlgError:
        return np.zeros(pts.loss.size)
    h = np.sum(Q * Q, axis=1)
    return np.clip(h, 0.0, 0.99)


def _bootstrap(
    pts: SizePoints, theta: Array, options: CurveOptions, size_index: int
) -> tuple[Array | None, dict[str, Any]]:
    """Bootstrap replicates (B, 4) of one size's parameters and a record of how they were
    drawn."""
    B = options.bootstrap
    record: dict[str, Any] = {
        "n_resamples": B,
        "n_failed": 0,
        "kind": options.resample,
        "seed": options.seed,
        "level": options.level,
    }
    if B == 0:
        return None, record
    samples = np.full((B, 4), np.nan)
    runs = np.unique(pts.run)
    if options.resample == "runs":
        W = resample_weights(pts.loss.size, B, options.seed + size_index, clusters=pts.run)
        for b in range(B):
            keep = W[b] > 0
            try:
                samples[b], _ = fit_points(
                    pts.S1[keep], pts.S2[keep], pts.loss[keep], W[b][keep], BOOT_GRID_SIZE
                )
            except (ValueError, RuntimeError, FloatingPointError):
                pass
    else:
        fitted = law_loss(theta, pts.S1, pts.S2)
        with np.errstate(invalid="ignore", divide="ignore"):
            resid = (np.log(pts.loss) - np.log(fitted)) / np.sqrt(1.0 - _leverage(theta, pts))
        resid = resid - np.mean(resid)
        by_run = [resid[pts.run == k] for k in runs]
        sizes = [r.size for r in by_run]
        block = options.block or max(1, round(float(np.median(sizes)) ** (1 / 3)))
        record["block"] = block
        rng = np.random.default_rng([options.seed, size_index])
        for b in range(B):
            drawn = _block_residuals(by_run, block, rng)
            y = np.empty_like(pts.loss)
            for k, d in zip(runs, drawn, strict=True):
                y[pts.run == k] = fitted[pts.run == k] * np.exp(d)
            try:
                samples[b], _ = fit_points(pts.S1, pts.S2, y, None, BOOT_GRID_SIZE)
            except (ValueError, RuntimeError, FloatingPointError):
                pass
    record["n_failed"] = int(np.sum(~np.all(np.isfinite(samples), axis=1)))
    return samples, record


def _replicate_noise(runs: Sequence[RunCurve]) -> Noise | None:
    """Pooled standard deviation of the final log loss over runs equal in every config column
    but ``seed`` (and in their horizon); ``None`` without enough replication."""
    if not any(r.seed is not None for r in runs):
        return None
    groups: dict[tuple, list[float]] = {}
    for r in runs:
        key = (r.params, r.total_steps, r.final_step, r.schedule, r.config)
        groups.setdefault(key, []).append(math.log(r.final_loss))
    return pooled_noise(np.asarray(m) for m in groups.values())


_PREFERENCE = {"wsd": 0, "cosine": 1, "constant": 2}  # ties of _typical_schedule


def _typical_schedule(runs: Sequence[RunCurve]) -> Schedule:
    """The most common schedule among the runs that anneal (else among all), ties broken
    toward ``wsd``, then ``cosine``: the base of predictions for a horizon not trained."""
    pool = [r.schedule for r in runs if r.schedule.schedule != "constant"]
    counts = Counter(pool or [r.schedule for r in runs])
    return min(counts, key=lambda s: (-counts[s], _PREFERENCE.get(s.schedule, 3)))


def fit_size(
    runs: Sequence[RunCurve],
    options: CurveOptions | None = None,
    lam: float | None = None,
    size_index: int = 0,
) -> CurveLaw:
    """The law fitted to the runs of one size (any subset of a table's runs, e.g. a stable run
    and one branch) at annealing decay ``lam`` (default: ``options.lam``; ``"fit"`` there picks
    the best of :data:`LAMBDA_GRID` on these runs), with its bootstrap (seeded by
    ``options.seed`` and ``size_index``)."""
    options = options or CurveOptions()
    if lam is None:
        if options.lam == "fit":
            lam = min(LAMBDA_GRID, key=lambda v: lambda_objective([runs], options, v))
        else:
            lam = float(options.lam)
    pts = size_points(runs, options, lam)
    N = runs[0].params
    if pts.loss.size < MIN_POINTS:
        raise DataError(
            f"size {N:.4g}: {pts.loss.size} points after warmup and the first "
            f"{options.skip:.0%} of the horizon; the law needs at least {MIN_POINTS} "
            "(log more validation points: train.eval_points; or lower --curve-skip)"
        )
    theta, _ = fit_points(pts.S1, pts.S2, pts.loss)
    with np.errstate(invalid="ignore", divide="ignore"):
        resid = np.log(pts.loss) - np.log(law_loss(theta, pts.S1, pts.S2))
    samples, record = _bootstrap(pts, theta, options, size_index)
    ci: dict[str, tuple[float, float] | None] = {k: None for k in PARAMS}
    if samples is not None:
        for k, name in enumerate(PARAMS):
            ci[name] = percentile_interval(samples[:, k], options.level, min_values=10)
    noise = _replicate_noise(runs) or residual_noise(resid, len(PARAMS))
    warnings = []
    if np.max(np.abs(pts.S2)) == 0:
        warnings.append(
            f"size {N:.4g}: no run anneals its LR after warmup, so C is not identified "
            "(fitted as 0): add a cosine or WSD run"
        )
    if math.isclose(theta[2], ALPHA_BOUNDS[0], rel_tol=1e-3) or math.isclose(
        theta[2], ALPHA_BOUNDS[1], rel_tol=1e-3
    ):
        warnings.append(f"size {N:.4g}: alpha = {theta[2]:.3g} is on its bound {ALPHA_BOUNDS}")
    if theta[1] == 0:
        warnings.append(f"size {N:.4g}: A = 0: the loss does not fall with the forward area")
    if len(runs) == 1:
        warnings.append(f"size {N:.4g}: one run only; the law is a fit to one curve")
    if record["n_failed"] > 0.1 * max(record["n_resamples"], 1):
        warnings.append(
            f"size {N:.4g}: {record['n_failed']} of {record['n_resamples']} bootstrap refits failed"
        )
    return CurveLaw(
        params=N,
        L0=float(theta[0]),
        A=float(theta[1]),
        alpha=float(theta[2]),
        C=float(theta[3]),
        lam=lam,
        warmup_as_peak=options.warmup_as_peak,
        level=options.level,
        ci=ci,
        noise=noise,
        n_runs=len(runs),
        n_points=int(pts.loss.size),
        rms_log=float(np.sqrt(np.mean(resid**2))),
        bootstrap=record,
        tokens_per_step=Counter(r.tokens_per_step for r in runs).most_common(1)[0][0],
        schedule=_typical_schedule(runs),
        max_steps=max(r.total_steps for r in runs),
        run_ids=tuple(r.run_id for r in runs),
        warnings=tuple(warnings),
        samples=samples,
    )


def lambda_objective(
    sizes: Sequence[Sequence[RunCurve]], options: CurveOptions, lam: float
) -> float:
    """The summed objective of the fits of ``sizes`` (each a size's runs) at annealing decay
    ``lam``, sizes with too few points left out: what ``lam="fit"`` minimises."""
    total = 0.0
    for runs in sizes:
        pts = size_points(runs, options, lam)
        if pts.loss.size >= MIN_POINTS:
            total += fit_points(pts.S1, pts.S2, pts.loss)[1]
    return total
