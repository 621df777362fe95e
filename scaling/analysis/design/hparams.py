"""``scaling fit --law hparams``: the LR and batch size that scale with compute.

DeepSeek LLM (DeepSeek-AI 2024, arXiv 2401.02954, Sec. 3.1) fits the near-optimal learning rate
and batch size of small runs as power laws of the compute budget, ``eta_opt = a C^b`` and
``B_opt = c C^d`` (B in tokens), and sets both for every larger run from them.  This module does
the same on a run table whose runs vary ``lr`` and ``batch_size`` at several budgets
(``sweeps=hparams``), with ``C = 6 N D`` (N: total parameters, D: training tokens).

**Budgets** are grouped as for approach 2 (:func:`scaling.analysis.fitting.isoflop.budget_labels`:
``planned_flops`` when every run has one, else counted compute within a tolerance); a budget's
``C`` is the geometric mean of its runs' ``flops``.

**Per budget** the runs' losses are averaged over seeds per ``(lr, batch)`` cell.  The *LR
profile* is, for each LR tried, the least loss over the batches (and model sizes) tried with it;
the *batch profile* likewise over LRs.  The optimum of a profile is the vertex of a least-squares
parabola of loss in ``ln x`` through the best grid point and up to two neighbours either side
(:data:`WINDOW` points).  It needs three values or more, the best grid point strictly inside the
grid (otherwise the grid does not bracket the optimum: the message says which side to widen), a
convex parabola and a vertex inside the points it was fitted to.  ``Var(ln x*)`` is the delta
method's on the parabola's coefficient covariance (``s^2`` of that window, pooled over budgets for
a window of three points), as for IsoFLOP vertices.

**The laws** ``ln x* = ln a + b ln C`` are fitted by weighted least squares over the budgets with
an optimum, weights ``1 / Var(ln x*)`` (floored at 1% of their median).  Intervals are the
regression's standard errors: the covariance ``(X^T W X)^-1`` of the vertex variances, scaled up
by the reduced chi-square of the scatter about the line when there are residual degrees of
freedom (``n - 2 > 0``) and it exceeds 1 (then Student t quantiles, else normal ones); without
vertex variances, ordinary least squares with ``s^2`` of the residuals (none with two budgets).
They are stated in the document (``method``) and cover the fit at its ``level``.

The rule is written as ``DIR/hparams.json`` (:func:`rule_document`), the format
``train.lr=auto`` / ``train.batch_size=auto`` read (:func:`scaling.config.find_hparams_rule`).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtri, stdtrit  # not scipy.stats: it breaks where torch cannot import

from scaling.analysis.fitting.isoflop import (
    VARIANCE_FLOOR,
    VARIANCE_FLOOR_RATIO,
    Parabola,
    budget_labels,
    fit_parabola,
)
from scaling.analysis.table import read_run_table
from scaling.config import (
    EXTRAPOLATION_WARN,
    HPARAMS_CITATION,
    HPARAMS_FILE,
    HPARAMS_FORMAT,
    LR_RANGE,
    HparamsRule,
)
from scaling.errors import DataError, UserError
from scaling.numbers import fmt_g, jsonable

Array = np.ndarray

WINDOW = 5  # grid points in a profile's parabola: the best and up to two neighbours each side
DEFAULT_LEVEL = 0.9
DEFAULT_TOLERANCE = 0.1  # decades of counted compute that share a budget without planned_flops
COMPUTE_CONVENTION = "C = 6 N D (N: total parameters, D: training tokens)"
METHOD = (
    "Runs grouped into compute budgets (planned_flops, else counted compute within a tolerance), "
    "losses averaged over seeds per (lr, batch) cell. Per budget, the LR profile (least loss over "
    "the batches tried at each LR) and the batch profile (least loss over the LRs tried at each "
    "batch) each get a least-squares parabola in log x through the best grid point and up to two "
    "neighbours either side; its vertex is the optimum when the best point is strictly inside "
    "the grid, the parabola convex and the vertex inside its points. ln x* = ln a + b ln C is "
    "fitted by weighted least squares, weights 1/Var(ln x*) (delta method on each parabola, "
    "floored at 1% of the median). Intervals: the regression's standard errors, the vertex "
    "variances' covariance (X'WX)^-1 scaled by the reduced chi-square of the scatter about the "
    "line when it exceeds 1 (Student t, n - 2 dof; normal quantiles otherwise); without vertex "
    "variances, ordinary least squares (t, n - 2 dof)."
)


# ---- one budget ------------------------------------------------------------------------------


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


def _values(x: Array) -> tuple[Array, Array]:
    """Distinct values of ``x`` (to 9 digits of ln x) and each element's index into them."""
    key = np.round(np.log(x), 9)
    uniq, inverse = np.unique(key, return_inverse=True)
    firsts = np.array([x[inverse == i][0] for i in range(uniq.size)])
    return firsts, inverse


