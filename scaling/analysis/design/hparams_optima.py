"""The best LR and batch size of one compute budget, for ``fit --law hparams``.

**Per budget** the runs' losses are averaged over seeds per ``(lr, batch)`` cell.  The *LR
profile* is, for each LR tried, the least loss over the batches (and model sizes) tried with it;
the *batch profile* likewise over LRs.  The optimum of a profile is the vertex of a least-squares
parabola of loss in ``ln x`` through the best grid point and up to two neighbours either side
(:data:`WINDOW` points).  It needs three values or more, the best grid point strictly inside the
grid (otherwise the grid does not bracket the optimum: the message says which side to widen), a
convex parabola and a vertex inside the points it was fitted to.  ``Var(ln x*)`` is the delta
method's on the parabola's coefficient covariance (``s^2`` of that window, pooled over budgets for
a window of three points), as for IsoFLOP vertices (:func:`with_variances`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from scaling.analysis.fitting.isoflop import Parabola, fit_parabola

Array = np.ndarray

WINDOW = 5  # grid points in a profile's parabola: the best and up to two neighbours each side


@dataclass(frozen=True)
class Optimum:
    """The best value of one hyperparameter at one budget (or why there is none)."""

    value: float | None  # exp of the parabola's vertex
    log_se: float  # standard error of ln value (NaN: unknown)
    tried: tuple[float, ...]  # the grid, ascending
    best_tried: float  # the grid value with the least profile loss
    loss: float  # the profile's least loss (the best grid point's)
    n_points: int  # grid points in the parabola
    problem: str | None = None  # why there is no optimum
    parabola: Parabola | None = field(default=None, repr=False, compare=False)

    def to_dict(self, scale: float = 1.0) -> dict[str, Any]:
        return {
            "best": None if self.value is None else self.value * scale,
            "log_se": self.log_se,
            "tried": [t * scale for t in self.tried],
            "best_tried": self.best_tried * scale,
            "loss": self.loss,
            "n_points": self.n_points,
            "problem": self.problem,
        }


@dataclass(frozen=True)
class BudgetOptima:
    """One compute budget: its runs, and the LR and batch optima of its profiles."""

    flops: float
    n_runs: int
    params: tuple[float, ...]  # model sizes at this budget
    lr: Optimum
    batch_tokens: Optimum | None  # None: one batch size only
    seq_len: float | None  # when every run of the budget shares one: batches in sequences too
    best: dict[str, float]  # the best run (cell): lr, batch_tokens, loss

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "flops": self.flops,
            "n_runs": self.n_runs,
            "params": list(self.params),
            "lr": self.lr.to_dict(),
            "batch_tokens": None if self.batch_tokens is None else self.batch_tokens.to_dict(),
            "best_run": self.best,
        }
        if self.batch_tokens is not None and self.seq_len:
            out["batch_size"] = self.batch_tokens.to_dict(1.0 / self.seq_len)
        return out


def distinct_values(x: Array) -> tuple[Array, Array]:
    """Distinct values of ``x`` (to 9 digits of ln x) and each element's index into them."""
    key = np.round(np.log(x), 9)
    uniq, inverse = np.unique(key, return_inverse=True)
    firsts = np.array([x[inverse == i][0] for i in range(uniq.size)])
    return firsts, inverse


def _profile(x: Array, loss: Array) -> tuple[Array, Array]:
    """Distinct ``x`` ascending and the least ``loss`` at each."""
    values, inverse = distinct_values(x)
    least = np.array([loss[inverse == i].min() for i in range(values.size)])
    return values, least


def _side_hint(name: str, values: Array, i: int, fmt: str) -> str:
    if i == 0:
        step = values[0] / values[1]
        return (
            f"the best {name} {fmt.format(values[0])} is the smallest tried: the grid does not "
            f"bracket the optimum; add smaller values (e.g. {fmt.format(values[0] * step)})"
        )
    step = values[-1] / values[-2]
    return (
        f"the best {name} {fmt.format(values[-1])} is the largest tried: the grid does not "
        f"bracket the optimum; add larger values (e.g. {fmt.format(values[-1] * step)})"
    )


