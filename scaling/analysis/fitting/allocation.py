"""Compute-optimal allocation of a law of (N, D): closed forms and a numeric optimum.

Compute is ``C = 6 N D`` (Kaplan et al. 2020, §2.1; :mod:`scaling.counting`).  For the Chinchilla
law the optimum is closed form (Hoffmann et al. 2022, eq. 4 / App. D.3):

    ``N_opt(C) = G (C/6)^a``,  ``D_opt(C) = G^-1 (C/6)^b``,
    ``G = (alpha A / (beta B))^(1/(alpha+beta))``,
    ``a = beta/(alpha+beta)``,  ``b = alpha/(alpha+beta)``.

For the Kaplan joint law without ``E`` it is closed form too (``N^(p+1) = p N_c^p C / (6 D_c)``,
``p = alpha_N/alpha_D``); other laws of (N, D) use a numeric argmin of ``L(N, C/6N)`` over
``log N`` (a dense grid refined by a parabola through the three best points).  Which one a law
takes is its own :attr:`~scaling.analysis.fitting.laws.Law.allocation`.

Every function works elementwise on arrays of parameter samples, which is how bootstrap
intervals of an allocation are computed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar

from scaling.analysis.fitting.laws import Allocation, get_law
from scaling.counting import FLOPS_PER_PARAM_TOKEN, tokens_from_compute
from scaling.errors import UserError

Array = np.ndarray

TOKENS_PER_PARAM_RANGE = (1.0, 1000.0)  # outside this the allocation is flagged as extreme


def chinchilla_exponents(params: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """``(a, b, G)`` of Hoffmann et al. 2022 eq. 4 (works elementwise on arrays of samples)."""
    A, B = np.asarray(params["A"]), np.asarray(params["B"])
    alpha, beta = np.asarray(params["alpha"]), np.asarray(params["beta"])
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        s = alpha + beta
        G = (alpha * A / (beta * B)) ** (1.0 / s)
        a, b = beta / s, alpha / s
    if np.ndim(a) == 0:
        return float(a), float(b), float(G)
    return a, b, G


def kaplan_exponents(params: Mapping[str, Any]) -> tuple[Any, Any]:
    """``(a, b)`` of the Kaplan joint law: ``N_opt ∝ C^a``, ``a = 1 / (1 + alpha_N/alpha_D)``."""
    p = np.asarray(params["alpha_N"]) / np.asarray(params["alpha_D"])
    a = 1.0 / (1.0 + p)
    if np.ndim(a) == 0:
        return float(a), float(1.0 - a)
    return a, 1.0 - a


def allocation_constants(law_name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Closed-form allocation of a law: ``a``, ``b`` (and ``G`` for Chinchilla); ``{}`` if none."""
    form = get_law(law_name).allocation
    if form is Allocation.CHINCHILLA:
        a, b, G = chinchilla_exponents(params)
        return {"a": a, "b": b, "G": G}
    if form is Allocation.KAPLAN:
        a, b = kaplan_exponents(params)
        return {"a": a, "b": b}
    return {}


def chinchilla_optimal(params: Mapping[str, Any], C: Array | float) -> tuple[Array, Array]:
    """``(N_opt, D_opt)`` at compute ``C`` for the Chinchilla law (closed form, eq. 4)."""
    a, b, G = chinchilla_exponents(params)
    nd = np.asarray(C, dtype=float) / FLOPS_PER_PARAM_TOKEN  # N * D
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(G * nd**a), np.asarray(nd**b / G)


def kaplan_optimal(params: Mapping[str, Any], C: Array | float) -> tuple[Array, Array]:
    """``(N_opt, D_opt)`` for the Kaplan joint law without E: ``N^(p+1) = p N_c^p C/(6 D_c)``."""
    p = np.asarray(params["alpha_N"]) / np.asarray(params["alpha_D"])
    log_n = (
        np.log(p)
        + p * np.log(np.asarray(params["N_c"]))
        + np.log(np.asarray(C) / FLOPS_PER_PARAM_TOKEN)
        - np.log(np.asarray(params["D_c"]))
    ) / (p + 1.0)
    N = np.exp(log_n)
    return N, tokens_from_compute(np.asarray(C), N)


