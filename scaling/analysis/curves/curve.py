"""The loss-curve law with learning-rate annealing, fitted per model size, and its predictions.

Tissue et al. 2024, "Scaling Law with Learning Rate Annealing" (arXiv:2408.11029), eq. 1::

    L(s) = L0 + A * S1(s)^(-alpha) - C * S2(s)

the validation loss after ``s`` optimizer steps of a run whose learning rate at step ``i`` was
``eta_i``.  Definitions, as used here:

- ``eta_i = train.lr * scaling.schedule.lr_factor(i, total_steps, cfg)``: the *actual* LR (as in
  the paper), so that runs of one size with different peak LRs share the law.  During warmup
  ``eta_i`` is taken as the peak ``train.lr`` (the paper's reference code and its Sec. 3.4:
  warmup is short and counting its rising LR would give the annealing area a spurious negative
  start); :attr:`CurveOptions.warmup_as_peak` turns this off.
- forward area ``S1(s) = sum_{i<s} eta_i``: the updates applied before the evaluation at ``s``
  (the paper's code sums ``i <= s``; one step's difference, immaterial).
- annealing momentum ``m_0 = 0``, ``m_i = lam * m_{i-1} + (eta_{i-1} - eta_i)``, and annealing
  area ``S2(s) = sum_{i<s} m_i``.  A drop of the LR by ``d`` at step ``j`` adds
  ``d (1 - lam^(s-j)) / (1 - lam)`` to ``S2(s)``: its benefit builds up over about
  ``1 / (1 - lam)`` steps.  ``lam = 0.999`` (the paper's value, :data:`LAMBDA`) is the default:
  for runs of a few hundred to a few thousand steps it acts as ``lam -> 1``, where ``S2`` is
  the area between the peak LR and the schedule, summed; ``lam="fit"`` picks it from
  :data:`LAMBDA_GRID` by the least total residual over all sizes (the bootstrap then holds it
  fixed).
- ``s`` is read from a curves table as ``tokens / (train.batch_size * model.seq_len)``.

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
  fitted curves and the law refitted.  On synthetic curves from a known law (3 runs, ~36
  points, 0.2% noise) the 95% intervals held the true parameter 83-97% of the time (``C``
  lowest): the bootstrap spread is ~10% narrower than the estimator's.  The interval covers
  the estimate's sensitivity to the curves' measurement noise (serially correlated within a
  block), for *these* runs' schedules: not seed-to-seed offsets of whole curves, not the law's
  own misfit, not ``lam``.
- ``runs``: whole runs of a size are drawn with replacement and refitted.  It also covers which
  runs were trained, but with two or three runs per size many draws lose the annealed run and
  leave ``C`` (or ``A, alpha``) poorly identified, so intervals are wide.

A predicted final loss gets a confidence interval (the bootstrap replicates of the law at that
schedule) and a prediction interval for one new run (:func:`scaling.analysis.fitting.noise
.prediction_interval`: that CI plus run-to-run noise, from seed replicates among the runs'
final losses when the table has them, else the root mean square of the fit's log residuals over
all points, which measures evaluation noise and misfit but not seed offsets).

**Limits.** The law is empirical (fitted on runs of 10^4-10^5 steps in the paper); a size's law
says nothing about another size (no N dependence is fitted); ``C`` is identified only when some
run of the size anneals (a table of constant-LR runs gets ``C = 0`` and a warning); far
extrapolation in steps or schedules unlike the fitted ones is not validated here; the schedule
is rebuilt from the logged config by :mod:`scaling.schedule`, so a run trained with another
schedule code gives wrong areas; a size needs :data:`MIN_POINTS` fitted points, and runs
validated at the default ``train.eval_points=8`` (log-spaced) leave a cooldown branch about one
point, so curve studies should log 30 or more.  No torch: :mod:`scaling.schedule` is numpy only.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar, nnls

from scaling.analysis.fitting.bootstrap import percentile_interval, resample_weights
from scaling.analysis.fitting.noise import (
    Noise,
    pooled_noise,
    prediction_interval,
    residual_noise,
)
from scaling.errors import DataError, UserError
from scaling.schedule import lr_factors, warmup_length
from scaling.schema import SCHEDULES, TrainConfig

Array = np.ndarray

LAW_NAME = "curve"
EQUATION = "L(s) = L0 + A*S1(s)^(-alpha) - C*S2(s)"
CITATION = "Tissue et al. 2024, Scaling Law with Learning Rate Annealing (arXiv:2408.11029), eq. 1"
PARAMS = ("L0", "A", "alpha", "C")
LAMBDA = 0.999  # the paper's decay factor of the annealing momentum
LAMBDA_GRID = (0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999, 0.9995)  # lam="fit" picks one
SKIP = 0.1  # points before this fraction of the size's longest horizon are not fitted
ALPHA_BOUNDS = (1e-3, 4.0)
ALPHA_GRID_SIZE = 41  # alpha starts, log-spaced in ALPHA_BOUNDS
BOOT_GRID_SIZE = 17  # fewer starts for bootstrap refits (they start near the estimate)
MIN_POINTS = 6  # a size needs more points than the law's 4 parameters, with room for noise
RESAMPLE_KINDS = ("blocks", "runs")

_TRAIN_DEFAULTS = {f.name: f.default for f in fields(TrainConfig)}
# run-table columns of the schedule: (field of Schedule, its columns in order of preference)
_SCHEDULE_COLUMNS = {
    "schedule": ("train.schedule",),
    "warmup": ("train.warmup",),
    "warmup_steps": ("train.warmup_steps",),
    "cooldown": ("train.cooldown",),
    "min_lr_ratio": ("train.min_lr_ratio",),
    "lr": ("train.lr", "lr"),
}
_BATCH_COLUMNS = ("train.batch_size", "batch_size")
_SEQ_COLUMNS = ("model.seq_len", "seq_len")
_TOTAL_COLUMNS = ("final_tokens", "train.tokens")  # a run's planned horizon, in tokens
# columns that differ between seed replicates only by `seed` (plus the schedule's)
_REPLICATE_PREFIXES = ("model.", "train.", "data.")


# --------------------------------------------------------------------------------------------
# The schedule and its areas
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """A run's LR schedule: the ``train.*`` keys :mod:`scaling.schedule` reads and the peak LR.

    Satisfies :class:`scaling.schedule.ScheduleConfig`; defaults are
    :class:`scaling.schema.TrainConfig`'s.
    """

    schedule: str = _TRAIN_DEFAULTS["schedule"]
    warmup: float = _TRAIN_DEFAULTS["warmup"]
    warmup_steps: int | None = _TRAIN_DEFAULTS["warmup_steps"]
    cooldown: float = _TRAIN_DEFAULTS["cooldown"]
    min_lr_ratio: float = _TRAIN_DEFAULTS["min_lr_ratio"]
    lr: float = _TRAIN_DEFAULTS["lr"]

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise UserError(f"schedule {self.schedule!r} is not one of {', '.join(SCHEDULES)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UserError(f"the peak learning rate must be positive, got {self.lr}")
        for key in ("warmup", "cooldown", "min_lr_ratio"):
            value = getattr(self, key)
            if not 0.0 <= value <= 1.0:
                raise UserError(f"schedule key {key}={value} must be in [0, 1]")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise UserError(f"warmup_steps={self.warmup_steps} must be >= 0")

    def label(self) -> str:
        """``cosine``, ``wsd cooldown 0.2``, ``constant``, with the warmup if given in steps."""
        text = self.schedule + (f" cooldown {self.cooldown:g}" if self.schedule == "wsd" else "")
        return text + (f" warmup {self.warmup_steps}" if self.warmup_steps is not None else "")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def schedule_areas(
    factors: Sequence[float] | Array, lr: float = 1.0, lam: float = LAMBDA
) -> tuple[Array, Array]:
    """Forward area ``S1`` and annealing area ``S2`` after ``s = 0 .. T`` steps of a schedule.

    ``factors[i]`` multiplies ``lr`` at optimizer step ``i`` (``T = len(factors)`` steps), so
    ``eta_i = lr * factors[i]``.  Returns two arrays of length ``T + 1``: ``S1[s] = sum_{i<s}
    eta_i``; ``S2[s] = sum_{i<s} m_i`` with ``m_0 = 0`` and ``m_i = lam * m_{i-1} + (eta_{i-1}
    - eta_i)``.
    """
    eta = lr * np.asarray(factors, dtype=float)
    T = eta.size
    S1 = np.zeros(T + 1)
    np.cumsum(eta, out=S1[1:])
    drops = np.zeros(T)
    drops[1:] = eta[:-1] - eta[1:]
    m = np.empty(T)
    acc = 0.0
    for i, d in enumerate(drops.tolist()):
        acc = lam * acc + d
        m[i] = acc
    S2 = np.zeros(T + 1)
    np.cumsum(m, out=S2[1:])
    return S1, S2


@lru_cache(maxsize=256)
def _cached_areas(
    schedule: Schedule, total_steps: int, lam: float, warmup_as_peak: bool
) -> tuple[Array, Array]:
    factors = lr_factors(total_steps, schedule)
    if warmup_as_peak:
        factors[: min(warmup_length(total_steps, schedule), total_steps)] = 1.0
    S1, S2 = schedule_areas(factors, schedule.lr, lam)
    S1.setflags(write=False)
    S2.setflags(write=False)
    return S1, S2


def run_areas(
    schedule: Schedule, total_steps: int, lam: float = LAMBDA, warmup_as_peak: bool = True
) -> tuple[Array, Array]:
    """``S1``, ``S2`` (length ``total_steps + 1``) of a run: ``scaling.schedule.lr_factors`` times
    the peak LR, the warmup counted at the peak unless ``warmup_as_peak`` is False (read-only)."""
    if total_steps < 1:
        raise UserError(f"a run needs at least one optimizer step, got {total_steps}")
    return _cached_areas(schedule, int(total_steps), float(lam), bool(warmup_as_peak))


def law_loss(theta: Sequence[float] | Array, S1: Array | float, S2: Array | float) -> Array:
    """``L0 + A * S1^(-alpha) - C * S2`` for ``theta = (L0, A, alpha, C)``."""
    L0, A, alpha, C = (float(v) for v in theta)
    with np.errstate(divide="ignore", over="ignore"):
        return L0 + A * np.asarray(S1, dtype=float) ** (-alpha) - C * np.asarray(S2, dtype=float)


# --------------------------------------------------------------------------------------------
# Options, runs, and the per-size fit
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CurveOptions:
    """How :func:`fit_curves` fits (defaults: the module docstring's)."""

    lam: float | str = LAMBDA  # or "fit": the best of LAMBDA_GRID over all sizes
    warmup_as_peak: bool = True
    skip: float = SKIP
    bootstrap: int = 200
    resample: str = "blocks"
    block: int | None = None
    level: float = 0.9
    seed: int = 0

    def check(self) -> None:
        """Raise :class:`UserError` with one line for an option out of range."""
        if isinstance(self.lam, str):
            if self.lam != "fit":
                raise UserError(f"lambda must be a number in (0, 1) or 'fit', got {self.lam!r}")
        elif not 0.0 < float(self.lam) < 1.0:
            raise UserError(f"lambda must be in (0, 1) (the paper: 0.999), got {self.lam:g}")
        if not 0.0 <= self.skip < 1.0:
            raise UserError(f"skip must be a fraction in [0, 1), got {self.skip:g}")
        if self.bootstrap < 0:
            raise UserError(f"bootstrap must be >= 0, got {self.bootstrap}")
        if self.resample not in RESAMPLE_KINDS:
            raise UserError(f"resample {self.resample!r} is not one of {', '.join(RESAMPLE_KINDS)}")
        if self.block is not None and self.block < 1:
            raise UserError(f"block must be >= 1 point, got {self.block}")
        if not 0.0 < self.level < 1.0:
            raise UserError(f"level must be in (0, 1), got {self.level:g}")


@dataclass(frozen=True)
class RunCurve:
    """One run's logged curve with its schedule: steps (optimizer steps done at each
    validation) and losses, in step order."""

    run_id: str
    params: float
    schedule: Schedule
    tokens_per_step: int
    total_steps: int
    steps: Array = field(compare=False, repr=False)
    loss: Array = field(compare=False, repr=False)
    role: str | None = None
    seed: Any = None
    config: tuple[tuple[str, str], ...] = field(default=(), compare=False, repr=False)

    @property
    def final_step(self) -> int:
        return int(self.steps[-1])

    @property
    def final_loss(self) -> float:
        return float(self.loss[-1])

    @property
    def final_tokens(self) -> int:
        """Tokens seen at the last logged point."""
        return self.final_step * self.tokens_per_step

    def areas(self, options: CurveOptions, lam: float | None = None) -> tuple[Array, Array]:
        """``S1``, ``S2`` at this run's logged steps."""
        lam = float(options.lam) if lam is None else lam
        S1, S2 = run_areas(self.schedule, self.total_steps, lam, options.warmup_as_peak)
        return S1[self.steps], S2[self.steps]


@dataclass(frozen=True)
class CurvePrediction:
    """The law's loss after ``steps`` steps of ``schedule`` run for ``total_steps``."""

    params: float
    steps: int
    total_steps: int
    tokens: int
    schedule: Schedule
    loss: float
    loss_ci: tuple[float, float] | None
    loss_pi: tuple[float, float] | None
    level: float

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["schedule"] = self.schedule.to_dict()
        return doc


@dataclass(frozen=True)
class CurveLaw:
    """The law fitted to the runs of one model size (``params``)."""

    params: float
    L0: float
    A: float
    alpha: float
    C: float
    lam: float
    warmup_as_peak: bool
    level: float
    ci: dict[str, tuple[float, float] | None]
    noise: Noise | None
    n_runs: int
    n_points: int
    rms_log: float  # root mean square of the fit's log residuals
    bootstrap: dict[str, Any]
    tokens_per_step: int
    schedule: Schedule  # the size's typical schedule: the base of predictions
    max_steps: int  # the longest horizon fitted
    run_ids: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    samples: Array | None = field(default=None, compare=False, repr=False)  # (B, 4) replicates

    @property
    def theta(self) -> Array:
        return np.array([self.L0, self.A, self.alpha, self.C])

    def values(self) -> dict[str, float]:
        return dict(zip(PARAMS, self.theta.tolist(), strict=True))

    def areas(self, schedule: Schedule, total_steps: int) -> tuple[Array, Array]:
        return run_areas(schedule, total_steps, self.lam, self.warmup_as_peak)

    def curve(
        self, schedule: Schedule, total_steps: int, steps: Sequence[int] | Array | None = None
    ) -> Array:
        """The law's loss at ``steps`` (default: every step ``1 .. total_steps``)."""
        S1, S2 = self.areas(schedule, total_steps)
        idx = np.arange(1, total_steps + 1) if steps is None else np.asarray(steps, dtype=int)
        return law_loss(self.theta, S1[idx], S2[idx])

    def predict_final(
        self, schedule: Schedule, total_steps: int, *, at_step: int | None = None, seed: int = 0
    ) -> CurvePrediction:
        """The loss at the end of a ``total_steps`` run of ``schedule`` (or at ``at_step``),
        with the bootstrap CI of the law and the prediction interval of one new run."""
        total_steps = int(total_steps)
        step = total_steps if at_step is None else int(at_step)
        if not 1 <= step <= total_steps:
            raise UserError(f"step {step} is outside the run's 1..{total_steps} steps")
        S1, S2 = self.areas(schedule, total_steps)
        loss = float(law_loss(self.theta, S1[step], S2[step]))
        ci = pi = None
        draws = None
        if self.samples is not None and len(self.samples):
            ok = np.all(np.isfinite(self.samples), axis=1)
            t = self.samples[ok]
            with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
                draws = t[:, 0] + t[:, 1] * S1[step] ** (-t[:, 2]) - t[:, 3] * S2[step]
            ci = percentile_interval(draws, self.level, min_values=10)
        if self.noise is not None and loss > 0:
            pi = prediction_interval(loss, self.noise, self.level, draws, seed)
        return CurvePrediction(
            params=self.params,
            steps=step,
            total_steps=total_steps,
            tokens=step * self.tokens_per_step,
            schedule=schedule,
            loss=loss,
            loss_ci=ci,
            loss_pi=pi,
            level=self.level,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "params": self.params,
            **self.values(),
            "lam": self.lam,
            "ci": {k: list(v) if v else None for k, v in self.ci.items()},
            "noise": self.noise.to_dict() if self.noise else None,
            "n_runs": self.n_runs,
            "n_points": self.n_points,
            "rms_log": self.rms_log,
            "bootstrap": self.bootstrap,
            "tokens_per_step": self.tokens_per_step,
            "schedule": self.schedule.to_dict(),
            "max_steps": self.max_steps,
            "runs": list(self.run_ids),
            "warnings": list(self.warnings),
        }


def predict_final(
    size_fit: CurveLaw, schedule: Schedule, total_steps: int, *, seed: int = 0
) -> CurvePrediction:
    """The final loss of a ``total_steps`` run of ``schedule`` under one size's law, with its
    intervals (:meth:`CurveLaw.predict_final`)."""
    return size_fit.predict_final(schedule, total_steps, seed=seed)


# ---- the fit of one set of points -------------------------------------------------------------


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
class _Points:
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


def _size_points(runs: Sequence[RunCurve], options: CurveOptions, lam: float) -> _Points:
    parts = []
    for k, r in enumerate(runs):
        keep = used_mask(r, runs, options)
        S1, S2 = r.areas(options, lam)
        parts.append((S1[keep], S2[keep], r.loss[keep], np.full(int(keep.sum()), k)))
    return _Points(*(np.concatenate([p[i] for p in parts]) for i in range(4)))


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


def _leverage(theta: Array, pts: _Points) -> Array:
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
    pts: _Points, theta: Array, options: CurveOptions, size_index: int
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
            lam = min(LAMBDA_GRID, key=lambda v: _objective([runs], options, v))
        else:
            lam = float(options.lam)
    pts = _size_points(runs, options, lam)
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


# --------------------------------------------------------------------------------------------
# A curves table -> runs -> fit
# --------------------------------------------------------------------------------------------


def _first(df: pd.DataFrame, names: Iterable[str]) -> str | None:
    return next((c for c in names if c in df.columns), None)


def _number(value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return math.nan
    return x


def _run_schedule(rows: pd.DataFrame, cols: Mapping[str, str | None], run_id: str) -> Schedule:
    row = rows.iloc[0]
    values: dict[str, Any] = {}
    for key, col in cols.items():
        raw = row[col] if col is not None else None
        if key == "schedule":
            values[key] = str(raw).strip()
            continue
        x = _number(raw)
        if key == "lr" and not math.isfinite(x):
            raise DataError(f"run {run_id}: no peak learning rate ({col}={raw!r})")
        if key == "warmup_steps":
            values[key] = None if not math.isfinite(x) else int(round(x))
        else:
            values[key] = x if math.isfinite(x) else _TRAIN_DEFAULTS[key]
    try:
        return Schedule(**values)
    except UserError as err:
        raise DataError(f"run {run_id}: {err}") from None


def curves_from_table(
    df: pd.DataFrame,
    options: CurveOptions | None = None,
    *,
    need_curves: bool = True,
    warnings: list[str] | None = None,
) -> list[RunCurve]:
    """The runs of a curves table (``scaling collect --curves``), each with its schedule (what
    was assumed is appended to ``warnings``); raises :class:`DataError` with one line for a
    table the law cannot use (with ``need_curves``, also for a table whose every run has one
    row: nothing to fit).  ``options`` is accepted for symmetry; reading needs none."""
    missing = [c for c in ("run_id", "params", "tokens", "loss") if c not in df.columns]
    if missing:
        raise DataError(f"--law curve needs column(s) {', '.join(missing)} of a curves table")
    needed = {
        "train.lr (or lr)": _first(df, _SCHEDULE_COLUMNS["lr"]),
        "train.batch_size (or batch_size)": _first(df, _BATCH_COLUMNS),
        "model.seq_len (or seq_len)": _first(df, _SEQ_COLUMNS),
        "train.schedule": _first(df, _SCHEDULE_COLUMNS["schedule"]),
    }
    absent = [name for name, col in needed.items() if col is None]
    if absent:
        raise DataError(
            f"--law curve needs column(s) {', '.join(absent)} to rebuild each run's LR "
            "schedule (a table from `scaling collect --curves` has them)"
        )
    warnings = [] if warnings is None else warnings
    cols = {key: _first(df, names) for key, names in _SCHEDULE_COLUMNS.items()}
    for key in ("warmup", "cooldown", "min_lr_ratio"):
        if cols[key] is None:
            warnings.append(
                f"no column train.{key}: assumed the default {_TRAIN_DEFAULTS[key]:g} for every run"
            )
    batch_col, seq_col = (
        needed["train.batch_size (or batch_size)"],
        needed["model.seq_len (or seq_len)"],
    )
    total_col = _first(df, _TOTAL_COLUMNS)
    config_cols = sorted(c for c in df.columns if c.startswith(_REPLICATE_PREFIXES) and c != "seed")
    runs: list[RunCurve] = []
    counts = df.groupby("run_id", sort=False).size()
    if need_curves and counts.max() < 2:
        raise DataError(
            "--law curve needs loss curves: every run has one row; collect them with "
            "`scaling collect --curves --out FILE`"
        )
    for run_id, rows in df.groupby("run_id", sort=False):
        rows = rows.sort_values("tokens", kind="stable")
        run_id = str(run_id)
        schedule = _run_schedule(rows, cols, run_id)
        batch, seq = _number(rows[batch_col].iloc[0]), _number(rows[seq_col].iloc[0])
        if not (batch > 0 and seq > 0):
            raise DataError(
                f"run {run_id}: {batch_col}={rows[batch_col].iloc[0]!r} and "
                f"{seq_col}={rows[seq_col].iloc[0]!r} must be positive numbers"
            )
        tps = int(round(batch * seq))
        tokens = rows["tokens"].to_numpy(dtype=float)
        steps = np.rint(tokens / tps).astype(int)
        total = math.nan
        if total_col is not None:
            total = (
                _number(rows[total_col].dropna().iloc[0])
                if rows[total_col].notna().any()
                else math.nan
            )
        total_steps = int(total // tps) if math.isfinite(total) and total > 0 else int(steps.max())
        if steps.max() > total_steps:
            warnings.append(
                f"run {run_id}: logged up to step {steps.max()}, beyond its planned "
                f"{total_steps}; its horizon taken as the last logged step"
            )
            total_steps = int(steps.max())
        role = None
        if "branch_role" in rows.columns:
            value = rows["branch_role"].iloc[0]
            role = str(value).strip() if isinstance(value, str) and value.strip() else None
        seed = rows["seed"].iloc[0] if "seed" in rows.columns else None
        config = tuple((c, str(rows[c].iloc[0])) for c in config_cols)
        runs.append(
            RunCurve(
                run_id=run_id,
                params=float(rows["params"].iloc[0]),
                schedule=schedule,
                tokens_per_step=tps,
                total_steps=total_steps,
                steps=steps,
                loss=rows["loss"].to_numpy(dtype=float),
                role=role,
                seed=None if seed is None or pd.isna(seed) else seed,
                config=config,
            )
        )
    return _branch_warmups(runs, warnings)


def _branch_warmups(runs: list[RunCurve], warnings: list[str]) -> list[RunCurve]:
    """A branch logged without ``train.warmup_steps`` takes its stable run's (same size): every
    branch's schedule is the stable run's up to its cooldown start."""
    stable = {
        r.params: r.schedule.warmup_steps
        for r in runs
        if r.role == "stable" and r.schedule.warmup_steps is not None
    }
    out = []
    for r in runs:
        if r.role == "branch" and r.schedule.warmup_steps is None and r.params in stable:
            warnings.append(
                f"run {r.run_id}: a branch without train.warmup_steps: took its stable run's "
                f"({stable[r.params]} steps)"
            )
            r = replace(r, schedule=replace(r.schedule, warmup_steps=stable[r.params]))
        out.append(r)
    return out


def group_sizes(runs: Sequence[RunCurve]) -> list[list[RunCurve]]:
    """Runs grouped by ``params``, smallest size first."""
    by: dict[float, list[RunCurve]] = {}
    for r in runs:
        by.setdefault(r.params, []).append(r)
    return [by[k] for k in sorted(by)]


@dataclass(frozen=True)
class CurveFit:
    """The curve law of every model size of a table (:func:`fit_curves`)."""

    sizes: tuple[CurveLaw, ...]
    runs: tuple[RunCurve, ...]
    options: CurveOptions
    lam: float
    warnings: tuple[str, ...] = ()
    lam_scores: dict[float, float] | None = None  # lam="fit": objective at each lam

    def size(self, params: float) -> CurveLaw:
        """The law of the size ``params`` (equal within 1e-6 relative)."""
        for law in self.sizes:
            if math.isclose(law.params, params, rel_tol=1e-6):
                return law
        known = ", ".join(f"{law.params:.6g}" for law in self.sizes)
        raise UserError(f"no fitted size {params:.6g}; the fit has sizes {known}")

    def predict(
        self,
        params: float,
        schedule: Schedule | Mapping[str, Any] | None,
        total_steps: int,
        *,
        at_step: int | None = None,
    ) -> CurvePrediction:
        """Final loss (with intervals) of a ``total_steps`` run of size ``params`` with
        ``schedule``: a :class:`Schedule`, or a mapping of its fields over the size's typical
        schedule (``{"schedule": "wsd"}``), or None for the typical schedule itself."""
        law = self.size(params)
        return law.predict_final(
            resolve_schedule(law, schedule), total_steps, at_step=at_step, seed=self.options.seed
        )

    def score(self, df: pd.DataFrame | None = None) -> pd.DataFrame:
        """Each run's final loss predicted vs measured: the fitted runs, or the runs of the
        curves table ``df`` (held out: of sizes this fit has).  Columns: ``run_id, params,
        role, schedule, total_steps, step, tokens, measured, predicted, ci_lo, ci_hi, pi_lo,
        pi_hi, error_pct`` (100 * (predicted - measured) / measured), ``inside`` (the measured
        loss in the prediction interval).  A held-out run may have its final row only."""
        runs = self.runs if df is None else curves_from_table(df, need_curves=False)
        rows = []
        for r in runs:
            law = self.size(r.params)
            pred = law.predict_final(
                r.schedule, r.total_steps, at_step=r.final_step, seed=self.options.seed
            )
            ci = pred.loss_ci or (math.nan, math.nan)
            pi = pred.loss_pi or (math.nan, math.nan)
            rows.append(
                {
                    "run_id": r.run_id,
                    "params": r.params,
                    "role": r.role,
                    "schedule": r.schedule.label(),
                    "total_steps": r.total_steps,
                    "step": r.final_step,
                    "tokens": r.final_step * r.tokens_per_step,
                    "measured": r.final_loss,
                    "predicted": pred.loss,
                    "ci_lo": ci[0],
                    "ci_hi": ci[1],
                    "pi_lo": pi[0],
                    "pi_hi": pi[1],
                    "error_pct": 100.0 * (pred.loss - r.final_loss) / r.final_loss,
                    "inside": bool(pi[0] <= r.final_loss <= pi[1]),
                }
            )
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        opts = asdict(self.options)
        return {
            "law": LAW_NAME,
            "equation": EQUATION,
            "citation": CITATION,
            "definitions": {
                "eta": "train.lr * scaling.schedule.lr_factor(i)"
                + ("; the peak LR during warmup" if self.options.warmup_as_peak else ""),
                "S1": "sum_{i<s} eta_i",
                "S2": "sum_{i<s} m_i, m_0 = 0, m_i = lam*m_{i-1} + (eta_{i-1} - eta_i)",
                "s": "tokens / (train.batch_size * model.seq_len)",
                "objective": "sum of squared relative residuals ((L - L_hat)/L)^2, L0, A, C >= 0",
            },
            "lam": self.lam,
            "lam_scores": (
                {f"{k:g}": v for k, v in self.lam_scores.items()} if self.lam_scores else None
            ),
            "options": opts,
            "sizes": [law.to_dict() for law in self.sizes],
            "warnings": list(self.warnings),
        }


def resolve_schedule(law: CurveLaw, schedule: Schedule | Mapping[str, Any] | None) -> Schedule:
    """``schedule`` as a :class:`Schedule`: given, or the size's typical one with the given
    fields replaced (a ``wsd`` prediction from cosine runs keeps their cooldown default)."""
    if isinstance(schedule, Schedule):
        return schedule
    changes = {k: v for k, v in (schedule or {}).items() if v is not None}
    unknown = set(changes) - {f.name for f in fields(Schedule)}
    if unknown:
        raise UserError(f"unknown schedule key(s) {', '.join(sorted(unknown))}")
    return replace(law.schedule, **changes)


def _objective(sizes: Sequence[Sequence[RunCurve]], options: CurveOptions, lam: float) -> float:
    total = 0.0
    for runs in sizes:
        pts = _size_points(runs, options, lam)
        if pts.loss.size >= MIN_POINTS:
            total += fit_points(pts.S1, pts.S2, pts.loss)[1]
    return total


def fit_curves(df: pd.DataFrame, options: CurveOptions | None = None, **overrides: Any) -> CurveFit:
    """The curve law of each model size in a curves table ``df`` (one row per logged
    validation point: ``run_id, params, tokens, loss`` and the runs' ``train.*`` /
    ``model.*`` config columns).  ``overrides`` replace fields of ``options``
    (``fit_curves(df, lam=0.99, bootstrap=0)``).  Raises :class:`UserError` / :class:`DataError`.
    """
    options = replace(options or CurveOptions(), **overrides)
    options.check()
    warnings: list[str] = []
    runs = curves_from_table(df, options, warnings=warnings)
    sizes = group_sizes(runs)
    lam_scores = None
    if options.lam == "fit":
        lam_scores = {lam: _objective(sizes, options, lam) for lam in LAMBDA_GRID}
        lam = min(lam_scores, key=lambda k: lam_scores[k])
    else:
        lam = float(options.lam)
    laws = []
    for k, size_runs in enumerate(sizes):
        try:
            laws.append(fit_size(size_runs, options, lam, k))
        except DataError as err:
            warnings.append(f"skipped: {err}")
    if not laws:
        raise DataError(
            "no model size has enough curve points to fit the law: "
            + "; ".join(w.removeprefix("skipped: ") for w in warnings if w.startswith("skipped"))
        )
    fitted = {law.params for law in laws}
    for law in laws:
        warnings.extend(law.warnings)
    return CurveFit(
        sizes=tuple(laws),
        runs=tuple(r for r in runs if r.params in fitted),
        options=replace(options, lam=lam) if options.lam == "fit" else options,
        lam=lam,
        warnings=tuple(warnings),
        lam_scores=lam_scores,
    )
