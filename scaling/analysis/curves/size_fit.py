"""The fit of a curve form (:mod:`.forms`) to the runs of one model size, and its bootstrap.

**Fit.** One law per model size (rows grouped by ``params``), pooling every run of that size
(horizons and schedules differ; a ``branch_role`` of ``stable`` / ``branch`` is a WSD cooldown
branch and the constant-LR run it starts from: each run's LR is its own from step 0, so a
branch's short curve sits on the full WSD schedule).  Points up to the end of warmup and before
``skip`` (10%) of the size's longest horizon are left out: early loss is not a power law in
``S1``.  Each form fits its own way: the multi-power law (:mod:`.mpl`) by bounded least squares
of Huber-weighted log residuals from the authors' initialisation; Tissue's law (:mod:`.tissue`)
by variable projection over ``alpha``.

**Uncertainty** (:attr:`CurveOptions.resample`), at ``level``:

- ``blocks`` (default): the fit's log residuals, leverage-adjusted (divided by ``sqrt(1 - h)``,
  Davison & Hinkley 1997, eq. 6.9) and centred, in blocks of consecutive points of one run
  (:attr:`CurveOptions.block`, default ``round(points per run ** (1/3))``), are redrawn onto the
  fitted curves and the law refitted from the estimate.  The interval covers the estimate's
  sensitivity to the curves' measurement noise (serially correlated within a block), for
  *these* runs' schedules: not seed-to-seed offsets of whole curves, not the law's own misfit,
  not ``lam``.
- ``runs``: whole runs of a size are drawn with replacement and refitted.  It also covers which
  runs were trained, but with two or three runs per size many draws lose the annealed run and
  leave the annealing term poorly identified, so intervals are wide.

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

from scaling.analysis.curves.forms import CurveForm, form_of
from scaling.analysis.curves.law import LAMBDA_GRID, CurveOptions, Schedule
from scaling.analysis.curves.runs import RunCurve
from scaling.analysis.curves.size_law import CurveLaw
from scaling.analysis.curves.tissue import ALPHA_BOUNDS
from scaling.analysis.fitting.bootstrap import percentile_interval, resample_weights
from scaling.analysis.fitting.noise import Noise, pooled_noise, residual_noise
from scaling.errors import DataError

Array = np.ndarray

MIN_POINTS = 8  # a size needs more points than the multi-power law's 7 parameters


@dataclass(frozen=True)
class SizePoints:
    """The fitted points of one size: the form's points, losses, and which run each point
    belongs to."""

    points: Any  # the form's points (mpl.MPLPoints, tissue.TissuePoints)
    loss: Array
    run: Array  # index into the size's runs, points in step order within a run

    @property
    def S1(self) -> Array:
        return self.points.S1

    @property
    def S2(self) -> Array:
        """Tissue's annealing area (tissue form only)."""
        return self.points.S2


def used_mask(run: RunCurve, runs: Sequence[RunCurve], options: CurveOptions) -> Array:
    """Which of ``run``'s points the fit of its size (``runs``) uses: not those up to the end of
    warmup, nor those before ``skip`` of the size's longest horizon."""
    start = options.skip * max(r.total_steps for r in runs)
    return (run.steps > run.warmup()) & (run.steps >= start) & (run.steps >= 1)


def size_points(
    runs: Sequence[RunCurve], options: CurveOptions, lam: float | None = None
) -> SizePoints:
    """The points the fit of one size (``runs``) uses (:func:`used_mask`) under the form of
    ``options`` (Tissue's at annealing decay ``lam``)."""
    form = form_of(options.form)
    lam = float(options.lam) if lam is None and form.uses_lambda else (lam or 0.0)
    parts, losses, index = [], [], []
    for k, r in enumerate(runs):
        keep = used_mask(r, runs, options)
        parts.append(form.points(r.eta(options), r.steps[keep], lam, options.max_blocks))
        losses.append(r.loss[keep])
        index.append(np.full(int(keep.sum()), k))
    return SizePoints(form.concat(parts), np.concatenate(losses), np.concatenate(index))


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