def numeric_optimal(
    law_name: str, theta: Array, C: float, n_grid: int = 4001
) -> tuple[Array, Array]:
    """Brute-force ``argmin_N L(N, C/(6N))`` for each row of ``theta`` (S, P): grid + parabola."""
    law = get_law(law_name)
    theta = np.atleast_2d(theta)
    total = math.log(C / FLOPS_PER_PARAM_TOKEN)  # log N + log D
    u = np.linspace(0.0, total, n_grid)  # N from 1 to C/6
    X = np.stack([u, total - u])
    f, _ = law.log_model(theta, X)
    f = np.where(np.isfinite(f), f, np.inf)
    i = np.clip(np.argmin(f, axis=1), 1, n_grid - 2)
    rows = np.arange(theta.shape[0])
    f0, f1, f2 = f[rows, i - 1], f[rows, i], f[rows, i + 1]
    h = u[1] - u[0]
    denom = f0 - 2 * f1 + f2
    with np.errstate(invalid="ignore", divide="ignore"):
        shift = np.where(denom > 0, 0.5 * h * (f0 - f2) / denom, 0.0)
    log_n = u[i] + np.clip(shift, -h, h)
    N = np.exp(log_n)
    return N, tokens_from_compute(C, N)


def optimal_allocation(
    law_name: str, params: Mapping[str, Any], C: Array | float
) -> tuple[Array, Array]:
    """``(N_opt, D_opt)`` for a law of (N, D) with natural-scale ``params`` (floats or arrays)."""
    law = get_law(law_name)
    if law.allocation is Allocation.CHINCHILLA:
        return chinchilla_optimal(params, C)
    if law.allocation is Allocation.KAPLAN:
        return kaplan_optimal(params, C)
    if law.allocation is Allocation.NONE:
        raise UserError(f"law {law_name!r} is not a law of (N, D); it has no allocation")
    scalar = all(np.ndim(params[k]) == 0 for k in law.param_names)
    theta = law.from_params_array(params)
    Cs = np.atleast_1d(np.asarray(C, dtype=float))
    if scalar:
        Ns = np.array([_refined_optimum(law_name, theta[0], c) for c in Cs])
        return Ns.reshape(np.shape(C)), tokens_from_compute(Cs, Ns).reshape(np.shape(C))
    if Cs.size != 1:
        raise ValueError("vectorise over either parameter samples or budgets, not both")
    N, D = numeric_optimal(law_name, theta, float(Cs[0]))
    return N, D


def _refined_optimum(law_name: str, theta: Array, C: float) -> float:
    law = get_law(law_name)
    N0, _ = numeric_optimal(law_name, theta[None, :], C)
    total = math.log(C / FLOPS_PER_PARAM_TOKEN)
    u0 = math.log(float(N0[0]))
    h = total / 4000

    def g(u: float) -> float:
        f, _ = law.log_model(theta[None, :], np.array([[u], [total - u]]))
        return float(f[0, 0])

    res = minimize_scalar(
        g,
        bounds=(max(0.0, u0 - 2 * h), min(total, u0 + 2 * h)),
        method="bounded",
        options={"xatol": 1e-10},
    )
    return float(math.exp(res.x if res.fun <= g(u0) else u0))


def extreme_allocation_warning(C: float, tokens_per_param: float, advice: str = "") -> str | None:
    """A warning when the compute-optimal tokens per parameter at ``C`` are implausible."""
    lo, hi = TOKENS_PER_PARAM_RANGE
    if lo <= tokens_per_param <= hi:
        return None
    return (
        f"extreme compute-optimal tokens per parameter at C={C:.3g}: {tokens_per_param:.3g} "
        f"(outside {lo:g}..{hi:g}{advice})"
    )
