"""The Method section of ``report.md``: how the law was fitted, how its intervals were formed,
which N and C it used and how held-out errors keep held-out runs out of the fit.
"""

from __future__ import annotations

from scaling.analysis.fitting import envelope, isoflop
from scaling.analysis.fitting.laws import get_law
from scaling.analysis.fitting.results import FitResult
from scaling.analysis.report.fit_sections import noise_note


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
    return text + noise_note(result)


def method_text(result: FitResult) -> str:
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
        "budgets, and the backtest holds out the top budgets by rank of compute (the Backtest "
        "section says which), fits the rest and predicts them. The comparison's "
        "cross-validation leaves out a fold of runs. Every "
        "refit of a law starts cold from a thinned grid of that law's starts, never from the "
        "optima of the fit to all runs."
    )
    return f"## Method\n\n{how} {boot} {compute}\n\n{held}\n"
