"""Approach 3 (parametric) and the Kaplan fits: any registered law fitted to every run.

The loss is objective (1) of :mod:`scaling.analysis.optimize` with the law's own log-space model,
minimised from the law's grid of starts (for ``chinchilla`` the 4,500 of Hoffmann et al. 2022,
App. D.2; Besiroglu et al. 2024).  Laws of compute alone (``kaplan_c``) are fitted to the
compute-efficient frontier of the runs.  Uncertainty is a seeded bootstrap over runs: every
resample is refitted, warm started from the distinct optima of the full fit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from scaling.analysis.allocation import (
    allocation_constants,
    extreme_allocation_warning,
    optimal_allocation,
)
from scaling.analysis.bootstrap import BOOTSTRAP_CHUNK, resample_weights, run_chunks
from scaling.analysis.columns import columns, ranges
from scaling.analysis.laws import Law, get_law
from scaling.analysis.optimize import batched_lbfgs, make_objective, minimise_law
from scaling.analysis.results import Bootstrap, Convergence, FitOptions, FitResult
from scaling.errors import DataError

Array = np.ndarray


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
    N, D, C, loss = columns(runs)
    _check_points(lw, N, D, C, len(loss))
    X, log_loss, idx = _law_inputs(lw, N, D, C, loss)
    if len(idx) < lw.n_params:
        raise DataError(
            f"only {len(idx)} run(s) lie on the compute frontier; law {lw.name!r} needs "
            f"{lw.n_params}"
        )
    theta, objective, conv, optima = minimise_law(lw, X, log_loss, options)
    params = lw.to_params(theta)
    warnings = _law_warnings(lw, conv, N, D, C, params)
    allocation = allocation_constants(lw.name, params)
    exponents = {k: allocation[k] for k in ("a", "b") if k in allocation}
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
        ranges=ranges(N[idx], D[idx], C[idx], loss[idx]),
        options=options,
        convergence=conv,
        warnings=tuple(warnings),
        bootstrap=boot,
        theta=tuple(float(t) for t in theta),
        local_optima=tuple(tuple(float(v) for v in o) for o in optima),
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


def _law_inputs(law: Law, N: Array, D: Array, C: Array, loss: Array) -> tuple[Array, Array, Array]:
    """(X, log_loss, indices) the law is fitted on; frontier laws use the Pareto frontier."""
    idx = pareto_frontier(C, loss) if law.frontier else np.arange(len(loss))
    X = law.design(N=N[idx], D=D[idx], C=C[idx])
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
            warning = extreme_allocation_warning(
                c, float(d_opt[0] / n_opt[0]), "; check the fit before using its allocation"
            )
            if warning:
                out.append(warning)
    return out


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


def _bootstrap_law(
    law: Law, X: Array, log_loss: Array, options: FitOptions, optima: Sequence[Array]
) -> Bootstrap:
    n = len(log_loss)
    W = resample_weights(n, options.bootstrap, options.seed)
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
    samples.update(allocation_constants(law.name, samples))
    return Bootstrap(
        n_resamples=options.bootstrap,
        seed=options.seed,
        level=options.level,
        samples=samples,
        n_failed=int((~ok).sum()),
    )
