"""The statistics a report adds to a fit: held-out errors, a backtest, the exponent shift.

Nothing here lets a held-out run leak into the fit that predicts it:

* **Budgets.** A compute budget is the group of runs that share ``planned_flops`` when every run
  has one, else the runs within ``FitOptions.isoflop_tolerance`` decades of compute (the grouping
  of approach 2, :func:`..fitting.isoflop.budget_labels`); its C is the geometric mean of
  its runs' ``flops``.  Held-out sets are whole budgets: a budget is never on both sides.
* **Cold refits.** Every refit (cross-validation folds, leave-top-budgets-out, the backtest)
  starts from the same thinned grid of the law's own starts
  (:func:`..fitting.approach3.refit_subsets`), never from an optimum of the fit to all
  runs, which saw the held-out points.

Functions:

* :func:`law_comparison`: per law of (N, D) (:func:`compare_laws`: the laws marked
  :attr:`~..fitting.laws.Law.compared`, one with a repetition term only when some run repeats its
  data), the leave-top-budgets-out error (fit all but the
  ``k`` largest budgets, predict their runs; ``k`` = 1 and 2 where enough budgets remain) and the
  k-fold (over runs) cross-validated error; :func:`select_law` names the law with the least
  leave-top-out error, the one aimed at extrapolation.
* :func:`holdout` and :func:`backtest`: hold out the top budgets by rank of compute (the top
  one, the top two from 5 budgets on), fit the rest, predict the held-out ones.
* :func:`exponent_shift`: the allocation exponents ``a`` and ``b`` under total vs non-embedding N
  and under ``C = 6ND`` vs ``C = 6ND + attention``.
* :func:`budget_grid`: the budgets of the allocation table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import replace

import numpy as np
import pandas as pd

from scaling.analysis.columns import columns, epochs, predict_table
from scaling.analysis.fitting.approach3 import fitted_rows, refit_subsets, thinned_starts
from scaling.analysis.fitting.fit import fit
from scaling.analysis.fitting.isoflop import BUDGET_RUNS, PLANNED, budget_labels
from scaling.analysis.fitting.laws import CHINCHILLA, compared_laws, get_law
from scaling.analysis.fitting.results import FitResult
from scaling.analysis.prediction.predict import Predictor
from scaling.analysis.report import HOLDOUT_MANY
from scaling.analysis.table import TOTAL_PARAMS
from scaling.counting import FLOPS_PER_PARAM_TOKEN
from scaling.errors import UserError

Array = np.ndarray

CV_FOLDS = 5
LEAVE_TOP = (1, 2)  # leave the k largest budgets out
LEFT_TO_FIT = 2  # budgets a backtest needs left to fit
GRID_SHARE = 0.25  # share of computes approach 3's backtest holds out of a table without budgets
SHIFT_POINTS = 9  # budgets over the fitted compute range at which N_opt(C) is solved
SHIFT_GRID = 2001  # points of the log N grid N_opt is searched on (then refined by a parabola)
SHIFT_SPAN = math.log(1e3)  # that grid reaches this far (e-folds) beyond the table's sizes


def final_rows(runs: pd.DataFrame, approach: int) -> pd.DataFrame:
    """One row per run: the last point of each curve for approach 1, the table otherwise."""
    if approach == 1 and "run_id" in runs:
        return runs.sort_values(["run_id", "tokens"]).groupby("run_id").tail(1)
    return runs


def budgets(runs: pd.DataFrame, tolerance: float) -> tuple[Array, Array, str]:
    """``(label per run, C of each label, how budgets were formed)``; labels index the C array."""
    C = columns(runs)[2]
    labels, grouped_by = budget_labels(runs, C, tolerance)
    _, labels = np.unique(labels, return_inverse=True)
    logc = np.log(C)
    budget_c = np.exp(np.array([logc[labels == i].mean() for i in range(labels.max() + 1)]))
    how = (
        "runs sharing a `planned_flops`"
        if grouped_by == PLANNED
        else f"runs within {tolerance:g} decades of compute"
    )
    return labels, budget_c, how


def cold_starts_note(result: FitResult, laws: tuple[str, ...]) -> str:
    """How many starts each cold refit used, in words."""
    return ", ".join(f"{len(thinned_starts(get_law(n)))} for `{n}`" for n in dict.fromkeys(laws))


def repeats(runs: pd.DataFrame) -> float | None:
    """The most epochs any run trained when some run repeats its data (``epochs`` > 1), else
    ``None``."""
    ep = epochs(runs)
    if ep is None or not np.any(ep > 1):
        return None
    return float(np.nanmax(ep))


def compare_laws(runs: pd.DataFrame) -> tuple[str, ...]:
    """The laws :func:`law_comparison` refits (:func:`~..fitting.laws.compared_laws`): a law with
    a repetition term only when some run of ``runs`` repeats its data."""
    return compared_laws(repeated_data=repeats(runs) is not None)


def _rel(pred: Array, loss: Array) -> Array:
    return pred / loss - 1


def law_comparison(runs: pd.DataFrame, result: FitResult, folds: int = CV_FOLDS) -> list[dict]:
    """Held-out errors of each law of (N, D) on ``runs`` (one row per run); one dict per law.

    ``leave_top[k]``: refit without the runs of the ``k`` largest budgets, predict those runs
    (``k`` in :data:`LEAVE_TOP` while at least two budgets and more runs than the largest law has
    parameters remain; the same held-out runs for every law).  ``extrapolation``: the mean of
    those errors over ``k``.  ``rmse_log``, ``mean_abs_rel``, ``max_abs_rel``: ``folds``-fold
    cross-validation over runs (seeded).  Every refit starts cold from the law's thinned grid.
    """
    n = len(runs)
    if n < 10:
        return []
    order = np.random.default_rng(result.options.seed).permutation(n)
    fold_of = np.empty(n, dtype=int)
    fold_of[order] = np.arange(n) % folds
    labels, budget_c, how = budgets(runs, result.options.isoflop_tolerance)
    largest = np.argsort(budget_c)[::-1]
    laws = compare_laws(runs)
    most_params = max(get_law(name).n_params for name in laws)
    tops: list[tuple[int, Array]] = []
    for k in LEAVE_TOP:
        held = np.isin(labels, largest[:k])
        if len(budget_c) - k < 2 or int((~held).sum()) <= most_params:
            break
        tops.append((k, held))
    masks = np.array(
        [np.ones(n, dtype=bool)]
        + [fold_of != k for k in range(folds)]
        + [~held for _, held in tops]
    )
    loss = runs["loss"].to_numpy(dtype=float)
    rows = []
    for name in laws:
        law = get_law(name)
        fits = refit_subsets(runs, name, masks, result.options)
        if fits[0] is None:
            continue
        full_params, objective = fits[0]
        if result.approach == 3 and result.law == name and n == result.n_points:
            objective = result.objective
        log_err = np.full(n, np.nan)
        for k in range(folds):
            got = fits[1 + k]
            if got is not None:
                test = fold_of == k
                log_err[test] = np.log(predict_table(law, got[0], runs[test])) - np.log(loss[test])
        leave_top = {}
        for (k, held), got in zip(tops, fits[1 + folds :], strict=True):
            if got is None:
                leave_top[k] = {"n_train": int((~held).sum()), "n_test": int(held.sum())}
                continue
            rel = _rel(predict_table(law, got[0], runs[held]), loss[held])
            leave_top[k] = {
                "n_train": int((~held).sum()),
                "n_test": int(held.sum()),
                "n_budgets": k,
                "mean_abs_rel": float(np.mean(np.abs(rel))),
                "max_abs_rel": float(np.max(np.abs(rel))),
            }
        scores = [v["mean_abs_rel"] for v in leave_top.values() if "mean_abs_rel" in v]
        rel_cv = np.abs(np.expm1(log_err))
        rows.append(
            {
                "law": name,
                "equation": law.equation,
                "n_params": law.n_params,
                "objective": objective,
                "params": full_params,
                "rmse_log": float(np.sqrt(np.nanmean(log_err**2))),
                "mean_abs_rel": float(np.nanmean(rel_cv)),
                "max_abs_rel": float(np.nanmax(rel_cv)),
                "folds": folds,
                "leave_top": leave_top,
                "extrapolation": float(np.mean(scores)) if scores else math.nan,
                "budgets": len(budget_c),
                "grouped_by": how,
            }
        )
    return rows


def select_law(rows: list[dict]) -> dict | None:
    """The row of :func:`law_comparison` with the least leave-top-budgets-out error (None when
    no law could be scored that way)."""
    scored = [r for r in rows if math.isfinite(r.get("extrapolation", math.nan))]
    return min(scored, key=lambda r: r["extrapolation"]) if scored else None


def _budgets(n: int) -> str:
    return f"{n} budget{'' if n == 1 else 's'}"


def holdout(runs: pd.DataFrame, result: FitResult) -> tuple[Array, dict]:
    """Which runs the backtest of ``result`` holds out: whole budgets, by rank of compute.

    ``FitOptions.backtest_holdout`` top budgets when set, else the top one, and the top two from
    :data:`HOLDOUT_MANY` budgets on.  For approach 3, a table whose budgets are not IsoFLOP
    budgets (most hold fewer than :data:`BUDGET_RUNS` runs: a grid where each run has its own
    compute) has each compute for a budget (a run and its seed replicates), and the default
    holds out the top :data:`GRID_SHARE` of them, at least one.  Returns the held-out mask over
    ``runs`` and the record: ``held_out`` (a sentence: what and why), ``grouped_by``,
    ``train_budgets``, ``test_budgets`` and, when fewer than :data:`LEFT_TO_FIT` budgets would
    be left to fit, ``not_backtested`` ("why; what to add").
    """
    labels, budget_c, how = budgets(runs, result.options.isoflop_tolerance)
    chosen = result.options.backtest_holdout
    if result.approach == 3 and np.median(np.bincount(labels)) < BUDGET_RUNS:
        how = (
            f"each compute a budget of its own (a run and its seed replicates): most budgets of "
            f"{how} hold fewer than {BUDGET_RUNS} runs"
        )
        budget_c, labels = np.unique(columns(runs)[2], return_inverse=True)
        default = max(1, math.ceil(GRID_SHARE * len(budget_c)))
        rule = f"the default here: the top {GRID_SHARE:.0%} of them, at least one"
    else:
        default = 2 if len(budget_c) >= HOLDOUT_MANY else 1
        rule = f"the default: the top one, the top two from {HOLDOUT_MANY} budgets on"
    n = len(budget_c)
    k = default if chosen is None else int(chosen)
    if chosen is not None:
        rule = f"--backtest-holdout {chosen}"
    held_b = np.zeros(n, dtype=bool)
    held_b[np.argsort(budget_c)[::-1][:k]] = True
    info: dict = {
        "holdout": k,
        "n_budgets": n,
        "held_out": f"held out the top {min(k, n)} of {_budgets(n)} by compute ({rule})",
        "grouped_by": how,
        "train_budgets": [float(c) for c in np.sort(budget_c[~held_b])],
        "test_budgets": [float(c) for c in np.sort(budget_c[held_b])],
    }
    if n - k < LEFT_TO_FIT:
        need = LEFT_TO_FIT + k - n
        info["not_backtested"] = (
            f"{_budgets(n)} ({how}): holding out the top {k} leaves {max(n - k, 0)} to fit and "
            f"a backtest needs {LEFT_TO_FIT}; add {need} more budget{'s' if need > 1 else ''}"
        )
        if chosen is not None and n > LEFT_TO_FIT:
            info["not_backtested"] += f", or pass --backtest-holdout {n - LEFT_TO_FIT}"
    return held_b[labels], info


def backtest(runs: pd.DataFrame, result: FitResult) -> dict | None:
    """Fit on the budgets that :func:`holdout` keeps and predict the runs (approach 3) or the
    IsoFLOP minima (approach 2) of the budgets it holds out.

    Returns :func:`holdout`'s record with ``n_train``, ``n_test``, ``mean_abs_rel``,
    ``max_abs_rel`` and the table of predictions, or with ``not_backtested`` ("why; what to
    add") when too few budgets are left to fit, the refit failed or nothing held out can be
    predicted; ``None`` for approach 1 (no backtest).
    """
    if result.approach not in (2, 3):
        return None
    final = final_rows(runs, result.approach)
    test, info = holdout(final, result)
    if "not_backtested" in info:
        return info
    if result.approach == 3:
        return _backtest_law(final, result, ~test, info)
    return _backtest_isoflop(final, result, ~test, info)


def _backtest_law(runs: pd.DataFrame, result: FitResult, train: Array, info: dict) -> dict:
    law = get_law(result.law)
    got = refit_subsets(runs, result.law, train[None, :], result.options)[0]
    info["starts"] = len(thinned_starts(law))
    left = f"the {int(train.sum())} run(s) of the {len(info['train_budgets'])} budget(s) left"
    if got is None:
        return {
            **info,
            "not_backtested": f"law {result.law!r} could not be fitted to {left}; add runs to "
            "those budgets or budgets below the held-out ones",
        }
    held = runs[~train]
    if law.inputs != ("N", "D"):  # a law of converged runs predicts the frontier of the test set
        held = held.iloc[fitted_rows(law, *columns(held))]
    if held.empty:
        return {
            **info,
            "not_backtested": f"the held-out budgets have no run on the frontier law "
            f"{result.law!r} predicts; add runs at the largest budgets",
        }
    N, D, C, loss = columns(held)
    pred = predict_table(law, got[0], held)
    rel = _rel(pred, loss)
    table = pd.DataFrame(
        {
            "flops": C,
            "params": N,
            "tokens": D,
            "loss": loss,
            "predicted": pred,
            "rel_error": rel,
        }
    ).sort_values("flops")
    return {
        **info,
        "n_train": int(train.sum()),
        "n_test": len(held),
        "table": table,
        "mean_abs_rel": float(np.mean(np.abs(rel))),
        "max_abs_rel": float(np.max(np.abs(rel))),
    }


def _backtest_isoflop(runs: pd.DataFrame, result: FitResult, train: Array, info: dict) -> dict:
    # a used minimum is held out when its budget (the nearest in log C) is
    logc = np.log(info["train_budgets"] + info["test_budgets"])
    n_train = len(info["train_budgets"])
    test = [
        m
        for m in result.isoflop
        if m.used and int(np.argmin(np.abs(logc - math.log(m.flops)))) >= n_train
    ]
    if not test:
        return {
            **info,
            "not_backtested": "no held-out budget has an interior IsoFLOP minimum to predict; "
            "add sizes around the minima of the largest budgets",
        }
    try:
        f = fit(runs[train], approach=2, options=replace(result.options, bootstrap=0))
    except UserError as err:
        return {
            **info,
            "not_backtested": f"the IsoFLOP fit of the {n_train} budget(s) left failed "
            f"({err}); add budgets, or sizes around their minima",
        }
    # the budgets the refit actually saw (its vertices), for the record
    info["train_budgets"] = [float(m.flops) for m in f.isoflop if m.used]
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
        **info,
        "n_train": len(info["train_budgets"]),
        "n_test": len(test),
        "table": table,
        "mean_abs_rel": float(np.nanmean(np.abs(table["rel_error_loss"]))),
        "max_abs_rel": float(np.nanmax(np.abs(table["rel_error_loss"]))),
        "mean_abs_rel_params": float(np.mean(np.abs(table["rel_error_params"]))),
    }


# ---- exponent shift ---------------------------------------------------------------------------


def per_token_interpolator(N: Array, fpt: Array) -> Callable[[Array], Array]:
    """FLOPs per token as a function of N, piecewise linear in log-log over the table's models
    (the median over runs of one size), extended beyond them along the least-squares log-log line
    through all of them."""
    sizes, inverse = np.unique(N, return_inverse=True)
    logn = np.log(sizes)
    logf = np.log(np.array([np.median(fpt[inverse == i]) for i in range(sizes.size)]))
    slope = float(np.polyfit(logn, logf, 1)[0])

    def f(n: Array) -> Array:
        u = np.log(np.asarray(n, dtype=float))
        inside = np.interp(u, logn, logf)
        below = logf[0] + slope * (u - logn[0])
        above = logf[-1] + slope * (u - logn[-1])
        return np.exp(np.where(u < logn[0], below, np.where(u > logn[-1], above, inside)))

    return f


def optimal_sizes(
    law_name: str,
    params: Mapping[str, float],
    flops: Array,
    per_token: Callable[[Array], Array],
    n_range: tuple[float, float],
) -> Array:
    """``N_opt(C) = argmin_N L(N, C / per_token(N))`` for each budget (NaN at the grid's edge):
    a log-N grid :data:`SHIFT_SPAN` beyond ``n_range`` on each side, refined by a parabola."""
    law = get_law(law_name)
    theta = law.from_params(params)[None, :]
    u = np.linspace(
        math.log(n_range[0]) - SHIFT_SPAN, math.log(n_range[1]) + SHIFT_SPAN, SHIFT_GRID
    )
    log_fpt = np.log(per_token(np.exp(u)))
    out = np.full(len(flops), np.nan)
    for j, c in enumerate(flops):
        v = math.log(c) - log_fpt  # log D
        f, _ = law.log_model(theta, np.stack([u, v]))
        f = np.where(np.isfinite(f[0]) & (v > 0), f[0], np.inf)
        i = int(np.argmin(f))
        if not 0 < i < len(u) - 1 or not np.isfinite(f[i]):
            continue
        denom = f[i - 1] - 2 * f[i] + f[i + 1]
        h = u[1] - u[0]
        shift = 0.5 * h * (f[i - 1] - f[i + 1]) / denom if denom > 0 else 0.0
        out[j] = math.exp(u[i] + float(np.clip(shift, -h, h)))
    return out


def _slopes(
    law_name: str,
    params: Mapping[str, float],
    c_range: tuple[float, float],
    per_token: Callable[[Array], Array],
    n_range: tuple[float, float],
) -> tuple[float, float]:
    """``(a, b)``: least-squares slopes of log N_opt and log D_opt against log C over
    :data:`SHIFT_POINTS` budgets spanning ``c_range``."""
    cs = np.geomspace(c_range[0], c_range[1], SHIFT_POINTS)
    n_opt = optimal_sizes(law_name, params, cs, per_token, n_range)
    ok = np.isfinite(n_opt)
    if ok.sum() < 2 or c_range[1] <= c_range[0]:
        return math.nan, math.nan
    d_opt = cs[ok] / per_token(n_opt[ok])
    a = float(np.polyfit(np.log(cs[ok]), np.log(n_opt[ok]), 1)[0])
    b = float(np.polyfit(np.log(cs[ok]), np.log(d_opt), 1)[0])
    return a, b


def _six_n(n: Array) -> Array:
    return FLOPS_PER_PARAM_TOKEN * np.asarray(n, dtype=float)


def exponent_shift(runs: pd.DataFrame, result: FitResult) -> dict:
    """The allocation exponents ``a`` (``N_opt ∝ C^a``) and ``b`` under other conventions.

    The law is the fit's own when it is a law of (N, D), else ``chinchilla``.  Rows:

    * N = total ``params`` and N = ``params_nonembed``, each with ``C = 6ND``: the law refitted
      with that N (cold, thinned grid; the fit's own parameters for its own N);
    * ``C = 6ND + attention`` (column ``flops_6N_attn``) with the fit's N: the same parameters,
      ``N_opt(C)`` solved numerically along ``C = FLOPs-per-token(N) · D``, FLOPs per token
      interpolated log-log over the table's models.

    ``a`` and ``b`` are slopes of log N_opt and log D_opt against log C over the fitted compute
    range of that convention.  Rows whose columns are missing are listed in ``skipped``.
    """
    own = result.approach == 3 and get_law(result.law).inputs == ("N", "D")
    law_name = result.law if own else CHINCHILLA.name
    fit_n = (result.conventions or {}).get("params", "params")
    D = runs["tokens"].to_numpy(dtype=float)
    loss = runs["loss"].to_numpy(dtype=float)

    def column(name: str) -> Array | None:
        if name == fit_n:
            return runs["params"].to_numpy(dtype=float)
        if name == "params" and TOTAL_PARAMS in runs:
            return runs[TOTAL_PARAMS].to_numpy(dtype=float)
        if name != "params" and name in runs:
            return runs[name].to_numpy(dtype=float)
        return None

    rows: list[dict] = []
    skipped: list[str] = []
    fitted: dict[str, Mapping[str, float]] = {}
    for name in dict.fromkeys((fit_n, "params", "params_nonembed")):
        N = column(name)
        if N is None:
            skipped.append(f"N = `{name}`: the table has no `{name}` column")
            continue
        if own and name == fit_n and len(runs) == result.n_points:
            params, refit = result.params, False
        else:
            table = pd.DataFrame({"params": N, "tokens": D, "loss": loss, "flops": 6 * N * D})
            got = refit_subsets(
                table, law_name, np.ones((1, len(table)), dtype=bool), result.options
            )
            if got[0] is None:
                skipped.append(f"N = `{name}`: law `{law_name}` could not be fitted")
                continue
            params, refit = got[0][0], True
        fitted[name] = params
        n_range = (float(N.min()), float(N.max()))
        c = FLOPS_PER_PARAM_TOKEN * N * D
        a, b = _slopes(law_name, params, (float(c.min()), float(c.max())), _six_n, n_range)
        rows.append(
            {
                "params": name,
                "flops": "6ND",
                "a": a,
                "b": b,
                "c_range": (float(c.min()), float(c.max())),
                "refit": refit,
            }
        )
    attn = "flops_6N_attn"
    if attn not in runs:
        skipped.append(f"C = 6ND + attention: the table has no `{attn}` column")
    elif fit_n in fitted:
        N = runs["params"].to_numpy(dtype=float)
        C = runs[attn].to_numpy(dtype=float)
        per_token = per_token_interpolator(N, C / D)
        if np.unique(N).size < 2:
            skipped.append("C = 6ND + attention: one model size, nothing to interpolate")
        else:
            c_range = (float(C.min()), float(C.max()))
            a, b = _slopes(
                law_name, fitted[fit_n], c_range, per_token, (float(N.min()), float(N.max()))
            )
            rows.append(
                {
                    "params": fit_n,
                    "flops": "6N_attn",
                    "a": a,
                    "b": b,
                    "c_range": c_range,
                    "refit": False,
                }
            )
    starts = len(thinned_starts(get_law(law_name)))
    return {"law": law_name, "rows": rows, "skipped": skipped, "starts": starts}


def budget_grid(result: FitResult) -> np.ndarray:
    """Budgets for the allocation table: decades from the smallest fitted C to 1e4x the largest."""
    lo, hi = result.ranges["C"]
    return 10.0 ** np.arange(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 5)
