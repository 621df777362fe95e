"""The report's figures (PNG): loss vs compute with the fitted frontier, IsoFLOP curves with
their parabolas and minima, N_opt and D_opt against C with interval bands, residuals, bootstrap
distributions of the exponents.  Each ``plot_*`` returns False when it does not apply.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from scaling.analysis.columns import predict_table  # noqa: E402
from scaling.analysis.fitting.isoflop import budget_labels, isoflop_minima  # noqa: E402
from scaling.analysis.fitting.laws import get_law  # noqa: E402
from scaling.analysis.fitting.results import FitResult  # noqa: E402
from scaling.analysis.prediction.predict import Predictor  # noqa: E402
from scaling.analysis.report.stats import final_rows  # noqa: E402
from scaling.numbers import fmt_g  # noqa: E402


def style() -> None:
    """The report's matplotlib style (set once before drawing)."""
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
            mid.append(p.loss_at_budget(float(c)))
            ci = None
        lo.append(ci[0] if ci else np.nan)
        hi.append(ci[1] if ci else np.nan)
    lo_a, hi_a = np.array(lo), np.array(hi)
    if np.isnan(lo_a).all():
        return np.array(mid), None, None
    return np.array(mid), lo_a, hi_a


def plot_loss_vs_compute(runs: pd.DataFrame, result: FitResult, p: Predictor, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    final = final_rows(runs, result.approach)
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
    labels, _ = budget_labels(runs, C, result.options.isoflop_tolerance)  # as the fit grouped
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
        pred = predict_table(get_law(result.law), result.params, runs)
        resid = 100 * (runs["loss"].to_numpy() / pred - 1)
        C, N = runs["flops"].to_numpy(), runs["params"].to_numpy()
        sc = ax.scatter(C, resid, c=np.log10(N), cmap="viridis", s=16)
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
        ax.set_title(f"{name} = {fmt_g(point, 3)}  [{fmt_g(lo, 3)}, {fmt_g(hi, 3)}]", fontsize=9)
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