def _profile(x: Array, loss: Array) -> tuple[Array, Array]:
    """Distinct ``x`` ascending and the least ``loss`` at each."""
    values, inverse = _values(x)
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


def _with_variances(optima: list[Optimum]) -> tuple[list[Optimum], int]:
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


# ---- the laws --------------------------------------------------------------------------------


@dataclass(frozen=True)
class LawFit:
    """``x*(C) = coef * C^exponent`` by (weighted) least squares in log space, with intervals."""

    coef: float
    exponent: float
    ci_coef: tuple[float, float] | None
    ci_exponent: tuple[float, float] | None
    cov: tuple[tuple[float, float], tuple[float, float]] | None  # of (ln coef, exponent)
    quantile: float | None  # the t or normal quantile of the intervals
    dof: int
    interval: str  # how the intervals were computed, one line
    n_budgets: int

    def __call__(self, compute: float) -> float:
        return self.coef * compute**self.exponent

    def value_interval(self, compute: float) -> tuple[float, float] | None:
        """The interval of ``x*(compute)`` at the fit's level (delta method in log space)."""
        if self.cov is None or self.quantile is None:
            return None
        g = np.array([1.0, math.log(compute)])
        var = float(g @ np.array(self.cov) @ g)
        if not (math.isfinite(var) and var >= 0):
            return None
        half = self.quantile * math.sqrt(var)
        centre = math.log(self(compute))
        return math.exp(centre - half), math.exp(centre + half)

    def to_dict(self) -> dict[str, Any]:
        return {
            "coef": self.coef,
            "exponent": self.exponent,
            "ci": {
                "coef": None if self.ci_coef is None else list(self.ci_coef),
                "exponent": None if self.ci_exponent is None else list(self.ci_exponent),
            },
            "cov_log_coef_exponent": None if self.cov is None else [list(r) for r in self.cov],
            "quantile": self.quantile,
            "dof": self.dof,
            "interval": self.interval,
            "n_budgets": self.n_budgets,
        }


