"""The sections of ``report.md`` that say what was fitted: the health verdict, the data, the
fitted law, the compute-optimal allocation and the fit's warnings.
"""

from __future__ import annotations

import pandas as pd

from scaling.analysis.columns import conventions
from scaling.analysis.fitting.laws import get_law, repetition_laws
from scaling.analysis.fitting.outliers import suspect_line
from scaling.analysis.fitting.results import FitResult
from scaling.analysis.prediction.predict import Predictor
from scaling.analysis.prediction.question import MAX_BEYOND, MAX_PI_HALF_WIDTH
from scaling.analysis.report.cells import interval, md_table, sci
from scaling.analysis.report.stats import budget_grid, budgets, repeats
from scaling.analysis.table import compute_spent
from scaling.numbers import fmt_g


def health_section(result: FitResult) -> str:
    """The verdict first: can this fit support a prediction? Then what it cannot pin."""
    health = result.health
    if health is None:
        return ""
    warnings = "".join(f"- {line}\n" for line in health.get("warnings") or [])
    if warnings:
        warnings = (
            "\nNot pinned by these runs (a question that needs them gets a wide interval, "
            "and `scaling predict` refuses it there; one that does not is answered with a "
            "warning):\n\n" + warnings
        )
    if health.get("ok"):
        return (
            "**Health: OK.** The optimiser converged, no parameter sits on a bound, there are "
            "enough runs per parameter, the intervals are finite and the backtest held. "
            f"`scaling predict` will answer a question within {MAX_BEYOND:g}x of the data "
            f"whose prediction interval is within ±{100 * MAX_PI_HALF_WIDTH:g}%.\n" + warnings
        )
    problems = "\n".join(f"- {line}" for line in health.get("problems", []))
    return (
        "**Health: NOT OK — `scaling predict` refuses this fit (exit status 3) unless "
        "`--allow-unhealthy`.** Do not bet a training budget on its extrapolation:\n\n"
        f"{problems}\n" + warnings
    )


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


def data_section(runs: pd.DataFrame, final: pd.DataFrame, result: FitResult) -> list[str]:
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
        ["parameters N", f"{sci(final['params'].min())} – {sci(final['params'].max())}"],
        ["tokens D", f"{sci(final['tokens'].min())} – {sci(final['tokens'].max())}"],
        ["compute C (FLOPs)", f"{sci(C.min())} – {sci(C.max())}"],
        ["tokens per parameter", f"{sci(tpp.min())} – {sci(tpp.max())}"],
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
                f"{sci(cost)} FLOPs for points of {sci(represented)} "
                f"({cost / represented:.2f}x: stable phases shared)",
            ]
        )
    out = ["## Data\n\n" + md_table(["", "value"], rows) + "\n" + _repeat_warning(final, result)]
    if result.isoflop:
        brows = [
            [
                sci(m.flops),
                str(m.n_runs),
                f"{sci(m.params_range[0])} – {sci(m.params_range[1])}",
                sci(m.params),
                fmt_g(m.loss),
                "yes" if m.used else "no",
                "edge" if m.at_edge else "",
            ]
            for m in result.isoflop
        ]
        header = ["C (FLOPs)", "runs", "N sampled", "N at minimum", "loss at minimum", "used"]
        out.append(
            "IsoFLOP budgets (parabola in log N per budget):\n\n"
            + md_table([*header, "note"], brows)
            + "\n"
        )
    return out


def _repeat_warning(final: pd.DataFrame, result: FitResult) -> str:
    """A warning line when runs of different epochs (some > 1) are pooled by a law without a
    repetition term (:attr:`~scaling.analysis.fitting.laws.Law.models_repetition`; approaches 1
    and 2 have none)."""
    most = repeats(final)
    if most is None or (result.approach == 3 and get_law(result.law).models_repetition):
        return ""
    ep = pd.to_numeric(final["epochs"], errors="coerce").clip(lower=1.0).dropna()
    if ep.nunique() < 2:
        return ""
    return (
        f"\n**Warning:** runs repeat their data up to {fmt_g(most, 3)} epochs and the law has no "
        f"repetition term: fit --law {' or '.join(repetition_laws())}.\n"
    )


def _boot_note(result: FitResult) -> str:
    if result.bootstrap:
        return (
            f"{result.bootstrap.n_resamples} bootstrap resamples over runs, seed "
            f"{result.bootstrap.seed}"
        )
    return "no bootstrap (--bootstrap 0)"


def law_section(result: FitResult) -> str:
    ci = result.ci
    level = f"{result.options.level:.0%}"
    if result.approach == 3:
        law = get_law(result.law)
        conv = result.convergence
        prow = [[f"`{k}`", fmt_g(v, 5), interval(ci.get(k))] for k, v in result.params.items()]
        return (
            f"## Fitted law\n\n`{law.equation}` ({law.citation}).\n\n"
            + md_table(["parameter", "estimate", f"{level} interval"], prow)
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


def noise_note(result: FitResult) -> str:
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


def allocation_section(result: FitResult, p: Predictor) -> list[str]:
    ci = result.ci
    level = f"{result.options.level:.0%}"
    erows = [[f"`{k}`", fmt_g(v), interval(ci.get(k))] for k, v in result.exponents.items()]
    arows = []
    c_max = result.ranges["C"][1]
    for c in budget_grid(result):
        q = p.at_budget(float(c))
        arows.append(
            [
                sci(c),
                f"{sci(q.params)} {interval(q.params_ci, sci)}",
                f"{sci(q.tokens)} {interval(q.tokens_ci, sci)}",
                fmt_g(q.tokens_per_param, 3),
                f"{fmt_g(q.loss)} {interval(q.loss_ci)}",
                interval(q.loss_pi),
                f"{c / c_max:.2g}×",
            ]
        )
    return [
        "## Compute-optimal allocation\n\n`N_opt ∝ C^a`, `D_opt ∝ C^b`, C = 6ND.\n\n"
        + md_table(["exponent", "estimate", f"{level} interval"], erows)
        + "\n",
        md_table(
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
        f"allocation will land (the CI plus run-to-run noise). {noise_note(result)} "
        "Budgets beyond about 10× the largest fitted compute are extrapolations; both "
        "intervals reflect statistical uncertainty only, not a wrong law.\n",
    ]


def suspects_section(result: FitResult) -> str:
    """One line per suspect run (:mod:`scaling.analysis.fitting.outliers`), and the test."""
    out = result.outliers
    if not out or not out.get("tested"):
        return ""
    floor = out.get("floor")
    test = (
        f"a final loss more than {out['k']:g} scales above where its IsoFLOP budget's other "
        f"runs or its seed replicates put it (scale {100 * out['scale']:.2g}% of loss: the "
        f"larger of 1.4826 MAD of the {out['tested']} runs tested, "
        + (f"the seed noise {100 * floor:.2g}%" if floor is not None else "no seed noise")
        + ", and 0.1%)"
    )
    lines = [f"- {suspect_line(s)}" for s in out.get("suspects") or []]
    body = "\n".join(lines) if lines else "None."
    return f"## Suspect runs\n\nTest: {test}.\n\n{body}\n"


def warnings_section(result: FitResult) -> str:
    if result.warnings:
        return "## Warnings\n\n" + "\n".join(f"- {w}" for w in result.warnings) + "\n"
    return (
        "## Warnings\n\nNone: the optimiser converged, no parameter is on a bound, "
        "and the allocation's tokens per parameter are in a plausible range.\n"
    )
