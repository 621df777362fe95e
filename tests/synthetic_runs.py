"""Synthetic run tables drawn from known laws, for the fitting tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from scaling.analysis.fitting.laws import get_law

# Hoffmann et al. 2022 (eq. 10) estimates: a realistic ground truth.
CHINCHILLA_TRUE = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}


def chinchilla_loss(p: dict, N, D):
    """``E + A/N^alpha + B/D^beta`` written out (Hoffmann et al. 2022, eq. 2): a reference."""
    return p["E"] + p["A"] / np.asarray(N) ** p["alpha"] + p["B"] / np.asarray(D) ** p["beta"]


def brute_force_optimum(p: dict, C: float, n_grid: int = 400_001) -> tuple[float, float]:
    """``(N, loss)`` minimising :func:`chinchilla_loss` along ``6 N D = C`` on a dense grid of N."""
    N = np.geomspace(1e3, C / 6 / 1e3, n_grid)
    loss = chinchilla_loss(p, N, C / (6 * N))
    i = int(np.argmin(loss))
    return float(N[i]), float(loss[i])


def grid_runs(
    law: str = "chinchilla",
    params: dict | None = None,
    n: int = 120,
    noise: float = 0.003,
    seed: int = 0,
    n_range: tuple[float, float] = (1e7, 3e9),
    tpp_range: tuple[float, float] = (2.0, 200.0),
) -> pd.DataFrame:
    """Runs with log-uniform N and tokens-per-parameter; loss = law * (1 + noise * eps)."""
    rng = np.random.default_rng(seed)
    lw = get_law(law)
    params = params or CHINCHILLA_TRUE
    N = np.exp(rng.uniform(*np.log(n_range), n))
    D = N * np.exp(rng.uniform(*np.log(tpp_range), n))
    C = 6 * N * D
    given = {"N": N, "D": D, "C": C}
    loss = lw.predict(params, **{k: given[k] for k in lw.inputs})
    loss = loss * np.exp(noise * rng.standard_normal(n))
    return pd.DataFrame({"params": N, "tokens": D, "loss": loss, "flops": C})


def isoflop_runs(
    params: dict | None = None,
    budgets: tuple[float, ...] = (1e17, 3e17, 1e18, 3e18, 1e19),
    sizes_per_budget: int = 9,
    noise: float = 0.002,
    seed: int = 0,
    span_decades: float = 1.2,
) -> pd.DataFrame:
    """An IsoFLOP design around the true optimum of the Chinchilla law at each budget."""
    from scaling.analysis.fitting.allocation import chinchilla_optimal

    rng = np.random.default_rng(seed)
    params = params or CHINCHILLA_TRUE
    lw = get_law("chinchilla")
    rows = []
    for c in budgets:
        n_opt, _ = chinchilla_optimal(params, c)
        N = float(n_opt) * np.logspace(-span_decades / 2, span_decades / 2, sizes_per_budget)
        D = c / (6 * N)
        loss = lw.predict(params, N=N, D=D) * np.exp(noise * rng.standard_normal(N.size))
        rows.append(pd.DataFrame({"params": N, "tokens": D, "loss": loss, "flops": c}))
    return pd.concat(rows, ignore_index=True)


def curve_runs(
    params: dict | None = None,
    sizes: tuple[float, ...] = tuple(np.geomspace(1e7, 1e9, 9)),
    max_tokens: float = 2e11,
) -> pd.DataFrame:
    """Loss-vs-tokens curves (approach 1 layout): run_id, params, tokens, loss."""
    params = params or CHINCHILLA_TRUE
    lw = get_law("chinchilla")
    rows = []
    for i, n in enumerate(sizes):
        tokens = np.geomspace(1e7, max_tokens, 60)
        loss = lw.predict(params, N=np.full(tokens.size, n), D=tokens)
        rows.append(
            pd.DataFrame({"run_id": f"run{i}", "params": n, "tokens": tokens, "loss": loss})
        )
    df = pd.concat(rows, ignore_index=True)
    df["flops"] = 6 * df["params"] * df["tokens"]
    return df