def _leverage(form: CurveForm, theta: Array, pts: SizePoints) -> Array:
    """Leverage of each point in the fit linearised at ``theta`` (relative residuals): a
    residual's variance is ``sigma^2 (1 - h)``, so dividing by ``sqrt(1 - h)`` gives the
    bootstrap residuals of full variance (Davison & Hinkley 1997, eq. 6.9); the high-leverage
    points are the annealed ones that identify the annealing term."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        J = form.jacobian(theta, pts.points) / pts.loss[:, None]
    J = np.where(np.isfinite(J), J, 0.0)
    J = J[:, np.any(J != 0, axis=0)]  # a zero column (no annealing) has no leverage
    try:
        Q, _ = np.linalg.qr(J)
    except np.linalg.LinAlgError:
        return np.zeros(pts.loss.size)
    h = np.sum(Q * Q, axis=1)
    return np.clip(h, 0.0, 0.99)


def _bootstrap(
    form: CurveForm, pts: SizePoints, theta: Array, options: CurveOptions, size_index: int
) -> tuple[Array | None, dict[str, Any]]:
    """Bootstrap replicates (B, number of parameters) of one size's law and a record of how
    they were drawn."""
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
    samples = np.full((B, len(form.params)), np.nan)
    runs = np.unique(pts.run)
    if options.resample == "runs":
        W = resample_weights(pts.loss.size, B, options.seed + size_index, clusters=pts.run)
        for b in range(B):
            keep = W[b] > 0
            try:
                samples[b], _ = form.fit(_take(pts.points, keep), pts.loss[keep], W[b][keep], theta)
            except (ValueError, RuntimeError, FloatingPointError):
                pass
    else:
        fitted = form.loss(theta, pts.points)
        with np.errstate(invalid="ignore", divide="ignore"):
            resid = (np.log(pts.loss) - np.log(fitted)) / np.sqrt(1.0 - _leverage(form, theta, pts))
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
                samples[b], _ = form.fit(pts.points, y, None, theta)
            except (ValueError, RuntimeError, FloatingPointError):
                pass
    record["n_failed"] = int(np.sum(~np.all(np.isfinite(samples), axis=1)))
    return samples, record


def _take(points: Any, mask: Array) -> Any:
    return points.take(mask)


def _replicate_noise(runs: Sequence[RunCurve]) -> Noise | None:
    """Pooled standard deviation of the final log loss over runs equal in every config column
    but ``seed`` (and in their horizon); ``None`` without enough replication."""
    if not any(r.seed is not None for r in runs):
        return None
    groups: dict[tuple, list[float]] = {}
    for r in runs:
        lr = r.schedule if r.schedule is not None else hash(r.eta(CurveOptions()).tobytes())
        key = (r.params, r.total_steps, r.final_step, lr, r.config)
        groups.setdefault(key, []).append(math.log(r.final_loss))
    return pooled_noise(np.asarray(m) for m in groups.values())


_PREFERENCE = {"wsd": 0, "cosine": 1, "constant": 2}  # ties of _typical_schedule


def _typical_schedule(runs: Sequence[RunCurve]) -> Schedule | None:
    """The most common schedule among the runs that anneal (else among all), ties broken
    toward ``wsd``, then ``cosine``: the base of predictions for a horizon not trained (None
    when every run is an LR trace)."""
    schedules = [r.schedule for r in runs if r.schedule is not None]
    if not schedules:
        return None
    pool = [s for s in schedules if s.schedule != "constant"]
    counts = Counter(pool or schedules)
    return min(counts, key=lambda s: (-counts[s], _PREFERENCE.get(s.schedule, 3)))


def min_points(form: CurveForm) -> int:
    """Points a size needs: more than the form's parameters, with room for noise."""
    return len(form.params) + 2


