"""Reports: ``report.md`` that reads on its own, and the PNG plots it references.

Sections: data summary; fitted law with bootstrap intervals; compute-optimal allocation for a
range of budgets; a comparison of laws by held-out error (k-fold over runs); a backtest (fit the
runs below a compute threshold, predict the larger ones); warnings; method.  Plots: loss vs compute
with the fitted frontier, IsoFLOP curves with parabolas and minima, N_opt and D_opt against C with
interval bands, residuals, bootstrap distributions of the exponents.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from scaling.analysis.allocation import Predictor  # noqa: E402
from scaling.errors import UserError  # noqa: E402
from scaling.analysis.fitting import (  # noqa: E402
    FitOptions,
    FitResult,
    fit,
    fit_law,
    group_budgets,
    isoflop_minima,
)
from scaling.analysis.laws import get_law  # noqa: E402

COMPARE_LAWS = ("chinchilla", "kaplan", "kaplan_e")
CV_FOLDS = 5


def _g(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}g}"


def _sci(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:.3g}"


def _ci(ci: tuple[float, float] | None, fmt=_g) -> str:
    if not ci or any(v is None or not math.isfinite(v) for v in ci):
        return "–"
    return f"[{fmt(ci[0])}, {fmt(ci[1])}]"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _final_rows(runs: pd.DataFrame, approach: int) -> pd.DataFrame:
    if approach == 1 and "run_id" in runs:
        return runs.sort_values(["run_id", "tokens"]).groupby("run_id").tail(1)
    return runs


# --------------------------------------------------------------------------------------------
# Analyses
# --------------------------------------------------------------------------------------------


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
            pred = law.predict(f.params, N=test["params"].to_numpy(), D=test["tokens"].to_numpy())
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
    final = _final_rows(runs, result.approach)
    C = final["flops"].to_numpy()
    threshold = float(np.quantile(C, quantile))
    if result.approach == 3:
        train = runs[runs["flops"] <= threshold]
        test = runs[runs["flops"] > threshold]
        if len(test) == 0:
            return None
        try:
            f = fit_law(train, result.law, _quick(result.options, result, result.law))
        except UserError as err:
            return {"threshold": threshold, "error": str(err)}
        law = get_law(result.law)
        given = {
            "N": test["params"].to_numpy(),
            "D": test["tokens"].to_numpy(),
            "C": test["flops"].to_numpy(),
        }
        pred = law.predict(f.params, **{k: given[k] for k in law.inputs})
        rel = pred / test["loss"].to_numpy() - 1
        table = pd.DataFrame(
            {
                "flops": test["flops"].to_numpy(),
                "params": given["N"],
                "tokens": given["D"],
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
    if result.approach == 2:
        budgets = [m for m in result.isoflop if m.used]
        test = [m for m in budgets if m.flops > threshold]
        if not test or len(budgets) - len(test) < 2:
            return None
        train = runs[runs["flops"] <= threshold * 10**result.options.isoflop_tolerance]
        try:
            f = fit(train, approach=2, options=replace(result.options, bootstrap=0))
        except UserError as err:
            return {"threshold": threshold, "error": str(err)}
        p = Predictor(f.to_dict())
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
    return None


def budget_grid(result: FitResult) -> np.ndarray:
    """Budgets for the allocation table: decades from the smallest fitted C to 1e4x the largest."""
    lo, hi = result.ranges["C"]
    return 10.0 ** np.arange(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 5)


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------


def _style() -> None:
    plt.rcParams.update(
        {
            "figure.dpi": 120,
            "font.size": 10,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    )


def _frontier_band(
    p: Predictor, Cs: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    mid, lo, hi = [], [], []
    for c in Cs:
        if p.has_allocation:
            pred = p.at_budget(float(c))
            mid.append(pred.loss if pred.loss is not None else np.nan)
            ci = pred.loss_ci
        else:
            mid.append(p._loss_at_budget(float(c)))
            ci = None
        lo.append(ci[0] if ci else np.nan)
        hi.append(ci[1] if ci else np.nan)
    lo_a, hi_a = np.array(lo), np.array(hi)
    if np.isnan(lo_a).all():
        return np.array(mid), None, None
    return np.array(mid), lo_a, hi_a


def plot_loss_vs_compute(runs: pd.DataFrame, result: FitResult, p: Predictor, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    final = _final_rows(runs, result.approach)
    if result.approach == 1:
        for _, g in runs.groupby("run_id"):
            ax.plot(g["flops"], g["loss"], color="0.75", lw=0.8, zorder=1)
    sc = ax.scatter(
        final["flops"],
        final["loss"],
        c=np.log10(final["params"]),
        cmap="viridis",
        s=16,
        zorder=2,
        label="runs",
    )
    cb = fig.colorbar(sc, ax=ax)
    cb.set_label("log10 parameters N")
    lo, hi = result.ranges["C"]
    Cs = np.geomspace(lo / 2, hi * 30, 60)
    mid, blo, bhi = _frontier_band(p, Cs)
    if np.isfinite(mid).any():
        ax.plot(Cs, mid, color="C3", lw=2, label="fitted compute-optimal frontier", zorder=3)
        if blo is not None:
            ax.fill_between(
                Cs, blo, bhi, color="C3", alpha=0.2, lw=0, label=f"{p.level:.0%} bootstrap interval"
            )
    ax.axvline(hi, color="0.4", ls=":", lw=1)
    ax.text(hi, ax.get_ylim()[1], " largest fitted C", va="top", fontsize=8, color="0.3")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("compute C (FLOPs)")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title("Loss vs compute")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_isoflop(runs: pd.DataFrame, result: FitResult, path: Path) -> bool:
    if result.approach == 1:
        return False
    N, C, L = (runs[c].to_numpy(dtype=float) for c in ("params", "flops", "loss"))
    labels = group_budgets(C, result.options.isoflop_tolerance)
    minima = list(result.isoflop) or isoflop_minima(N, C, L, labels)
    minima = [m for m in minima if math.isfinite(m.coeffs[0])]
    if len(minima) < 2:
        return False
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    cmap = plt.get_cmap("plasma")
    cs = np.log10([m.flops for m in minima])
    span = max(cs.max() - cs.min(), 1e-9)
    for m in minima:
        color = cmap(0.85 * (math.log10(m.flops) - cs.min()) / span)
        lab = np.argmin(np.abs(np.log10(C) - math.log10(m.flops)))
        sel = labels == labels[lab]
        ax.scatter(N[sel], L[sel], color=color, s=14)
        u = np.linspace(math.log(m.params_range[0]) - 0.2, math.log(m.params_range[1]) + 0.2, 100)
        c2, c1, c0 = m.coeffs
        ax.plot(np.exp(u), c2 * u**2 + c1 * u + c0, color=color, lw=1.2, label=f"C={m.flops:.2g}")
        if math.isfinite(m.params):
            ax.scatter(
                [m.params], [m.loss], marker="*", s=120, color=color, edgecolor="k", zorder=4
            )
    ax.set_xscale("log")
    ax.set_xlabel("parameters N")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title("IsoFLOP curves, parabola fits in log N, minima (stars)")
    ax.legend(fontsize=7, ncol=2, title="budget (FLOPs)", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def plot_allocation(result: FitResult, p: Predictor, path: Path) -> bool:
    if not p.has_allocation:
        return False
    lo, hi = result.ranges["C"]
    Cs = np.geomspace(lo / 2, hi * 1e4, 40)
    preds = [p.at_budget(float(c)) for c in Cs]
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 4.0))
    for ax, key, label in (
        (axes[0], "params", "N_opt (parameters)"),
        (axes[1], "tokens", "D_opt (tokens)"),
    ):
        mid = np.array([getattr(q, key) for q in preds], dtype=float)
        slope = result.exponents.get("a" if key == "params" else "b", float("nan"))
        ax.plot(
            Cs,
            mid,
            color="C0",
            lw=2,
            label=f"fit (slope {slope:.3f})",
        )
        cis = [getattr(q, f"{key}_ci") for q in preds]
        if all(ci is not None for ci in cis):
            ax.fill_between(
                Cs,
                [c[0] for c in cis],
                [c[1] for c in cis],
                color="C0",
                alpha=0.2,
                lw=0,
                label=f"{p.level:.0%} interval",
            )
        used = [m for m in result.isoflop if m.used]
        if used:
            ax.scatter(
                [m.flops for m in used],
                [getattr(m, key) for m in used],
                color="C3",
                zorder=3,
                s=20,
                label="IsoFLOP minima",
            )
        ax.axvspan(lo, hi, color="0.85", alpha=0.35, lw=0, zorder=0, label="fitted compute range")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("compute C (FLOPs)")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    fig.suptitle("Compute-optimal allocation")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def plot_residuals(runs: pd.DataFrame, result: FitResult, path: Path) -> bool:
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    if result.approach == 3:
        law = get_law(result.law)
        final = runs
        given = {
            "N": final["params"].to_numpy(),
            "D": final["tokens"].to_numpy(),
            "C": final["flops"].to_numpy(),
        }
        pred = law.predict(result.params, **{k: given[k] for k in law.inputs})
        resid = 100 * (final["loss"].to_numpy() / pred - 1)
        sc = ax.scatter(given["C"], resid, c=np.log10(given["N"]), cmap="viridis", s=16)
        fig.colorbar(sc, ax=ax).set_label("log10 parameters N")
        ax.set_ylabel("observed / predicted - 1 (%)")
        ax.set_title(f"Residuals of the {result.law} fit")
    else:
        pts = [m for m in result.isoflop if m.used] if result.isoflop else []
        if not pts:
            plt.close(fig)
            return False
        Cs = np.array([m.flops for m in pts])
        Ns = np.array([m.params for m in pts])
        fitted = result.allocation["N_coef"] * Cs ** result.allocation["a"]
        ax.scatter(Cs, 100 * (Ns / fitted - 1), color="C0", s=20)
        ax.set_ylabel("N_opt observed / power law - 1 (%)")
        ax.set_title("Residuals of the N_opt power law")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("compute C (FLOPs)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def plot_bootstrap(result: FitResult, path: Path) -> bool:
    if result.bootstrap is None:
        return False
    names = [
        k
        for k in ("a", "b", "alpha", "beta", "alpha_N", "alpha_D")
        if k in result.bootstrap.samples
    ]
    if not names:
        return False
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        values = result.bootstrap.samples[name]
        values = values[np.isfinite(values)]
        ax.hist(values, bins=40, color="C0", alpha=0.8)
        lo, hi = result.bootstrap.interval(name)
        point = result.exponents.get(name, result.params.get(name))
        for v in (lo, hi):
            ax.axvline(v, color="k", ls="--", lw=0.8)
        if point is not None:
            ax.axvline(point, color="C3", lw=1.5)
        ax.set_title(f"{name} = {_g(point, 3)}  [{_g(lo, 3)}, {_g(hi, 3)}]", fontsize=9)
        ax.set_yticks([])
    fig.suptitle(
        f"Bootstrap distributions ({result.bootstrap.n_resamples} resamples, "
        f"{result.bootstrap.level:.0%} intervals dashed)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------


def write_report(
    result: FitResult,
    runs: pd.DataFrame,
    out_dir: Path,
    *,
    source: str = "runs.csv",
    backtest_quantile: float = 0.75,
) -> Path:
    """Render ``report.md`` and its plots into ``out_dir``; returns the report path."""
    _style()
    out_dir = Path(out_dir)
    p = Predictor(result.to_dict())
    plots: list[tuple[str, str]] = []
    plot_loss_vs_compute(runs, result, p, out_dir / "loss_vs_compute.png")
    plots.append(
        (
            "loss_vs_compute.png",
            "Loss against compute; the line is the fitted compute-optimal frontier.",
        )
    )
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

    final = _final_rows(runs, result.approach)
    parts: list[str] = []
    title = f"approach {result.approach}" + (
        f", law `{result.law}`" if result.approach == 3 else ""
    )
    parts.append(f"# Scaling-law fit ({title})\n")
    parts.append(f"Source: `{source}`.\n")

    # Data summary
    C = final["flops"].to_numpy()
    tpp = final["tokens"].to_numpy() / final["params"].to_numpy()
    rows = [
        [
            "runs",
            f"{len(final):,}" + (f" ({len(runs):,} curve points)" if result.approach == 1 else ""),
        ],
        ["distinct model sizes", f"{final['params'].nunique():,}"],
        ["parameters N", f"{_sci(final['params'].min())} – {_sci(final['params'].max())}"],
        ["tokens D", f"{_sci(final['tokens'].min())} – {_sci(final['tokens'].max())}"],
        ["compute C (FLOPs)", f"{_sci(C.min())} – {_sci(C.max())}"],
        ["tokens per parameter", f"{_sci(tpp.min())} – {_sci(tpp.max())}"],
        ["loss (nats/token)", f"{_g(final['loss'].min())} – {_g(final['loss'].max())}"],
    ]
    parts.append("## Data\n\n" + _table(["", "value"], rows) + "\n")
    if result.isoflop:
        brows = [
            [
                _sci(m.flops),
                str(m.n_runs),
                f"{_sci(m.params_range[0])} – {_sci(m.params_range[1])}",
                _sci(m.params),
                _g(m.loss),
                "yes" if m.used else "no",
                "edge" if m.at_edge else "",
            ]
            for m in result.isoflop
        ]
        parts.append(
            "IsoFLOP budgets (parabola in log N per budget):\n\n"
            + _table(
                [
                    "C (FLOPs)",
                    "runs",
                    "N sampled",
                    "N at minimum",
                    "loss at minimum",
                    "used",
                    "note",
                ],
                brows,
            )
            + "\n"
        )

    # Fitted law
    ci = result.ci
    level = f"{result.options.level:.0%}"
    boot_note = (
        f"{result.bootstrap.n_resamples} bootstrap resamples over runs, seed "
        f"{result.bootstrap.seed}"
        if result.bootstrap
        else "no bootstrap (--bootstrap 0)"
    )
    if result.approach == 3:
        law = get_law(result.law)
        prow = [[f"`{k}`", _g(v, 5), _ci(ci.get(k))] for k, v in result.params.items()]
        parts.append(
            f"## Fitted law\n\n`{law.equation}` ({law.citation}).\n\n"
            + _table(["parameter", "estimate", f"{level} interval"], prow)
            + f"\n\nIntervals: {boot_note}. Objective (summed Huber, delta "
            f"{result.options.huber_delta:g}, on log loss): {_g(result.objective, 6)} "
            "at the best of "
            f"{result.convergence.n_starts:,} starts; converged: "
            f"{'yes' if result.convergence.converged else 'NO'} ({result.convergence.message}); "
            f"parameters on a bound: {', '.join(result.convergence.on_bounds) or 'none'}.\n"
        )
    else:
        fr = result.frontier
        text = (
            f"## Fitted power laws\n\n`N_opt = {_g(result.allocation['N_coef'])} C^"
            f"{_g(result.allocation['a'])}`, `D_opt = {_g(result.allocation['D_coef'])} C^"
            f"{_g(result.allocation['b'])}` (least squares in log space over "
            f"{'budget minima' if result.approach == 2 else 'envelope points'})."
        )
        if fr:
            pr = ", ".join(f"{k} = {_g(v)}" for k, v in fr["params"].items())
            text += f" Loss frontier `{fr['equation']}`: {pr}."
        parts.append(text + f" Intervals: {boot_note}.\n")

    # Allocation
    if result.exponents:
        erows = [[f"`{k}`", _g(v), _ci(ci.get(k))] for k, v in result.exponents.items()]
        parts.append(
            "## Compute-optimal allocation\n\n`N_opt ∝ C^a`, `D_opt ∝ C^b`, C = 6ND.\n\n"
            + _table(["exponent", "estimate", f"{level} interval"], erows)
            + "\n"
        )
        arows = []
        c_max = result.ranges["C"][1]
        for c in budget_grid(result):
            q = p.at_budget(float(c))
            arows.append(
                [
                    _sci(c),
                    f"{_sci(q.params)} {_ci(q.params_ci, _sci)}",
                    f"{_sci(q.tokens)} {_ci(q.tokens_ci, _sci)}",
                    _g(q.tokens_per_param, 3),
                    f"{_g(q.loss)} {_ci(q.loss_ci)}",
                    f"{c / c_max:.2g}×",
                ]
            )
        parts.append(
            _table(["C (FLOPs)", "N_opt", "D_opt", "D/N", "loss", "C / largest fitted"], arows)
            + "\n\nBudgets beyond about 10× the largest fitted compute are "
            "extrapolations; their intervals reflect the fit's statistical uncertainty "
            "only, not model misspecification.\n"
        )

    # Law comparison
    cmp_rows = law_comparison(final, result)
    if cmp_rows:
        crow = [
            [
                f"`{r['law']}`",
                f"`{r['equation']}`",
                str(r["n_params"]),
                _g(r["objective"], 4),
                _g(r["rmse_log"], 3),
                f"{100 * r['mean_abs_rel']:.2f}%",
                f"{100 * r['max_abs_rel']:.2f}%",
            ]
            for r in cmp_rows
        ]
        parts.append(
            f"## Law comparison (held-out error)\n\n{CV_FOLDS}-fold cross-validation over "
            "runs: each law is refitted without one fold and predicts its losses.\n\n"
            + _table(
                [
                    "law",
                    "form",
                    "params",
                    "in-sample objective",
                    "held-out RMSE (log loss)",
                    "mean abs. rel. err.",
                    "max abs. rel. err.",
                ],
                crow,
            )
            + "\n"
        )

    # Backtest
    bt = backtest(runs, result, backtest_quantile)
    if bt is not None:
        head = (
            f"## Backtest\n\nFitted on runs with C ≤ {_sci(bt['threshold'])} FLOPs (the "
            f"{backtest_quantile:.0%} compute quantile), predicting the larger ones.\n\n"
        )
        if "error" in bt:
            parts.append(head + f"The backtest fit failed: {bt['error']}\n")
        elif result.approach == 3:
            tab = bt["table"].tail(15)
            brow = [
                [
                    _sci(r.flops),
                    _sci(r.params),
                    _sci(r.tokens),
                    _g(r.loss),
                    _g(r.predicted),
                    f"{100 * r.rel_error:+.2f}%",
                ]
                for r in tab.itertuples()
            ]
            parts.append(
                head + f"{bt['n_train']} runs fitted, {bt['n_test']} predicted; mean "
                f"|relative error| {100 * bt['mean_abs_rel']:.2f}%, max "
                f"{100 * bt['max_abs_rel']:.2f}%."
                + (" Largest 15 shown:" if len(bt["table"]) > 15 else "")
                + "\n\n"
                + _table(["C", "N", "D", "loss", "predicted", "rel. error"], brow)
                + "\n"
            )
        else:
            brow = [
                [
                    _sci(r.flops),
                    _sci(r.params_opt),
                    _sci(r.predicted_params),
                    f"{100 * r.rel_error_params:+.1f}%",
                    _g(r.loss_opt),
                    _g(r.predicted_loss),
                    f"{100 * r.rel_error_loss:+.2f}%",
                ]
                for r in bt["table"].itertuples()
            ]
            parts.append(
                head
                + f"{bt['n_train']} budgets fitted, {bt['n_test']} predicted.\n\n"
                + _table(
                    ["C", "N_opt", "predicted", "rel. err.", "loss_opt", "predicted", "rel. err."],
                    brow,
                )
                + "\n"
            )

    if result.warnings:
        parts.append("## Warnings\n\n" + "\n".join(f"- {w}" for w in result.warnings) + "\n")
    else:
        parts.append(
            "## Warnings\n\nNone: the optimiser converged, no parameter is on a bound, "
            "and the allocation's tokens per parameter are in a plausible range.\n"
        )

    parts.append(
        "## Plots\n\n" + "\n\n".join(f"![{cap}]({name})\n\n*{cap}*" for name, cap in plots) + "\n"
    )
    parts.append(_method_text(result))
    path = out_dir / "report.md"
    path.write_text("\n".join(parts))
    return path


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
