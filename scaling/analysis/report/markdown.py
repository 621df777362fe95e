"""``report.md``: a document that reads on its own.

Sections: data summary; fitted law with bootstrap intervals; compute-optimal allocation for a
range of budgets; a comparison of laws by held-out error; a backtest; warnings; plots; method.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from scaling.analysis.laws import get_law
from scaling.analysis.numbers import fmt_g
from scaling.analysis.predict import Predictor
from scaling.analysis.report import BACKTEST_QUANTILE
from scaling.analysis.report.plots import (
    plot_allocation,
    plot_bootstrap,
    plot_isoflop,
    plot_loss_vs_compute,
    plot_residuals,
    style,
)
from scaling.analysis.report.stats import (
    CV_FOLDS,
    backtest,
    budget_grid,
    final_rows,
    law_comparison,
)
from scaling.analysis.results import FitResult


def _sci(x: float | None) -> str:
    return fmt_g(x, 3)


def _ci(ci: tuple[float, float] | None, fmt: Callable[[float | None], str] = fmt_g) -> str:
    if not ci or any(v is None or not math.isfinite(v) for v in ci):
        return "–"
    return f"[{fmt(ci[0])}, {fmt(ci[1])}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def write_report(
    result: FitResult,
    runs: pd.DataFrame,
    out_dir: Path,
    *,
    source: str = "runs.csv",
    backtest_quantile: float = BACKTEST_QUANTILE,
) -> Path:
    """Render ``report.md`` and its plots into ``out_dir``; returns the report path."""
    out_dir = Path(out_dir)
    p = Predictor(result)
    plots = _draw(runs, result, p, out_dir)
    final = final_rows(runs, result.approach)
    title = f"approach {result.approach}" + (
        f", law `{result.law}`" if result.approach == 3 else ""
    )
    parts = [f"# Scaling-law fit ({title})\n", f"Source: `{source}`.\n"]
    parts += _data_section(runs, final, result)
    parts.append(_law_section(result))
    if result.exponents:
        parts += _allocation_section(result, p)
    parts += _comparison_section(final, result)
    parts += _backtest_section(runs, result, backtest_quantile)
    parts.append(_warnings_section(result))
    parts.append(
        "## Plots\n\n" + "\n\n".join(f"![{cap}]({name})\n\n*{cap}*" for name, cap in plots) + "\n"
    )
    parts.append(_method_text(result))
    path = out_dir / "report.md"
    path.write_text("\n".join(parts))
    return path


def _draw(runs: pd.DataFrame, result: FitResult, p: Predictor, out_dir: Path) -> list[tuple]:
    """Draw the plots that apply; ``(file name, caption)`` of each."""
    style()
    plot_loss_vs_compute(runs, result, p, out_dir / "loss_vs_compute.png")
    plots = [
        (
            "loss_vs_compute.png",
            "Loss against compute; the line is the fitted compute-optimal frontier.",
        )
    ]
    if plot_isoflop(runs, result, out_dir / "isoflop.png"):
        plots.append(
            (
                "isoflop.png",
                "IsoFLOP curves: loss against N per budget, parabola fits "
                "in log N and their minima.",
            )
        )
    if plot_allocation(result, p, out_dir / "allocation.png"):
        plots.append(("allocation.png", "Compute-optimal N and D against C with interval bands."))
    if plot_residuals(runs, result, out_dir / "residuals.png"):
        plots.append(("residuals.png", "Residuals of the fit."))
    if plot_bootstrap(result, out_dir / "bootstrap.png"):
        plots.append(("bootstrap.png", "Bootstrap distributions of the exponents."))
    return plots


def _data_section(runs: pd.DataFrame, final: pd.DataFrame, result: FitResult) -> list[str]:
    C = final["flops"].to_numpy()
    tpp = final["tokens"].to_numpy() / final["params"].to_numpy()
    curve_points = f" ({len(runs):,} curve points)" if result.approach == 1 else ""
    rows = [
        ["runs", f"{len(final):,}" + curve_points],
        ["distinct model sizes", f"{final['params'].nunique():,}"],
        ["parameters N", f"{_sci(final['params'].min())} – {_sci(final['params'].max())}"],
        ["tokens D", f"{_sci(final['tokens'].min())} – {_sci(final['tokens'].max())}"],
        ["compute C (FLOPs)", f"{_sci(C.min())} – {_sci(C.max())}"],
        ["tokens per parameter", f"{_sci(tpp.min())} – {_sci(tpp.max())}"],
        ["loss (nats/token)", f"{fmt_g(final['loss'].min())} – {fmt_g(final['loss'].max())}"],
    ]
    out = ["## Data\n\n" + _table(["", "value"], rows) + "\n"]
    if result.isoflop:
        brows = [
            [
                _sci(m.flops),
                str(m.n_runs),
                f"{_sci(m.params_range[0])} – {_sci(m.params_range[1])}",
                _sci(m.params),
                fmt_g(m.loss),
                "yes" if m.used else "no",
                "edge" if m.at_edge else "",
            ]
            for m in result.isoflop
        ]
        header = ["C (FLOPs)", "runs", "N sampled", "N at minimum", "loss at minimum", "used"]
        out.append(
            "IsoFLOP budgets (parabola in log N per budget):\n\n"
            + _table([*header, "note"], brows)
            + "\n"
        )
    return out


def _boot_note(result: FitResult) -> str:
    if result.bootstrap:
        return (
            f"{result.bootstrap.n_resamples} bootstrap resamples over runs, seed "
            f"{result.bootstrap.seed}"
        )
    return "no bootstrap (--bootstrap 0)"


def _law_section(result: FitResult) -> str:
    ci = result.ci
    level = f"{result.options.level:.0%}"
    if result.approach == 3:
        law = get_law(result.law)
        conv = result.convergence
        prow = [[f"`{k}`", fmt_g(v, 5), _ci(ci.get(k))] for k, v in result.params.items()]
        return (
            f"## Fitted law\n\n`{law.equation}` ({law.citation}).\n\n"
            + _table(["parameter", "estimate", f"{level} interval"], prow)
            + f"\n\nIntervals: {_boot_note(result)}. Objective (summed Huber, delta "
            f"{result.options.huber_delta:g}, on log loss): {fmt_g(result.objective, 6)} "
            "at the best of "
            f"{conv.n_starts:,} starts; converged: "
            f"{'yes' if conv.converged else 'NO'} ({conv.message}); "
            f"parameters on a bound: {', '.join(conv.on_bounds) or 'none'}.\n"
        )
    fr = result.frontier
    alloc = result.allocation
    text = (
        f"## Fitted power laws\n\n`N_opt = {fmt_g(alloc['N_coef'])} C^"
        f"{fmt_g(alloc['a'])}`, `D_opt = {fmt_g(alloc['D_coef'])} C^"
        f"{fmt_g(alloc['b'])}` (least squares in log space over "
        f"{'budget minima' if result.approach == 2 else 'envelope points'})."
    )
    if fr:
        pr = ", ".join(f"{k} = {fmt_g(v)}" for k, v in fr["params"].items())
        text += f" Loss frontier `{fr['equation']}`: {pr}."
    return text + f" Intervals: {_boot_note(result)}.\n"


def _allocation_section(result: FitResult, p: Predictor) -> list[str]:
    ci = result.ci
    level = f"{result.options.level:.0%}"
    erows = [[f"`{k}`", fmt_g(v), _ci(ci.get(k))] for k, v in result.exponents.items()]
    arows = []
    c_max = result.ranges["C"][1]
    for c in budget_grid(result):
        q = p.at_budget(float(c))
        arows.append(
            [
                _sci(c),
                f"{_sci(q.params)} {_ci(q.params_ci, _sci)}",
                f"{_sci(q.tokens)} {_ci(q.tokens_ci, _sci)}",
                fmt_g(q.tokens_per_param, 3),
                f"{fmt_g(q.loss)} {_ci(q.loss_ci)}",
                f"{c / c_max:.2g}×",
            ]
        )
    return [
        "## Compute-optimal allocation\n\n`N_opt ∝ C^a`, `D_opt ∝ C^b`, C = 6ND.\n\n"
        + _table(["exponent", "estimate", f"{level} interval"], erows)
        + "\n",
        _table(["C (FLOPs)", "N_opt", "D_opt", "D/N", "loss", "C / largest fitted"], arows)
        + "\n\nBudgets beyond about 10× the largest fitted compute are "
        "extrapolations; their intervals reflect the fit's statistical uncertainty "
        "only, not model misspecification.\n",
    ]


def _comparison_section(final: pd.DataFrame, result: FitResult) -> list[str]:
    cmp_rows = law_comparison(final, result)
    if not cmp_rows:
        return []
    crow = [
        [
            f"`{r['law']}`",
            f"`{r['equation']}`",
            str(r["n_params"]),
            fmt_g(r["objective"], 4),
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
        "held-out RMSE (log loss)",
        "mean abs. rel. err.",
        "max abs. rel. err.",
    ]
    return [
        f"## Law comparison (held-out error)\n\n{CV_FOLDS}-fold cross-validation over "
        "runs: each law is refitted without one fold and predicts its losses.\n\n"
        + _table(header, crow)
        + "\n"
    ]


def _backtest_section(runs: pd.DataFrame, result: FitResult, quantile: float) -> list[str]:
    bt = backtest(runs, result, quantile)
    if bt is None:
        return []
    head = (
        f"## Backtest\n\nFitted on runs with C ≤ {_sci(bt['threshold'])} FLOPs (the "
        f"{quantile:.0%} compute quantile), predicting the larger ones.\n\n"
    )
    if "error" in bt:
        return [head + f"The backtest fit failed: {bt['error']}\n"]
    if result.approach == 3:
        tab = bt["table"].tail(15)
        brow = [
            [
                _sci(r.flops),
                _sci(r.params),
                _sci(r.tokens),
                fmt_g(r.loss),
                fmt_g(r.predicted),
                f"{100 * r.rel_error:+.2f}%",
            ]
            for r in tab.itertuples()
        ]
        return [
            head + f"{bt['n_train']} runs fitted, {bt['n_test']} predicted; mean "
            f"|relative error| {100 * bt['mean_abs_rel']:.2f}%, max "
            f"{100 * bt['max_abs_rel']:.2f}%."
            + (" Largest 15 shown:" if len(bt["table"]) > 15 else "")
            + "\n\n"
            + _table(["C", "N", "D", "loss", "predicted", "rel. error"], brow)
            + "\n"
        ]
    brow = [
        [
            _sci(r.flops),
            _sci(r.params_opt),
            _sci(r.predicted_params),
            f"{100 * r.rel_error_params:+.1f}%",
            fmt_g(r.loss_opt),
            fmt_g(r.predicted_loss),
            f"{100 * r.rel_error_loss:+.2f}%",
        ]
        for r in bt["table"].itertuples()
    ]
    header = ["C", "N_opt", "predicted", "rel. err.", "loss_opt", "predicted", "rel. err."]
    return [
        head
        + f"{bt['n_train']} budgets fitted, {bt['n_test']} predicted.\n\n"
        + _table(header, brow)
        + "\n"
    ]


def _warnings_section(result: FitResult) -> str:
    if result.warnings:
        return "## Warnings\n\n" + "\n".join(f"- {w}" for w in result.warnings) + "\n"
    return (
        "## Warnings\n\nNone: the optimiser converged, no parameter is on a bound, "
        "and the allocation's tokens per parameter are in a plausible range.\n"
    )


def _method_text(result: FitResult) -> str:
    if result.approach == 3:
        how = (
            "The law was fitted in log space by minimising the Huber loss (delta "
            f"{result.options.huber_delta:g}) of log-residuals, summed over runs, from a grid of "
            "starting points (Hoffmann et al. 2022, App. D.2; Besiroglu et al. 2024). All starts "
            "run together in a batched L-BFGS with analytic gradients; the best distinct optima "
            "are polished with scipy's L-BFGS-B."
        )
    elif result.approach == 2:
        how = (
            "Runs were grouped into compute budgets; per budget a parabola of loss against "
            "log N gives the optimal size (Hoffmann et al. 2022, approach 2). Budgets whose "
            "minimum lies outside the sampled sizes were left out. Power laws in C were fitted "
            "by least squares in log space."
        )
    else:
        how = (
            "At each FLOP count the run with the least loss defines the envelope (Hoffmann et "
            "al. 2022, approach 1); power laws in C were fitted by least squares in log space."
        )
    boot = (
        "Intervals are percentile intervals over a bootstrap that resamples runs with "
        "replacement and refits"
        + (" (resampling within each budget)" if result.approach == 2 else "")
        + "."
        if result.bootstrap
        else "No bootstrap was run."
    )
    return f"## Method\n\n{how} {boot} Compute is C = 6ND unless the table gives `flops`.\n"