def fit_power_law(
    compute: Sequence[float],
    values: Sequence[float],
    log_se: Sequence[float] | None = None,
    level: float = DEFAULT_LEVEL,
    se_dof: int | None = None,
) -> LawFit:
    """``ln values = ln a + b ln compute`` by least squares, weighted by ``1 / log_se^2`` when
    every ``log_se`` is known (estimated with ``se_dof`` degrees of freedom: Student t quantiles;
    None: normal ones), with the intervals of the module's text."""
    x, y = np.log(np.asarray(compute, float)), np.log(np.asarray(values, float))
    n = x.size
    if n < 2 or np.ptp(x) <= 0:
        raise DataError("a power law in C needs optima at two compute budgets or more")
    xc = float(x.mean())
    X = np.stack([np.ones(n), x - xc], axis=1)
    dof = n - 2
    var = None if log_se is None else np.asarray(log_se, float) ** 2
    known = var is not None and bool(np.all(np.isfinite(var) & (var > 0)))
    two_sided = (1.0 + level) / 2.0
    cov: Array | None
    if known:
        assert var is not None
        floor = max(VARIANCE_FLOOR, VARIANCE_FLOOR_RATIO * float(np.median(var)))
        w = 1.0 / np.maximum(var, floor)
        cov = np.linalg.inv(X.T @ (w[:, None] * X))
        beta = cov @ X.T @ (w * y)
        resid = y - X @ beta
        chi2 = float(w @ resid**2) / dof if dof > 0 else math.nan
        if dof > 0 and chi2 > 1.0:
            cov = cov * chi2
            q = float(stdtrit(dof, two_sided))
            how = (
                f"weighted least squares on {n} budget optima, the vertex variances' covariance "
                f"scaled by the scatter about the line (reduced chi-square {chi2:.3g}), Student "
                f"t with {dof} dof"
            )
        else:
            scatter = f" (reduced chi-square {chi2:.3g} <= 1)" if dof > 0 else ""
            if se_dof:
                q = float(stdtrit(se_dof, two_sided))
                quantiles = f"Student t with the {se_dof} dof of the pooled parabola residuals"
            else:
                q = float(ndtri(two_sided))
                quantiles = "normal quantiles"
            how = (
                f"weighted least squares on {n} budget optima, the covariance of the per-budget "
                f"vertex variances (delta method){scatter}, {quantiles}"
            )
    else:
        beta, *_ = np.linalg.lstsq(X, y, rcond=None)
        resid = y - X @ beta
        if dof > 0:
            s2 = float(resid @ resid) / dof
            cov = s2 * np.linalg.inv(X.T @ X)
            q = float(stdtrit(dof, two_sided))
            how = (
                f"ordinary least squares on {n} budget optima (no vertex variances), the "
                f"residual standard errors, Student t with {dof} dof"
            )
        else:
            cov, q = None, None
            how = (
                "none: two budget optima and no vertex variances (no residual degrees of "
                "freedom); add a budget, or grid points around each optimum"
            )
    # from (intercept at mean ln C, slope) to (ln coef, exponent): ln a = beta0 - xc * beta1
    J = np.array([[1.0, -xc], [0.0, 1.0]])
    ln_a, b = float(beta[0] - xc * beta[1]), float(beta[1])
    ci_a = ci_b = cov_out = None
    if cov is not None and q is not None:
        full = J @ cov @ J.T
        se_a, se_b = math.sqrt(max(full[0, 0], 0.0)), math.sqrt(max(full[1, 1], 0.0))
        ci_a = (math.exp(ln_a - q * se_a), math.exp(ln_a + q * se_a))
        ci_b = (b - q * se_b, b + q * se_b)
        cov_out = (
            (float(full[0, 0]), float(full[0, 1])),
            (float(full[1, 0]), float(full[1, 1])),
        )
    return LawFit(
        coef=math.exp(ln_a),
        exponent=b,
        ci_coef=ci_a,
        ci_exponent=ci_b,
        cov=cov_out,
        quantile=q,
        dof=dof,
        interval=how,
        n_budgets=n,
    )


# ---- the whole table ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HparamsFit:
    budgets: tuple[BudgetOptima, ...]
    lr: LawFit
    batch_tokens: LawFit | None
    level: float
    n_runs: int
    grouped_by: str
    warnings: tuple[str, ...]

    @property
    def compute_range(self) -> tuple[float, float]:
        used = [b.flops for b in self.budgets if b.lr.value is not None]
        return min(used), max(used)


def _batch_tokens(df: pd.DataFrame, where: str) -> Array | None:
    """Each run's batch in tokens: a ``batch_tokens`` column, else ``batch_size`` (sequences) x
    ``seq_len``; None without either."""
    if "batch_tokens" in df.columns:
        return _positive(df, "batch_tokens", where)
    if "batch_size" not in df.columns:
        return None
    if "seq_len" not in df.columns:
        raise DataError(
            f"{where}: has batch_size but no seq_len column: batches are compared in tokens "
            "(batch_size x seq_len); add seq_len or a batch_tokens column"
        )
    return _positive(df, "batch_size", where) * _positive(df, "seq_len", where)


def _positive(df: pd.DataFrame, col: str, where: str) -> Array:
    values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
    bad = ~(np.isfinite(values) & (values > 0))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{where}: column {col!r} needs a positive number on every row; row {row + 1} has "
            f"{df[col].iloc[row]!r}"
        )
    return values


