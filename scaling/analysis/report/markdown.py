"""``report.md``: a document that reads on its own.

Sections: data summary (with the N and C conventions of the fit); fitted law with bootstrap
intervals; compute-optimal allocation for a range of budgets; a comparison of laws by held-out
error (leave-top-budgets-out and cross-validation) naming the law selected for extrapolation; a
backtest by whole budgets; the exponent shift under other N and C conventions; warnings; plots;
method.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from scaling.analysis.columns import conventions
from scaling.analysis.fitting import envelope, isoflop
from scaling.analysis.fitting.laws import get_law
from scaling.analysis.fitting.results import FitResult
from scaling.analysis.prediction.predict import Predictor
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
    REPEAT_LAW,
    backtest,
    budget_grid,
    budgets,
    cold_starts_note,
    compare_laws,
    exponent_shift,
    final_rows,
    law_comparison,
    repeats,
    select_law,
)
from scaling.analysis.table import compute_spent
from scaling.numbers import fmt_g


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
    backtest_result: dict | None = None,
    history: Path | None = None,
) -> Path:
    """Render ``report.md`` and its plots into ``out_dir``; returns the report path.

    ``backtest_result`` is :func:`~scaling.analysis.report.stats.backtest`'s answer when the
    caller already computed it (the health verdict needs it too). ``history`` is the fit
    directory's ``verifications.csv`` (``scaling verify``), shown as a table when it exists.
    """
    out_dir = Path(out_dir)
    p = Predictor(result)
    plots = _draw(runs, result, p, out_dir)
    final = final_rows(runs, result.approach)
    title = f"approach {result.approach}" + (
        f", law `{result.law}`" if result.approach == 3 else ""
    )
    parts = [f"# Scaling-law fit ({title})\n", f"Source: `{source}`.\n", _health_section(result)]
    parts += _data_section(runs, final, result)
    parts.append(_law_section(result))
    if result.exponents:
        parts += _allocation_section(result, p)
    parts += _comparison_section(final, result)
    parts += _backtest_section(runs, result, backtest_quantile, backtest_result)
    parts += _shift_section(final, result)
    parts += _verification_section(history)
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


_N_NAMES = {
    "params": "`params` (all trainable parameters)",
    "params_nonembed": "`params_nonembed` (without embeddings)",
}


def _c_name(flops: str) -> str:
    if flops == "6ND":
        return "6·N·D with that N"
    if flops == "table":
        return "the table's `flops` column, as given"
    return f"the table's `flops_{flops}` convention"


def _data_section(runs: pd.DataFrame, final: pd.DataFrame, result: FitResult) -> list[str]:
    conv = result.conventions or conventions(final)
    if conv.get("flops") == "6ND":
        C = 6.0 * final["params"].to_numpy(dtype=float) * final["tokens"].to_numpy(dtype=float)
    else:
        C = final["flops"].to_numpy(dtype=float)
    tpp = final["tokens"].to_numpy() / final["params"].to_numpy()
    curve_points = f" ({len(runs):,} curve points)" if result.approach == 1 else ""
    labels, budget_c, how = budgets(final, result.options.isoflop_tolerance)
    n_name = conv.get("params", "params")
    rows = [
        ["runs", f"{len(final):,}" + curve_points],
        ["distinct model sizes", f"{final['params'].nunique():,}"],
        ["compute budgets", f"{len(budget_c):,} ({how})"],
        ["parameter count N", _N_NAMES.get(n_name, f"`{n_name}`")],
        ["compute C", _c_name(str(conv.get("flops", "table")))],
        ["parameters N", f"{_sci(final['params'].min())} – {_sci(final['params'].max())}"],
        ["tokens D", f"{_sci(final['tokens'].min())} – {_sci(final['tokens'].max())}"],
        ["compute C (FLOPs)", f"{_sci(C.min())} – {_sci(C.max())}"],
        ["tokens per parameter", f"{_sci(tpp.min())} – {_sci(tpp.max())}"],
        ["loss (nats/token)", f"{fmt_g(final['loss'].min())} – {fmt_g(final['loss'].max())}"],
    ]
    if conv.get("planned"):
        rows.insert(5, ["budgets planned under", f"`{conv['planned']}` (`flops_convention`)"])
    spent = compute_spent(final)
    if spent is not None:  # WSD cooldown branches: the stable phases are shared
        represented, cost = spent
        rows.append(
            [
                "compute trained (WSD branches)",
                f"{_sci(cost)} FLOPs for points of {_sci(represented)} "
                f"({cost / represented:.2f}x: stable phases shared)",
            ]
        )
    out = ["## Data\n\n" + _table(["", "value"], rows) + "\n" + _repeat_warning(final, result)]
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


def _repeat_warning(final: pd.DataFrame, result: FitResult) -> str:
    """A warning line when runs of different epochs (some > 1) are pooled by a law without a
    repetition term (every law but ``data_constrained``, and approaches 1 and 2)."""
    most = repeats(final)
    if most is None or (result.approach == 3 and "epochs" in get_law(result.law).optional_inputs):
        return ""
    ep = pd.to_numeric(final["epochs"], errors="coerce").clip(lower=1.0).dropna()
    if ep.nunique() < 2:
        return ""
    return (
        f"\n**Warning:** runs repeat their data up to {fmt_g(most, 3)} epochs and the law has no "
        f"repetition term: fit --law {REPEAT_LAW}.\n"
    )


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
            _sci(r["flops"]),
            str(r["role"]),
            _sci(r["params"]),
            fmt_g(r["predicted"]),
            _ci((r["pi_lo"], r["pi_hi"]) if pd.notna(r["pi_lo"]) else None),
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
        f"snapped to the nearest valid shape. {summary}\n\n" + _table(header, table) + "\n"
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


def _health_section(result: FitResult) -> str:
    """The verdict first: can this fit support a prediction?"""
    health = result.health
    if health is None:
        return ""
    if health.get("ok"):
        return (
            "**Health: OK.** The optimiser converged, no parameter sits on a bound, there are "
            "enough runs per parameter, the intervals are finite and the backtest held. "
            "`scaling predict` will answer.\n"
        )
    problems = "\n".join(f"- {line}" for line in health.get("problems", []))
    return (
        "**Health: NOT OK — `scaling predict` refuses this fit (exit status 3) unless "
        "`--allow-unhealthy`.** Do not bet a training budget on its extrapolation:\n\n"
        f"{problems}\n"
    )


def _noise_note(result: FitResult) -> str:
    if not result.noise:
        return "No prediction interval: this approach records no run-to-run noise."
    n = result.noise
    how = (
        f"the pooled spread of {n['n_groups']} configurations trained with several seeds"
        if n["source"] == "seed replicates"
        else "the fit's residuals (an upper bound on seed noise: it also holds the law's misfit)"
    )
    return (
        f"Run-to-run noise σ = {fmt_g(n['sigma_log'], 3)} in log loss ({n['dof']} degrees of "
        f"freedom), from {how}."
    )


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
                _ci(q.loss_pi),
                f"{c / c_max:.2g}×",
            ]
        )
    return [
        "## Compute-optimal allocation\n\n`N_opt ∝ C^a`, `D_opt ∝ C^b`, C = 6ND.\n\n"
        + _table(["exponent", "estimate", f"{level} interval"], erows)
        + "\n",
        _table(
            [
                "C (FLOPs)",
                "N_opt",
                "D_opt",
                "D/N",
                f"expected loss [{level} CI]",
                f"one new run [{level} PI]",
                "C / largest fitted",
            ],
            arows,
        )
        + f"\n\nTwo intervals of the loss: the **CI** is where the fitted mean curve lies "
        "(bootstrap over runs); the **PI** is where the loss of one run you train at that "
        f"allocation will land (the CI plus run-to-run noise). {_noise_note(result)} "
        "Budgets beyond about 10× the largest fitted compute are extrapolations; both "
        "intervals reflect statistical uncertainty only, not a wrong law.\n",
    ]


def _pct(x: float | None) -> str:
    return f"{100 * x:.2f}%" if x is not None and math.isfinite(x) else "–"


def _comparison_section(final: pd.DataFrame, result: FitResult) -> list[str]:
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
            *[_pct(r["leave_top"].get(k, {}).get("mean_abs_rel")) for k in ks],
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
        + _table(header, crow)
        + "\n"
    )
    best = select_law(cmp_rows)
    if best is not None:
        text += (
            f"\n**Selected for extrapolation: `{best['law']}`**, the least leave-top-budgets-"
            f"out error (mean over k = {', '.join(str(k) for k in ks)}: "
            f"{_pct(best['extrapolation'])}).\n"
        )
    else:
        text += "\nNo law selected: no leave-top-budgets-out error could be computed.\n"
    return [text]


def _backtest_section(
    runs: pd.DataFrame, result: FitResult, quantile: float, bt: dict | None = None
) -> list[str]:
    bt = bt if bt is not None else backtest(runs, result, quantile)
    if bt is None:
        return []
    train_b, test_b = bt["train_budgets"], bt["test_budgets"]
    starts = (
        f" The refit started cold from a thinned grid of {bt['starts']} of the law's starts, "
        "not from the fit to all runs."
        if "starts" in bt
        else ""
    )
    fitted = f"; C = {_sci(min(train_b))} … {_sci(max(train_b))}" if train_b else ""
    shown = (
        ", ".join(_sci(c) for c in test_b)
        if len(test_b) <= 6
        else f"{_sci(test_b[0])} … {_sci(test_b[-1])}"
    )
    head = (
        f"## Backtest\n\nBudgets ({bt['grouped_by']}) up to the {quantile:.0%} compute "
        f"quantile of the runs ({bt['threshold']:.4g} FLOPs{fitted}) were fitted and the "
        f"{len(test_b)} larger budget(s), C = {shown}, held out whole: no budget is on both "
        f"sides.{starts}\n\n"
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
        which = "" if get_law(result.law).inputs == ("N", "D") else " (their frontier)"
        return [
            head + f"{bt['n_train']} runs in {len(train_b)} budgets fitted, {bt['n_test']} "
            f"runs{which} predicted; mean |relative error| {100 * bt['mean_abs_rel']:.2f}%, max "
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
        head + f"{bt['n_train']} budgets fitted (IsoFLOP refit on their runs only), "
        f"{bt['n_test']} IsoFLOP minima predicted.\n\n" + _table(header, brow) + "\n"
    ]


def _shift_section(final: pd.DataFrame, result: FitResult) -> list[str]:
    shift = exponent_shift(final, result)
    names = {"params": "total `params`", "params_nonembed": "non-embedding `params_nonembed`"}
    cs = {"6ND": "6·N·D", "6N_attn": "6·N·D + attention (`flops_6N_attn`)"}
    rows = [
        [
            names.get(r["params"], f"`{r['params']}`"),
            cs.get(r["flops"], r["flops"]),
            fmt_g(r["a"], 3),
            fmt_g(r["b"], 3),
            f"{_sci(r['c_range'][0])} – {_sci(r['c_range'][1])}",
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
        + _table(["N", "C", "a", "b", "compute range", "law parameters"], rows)
        + "\n"
    )
    if shift["skipped"]:
        text += "\nNot computed: " + "; ".join(shift["skipped"]) + ".\n"
    return [text]


def _warnings_section(result: FitResult) -> str:
    if result.warnings:
        return "## Warnings\n\n" + "\n".join(f"- {w}" for w in result.warnings) + "\n"
    return (
        "## Warnings\n\nNone: the optimiser converged, no parameter is on a bound, "
        "and the allocation's tokens per parameter are in a plausible range.\n"
    )


def _resampling_text(result: FitResult) -> str:
    if result.approach == 2:
        return isoflop.RESAMPLING_TEXT
    if result.approach == 1:
        return envelope.RESAMPLING_TEXT
    return (
        "Intervals are percentile intervals over a bootstrap that resamples runs with "
        "replacement (whole groups of seed replicates when the table has a `seed` column) and "
        "refits each resample warm-started from the full fit's optima; each replicate's "
        "deviation from the point estimate is widened by sqrt(n/(n-p)) for n runs (or "
        "replicate groups) and p parameters (the HC1 small-sample correction)."
    )


def _intervals_text(result: FitResult) -> str:
    """What the two loss intervals cover and where the noise of the second came from."""
    text = (
        "A *CI* of the loss is where the expected loss (the fitted curve) lies. A *PI* is "
        "where the loss of one new run lands: each bootstrap replicate of the expected loss "
        "plus Student-t draws of the run-to-run noise. "
    )
    return text + _noise_note(result)


def _method_text(result: FitResult) -> str:
    if result.approach == 3:
        law = get_law(result.law)
        how = (
            "The law was fitted in log space by minimising the Huber loss (delta "
            f"{result.options.huber_delta:g}) of log-residuals, summed over runs, from a grid of "
            "starting points (Hoffmann et al. 2022, App. D.2; Besiroglu et al. 2024). All starts "
            "run together in a batched L-BFGS with analytic gradients; the best distinct optima "
            "are polished with scipy's L-BFGS-B."
        )
        if law.inputs == ("N",):
            how += " L(N) was fitted to the lowest-loss run at each distinct N only."
        elif law.inputs == ("D",):
            how += " L(D) was fitted to the lowest-loss run at each distinct D only."
        elif law.inputs == ("C",):
            how += " L(C) was fitted to the compute-efficient frontier only."
    elif result.approach == 2:
        how = isoflop.METHOD_TEXT
    else:
        how = envelope.METHOD_TEXT
    boot = "No bootstrap was run." if not result.bootstrap else _resampling_text(result)
    boot += " " + _intervals_text(result)
    conv = result.conventions or {}
    n_name = conv.get("params", "params")
    flops = conv.get("flops")
    if flops == "6ND":
        compute = f"Compute is C = 6ND with N = `{n_name}`, the N of the fit."
    elif flops in (None, "table"):
        compute = f"N is `{n_name}`; compute is the table's `flops` column as given."
    else:
        compute = f"N is `{n_name}`; compute is the table's `flops_{flops}` column."
    held = (
        "Held-out errors never let a held-out run into the fit that predicts it. A compute "
        "budget (runs sharing `planned_flops`, else runs within "
        f"{result.options.isoflop_tolerance:g} decades of compute) is held out whole: the law "
        "comparison's leave-top-budgets-out refits leave out every run of the largest "
        "budgets, and the backtest fits the budgets up to a compute quantile and predicts "
        "the larger ones. The comparison's cross-validation leaves out a fold of runs. Every "
        "refit of a law starts cold from a thinned grid of that law's starts, never from the "
        "optima of the fit to all runs."
    )
    return f"## Method\n\n{how} {boot} {compute}\n\n{held}\n"
