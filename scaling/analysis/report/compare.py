"""``scaling compare``'s output: ``compare.md``, ``compare.json`` and ``compare.png``.

The document opens with the fits' health and the answer (the compute multiplier with its
interval and what that interval covers), then the fitted quantities side by side, each fit's
compute-optimal allocation and loss at the target with both intervals, the corpora the runs
trained on, the figure (both loss frontiers and both N_opt(C) lines, with their bands) and the
method. Everything is written into a temporary folder beside the output and moved in only when
the whole comparison succeeded.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from scaling.analysis.outdir import staged_dir
from scaling.analysis.prediction.compare import Comparison, Side, multiplier_line, quantity_label  # noqa: E402
from scaling.analysis.prediction.predict import Prediction  # noqa: E402
from scaling.analysis.report.plots import style  # noqa: E402
from scaling.analysis.report.stats import final_rows  # noqa: E402
from scaling.numbers import fmt_g  # noqa: E402


def _ci(ci: tuple[float, float] | None, fmt: Callable[[float | None], str] = fmt_g) -> str:
    if ci is None:
        return ""
    hi = "∞" if math.isinf(ci[1]) else fmt(ci[1])
    return f" [{fmt(ci[0])}, {hi}]"


def _sci(x: float | None) -> str:
    return fmt_g(x, 3)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _health(cmp: Comparison) -> str:
    bad = [s for s in cmp.sides if not s.healthy]
    if not bad:
        return (
            "**Health: both fits OK** (converged, enough runs, determined intervals, backtest "
            "held): the comparison can be read as a prediction.\n"
        )
    lines = [
        "**Health: NOT OK — compared only because `--allow-unhealthy` was given. Do not bet "
        "a training budget on these numbers:**\n"
    ]
    for s in bad:
        lines += [f"- `{s.label}`: {p}" for p in s.predictor.health["problems"]]
    return "\n".join(lines) + "\n"


def _answer(cmp: Comparison) -> str:
    m = cmp.multiplier
    level = f"{cmp.level:.0%}"
    if m is None:
        return "## What the difference is worth\n\nNo answer: a fit gives no loss at this budget.\n"
    better, worse = cmp.sides[m.better].label, cmp.sides[1 - m.better].label
    line = multiplier_line(cmp)
    text = f"## What the difference is worth\n\n**{line[:1].upper() + line[1:]}.**\n\n"
    if m.ci is not None:
        text += (
            f"The {level} interval of the multiplier covers the ratio of the two *fitted mean "
            f"curves* (not of two single runs): {m.n_pairs} pairs of bootstrap replicates, one "
            "of each fit, paired at random. "
        )
        if m.flip_share is not None:
            text += (
                f"In {m.flip_share:.0%} of the pairs `{worse}` is the better one (a multiplier "
                "below 1): "
                + (
                    "the ranking itself is uncertain. "
                    if m.flip_share > (1 - cmp.level) / 2
                    else "the ranking holds. "
                )
            )
        if m.unreachable_share:
            text += (
                f"In {m.unreachable_share:.0%} of the pairs `{worse}`'s law never reaches the "
                "loss (its irreducible loss is above it). "
            )
    text += (
        f"\n\nDifference in expected loss at C = {_sci(cmp.flops)}: `{worse}` − `{better}` = "
        f"{fmt_g(m.delta_loss, 3)}{_ci(m.delta_loss_ci, lambda x: fmt_g(x, 3))} nats/token"
        f"{f' ({level} CI, paired replicates)' if m.delta_loss_ci else ''}.\n"
    )
    return text


def _pred_cells(pred: Prediction) -> dict[str, str]:
    return {
        "N_opt": f"{_sci(pred.params)}{_ci(pred.params_ci, _sci)}",
        "D_opt": f"{_sci(pred.tokens)}{_ci(pred.tokens_ci, _sci)}",
        "tokens per parameter": fmt_g(pred.tokens_per_param, 3),
        "expected loss [CI]": f"{fmt_g(pred.loss)}{_ci(pred.loss_ci)}",
        "one new run [PI]": _ci(pred.loss_pi).strip() or "–",
    }


def _side_by_side(cmp: Comparison) -> str:
    a, b = cmp.sides
    level = f"{cmp.level:.0%}"
    rows = [
        [f"`{quantity_label(name)}`", *(f"{fmt_g(v)}{_ci(ci)}" for v, ci in cells)]
        for name, cells in cmp.quantities()
    ]
    rows.append(["runs fitted", str(a.result.n_points), str(b.result.n_points)])
    rows.append(
        [
            "compute range (FLOPs)",
            *(f"{_sci(s.result.ranges['C'][0])} – {_sci(s.result.ranges['C'][1])}" for s in (a, b)),
        ]
    )
    rows.append(["run-to-run noise σ (log loss)", *(_noise(s) for s in (a, b))])
    rows.append(["health", *("OK" if s.healthy else "NOT OK" for s in (a, b))])
    cells = [_pred_cells(p) for p in cmp.predictions]
    target = [[f"{k} at C", cells[0][k], cells[1][k]] for k in cells[0]]
    law = a.result.law if a.result.approach == 3 else "power laws in C"
    return (
        f"## Side by side\n\nApproach {a.result.approach}, law `{law}`; intervals at {level} "
        "(bootstrap over each fit's runs).\n\n"
        + _table(["quantity", f"`{a.label}`", f"`{b.label}`"], rows)
        + f"\n\nAt the target C = {_sci(cmp.flops)} FLOPs (compute-optimal; the **CI** is where "
        "the expected loss lies, the **PI** where one new run's loss will land):\n\n"
        + _table(["", f"`{a.label}`", f"`{b.label}`"], target)
        + "\n"
    )


def _noise(side: Side) -> str:
    n = side.result.noise
    if not n:
        return "–"
    return f"{fmt_g(n['sigma_log'], 3)} ({n['source']})"


def _data(cmp: Comparison) -> str:
    a, b = cmp.sides
    ca, cb = a.corpus(), b.corpus()
    rows = [["fit", f"`{a.path}`", f"`{b.path}`"]]
    for col in dict.fromkeys([*ca, *cb]):
        rows.append(
            [f"`{col}`", ", ".join(ca.get(col, [])) or "–", ", ".join(cb.get(col, [])) or "–"]
        )
    note = (
        "Each side's losses are measured on its own corpus's validation split (a processed "
        "corpus has its own, cleaned of documents duplicated in training). The multiplier "
        "compares the fitted laws of those measured losses: when the corpora differ, a lower "
        "loss can also mean easier (more repetitive) validation text, not only a better model."
    )
    if not (ca or cb):
        note = "No `runs.csv` beside the fits: the corpora are not described. " + note
    return "## Data\n\n" + _table(["", f"`{a.label}`", f"`{b.label}`"], rows) + f"\n\n{note}\n"


def _warnings(cmp: Comparison) -> str:
    if not cmp.warnings:
        return ""
    return "## Warnings\n\n" + "\n".join(f"- {w}" for w in cmp.warnings) + "\n"


def _method(cmp: Comparison) -> str:
    return (
        "## Method\n\nEach side's compute-optimal loss at C comes from its own fit "
        "(`scaling predict --flops C`). The side with the lower expected loss is the better "
        "one; the worse side's law is solved for the least compute whose compute-optimal loss "
        "reaches the better side's expected loss (bisection in log C), and the multiplier is "
        "that compute over C. For the interval, each bootstrap replicate of the better fit is "
        "paired with a seeded random replicate of the worse fit (their runs are independent), "
        "the same computation is done per pair, and the central percentile interval is taken "
        "(a pair whose worse law never reaches the loss counts as an infinite multiplier). The "
        "loss difference uses the same pairs.\n"
    )


def render(cmp: Comparison, plot: str | None) -> str:
    """The markdown document."""
    a, b = cmp.sides
    title = f"# Comparison: `{a.label}` vs `{b.label}`\n"
    parts = [title, _health(cmp), _answer(cmp), _side_by_side(cmp), _data(cmp), _warnings(cmp)]
    if plot:
        parts.append(
            f"## Plot\n\n![{plot}]({plot})\n\n*Left: loss against compute, both fitted "
            "compute-optimal frontiers with their bands and both sides' runs; the arrow is the "
            "compute the worse side needs to match the better one at the target. Right: "
            "compute-optimal N against C.*\n"
        )
    parts.append(_method(cmp))
    return "\n".join(p for p in parts if p)


# ---- the figure -------------------------------------------------------------------------------


def _bands(
    side: Side, Cs: np.ndarray, key: str
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    mid, lo, hi = [], [], []
    for c in Cs:
        pred = side.predictor.at_budget(float(c))
        value = getattr(pred, key)
        ci = getattr(pred, f"{key}_ci")
        mid.append(np.nan if value is None else value)
        lo.append(ci[0] if ci else np.nan)
        hi.append(ci[1] if ci else np.nan)
    lo_a, hi_a = np.array(lo, dtype=float), np.array(hi, dtype=float)
    if np.isnan(lo_a).all():
        return np.array(mid, dtype=float), None, None
    return np.array(mid, dtype=float), lo_a, hi_a


def plot_comparison(cmp: Comparison, path: Path) -> bool:
    """Both loss frontiers (left) and both N_opt(C) lines (right) on one figure."""
    if not all(s.predictor.has_allocation for s in cmp.sides):
        return False
    style()
    c_lo = min(s.result.ranges["C"][0] for s in cmp.sides)
    m = cmp.multiplier
    c_hi = max(cmp.flops, *(s.result.ranges["C"][1] for s in cmp.sides))
    if m is not None and math.isfinite(m.flops_needed):
        c_hi = max(c_hi, m.flops_needed)
    Cs = np.geomspace(c_lo / 2, c_hi * 2, 50)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    for i, side in enumerate(cmp.sides):
        color = f"C{i}"
        for ax, key in ((axes[0], "loss"), (axes[1], "params")):
            mid, lo, hi = _bands(side, Cs, key)
            ax.plot(Cs, mid, color=color, lw=2, label=f"{side.label} fit")
            if lo is not None:
                ax.fill_between(Cs, lo, hi, color=color, alpha=0.18, lw=0)
        if side.runs is not None and {"flops", "loss"} <= set(side.runs):
            final = final_rows(side.runs, side.result.approach)
            axes[0].scatter(final["flops"], final["loss"], s=12, color=color, alpha=0.7)
        used = [q for q in side.result.isoflop if q.used]
        if used:
            axes[1].scatter([q.flops for q in used], [q.params for q in used], s=18, color=color)
    for ax in axes:
        ax.axvline(cmp.flops, color="0.4", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("compute C (FLOPs)")
    if m is not None and math.isfinite(m.flops_needed):
        axes[0].annotate(
            "",
            xy=(m.flops_needed, m.target_loss),
            xytext=(cmp.flops, m.target_loss),
            arrowprops={"arrowstyle": "->", "color": "0.2"},
        )
        axes[0].text(
            math.sqrt(cmp.flops * m.flops_needed),
            m.target_loss,
            f" ×{m.value:.3g}",
            va="bottom",
            fontsize=9,
        )
    axes[0].set_ylabel("loss (nats/token)")
    axes[0].set_title(f"Compute-optimal loss ({cmp.level:.0%} CI bands)")
    axes[1].set_ylabel("N_opt (parameters)")
    axes[1].set_title("Compute-optimal model size")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


# ---- writing ----------------------------------------------------------------------------------


def write_comparison(cmp: Comparison, out: Path) -> list[Path]:
    """``out/compare.md``, ``compare.json`` and ``compare.png``, moved in only when complete."""
    with staged_dir(out) as (stage, written):
        plot = "compare.png" if plot_comparison(cmp, stage / "compare.png") else None
        (stage / "compare.md").write_text(render(cmp, plot))
        (stage / "compare.json").write_text(json.dumps(cmp.to_json(), indent=2) + "\n")
    return written