def fit_size(
    runs: Sequence[RunCurve],
    options: CurveOptions | None = None,
    lam: float | None = None,
    size_index: int = 0,
) -> CurveLaw:
    """The law fitted to the runs of one size (any subset of a table's runs, e.g. a stable run
    and one branch) under ``options.form``, with its bootstrap (seeded by ``options.seed`` and
    ``size_index``).  Tissue's form reads the annealing decay ``lam`` (default: ``options.lam``;
    ``"fit"`` there picks the best of :data:`LAMBDA_GRID` on these runs)."""
    options = options or CurveOptions()
    form = form_of(options.form)
    if not form.uses_lambda:
        lam = None
    elif lam is None:
        if options.lam == "fit":
            lam = min(LAMBDA_GRID, key=lambda v: lambda_objective([runs], options, v))
        else:
            lam = float(options.lam)
    pts = size_points(runs, options, lam)
    N = runs[0].params
    need = min_points(form)
    if pts.loss.size < need:
        raise DataError(
            f"size {N:.4g}: {pts.loss.size} points after warmup and the first "
            f"{options.skip:.0%} of the horizon; the {form.name} law needs at least {need} "
            "(log more validation points: train.eval_points; or lower --curve-skip)"
        )
    theta, _ = form.fit(pts.points, pts.loss)
    with np.errstate(invalid="ignore", divide="ignore"):
        resid = np.log(pts.loss) - np.log(form.loss(theta, pts.points))
    samples, record = _bootstrap(form, pts, theta, options, size_index)
    ci: dict[str, tuple[float, float] | None] = {k: None for k in form.params}
    if samples is not None:
        for k, name in enumerate(form.params):
            ci[name] = percentile_interval(samples[:, k], options.level, min_values=10)
    noise = _replicate_noise(runs) or residual_noise(resid, len(form.params))
    values = dict(zip(form.params, theta.tolist(), strict=True))
    warnings = []
    if not form.anneals(pts.points):
        warnings.append(
            f"size {N:.4g}: no run anneals its LR after warmup, so the annealing term is not "
            f"identified ({form.annealing_param} fitted as 0): add a cosine or WSD run"
        )
    alpha = values["alpha"]
    if any(math.isclose(alpha, b, rel_tol=1e-3) for b in ALPHA_BOUNDS):
        warnings.append(f"size {N:.4g}: alpha = {alpha:.3g} is on its bound {ALPHA_BOUNDS}")
    if values["A"] == 0:
        warnings.append(f"size {N:.4g}: A = 0: the loss does not fall with the forward area")
    if len(runs) == 1:
        warnings.append(f"size {N:.4g}: one run only; the law is a fit to one curve")
    if record["n_failed"] > 0.1 * max(record["n_resamples"], 1):
        warnings.append(
            f"size {N:.4g}: {record['n_failed']} of {record['n_resamples']} bootstrap refits failed"
        )
    known = [r.tokens_per_step for r in runs if r.tokens_per_step is not None]
    return CurveLaw(
        params=N,
        form=form.name,
        theta=tuple(float(v) for v in theta),
        lam=lam,
        warmup_as_peak=options.warmup_as_peak,
        max_blocks=options.max_blocks,
        level=options.level,
        ci=ci,
        noise=noise,
        n_runs=len(runs),
        n_points=int(pts.loss.size),
        rms_log=float(np.sqrt(np.mean(resid**2))),
        bootstrap=record,
        tokens_per_step=Counter(known).most_common(1)[0][0] if known else None,
        schedule=_typical_schedule(runs),
        max_steps=max(r.total_steps for r in runs),
        run_ids=tuple(r.run_id for r in runs),
        warnings=tuple(warnings),
        samples=samples,
    )


def lambda_objective(
    sizes: Sequence[Sequence[RunCurve]], options: CurveOptions, lam: float
) -> float:
    """The summed objective of Tissue's fits of ``sizes`` (each a size's runs) at annealing
    decay ``lam``, sizes with too few points left out: what ``lam="fit"`` minimises."""
    form = form_of("tissue")
    total = 0.0
    for runs in sizes:
        pts = size_points(runs, options, lam)
        if pts.loss.size >= min_points(form):
            total += form.fit(pts.points, pts.loss)[1]
    return total
