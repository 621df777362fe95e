"""The sections of ``report.md`` that test the fit on runs it did not see: the comparison of laws
by held-out error, the backtest by whole budgets, and the exponent shift under other N and C
conventions (:mod:`.stats` computes them).
"""

from __future__ import annotations

import pandas as pd

from scaling.analysis.fitting.laws import get_law
from scaling.analysis.fitting.misfit import model_error_sd
from scaling.analysis.fitting.results import FitResult
from scaling.analysis.report.cells import md_table, pct, sci
from scaling.analysis.report.stats import (
    CV_FOLDS,
    backtest,
    cold_starts_note,
    compare_laws,
    exponent_shift,
    law_comparison,
    select_law,
)
from scaling.numbers import fmt_g


def comparison_section(final: pd.DataFrame, result: FitResult) -> list[str]:
    cmp_rows = law_comparison(final, result)
    if not cmp_rows:
        return []
    ks = sorted({k for r in cmp_rows for k in r["leave_top"]})
    crow = [
        [
            f"`{r['law']}`",
            f"`{r['equation']}`",
            str(r["n_params"]),
            fmt_g(r["objective"], 4),
            *[pct(r["leave_top"].get(k, {}).get("mean_abs_rel")) for k in ks],
            fmt_g(r["rmse_log"], 3),
            f"{100 * r['mean_abs_rel']:.2f}%",
            f"{100 * r['max_abs_rel']:.2f}%",
        ]
        for r in cmp_rows
    ]
    header = [
        "law",
        "form",
        "params",
        "in-sample objective",
        *[f"top {k} budget{'s' if k > 1 else ''} left out: mean abs. rel. err." for k in ks],
        "CV RMSE (log loss)",
        "CV mean abs. rel. err.",
        "CV max abs. rel. err.",
    ]
    first = cmp_rows[0]
    if ks:
        held = "; ".join(
            f"k = {k}: {first['leave_top'][k]['n_test']} run(s) held out, "
            f"{first['leave_top'][k]['n_train']} fitted"
            for k in ks
        )
        top = (
            f"**Leave top budgets out** (extrapolation): the runs of the k largest compute "
            f"budgets are held out ({held}), the law is refitted on the other budgets and "
            "predicts them. "
        )
    else:
        top = (
            f"**Leave top budgets out** was not possible: {first['budgets']} budget(s) leave "
            "fewer than two to fit after holding one out. "
        )
    text = (
        f"## Law comparison (held-out error)\n\nBudgets are {first['grouped_by']} "
        f"({first['budgets']} budgets). {top}**{CV_FOLDS}-fold cross-validation** over runs "
        "(interpolation): each fold is held out in turn. Every refit starts cold from a thinned "
        f"grid of the law's own starts ({cold_starts_note(result, compare_laws(final))} starts), "
        "never from the fit to all runs, which saw the held-out points.\n\n"
        + md_table(header, crow)
        + "\n"
    )
    best = select_law(cmp_rows)
    if best is not None:
        text += (
            f"\n**Selected for extrapolation: `{best['law']}`**, the least leave-top-budgets-"
            f"out error (mean over k = {', '.join(str(k) for k in ks)}: "
            f"{pct(best['extrapolation'])}).\n"
        )
    else:
        text += "\nNo law selected: no leave-top-budgets-out error could be computed.\n"
    return [text]