def profile_optimum(
    x: Array, loss: Array, name: str, fmt: str = "{:.3g}", window: int = WINDOW
) -> Optimum:
    """The vertex of the parabola of the profile ``(x, least loss)`` in ``ln x`` around its best
    grid point (see the module's text); ``problem`` says why there is none."""
    values, least = _profile(np.asarray(x, float), np.asarray(loss, float))
    i = int(np.argmin(least))
    base = {"tried": tuple(float(v) for v in values), "best_tried": float(values[i])}
    base["loss"] = float(least[i])
    if values.size < 3:
        return Optimum(
            None, math.nan, n_points=int(values.size), **base,
            problem=f"{values.size} value{'s' if values.size > 1 else ''} of {name} tried: a "
            "parabola needs at least 3",
        )  # fmt: skip
    if i in (0, values.size - 1):
        return Optimum(None, math.nan, n_points=0, **base, problem=_side_hint(name, values, i, fmt))
    half = max(1, window // 2)
    lo, hi = max(0, i - half), min(values.size, i + half + 1)
    u = np.log(values[lo:hi])
    parabola = fit_parabola(u, least[lo:hi])
    assert parabola is not None  # three or more distinct values
    if not parabola.convex:
        return Optimum(
            None, math.nan, n_points=int(u.size), **base,
            problem=f"the loss around the best {name} {fmt.format(values[i])} is not convex in "
            f"log {name}: the runs are too noisy to place the optimum; add seeds or grid points",
        )  # fmt: skip
    vertex = parabola.vertex
    if not u.min() < vertex < u.max():
        return Optimum(
            None, math.nan, n_points=int(u.size), **base,
            problem=f"the parabola's optimum of {name} ({fmt.format(math.exp(vertex))}) lies "
            "outside the points it was fitted to: add grid points around "
            f"{fmt.format(values[i])}",
        )  # fmt: skip
    return Optimum(
        float(math.exp(vertex)), math.nan, n_points=int(u.size), **base, parabola=parabola
    )


def with_variances(optima: list[Optimum]) -> tuple[list[Optimum], int]:
    """The optima with ``log_se`` from the delta method on ``s^2`` pooled over the parabolas (the
    run-to-run noise is one noise; a window of five points alone has two degrees of freedom),
    and the pooled degrees of freedom."""
    found = [o for o in optima if o.parabola is not None]
    dof = sum(o.parabola.dof for o in found)  # type: ignore[union-attr]
    pooled = sum(o.parabola.rss for o in found) / dof if dof > 0 else math.nan  # type: ignore[union-attr]
    out = []
    for o in optima:
        if o.parabola is None:
            out.append(o)
            continue
        p = o.parabola
        var = p.vertex_variance(pooled) if math.isfinite(pooled) else math.nan
        se = math.sqrt(var) if math.isfinite(var) and var >= 0 else math.nan
        out.append(replace(o, log_se=se))
    return out, dof


def _cells(lr: Array, bt: Array, loss: Array) -> tuple[Array, Array, Array]:
    """Mean loss per distinct (lr, batch) cell (seed replicates averaged)."""
    _, li = distinct_values(lr)
    _, bi = distinct_values(bt)
    keys = li * (bi.max() + 1) + bi
    cells = [np.flatnonzero(keys == k) for k in np.unique(keys)]
    return (
        np.array([lr[m[0]] for m in cells]),
        np.array([bt[m[0]] for m in cells]),
        np.array([float(loss[m].mean()) for m in cells]),
    )


def budget_optima(runs: pd.DataFrame, members: Array, lr: Array, bt: Array | None) -> BudgetOptima:
    """One budget's optima (``log_se`` not yet set: :func:`with_variances`)."""
    flops = runs["flops"].to_numpy(dtype=float)[members]
    b_bt = bt[members] if bt is not None else np.ones(members.size)
    cl, cb, closs = _cells(lr[members], b_bt, runs["loss"].to_numpy(dtype=float)[members])
    varied = bt is not None and distinct_values(b_bt)[0].size > 1
    best = int(np.argmin(closs))
    seq = runs["seq_len"].to_numpy(dtype=float)[members] if "seq_len" in runs else None
    return BudgetOptima(
        flops=float(np.exp(np.mean(np.log(flops)))),
        n_runs=int(members.size),
        params=tuple(float(v) for v in distinct_values(runs["params"].to_numpy(float)[members])[0]),
        lr=profile_optimum(cl, closs, "lr"),
        batch_tokens=profile_optimum(cb, closs, "batch (tokens)", "{:.0f}") if varied else None,
        seq_len=float(seq[0]) if seq is not None and np.ptp(seq) == 0 else None,
        best={
            "lr": float(cl[best]),
            "batch_tokens": float(cb[best]) if bt is not None else math.nan,
            "loss": float(closs[best]),
        },
    )
