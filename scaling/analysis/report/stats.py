"""The statistics a report adds to a fit: held-out error of each law, a backtest, budget grid.

* :func:`law_comparison`: k-fold (over runs) held-out error of each law of (N, D).
* :func:`backtest`: fit the runs below a compute threshold, predict the larger ones.
* :func:`budget_grid`: the budgets of the allocation table.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd

from scaling.analysis.approach3 import fit_law
from scaling.analysis.columns import predict_table
from scaling.analysis.fit import fit
from scaling.analysis.laws import get_law
from scaling.analysis.predict import Predictor
from scaling.analysis.results import FitOptions, FitResult
from scaling.errors import UserError

COMPARE_LAWS = ("chinchilla", "kaplan", "kaplan_e")
CV_FOLDS = 5


def final_rows(runs: pd.DataFrame, approach: int) -> pd.DataFrame:
    """One row per run: the last point of each curve for approach 1, the table otherwise."""
    if approach == 1 and "run_id" in runs:
        return runs.sort_values(["run_id", "tokens"]).groupby("run_id").tail(1)
    return runs


def _quick(
    options: FitOptions, result: FitResult | None = None, law: str | None = None
) -> FitOptions:
    """Cheaper options for refits inside the report: no bootstrap, thinner grid, warm starts."""
    extra: tuple[tuple[float, ...], ...] = ()
    if result is not None and result.approach == 3 and result.law == law and result.theta:
        extra = (tuple(result.theta),)
    return replace(
        options,
        bootstrap=0,
        grid_stride=max(options.grid_stride, 5),
        polish=1,
        extra_starts=extra,
        workers=1,
    )


def _warm(options: FitOptions, full: FitResult) -> FitOptions:
    """Refit options that start only from the distinct optima of the full-data fit."""
    starts = full.local_optima or (full.theta,)
    return replace(options, extra_starts=tuple(starts), use_grid=False, polish=0)


def law_comparison(runs: pd.DataFrame, result: FitResult, folds: int = CV_FOLDS) -> list[dict]:
    """K-fold (over runs) held-out error of each law of (N, D); one dict per law.

    Fold refits start from the distinct optima of the law's full-data fit (a warm start), which
    is what makes a cross-validated comparison affordable inside a report.
    """
    rows = []
    n = len(runs)
    if n < 10:
        return rows
    order = np.random.default_rng(result.options.seed).permutation(n)
    fold_of = np.empty(n, dtype=int)
    fold_of[order] = np.arange(n) % folds
    for name in COMPARE_LAWS:
        law = get_law(name)
        opts = _quick(result.options, result, name)
        try:
            if result.approach == 3 and result.law == name and len(runs) == result.n_points:
                full = result
            else:
                full = fit_law(runs, name, opts)
        except UserError:
            continue
        log_err = np.full(n, np.nan)
        for k in range(folds):
            train, test = runs[fold_of != k], runs[fold_of == k]
            try:
                f = fit_law(train, name, _warm(opts, full))
            except UserError:
                continue
            pred = predict_table(law, f.params, test)
            log_err[fold_of == k] = np.log(pred) - np.log(test["loss"].to_numpy())
        rel = np.abs(np.expm1(log_err))
        rows.append(
            {
                "law": name,
                "equation": law.equation,
                "n_params": law.n_params,
                "objective": full.objective,
                "rmse_log": float(np.sqrt(np.nanmean(log_err**2))),
                "mean_abs_rel": float(np.nanmean(rel)),
                "max_abs_rel": float(np.nanmax(rel)),
            }
        )
    return rows


def backtest(runs: pd.DataFrame, result: FitResult, quantile: float) -> dict | None:
    """Fit on runs with compute <= the ``quantile`` threshold; predict the larger ones."""
    final = final_rows(runs, result.approach)
    threshold = float(np.quantile(final["flops"].to_numpy(), quantile))
    if result.approach == 3:
        return _backtest_law(runs, result, threshold)
    if result.approach == 2:
        return _backtest_isoflop(runs, result, threshold)
    return None


def _backtest_law(runs: pd.DataFrame, result: FitResult, threshold: float) -> dict | None:
    train = runs[runs["flops"] <= threshold]
    test = runs[runs["flops"] > threshold]
    if len(test) == 0:
        return None
    try:
        f = fit_law(train, result.law, _quick(result.options, result, result.law))
    except UserError as err:
        return {"threshold": threshold, "error": str(err)}
    pred = predict_table(get_law(result.law), f.params, test)
    rel = pred / test["loss"].to_numpy() - 1
    table = pd.DataFrame(
        {
            "flops": test["flops"].to_numpy(),
            "params": test["params"].to_numpy(),
            "tokens": test["tokens"].to_numpy(),
            "loss": test["loss"].to_numpy(),
            "predicted": pred,
            "rel_error": rel,
        }
    ).sort_values("flops")
    return {
        "threshold": threshold,
        "n_train": len(train),
        "n_test": len(test),
        "table": table,
        "mean_abs_rel": float(np.mean(np.abs(rel))),
        "max_abs_rel": float(np.max(np.abs(rel))),
    }


def _backtest_isoflop(runs: pd.DataFrame, result: FitResult, threshold: float) -> dict | None:
    budgets = [m for m in result.isoflop if m.used]
    test = [m for m in budgets if m.flops > threshold]
    if not test or len(budgets) - len(test) < 2:
        return None
    train = runs[runs["flops"] <= threshold * 10**result.options.isoflop_tolerance]
    try:
        f = fit(train, approach=2, options=replace(result.options, bootstrap=0))
    except UserError as err:
        return {"threshold": threshold, "error": str(err)}
    p = Predictor(f)
    recs = []
    for m in test:
        n_hat, _, l_hat = p.optimal(m.flops)
        recs.append(
            {
                "flops": m.flops,
                "params_opt": m.params,
                "predicted_params": n_hat,
                "rel_error_params": n_hat / m.params - 1,
                "loss_opt": m.loss,
                "predicted_loss": l_hat if l_hat is not None else math.nan,
                "rel_error_loss": (l_hat / m.loss - 1) if l_hat else math.nan,
            }
        )
    table = pd.DataFrame(recs)
    return {
        "threshold": threshold,
        "n_train": len(budgets) - len(test),
        "n_test": len(test),
        "table": table,
        "mean_abs_rel": float(np.nanmean(np.abs(table["rel_error_loss"]))),
        "max_abs_rel": float(np.nanmax(np.abs(table["rel_error_loss"]))),
        "mean_abs_rel_params": float(np.mean(np.abs(table["rel_error_params"]))),
    }


def budget_grid(result: FitResult) -> np.ndarray:
    """Budgets for the allocation table: decades from the smallest fitted C to 1e4x the largest."""
    lo, hi = result.ranges["C"]
    return 10.0 ** np.arange(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 5)