def _cells(lr: Array, bt: Array, loss: Array) -> tuple[Array, Array, Array]:
    """Mean loss per distinct (lr, batch) cell (seed replicates averaged)."""
    _, li = _values(lr)
    _, bi = _values(bt)
    keys = li * (bi.max() + 1) + bi
    cells = [np.flatnonzero(keys == k) for k in np.unique(keys)]
    return (
        np.array([lr[m[0]] for m in cells]),
        np.array([bt[m[0]] for m in cells]),
        np.array([float(loss[m].mean()) for m in cells]),
    )


def _budget(runs: pd.DataFrame, members: Array, lr: Array, bt: Array | None) -> BudgetOptima:
    """One budget's optima (``log_se`` not yet set: :func:`_with_variances`)."""
    flops = runs["flops"].to_numpy(dtype=float)[members]
    b_bt = bt[members] if bt is not None else np.ones(members.size)
    cl, cb, closs = _cells(lr[members], b_bt, runs["loss"].to_numpy(dtype=float)[members])
    varied = bt is not None and _values(b_bt)[0].size > 1
    best = int(np.argmin(closs))
    seq = runs["seq_len"].to_numpy(dtype=float)[members] if "seq_len" in runs else None
    return BudgetOptima(
        flops=float(np.exp(np.mean(np.log(flops)))),
        n_runs=int(members.size),
        params=tuple(float(v) for v in _values(runs["params"].to_numpy(float)[members])[0]),
        lr=profile_optimum(cl, closs, "lr"),
        batch_tokens=profile_optimum(cb, closs, "batch (tokens)", "{:.0f}") if varied else None,
        seq_len=float(seq[0]) if seq is not None and np.ptp(seq) == 0 else None,
        best={
            "lr": float(cl[best]),
            "batch_tokens": float(cb[best]) if bt is not None else math.nan,
            "loss": float(closs[best]),
        },
    )


def _law(
    budgets: Sequence[BudgetOptima], which: str, level: float, warnings: list[str]
) -> tuple[tuple[BudgetOptima, ...], LawFit | None]:
    """The budgets with ``which`` (``lr`` | ``batch_tokens``) optima given their ``log_se``, and
    the power law through those optima (None, with a warning, at fewer than two)."""
    optima, dof = _with_variances([getattr(b, which) for b in budgets if getattr(b, which)])
    it = iter(optima)
    budgets = tuple(replace(b, **{which: next(it)}) if getattr(b, which) else b for b in budgets)
    name = "LR" if which == "lr" else "batch"
    for b in budgets:
        o = getattr(b, which)
        if o is not None and o.value is None:
            warnings.append(f"budget {b.flops:.3g} FLOPs has no {name} optimum: {o.problem}")
    good = [b for b in budgets if getattr(b, which) and getattr(b, which).value is not None]
    if len(good) < 2:
        return budgets, None
    law = fit_power_law(
        [b.flops for b in good],
        [getattr(b, which).value for b in good],
        [getattr(b, which).log_se for b in good],
        level,
        dof,
    )
    return budgets, law


def _arrays(runs: pd.DataFrame, where: str) -> tuple[Array, Array | None]:
    """Each run's lr and batch in tokens (None: no batch column), checked."""
    if "lr" not in runs.columns:
        raise DataError(
            f"{where}: no lr column; --law hparams needs runs that vary lr (and batch_size) at "
            "several compute budgets, e.g. python -m scaling.sweep -m sweeps=hparams"
        )
    lr = _positive(runs, "lr", where)
    if _values(lr)[0].size < 2:
        raise DataError(
            f"{where}: every run has lr={lr[0]:g}: --law hparams needs several learning rates "
            "per compute budget (e.g. python -m scaling.sweep -m sweeps=hparams)"
        )
    return lr, _batch_tokens(runs, where)


