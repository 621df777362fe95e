"""The log-space models of the registered laws (:mod:`.laws`) and their derivatives.

Each model maps a batch of optimiser vectors ``theta`` (S, P) and a design ``X`` (K, n) of log
inputs to ``log L`` (S, n) and its Jacobian (S, n, P), written as a log-sum-exp of the law's terms
so that sums of huge powers never overflow.  ``*_vjp`` variants return a vector-Jacobian product
instead, evaluated in natural space, the fast path of the fit's objective.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Array = np.ndarray

# A log-space model: (theta (S, P), X (K, n)) -> (log L (S, n), d log L / d theta (S, n, P)).
LogModel = Callable[[Array, Array], tuple[Array, Array]]
# The same model in vector-Jacobian form: (theta, X) -> (log L, vjp) with vjp(v (S, n)) =
# sum_n v * d log L / d theta, shape (S, P).  Avoids materialising the (S, n, P) Jacobian.
VjpModel = Callable[[Array, Array], tuple[Array, Callable[[Array], Array]]]


def _softmax_terms(terms: list[Array]) -> tuple[Array, list[Array]]:
    """log(sum exp(terms)) and the weights exp(term - lse), all broadcast to one shape."""
    m = terms[0]
    for t in terms[1:]:
        m = np.maximum(m, t)
    exps = [np.exp(t - m) for t in terms]
    total = exps[0]
    for e in exps[1:]:
        total = total + e
    lse = m + np.log(total)
    return lse, [e / total for e in exps]


def chinchilla(theta: Array, X: Array) -> tuple[Array, Array]:
    """``log L = LSE(a - alpha log N, b - beta log D, e)`` (Besiroglu et al. 2024, eq. 3)."""
    a, b, e, alpha, beta = (theta[:, i : i + 1] for i in range(5))
    x, y = X[0][None, :], X[1][None, :]
    lse, (w1, w2, w3) = _softmax_terms([a - alpha * x, b - beta * y, e + 0.0 * x])
    jac = np.stack([w1, w2, w3, -w1 * x, -w2 * y], axis=-1)
    return lse, jac


def _natural_sum(
    a: Array, e: Array, alpha: Array, x: Array, t2: Array
) -> tuple[Array, Array, Array, Array, Array]:
    """``log(A N^-alpha + T2 + E)`` per sample and point, in natural space.

    ``t2`` holds the exponent of the data term (``b - beta log D``, or of ``D'``), (S, n); it is
    exponentiated in place.  Returns ``(f, t1, t2, E, total)`` for the vjp.
    """
    t1 = np.multiply.outer(-alpha, x)
    t1 += a[:, None]
    np.exp(t1, out=t1)
    np.exp(t2, out=t2)
    E = np.exp(e)
    total = t1 + t2
    total += E[:, None]
    return np.log(total), t1, t2, E, total


def _shared_grad(
    v: Array, parts: tuple[Array, Array, Array, Array, Array], x: Array, n_params: int
) -> tuple[Array, Array]:
    """Gradient rows of ``a, b, e, alpha`` (columns 0-3 of (S, n_params)) and the data term's
    weights ``w2``, from which each law fills its own remaining columns."""
    _, t1, t2, E, total = parts
    w = v / total
    g = np.empty((v.shape[0], n_params))
    w1, w2 = w * t1, w * t2
    g[:, 0] = w1.sum(axis=1)
    g[:, 1] = w2.sum(axis=1)
    g[:, 2] = w.sum(axis=1) * E
    g[:, 3] = -(w1 @ x)
    return g, w2


def chinchilla_vjp(theta: Array, X: Array) -> tuple[Array, Callable[[Array], Array]]:
    """:func:`chinchilla` evaluated in natural space, ``L = E + A N^-alpha + B D^-beta``.

    No overflow is possible inside the bounds of
    :data:`scaling.analysis.fitting.laws.CHINCHILLA` (each term <= e^80) and the sum is never 0
    (E >= e^-12), so the log-sum-exp shift is unnecessary; this costs two ``exp`` and one ``log``
    per point, the minimum.
    """
    a, b, e, alpha, beta = theta.T
    x, y = X[0], X[1]
    t2 = np.multiply.outer(-beta, y)
    t2 += b[:, None]
    parts = _natural_sum(a, e, alpha, x, t2)

    def vjp(v: Array) -> Array:
        g, w2 = _shared_grad(v, parts, x, 5)
        g[:, 4] = -(w2 @ y)
        return g

    return parts[0], vjp


def _effective_log_data(y: Array, X: Array, r: Array) -> tuple[Array, Array]:
    """``log D'`` of Muennighoff et al. 2023 (eq. 5, data term) and its derivative in ``r``.

    ``D' = U_D (1 + R*_D (1 - exp(-R_D / R*_D)))`` with ``U_D = D / epochs``, ``R_D = epochs - 1``
    and ``R*_D = exp(r)``; ``y = log D`` (n,), the epochs row ``z = log max(epochs, 1)`` is
    ``X[2]`` (absent: 0, where ``D' = D``), ``r`` is (S, 1).  Returns two (S, n) arrays.
    """
    if X.shape[0] < 3 or not np.any(X[2]):
        shape = (r.shape[0], y.shape[0])
        return np.broadcast_to(y, shape).copy(), np.zeros(shape)
    z = X[2]
    rs = np.exp(r)  # R*_D, (S, 1)
    u = np.expm1(z)[None, :] / rs  # R_D / R*_D
    gain = -np.expm1(-u)  # 1 - exp(-u)
    g = 1.0 + rs * gain  # D' / U_D
    log_dp = (y - z)[None, :] + np.log(g)
    # d g / d r = R*_D d g / d R*_D = R*_D (1 - exp(-u) (1 + u))
    dlog_dp = rs * (gain - u * np.exp(-u)) / g
    return log_dp, dlog_dp


def data_constrained(theta: Array, X: Array) -> tuple[Array, Array]:
    """``log L = LSE(a - alpha log N, b - beta log D', e)`` with ``theta = (a, b, e, alpha, beta,
    log R*_D)``: :func:`chinchilla` with the effective data of :func:`_effective_log_data`."""
    a, b, e, alpha, beta, r = (theta[:, i : i + 1] for i in range(6))
    x = X[0][None, :]
    log_dp, dlog_dp = _effective_log_data(X[1], X, r)
    lse, (w1, w2, w3) = _softmax_terms([a - alpha * x, b - beta * log_dp, e + 0.0 * x])
    jac = np.stack([w1, w2, w3, -w1 * x, -w2 * log_dp, -w2 * beta * dlog_dp], axis=-1)
    return lse, jac


def data_constrained_vjp(theta: Array, X: Array) -> tuple[Array, Callable[[Array], Array]]:
    """:func:`data_constrained` in natural space, as :func:`chinchilla_vjp` (``D' >= U_D >= 1``
    token keeps every term inside the bounds finite)."""
    a, b, e, alpha, beta, r = theta.T
    x = X[0]
    log_dp, dlog_dp = _effective_log_data(X[1], X, r[:, None])
    t2 = -beta[:, None] * log_dp
    t2 += b[:, None]
    parts = _natural_sum(a, e, alpha, x, t2)

    def vjp(v: Array) -> Array:
        g, w2 = _shared_grad(v, parts, x, 6)
        g[:, 4] = -np.einsum("sn,sn->s", w2, log_dp)
        g[:, 5] = -beta * np.einsum("sn,sn->s", w2, dlog_dp)
        return g

    return parts[0], vjp


def power(theta: Array, X: Array) -> tuple[Array, Array]:
    """``log L = alpha (log c - log x)``, i.e. ``L = (c/x)^alpha`` with theta = (alpha, log c)."""
    alpha, log_c = theta[:, 0:1], theta[:, 1:2]
    diff = log_c - X[0][None, :]
    jac = np.stack([diff, np.broadcast_to(alpha, diff.shape)], axis=-1)
    return alpha * diff, jac


def kaplan_joint(theta: Array, X: Array) -> tuple[Array, Array]:
    """Kaplan eq. 1.5 in log space.

    ``log L = alpha_D LSE((alpha_N/alpha_D)(log N_c - log N), log D_c - log D)``.
    """
    alpha_n, log_nc, alpha_d, log_dc = (theta[:, i : i + 1] for i in range(4))
    x, y = X[0][None, :], X[1][None, :]
    safe_d = np.where(np.abs(alpha_d) < 1e-12, 1e-12, alpha_d)
    ratio = alpha_n / safe_d
    dn = log_nc - x
    lse, (w1, w2) = _softmax_terms([ratio * dn, log_dc - y])
    jac = np.stack([w1 * dn, w1 * alpha_n, lse - w1 * dn * ratio, alpha_d * w2], axis=-1)
    return alpha_d * lse, jac


def with_irreducible(base: LogModel) -> LogModel:
    """``log L = LSE(log L_base, e)``: the base law plus an irreducible term ``E = exp(e)``."""

    def model(theta: Array, X: Array) -> tuple[Array, Array]:
        f, jac = base(theta[:, :-1], X)
        e = theta[:, -1:]
        lse, (v1, v2) = _softmax_terms([f, e + 0.0 * f])
        return lse, np.concatenate([v1[..., None] * jac, v2[..., None]], axis=-1)

    return model
