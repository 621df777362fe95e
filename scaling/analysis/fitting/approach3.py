"""Approach 3 (parametric) and the Kaplan fits: any registered law fitted to the runs.

The loss is objective (1) of :mod:`..fitting.optimize` with the law's own log-space model,
minimised from the law's grid of starts (for ``chinchilla`` the 4,500 of Hoffmann et al. 2022,
App. D.2; Besiroglu et al. 2024).  Uncertainty is a seeded bootstrap over runs: every resample is
refitted, warm started from the distinct optima of the full fit.

**Which runs a law is fitted to** (:func:`fitted_rows`).  Laws of (N, D) use every run.  Kaplan
et al. 2020's single-variable laws describe converged curves: ``L(N)`` (``kaplan_n``,
``kaplan_n_e``) is fitted to the best (lowest-loss) run at each distinct N, ``L(D)`` to the best
run at each distinct D, ``L(C)`` to the compute-efficient (Pareto) frontier; an undertrained run
above that frontier would pull the exponent down.  ``n_points`` counts the runs used, and a
warning says how many were left out.

**One convention per fit.**  A law of (N, D) never reads the table's ``flops``: its compute is
``C = 6ND`` with the fit's own N (:func:`scaling.counting.compute_from`), the constraint its
allocation uses, so the recorded ranges, the warnings and the allocation agree.
``FitResult.conventions`` records which N and which C
(:func:`scaling.analysis.columns.conventions`).

**Cold refits** (:func:`refit_subsets`): held-out errors refit a law on subsets of the runs, all
from the same thinned start grid (:func:`thinned_starts`), never from an optimum of a fit that saw
the held-out runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from scaling.analysis.columns import (
    columns,
    conventions,
    optional_inputs,
    ranges,
    require_repeats,
)
from scaling.analysis.fitting.allocation import (
    allocation_constants,
    extreme_allocation_warning,
    optimal_allocation,
)
from scaling.analysis.fitting.bootstrap import BOOTSTRAP_CHUNK, resample_weights, run_chunks
from scaling.analysis.fitting.laws import NEGLIGIBLE_TERM, Law, get_law
from scaling.analysis.fitting.noise import replicate_groups
from scaling.analysis.fitting.optimize import (
    TIGHT_STOP,
    BatchResult,
    batched_lbfgs,
    make_objective,
    minimise_law,
)
from scaling.analysis.fitting.results import Bootstrap, Convergence, FitOptions, FitResult
from scaling.counting import compute_from
from scaling.errors import DataError

Array = np.ndarray

COLD_STARTS = 32  # starts of a cold refit inside a report: about this many, spread over the grid
EXPLORE_ITERATIONS = 40  # a cold refit's loose iterations from every start ...
REFINE_STARTS = 3  # ... then its best few points, run to tight tolerances


def fit_law(
    runs: pd.DataFrame,
    law: str = "chinchilla",
    options: FitOptions | None = None,
) -> FitResult:
    """Fit a registered law to a validated run table (approach 3 for ``chinchilla``).

    The best of all starts is kept and polished.  With ``options.bootstrap > 0`` the fit is
    repeated on resampled runs (warm started from the distinct optima of the full fit) and
    intervals are attached.
    """
    options = options or FitOptions()
    lw = get_law(law)
    used = _law_conventions(lw, runs)  # refuses a table that mixes FLOPs conventions
    require_repeats(lw, runs)  # a law of repeated data needs runs with epochs > 1
    N, D, C, loss = _law_columns(lw, runs)
    _check_points(lw, N, D, C, len(loss))
    X, log_loss, idx = _law_inputs(lw, N, D, C, loss, optional_inputs(lw, runs))
    if len(idx) < lw.n_params:
        raise DataError(
            f"only {len(idx)} run(s) lie on the {_FRONTIER[lw.inputs]}; law {lw.name!r} "
            f"needs {lw.n_params}"
        )
    theta, objective, conv, optima = minimise_law(lw, X, log_loss, options)
    params = lw.to_params(theta)
    warnings = _frontier_note(lw, len(idx), len(loss))
    warnings += _law_warnings(lw, conv, N[idx], D[idx], C[idx], params)
    allocation = allocation_constants(lw.name, params)
    exponents = {k: allocation[k] for k in ("a", "b") if k in allocation}
    boot = None
    if options.bootstrap > 0:
        clusters = replicate_groups(runs.iloc[idx])
        boot = _bootstrap_law(lw, X, log_loss, options, optima, theta, clusters)
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
        ranges=ranges(N[idx], D[idx], C[idx], loss[idx]),
        options=options,
        convergence=conv,
        warnings=tuple(warnings),
        bootstrap=boot,
        theta=tuple(float(t) for t in theta),
        local_optima=tuple(tuple(float(v) for v in o) for o in optima),
        conventions=used,
    )


_FRONTIER = {
    ("N",): "best-run-per-N frontier",
    ("D",): "best-run-per-D frontier",
    ("C",): "compute frontier",
    ("N", "D"): "runs",
}


def _law_columns(law: Law, runs: pd.DataFrame) -> tuple[Array, Array, Array, Array]:
    """``(N, D, C, loss)``; a law without a C input gets ``C = 6ND`` of its own N."""
    N, D, C, loss = columns(runs)
    if "C" not in law.inputs:
        C = compute_from(N, D)
    return N, D, C, loss


def _law_conventions(law: Law, runs: pd.DataFrame) -> dict:
    conv = conventions(runs)
    if "C" not in law.inputs:
        conv["flops"] = "6ND"
    return conv


def best_per_value(values: Array, loss: Array) -> Array:
    """Indices of the lowest-loss run at each distinct value of ``values``, by increasing value."""
    order = np.lexsort((loss, values))  # by value, then by loss
    first = np.ones(len(order), dtype=bool)
    first[1:] = values[order][1:] != values[order][:-1]
    return order[first]


def fitted_rows(law: Law, N: Array, D: Array, C: Array, loss: Array) -> Array:
    """Indices of the runs ``law`` is fitted to: all runs for laws of (N, D); for ``L(N)`` the
    best run per N, for ``L(D)`` the best run per D, for ``L(C)`` the compute frontier."""
    if law.inputs == ("N",):
        return best_per_value(N, loss)
    if law.inputs == ("D",):
        return best_per_value(D, loss)
    if law.frontier or law.inputs == ("C",):
        return pareto_frontier(C, loss)
    return np.arange(len(loss))


def _frontier_note(law: Law, n_used: int, n_runs: int) -> list[str]:
    """Say how many runs an L(N) or L(D) fit left out (L(C) has always used its frontier)."""
    var = {("N",): "N", ("D",): "D"}.get(law.inputs)
    if var is None or n_used == n_runs:
        return []
    return [
        f"{law.name} fitted to the lowest-loss run at each distinct {var}: {n_used} of "
        f"{n_runs} runs; the other {n_runs - n_used} lie above that frontier (not converged in "
        f"the other variable) and were left out, as L({var}) describes converged training"
    ]


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


def _check_points(law: Law, N: Array, D: Array, C: Array, n: int) -> None:
    if n < law.n_params:
        raise DataError(
            f"{n} point(s) cannot fit the {law.n_params} free parameters of law {law.name!r}; "
            "add runs or choose a law with fewer parameters"
        )
    for key, col, arr in (("N", "params", N), ("D", "tokens", D), ("C", "flops", C)):
        if key in law.inputs and np.unique(arr).size < 2:
            raise DataError(
                f"all runs have the same {col} ({arr[0]:g}); law {law.name!r} cannot "
                f"fit its {key} exponent without at least two distinct values"
            )


def _law_inputs(
    law: Law, N: Array, D: Array, C: Array, loss: Array, extra: Mapping[str, Array | None]
) -> tuple[Array, Array, Array]:
    """(X, log_loss, indices) the law is fitted on (:func:`fitted_rows`); ``extra``: the law's
    optional inputs, one value per run (:func:`scaling.analysis.columns.optional_inputs`)."""
    idx = fitted_rows(law, N, D, C, loss)
    X = law.design(
        N=N[idx], D=D[idx], C=C[idx], **{k: None if v is None else v[idx] for k, v in extra.items()}
    )
    return X, np.log(loss[idx]), idx


def _law_warnings(
    law: Law,
    conv: Convergence,
    N: Array,
    D: Array,
    C: Array,
    params: Mapping[str, float],
) -> list[str]:
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
    for name, share in law.term_shares(params, N, D).items():
        if share < NEGLIGIBLE_TERM:
            out.append(
                f"the {name} term is below {share:.1e} of the loss at every run: its "
                "parameters are not identified by this data (degenerate fit)"
            )
    if "N" in law.inputs and "D" in law.inputs:
        for c in (C.min(), C.max()):
            n_opt, d_opt = optimal_allocation(law.name, params, np.array([c]))
            warning = extreme_allocation_warning(
                c, float(d_opt[0] / n_opt[0]), "; check the fit before using its allocation"
            )
            if warning:
                out.append(warning)
    return out


def _tight_lbfgs(
    fg: Callable[[Array, Array], tuple[Array, Array]],
    x0: Array,
    lower: Array,
    upper: Array,
    rows: Array,
) -> BatchResult:
    """:func:`batched_lbfgs` run to :data:`TIGHT_STOP`, as a refit needs (bootstrap resamples,
    the last stage of a cold refit)."""
    return batched_lbfgs(fg, x0, lower, upper, rows=rows, **TIGHT_STOP)


def _bootstrap_chunk(args: tuple) -> tuple[Array, Array]:
    """Refit one chunk of resamples; top-level so worker processes can run it."""
    law_name, X, log_loss, W, starts, delta = args
    law = get_law(law_name)
    lower, upper = np.array(law.lower), np.array(law.upper)
    R, K = W.shape[0], starts.shape[0]
    fg = make_objective(law, X, log_loss, delta, weights=W)
    x0 = np.tile(starts, (R, 1))
    rows = np.repeat(np.arange(R), K)
    res = _tight_lbfgs(fg, x0, lower, upper, rows)
    f = res.f.reshape(R, K)
    best = np.argmin(np.where(np.isfinite(f), f, np.inf), axis=1)
    theta = res.x.reshape(R, K, -1)[np.arange(R), best]
    status = res.status.reshape(R, K)[np.arange(R), best]
    ok = np.isfinite(f[np.arange(R), best]) & (status != 2)
    return theta, ok


def small_sample_scale(n: int, n_params: int) -> float:
    """``sqrt(n / (n - p))``: the factor by which bootstrap deviations are widened.

    Resampling cases reproduces the heteroscedasticity-consistent variance HC0, which is biased
    low by ``(n - p) / n``; HC1 corrects it by ``n / (n - p)`` (MacKinnon & White 1985).  At 40
    runs and 5 parameters it widens intervals by 7%; it vanishes as runs are added.
    """
    return math.sqrt(n / (n - n_params)) if n > n_params else math.nan


def _bootstrap_law(
    law: Law,
    X: Array,
    log_loss: Array,
    options: FitOptions,
    optima: Sequence[Array],
    theta_hat: Array,
    clusters: Array | None = None,
) -> Bootstrap:
    """Refit resampled runs (whole seed-replicate groups when ``clusters`` has any), warm started
    from the full fit's optima; deviations from ``theta_hat`` are widened by
    :func:`small_sample_scale` over the number of independent units (runs or groups)."""
    n = len(log_loss)
    W = resample_weights(n, options.bootstrap, options.seed, clusters=clusters)
    starts = np.array(optima[: max(1, min(4, len(optima)))])
    tasks = [
        (law.name, X, log_loss, W[i : i + BOOTSTRAP_CHUNK], starts, options.huber_delta)
        for i in range(0, options.bootstrap, BOOTSTRAP_CHUNK)
    ]
    out = run_chunks(_bootstrap_chunk, tasks, options.workers)
    theta = np.vstack([t for t, _ in out])
    ok = np.concatenate([o for _, o in out])
    theta[~ok] = np.nan
    units = n if clusters is None else int(np.unique(clusters).size)
    theta = theta_hat + small_sample_scale(units, law.n_params) * (theta - theta_hat)
    theta = np.clip(theta, law.lower, law.upper)
    samples = {k: np.asarray(v, dtype=float) for k, v in law.to_params_array(theta).items()}
    samples.update(allocation_constants(law.name, samples))
    return Bootstrap(
        n_resamples=options.bootstrap,
        seed=options.seed,
        level=options.level,
        samples=samples,
        n_failed=int((~ok).sum()),
    )


def thinned_stride(law: Law, target: int = COLD_STARTS) -> int:
    """A stride through :meth:`Law.start_grid` leaving about ``target`` starts, coprime with every
    axis of the grid so that the starts still cover each value of the fastest axes instead of
    repeating one (a stride of 5 through Chinchilla's grid would keep ``beta = 0`` only)."""
    sizes = [len(g) for g in law.grid]
    stride = max(1, math.prod(sizes) // max(1, target))
    while any(math.gcd(stride, m) > 1 for m in sizes if m > 1):
        stride += 1
    return stride


def thinned_starts(law: Law, target: int = COLD_STARTS) -> Array:
    """The starts of a cold refit: every :func:`thinned_stride`-th start of the law's grid (the
    same whatever ``--grid-stride`` the fit itself used)."""
    return law.start_grid()[:: thinned_stride(law, target)]


def cold_options(law: Law, options: FitOptions, target: int = COLD_STARTS) -> FitOptions:
    """Options of a cold refit: the thinned grid only (no warm starts), one polish, no bootstrap."""
    return replace(
        options,
        bootstrap=0,
        grid_stride=thinned_stride(law, target),
        polish=1,
        extra_starts=(),
        use_grid=True,
        workers=1,
    )


def refit_subsets(
    runs: pd.DataFrame,
    law: str,
    keep: Array,
    options: FitOptions,
    target: int = COLD_STARTS,
) -> list[tuple[dict[str, float], float] | None]:
    """Refit ``law`` on each subset of ``runs`` (``keep``: one boolean row per subset), cold.

    Every subset starts from the same :func:`thinned_starts` of the law's grid and nothing else:
    no optimum of a fit that saw the left-out runs.  Returns ``(params, objective)`` per subset,
    ``None`` where the subset cannot fit the law (too few runs, one distinct N or D).  Laws of
    (N, D) run all subsets in one batched L-BFGS (the subset as 0/1 weights): a few loose
    iterations from every start, then each subset's best :data:`REFINE_STARTS` points to tight
    tolerances; other laws refit subset by subset with :func:`fit_law`.
    """
    lw = get_law(law)
    keep = np.atleast_2d(np.asarray(keep, dtype=bool))
    if lw.inputs != ("N", "D"):
        cold = cold_options(lw, options, target)
        out: list[tuple[dict[str, float], float] | None] = []
        for mask in keep:
            try:
                r = fit_law(runs[mask], law, cold)
            except DataError:
                out.append(None)
                continue
            out.append((dict(r.params), float(r.objective or 0.0)))
        return out
    N, D, _, loss = columns(runs)
    X = lw.design(N=N, D=D, **optional_inputs(lw, runs))
    log_loss = np.log(loss)
    usable = [
        int(m.sum()) >= lw.n_params and np.unique(N[m]).size > 1 and np.unique(D[m]).size > 1
        for m in keep
    ]
    results: list[tuple[dict[str, float], float] | None] = [None] * len(keep)
    rows_of = [i for i, ok in enumerate(usable) if ok]
    if not rows_of:
        return results
    starts = thinned_starts(lw, target)
    lower, upper = np.array(lw.lower), np.array(lw.upper)
    R, K = len(rows_of), starts.shape[0]
    fg = make_objective(lw, X, log_loss, options.huber_delta, weights=keep[rows_of].astype(float))
    # Explore: every start of every subset, a few loose iterations.
    explore = batched_lbfgs(
        fg,
        np.tile(starts, (R, 1)),
        lower,
        upper,
        rows=np.repeat(np.arange(R), K),
        gtol=1e-4,
        ftol=1e-6,
        maxiter=EXPLORE_ITERATIONS,
    )
    f = np.where(np.isfinite(explore.f), explore.f, np.inf).reshape(R, K)
    best = np.argsort(f, axis=1, kind="stable")[:, :REFINE_STARTS]
    x0 = explore.x.reshape(R, K, -1)[np.arange(R)[:, None], best].reshape(-1, len(lower))
    # Refine: each subset's best few points, to tight tolerances, in one batch.
    m = best.shape[1]
    refine = _tight_lbfgs(fg, x0, lower, upper, np.repeat(np.arange(R), m))
    f2 = np.where(np.isfinite(refine.f), refine.f, np.inf).reshape(R, m)
    x2 = refine.x.reshape(R, m, -1)
    for r, i in enumerate(rows_of):
        j = int(np.argmin(f2[r]))
        if np.isfinite(f2[r, j]):
            results[i] = (lw.to_params(x2[r, j]), float(f2[r, j]))
    return results