def fit_hparams(
    runs: pd.DataFrame,
    *,
    level: float = DEFAULT_LEVEL,
    tolerance: float = DEFAULT_TOLERANCE,
    where: str = "the run table",
) -> HparamsFit:
    """Per-budget LR and batch optima of ``runs`` (a run table) and their power laws in C
    (raises :class:`DataError` with one line when the table cannot give an LR rule)."""
    lr, bt = _arrays(runs, where)
    flops = runs["flops"].to_numpy(dtype=float)
    labels, grouped_by = budget_labels(runs, flops, tolerance)
    if np.unique(labels).size < 2:
        raise DataError(
            f"{where}: all {len(runs)} runs are at one compute budget "
            f"({math.exp(np.log(flops).mean()):.3g} FLOPs): a power law in C needs budgets at "
            "two or more (sweeps=hparams has 3)"
        )
    budgets = [_budget(runs, np.flatnonzero(labels == k), lr, bt) for k in np.unique(labels)]
    if all(len(b.lr.tried) < 2 for b in budgets):
        raise DataError(
            f"{where}: each compute budget has a single learning rate: --law hparams needs "
            "several per budget (e.g. python -m scaling.sweep -m sweeps=hparams)"
        )
    warnings = [
        f"budget {b.flops:.3g} FLOPs has {len(b.params)} model sizes: its profiles take the best "
        "over sizes too"
        for b in budgets
        if len(b.params) > 1
    ]
    with_lr, lr_law = _law(budgets, "lr", level, warnings)
    if lr_law is None:
        found = sum(b.lr.value is not None for b in with_lr)
        reasons = "; ".join(
            f"at {b.flops:.3g} FLOPs {b.lr.problem}" for b in with_lr if b.lr.problem
        )
        raise DataError(
            f"{where}: an LR optimum at {found} of {len(with_lr)} budgets, a power law needs 2: "
            f"{reasons}"
        )
    final, batch_law = _law(with_lr, "batch_tokens", level, warnings)
    if batch_law is None:
        why = (
            "batch_size does not vary within any budget"
            if all(b.batch_tokens is None for b in final)
            else "a batch optimum at fewer than 2 budgets"
        )
        warnings.append(
            f"{why}: no batch law (train.batch_size=auto refuses this rule; vary "
            "train.batch_size around the optimum to get one)"
        )
    return HparamsFit(
        budgets=final,
        lr=lr_law,
        batch_tokens=batch_law,
        level=level,
        n_runs=len(runs),
        grouped_by=grouped_by,
        warnings=tuple(warnings),
    )


# ---- the rule file ---------------------------------------------------------------------------


def _unique(runs: pd.DataFrame, *cols: str) -> list[str] | None:
    for col in cols:
        if col in runs.columns:
            return sorted({str(v) for v in runs[col].dropna()})
    return None


def rule_document(
    fit: HparamsFit,
    runs: pd.DataFrame | None = None,
    *,
    table: str | None = None,
    command: str | None = None,
    date: str | None = None,
) -> dict[str, Any]:
    """The rule file (``hparams.json``): the laws with intervals, the fitted range of C, the
    per-budget optima and where it came from -- what ``train.lr=auto`` reads."""
    lo, hi = fit.compute_range
    source: dict[str, Any] = {
        "date": date or _dt.date.today().isoformat(),
        "command": command,
        "table": table,
        "runs": fit.n_runs,
        "budgets": len(fit.budgets),
        "grouped_by": fit.grouped_by,
    }
    if runs is not None:
        source["corpus"] = _unique(runs, "data.source", "corpus")
        source["corpus_id"] = _unique(runs, "corpus")
        source["tokenizer"] = _unique(runs, "tokenizer", "data.tokenizer")
    doc = {
        "format": HPARAMS_FORMAT,
        "equation": "lr(C) = coef * C^exponent; batch_tokens(C) = coef * C^exponent",
        "lr": fit.lr.to_dict(),
        "batch_tokens": None if fit.batch_tokens is None else fit.batch_tokens.to_dict(),
        "level": fit.level,
        "compute_convention": COMPUTE_CONVENTION,
        "fitted_compute": [lo, hi],
        "lr_range": list(LR_RANGE),
        "extrapolation_warn": EXTRAPOLATION_WARN,
        "source": source,
        "citation": HPARAMS_CITATION,
        "method": METHOD,
        "budgets": [b.to_dict() for b in fit.budgets],
        "warnings": list(fit.warnings),
    }
    doc = jsonable(doc)
    HparamsRule.from_document(doc, "fit", "the fitted rule")  # what auto will read, read back
    return doc


