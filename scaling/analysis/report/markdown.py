"""``report.md``: a document that reads on its own.

Sections: the health verdict; data summary (with the N and C conventions of the fit); fitted law
with bootstrap intervals; compute-optimal allocation for a range of budgets
(:mod:`.fit_sections`); a comparison of laws by held-out error (leave-top-budgets-out and
cross-validation) naming the law selected for extrapolation; a backtest by whole budgets; the
exponent shift under other N and C conventions (:mod:`.heldout_sections`); the verifications of
the fit (here); warnings; the runs that spiked, skipped, rolled back or diverged
(:mod:`.spikes_section`); suspect runs; plots (the training curves with their spikes marked,
:mod:`.curves_plot`, when a curves table is given); method (:mod:`.method`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from scaling.analysis.fitting.results import FitResult
from scaling.analysis.prediction.predict import Predictor
from scaling.analysis.report.cells import interval, md_table, sci
from scaling.analysis.report.curves_plot import CAPTION as CURVES_CAPTION
from scaling.analysis.report.curves_plot import plot_training_curves
from scaling.analysis.report.fit_sections import (
    allocation_section,
    data_section,
    health_section,
    law_section,
    suspects_section,
    warnings_section,
)
from scaling.analysis.report.heldout_sections import (
    backtest_section,
    comparison_section,
    form_error_section,
    shift_section,
)
from scaling.analysis.report.method import method_text
from scaling.analysis.report.plots import (
    plot_allocation,
    plot_bootstrap,
    plot_isoflop,
    plot_loss_vs_compute,
    plot_residuals,
    style,
)
from scaling.analysis.report.spikes_section import spikes_section
from scaling.analysis.report.stats import final_rows
from scaling.numbers import fmt_g


def write_report(
    result: FitResult,
    runs: pd.DataFrame,
    out_dir: Path,
    *,
    source: str = "runs.csv",
    backtest_result: dict | None = None,
    history: Path | None = None,
    curves: pd.DataFrame | None = None,
) -> Path:
    """Render ``report.md`` and its plots into ``out_dir``; returns the report path.

    ``backtest_result`` is :func:`~scaling.analysis.report.stats.backtest`'s answer when the
    caller already computed it (the health verdict needs it too). ``history`` is the fit
    directory's ``verifications.csv`` (``scaling verify``), shown as a table when it exists.
    ``curves`` (a curves table; approach 1's ``runs`` are one) adds the training-curves figure.
    """
    out_dir = Path(out_dir)
    p = Predictor(result)
    plots = _draw(runs, result, p, out_dir)
    if curves is None and result.approach == 1:
        curves = runs
    if curves is not None and plot_training_curves(curves, out_dir / "training_curves.png"):
        plots.append(("training_curves.png", CURVES_CAPTION))
    final = final_rows(runs, result.approach)
    title = f"approach {result.approach}" + (
        f", law `{result.law}`" if result.approach == 3 else ""
    )
    parts = [f"# Scaling-law fit ({title})\n", f"Source: `{source}`.\n", health_section(result)]
    parts += data_section(runs, final, result)
    parts.append(law_section(result))
    if result.exponents:
        parts += allocation_section(result, p)
    parts += comparison_section(final, result)
    parts += backtest_section(runs, result, backtest_result)
    parts += form_error_section(result)
    parts += shift_section(final, result)
    parts += _verification_section(history)
    parts.append(warnings_section(result))
    spikes = spikes_section(runs)
    if spikes:
        parts.append(spikes)
    parts.append(suspects_section(result))
    parts.append(
        "## Plots\n\n" + "\n\n".join(f"![{cap}]({name})\n\n*{cap}*" for name, cap in plots) + "\n"
    )
    parts.append(method_text(result))
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


def _verification_section(history: Path | None) -> list[str]:
    """Every `scaling verify` of this fit directory: prediction against measurement."""
    if history is None or not Path(history).exists():
        return []
    rows = pd.read_csv(history)
    if rows.empty:
        return []
    inside = rows["inside"].astype(str).str.lower() == "true"
    table = [
        [
            str(r["time"]),
            sci(r["flops"]),
            str(r["role"]),
            sci(r["params"]),
            fmt_g(r["predicted"]),
            interval((r["pi_lo"], r["pi_hi"]) if pd.notna(r["pi_lo"]) else None),
            fmt_g(r["measured"]),
            f"{r['error_pct']:+.2f}%",
            "yes" if ok else "no",
        ]
        for (_, r), ok in zip(rows.iterrows(), inside, strict=True)
    ]
    header = ["when", "C", "run", "N", "predicted", "PI", "measured", "error", "inside PI"]
    summary = (
        f"{len(rows)} verification(s): mean |error| {rows['error_pct'].abs().mean():.2f}%, "
        f"{int(inside.sum())} of {len(rows)} inside the prediction interval."
    )
    return [
        "## Verifications\n\nRuns trained at the budget a fit predicted (`scaling verify`), "
        f"snapped to the nearest valid shape. {summary}\n\n" + md_table(header, table) + "\n"
    ]


def refresh_verifications(report: Path, history: Path) -> bool:
    """Put ``history``'s verification table into an existing ``report.md`` (replacing its
    Verifications section, else before its Warnings): a verification run after the fit shows in
    the report at once, not at the next fit. False when there is no report or no such spot."""
    report = Path(report)
    if not report.exists():
        return False
    text = report.read_text()
    section = "".join(_verification_section(history))
    if not section:
        return False
    head = "## Verifications\n"
    if head in text:
        start = text.index(head)
        end = text.find("\n## ", start + len(head))
        end = len(text) if end < 0 else end + 1
    elif "\n## Warnings\n" in text:
        start = end = text.index("\n## Warnings\n") + 1
    else:
        return False
    report.write_text(text[:start] + section + "\n" + text[end:])
    return True