def backtest_section(runs: pd.DataFrame, result: FitResult, bt: dict | None = None) -> list[str]:
    bt = bt if bt is not None else backtest(runs, result)
    if bt is None:
        return []
    train_b, test_b = bt["train_budgets"], bt["test_budgets"]
    if "not_backtested" in bt:
        return [
            f"## Backtest\n\n**Not backtested**: {bt['not_backtested']}. Budgets are "
            f"{bt['grouped_by']}; the hold-out: {bt['held_out']}.\n"
        ]
    starts = (
        f" The refit started cold from a thinned grid of {bt['starts']} of the law's starts, "
        "not from the fit to all runs."
        if "starts" in bt
        else ""
    )
    fitted = f" (C = {sci(min(train_b))} … {sci(max(train_b))})" if train_b else ""
    shown = (
        ", ".join(sci(c) for c in test_b)
        if len(test_b) <= 6
        else f"{sci(test_b[0])} … {sci(test_b[-1])}"
    )
    head = (
        f"## Backtest\n\nBudgets are {bt['grouped_by']}. The backtest {bt['held_out']}: "
        f"C = {shown}, held out whole; the other budgets{fitted} were fitted and predict "
        f"them. No budget is on both sides.{starts}\n\n"
    )
    if result.approach == 3:
        tab = bt["table"].tail(15)
        brow = [
            [
                sci(r.flops),
                sci(r.params),
                sci(r.tokens),
                fmt_g(r.loss),
                fmt_g(r.predicted),
                f"{100 * r.rel_error:+.2f}%",
            ]
            for r in tab.itertuples()
        ]
        which = "" if get_law(result.law).inputs == ("N", "D") else " (their frontier)"
        return [
            head + f"{bt['n_train']} runs in {len(train_b)} budgets fitted, {bt['n_test']} "
            f"runs{which} predicted; mean |relative error| {100 * bt['mean_abs_rel']:.2f}%, max "
            f"{100 * bt['max_abs_rel']:.2f}%."
            + (" Largest 15 shown:" if len(bt["table"]) > 15 else "")
            + "\n\n"
            + md_table(["C", "N", "D", "loss", "predicted", "rel. error"], brow)
            + "\n"
        ]
    brow = [
        [
            sci(r.flops),
            sci(r.params_opt),
            sci(r.predicted_params),
            f"{100 * r.rel_error_params:+.1f}%",
            fmt_g(r.loss_opt),
            fmt_g(r.predicted_loss),
            f"{100 * r.rel_error_loss:+.2f}%",
        ]
        for r in bt["table"].itertuples()
    ]
    header = ["C", "N_opt", "predicted", "rel. err.", "loss_opt", "predicted", "rel. err."]
    return [
        head + f"{bt['n_train']} budgets fitted (IsoFLOP refit on their runs only), "
        f"{bt['n_test']} IsoFLOP minima predicted.\n\n" + md_table(header, brow) + "\n"
    ]


def shift_section(final: pd.DataFrame, result: FitResult) -> list[str]:
    shift = exponent_shift(final, result)
    names = {"params": "total `params`", "params_nonembed": "non-embedding `params_nonembed`"}
    cs = {"6ND": "6·N·D", "6N_attn": "6·N·D + attention (`flops_6N_attn`)"}
    rows = [
        [
            names.get(r["params"], f"`{r['params']}`"),
            cs.get(r["flops"], r["flops"]),
            fmt_g(r["a"], 3),
            fmt_g(r["b"], 3),
            f"{sci(r['c_range'][0])} – {sci(r['c_range'][1])}",
            "refitted" if r["refit"] else "the fit's parameters",
        ]
        for r in shift["rows"]
    ]
    text = (
        "## Exponent shift (conventions)\n\nHow the compute-optimal exponents of law "
        f"`{shift['law']}` (`N_opt ∝ C^a`, `D_opt ∝ C^b`) move with the choice of N and of C "
        "on these runs (Pearce & Song 2024; Porian et al. 2024): the slopes of log N_opt and "
        "log D_opt against log C over each row's fitted compute range. A row with another N "
        f"refits the law on that N (cold, {shift['starts']} starts); the attention row keeps "
        "the fit's parameters and finds N_opt numerically along C = FLOPs-per-token(N) · D, "
        "FLOPs per token interpolated log-log over the table's models.\n\n"
        + md_table(["N", "C", "a", "b", "compute range", "law parameters"], rows)
        + "\n"
    )
    if shift["skipped"]:
        text += "\nNot computed: " + "; ".join(shift["skipped"]) + ".\n"
    return [text]


def form_error_section(result: FitResult) -> list[str]:
    """The form's error beyond the data (approach 2: the frontier's, approach 3: the law's), as
    the held-out budgets measured it and as ``predict`` draws it at 3x and 10x beyond."""
    if result.approach == 3:
        misfit, fitted = result.misfit, (result.misfit or {}).get("budgets")
        what = "law"
    else:
        frontier = result.frontier or {}
        misfit, fitted = frontier.get("misfit"), frontier.get("points", {}).get("flops")
        what = "loss frontier"
    if not misfit or not fitted:
        return []
    top = max(fitted)
    rows = [
        [sci(p["fitted_up_to"]), sci(p["flops"]), pct(p["error"]), fmt_g(p["unit_miss"], 3)]
        for p in misfit["points"]
    ]
    beyond = ", ".join(
        f"{k:g}x ({sci(k * top)} FLOPs): {pct(model_error_sd(misfit, fitted, k * top))}"
        for k in (3, 10)
    )
    return [
        "## The form's error beyond the data\n",
        f"The {what}'s form refitted on the lower budgets predicts each held-out one (error: "
        "ln measured − ln predicted; unit miss: what a straight line misses of a unit curvature "
        f"there). Read as a curvature of ln L in ln C: {fmt_g(misfit['curvature'], 3)} ± "
        f"{fmt_g(misfit['curvature_se'], 3)}. Beyond the largest budget `predict` draws a model "
        f"error onto every resample, its sd in log loss at {beyond} (none inside the "
        "budgets).\n",
        md_table(["fitted up to C", "held-out C", "error", "unit miss"], rows) + "\n",
    ]