def write_rule(doc: dict[str, Any], out: Path) -> Path:
    """``out/hparams.json``, written atomically."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory; choose another output folder")
    out.mkdir(parents=True, exist_ok=True)
    target = out / HPARAMS_FILE
    fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{HPARAMS_FILE}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def fit_hparams_to_dir(
    table: Path,
    out: Path,
    *,
    level: float = DEFAULT_LEVEL,
    tolerance: float = DEFAULT_TOLERANCE,
    command: str | None = None,
) -> tuple[dict[str, Any], Path]:
    """Read ``table``, fit, write ``out/hparams.json``; the document and its path."""
    runs = read_run_table(table)
    fit = fit_hparams(runs, level=level, tolerance=tolerance, where=str(table))
    doc = rule_document(fit, runs, table=str(table), command=command)
    return doc, write_rule(doc, out)


def _ci(law: dict[str, Any], key: str) -> str:
    ci = (law.get("ci") or {}).get(key)
    return f" [{fmt_g(ci[0], 3)}, {fmt_g(ci[1], 3)}]" if ci and None not in ci else " [no interval]"


def summary(doc: dict[str, Any]) -> str:
    """The text ``scaling fit --law hparams`` prints: the rule, then the per-budget optima."""
    lo, hi = doc["fitted_compute"]
    level = f"{doc['level']:.0%}"
    src = doc.get("source") or {}
    lines = [
        f"hparams rule ({doc['citation'].split(':')[0]}), {doc['compute_convention']}; "
        f"fitted on {src.get('runs')} runs at {len(doc['budgets'])} budgets, C = "
        f"{lo:.3g}..{hi:.3g} FLOPs",
    ]
    lr = doc["lr"]
    lines.append(
        f"  lr(C)           = {fmt_g(lr['coef'])} x C^{fmt_g(lr['exponent'])}   "
        f"{level} intervals: coef{_ci(lr, 'coef')}, exponent{_ci(lr, 'exponent')}"
    )
    bt = doc.get("batch_tokens")
    if bt:
        lines.append(
            f"  batch_tokens(C) = {fmt_g(bt['coef'])} x C^{fmt_g(bt['exponent'])}   "
            f"{level} intervals: coef{_ci(bt, 'coef')}, exponent{_ci(bt, 'exponent')}"
        )
    else:
        lines.append("  batch_tokens(C): none (see the warnings)")
    lines.append(f"  intervals: {lr['interval']}")
    lines.append("per budget (optimum = parabola vertex of the profile; se of ln x):")
    lines.append(
        f"  {'C (FLOPs)':>10} {'runs':>5} {'params':>9} {'best lr':>9} {'se':>6} "
        f"{'batch tok':>9} {'se':>6} {'batch seq':>9} {'best run (lr, batch tok, loss)':>32}"
    )
    for b in doc["budgets"]:
        blr, bbt, bs = b["lr"], b.get("batch_tokens") or {}, b.get("batch_size") or {}
        run = b["best_run"]
        best = (
            f"{fmt_g(run['lr'], 3)}, {fmt_g(run.get('batch_tokens'), 4)}, {fmt_g(run['loss'], 4)}"
        )
        sizes = ",".join(f"{p:.3g}" for p in b["params"])
        lines.append(
            f"  {b['flops']:>10.3g} {b['n_runs']:>5} {sizes:>9} {fmt_g(blr['best'], 3):>9} "
            f"{fmt_g(blr['log_se'], 2):>6} {fmt_g(bbt.get('best'), 4):>9} "
            f"{fmt_g(bbt.get('log_se'), 2):>6} {fmt_g(bs.get('best'), 3):>9} {best:>32}"
        )
    return "\n".join(lines)
