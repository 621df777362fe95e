"""The loss-curve law of every model size of a curves table: the Python API of
``scaling fit --law curve``.

:func:`fit_curves` reads a curves table (:mod:`.runs`, :mod:`.traces`), fits a curve form
(:mod:`.forms`: the multi-power law by default, Tissue's law with ``form="tissue"``) to each
model size (:mod:`.size_fit`) and returns a :class:`CurveFit`, whose :meth:`CurveFit.predict`
and :meth:`CurveFit.score` predict the final loss of a run through its size's law
(:class:`~.size_law.CurveLaw`).  On chosen runs: :func:`curves_from_table` then
:func:`fit_size` with :class:`CurveOptions`.

**Limits.** The law is empirical (fitted on runs of 10^4-10^5 steps in the papers); a size's
law says nothing about another size (no N dependence is fitted); the annealing term is
identified only when some run of the size anneals (a table of constant-LR runs gets it as 0 and
a warning); far extrapolation in steps or schedules unlike the fitted ones is not validated
here; without an ``lr`` column the schedule is rebuilt from the logged config by
:mod:`scaling.schedule`, so a run trained with another schedule code gives wrong areas (give its
``lr``); an ``lr`` column logged only at the validation points is interpolated linearly between
them; a size needs :func:`~.size_fit.min_points` fitted points, and runs validated at the
default ``train.eval_points=8`` (log-spaced) leave a cooldown branch about one point, so curve
studies should log 30 or more.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

import pandas as pd

from scaling.analysis.curves.forms import form_of
from scaling.analysis.curves.law import LAMBDA_GRID, LAW_NAME, CurveOptions, LRSource
from scaling.analysis.curves.runs import RunCurve, group_sizes, schedule_curves
from scaling.analysis.curves.size_fit import fit_size, lambda_objective
from scaling.analysis.curves.size_law import CurveLaw, CurvePrediction, resolve_schedule
from scaling.analysis.curves.traces import LR_COLUMN, trace_curves
from scaling.errors import DataError, UserError

# The Python API (docs/ARCHITECTURE.md, curve_fit.json): these names are imported from here.
__all__ = [
    "CurveFit",
    "CurveLaw",
    "CurveOptions",
    "RunCurve",
    "curves_from_table",
    "fit_curves",
    "fit_size",
]


@dataclass(frozen=True)
class CurveFit:
    """The curve law of every model size of a table (:func:`fit_curves`)."""

    sizes: tuple[CurveLaw, ...]
    runs: tuple[RunCurve, ...]
    options: CurveOptions
    lam: float | None  # tissue: the annealing momentum's decay
    warnings: tuple[str, ...] = ()
    lam_scores: dict[float, float] | None = None  # lam="fit": objective at each lam

    def size(self, params: float) -> CurveLaw:
        """The law of the size ``params`` (equal within 1e-6 relative; 0, a run of a table
        without a params column, is the fit's only size when it has one)."""
        if params == 0 and len(self.sizes) == 1:
            return self.sizes[0]
        for law in self.sizes:
            if math.isclose(law.params, params, rel_tol=1e-6):
                return law
        known = ", ".join(f"{law.params:.6g}" for law in self.sizes)
        raise UserError(f"no fitted size {params:.6g}; the fit has sizes {known}")

    def predict(
        self,
        params: float,
        schedule: LRSource | Mapping[str, Any] | None,
        total_steps: int,
        *,
        at_step: int | None = None,
    ) -> CurvePrediction:
        """Final loss (with intervals) of a ``total_steps`` run of size ``params`` with the LR
        ``schedule``: a :class:`Schedule`, a mapping of its fields over the size's typical
        schedule (``{"schedule": "wsd"}``), None for the typical schedule itself, an LR trace
        (one LR per update) or a function of the 0-based update giving its LR."""
        law = self.size(params)
        if schedule is None or isinstance(schedule, Mapping):
            schedule = resolve_schedule(law, schedule)
        return law.predict_final(schedule, total_steps, at_step=at_step, seed=self.options.seed)

    def score(self, df: pd.DataFrame | None = None) -> pd.DataFrame:
        """Each run's final loss predicted vs measured: the fitted runs, or the runs of the
        curves table ``df`` (held out: of sizes this fit has).  Columns: ``run_id, params,
        role, schedule, total_steps, step, tokens, measured, predicted, ci_lo, ci_hi, pi_lo,
        pi_hi, error_pct`` (100 * (predicted - measured) / measured), ``inside`` (the measured
        loss in the prediction interval).  A held-out run may have its final row only."""
        runs = self.runs if df is None else curves_from_table(df, need_curves=False)
        rows = []
        for r in runs:
            law = self.size(r.params)
            pred = law.predict_final(
                r.lr_source, r.total_steps, at_step=r.final_step, seed=self.options.seed
            )
            ci = pred.loss_ci or (math.nan, math.nan)
            pi = pred.loss_pi or (math.nan, math.nan)
            rows.append(
                {
                    "run_id": r.run_id,
                    "params": r.params,
                    "role": r.role,
                    "schedule": r.label,
                    "total_steps": r.total_steps,
                    "step": r.final_step,
                    "tokens": r.final_tokens,
                    "measured": r.final_loss,
                    "predicted": pred.loss,
                    "ci_lo": ci[0],
                    "ci_hi": ci[1],
                    "pi_lo": pi[0],
                    "pi_hi": pi[1],
                    "error_pct": 100.0 * (pred.loss - r.final_loss) / r.final_loss,
                    "inside": bool(pi[0] <= r.final_loss <= pi[1]),
                }
            )
        return pd.DataFrame(rows)

    def to_dict(self) -> dict[str, Any]:
        opts = asdict(self.options)
        form = form_of(self.options.form)
        return {
            "law": LAW_NAME,
            "form": form.name,
            "equation": form.equation,
            "citation": form.citation,
            "definitions": {
                "eta": "the lr column, linear between rows, else train.lr * "
                "scaling.schedule.lr_factor(i)"
                + ("; the peak LR during warmup" if self.options.warmup_as_peak else ""),
                **form.definitions,
                "s": "the step column, else tokens / (train.batch_size * model.seq_len)",
            },
            "lam": self.lam,
            "lam_scores": (
                {f"{k:g}": v for k, v in self.lam_scores.items()} if self.lam_scores else None
            ),
            "options": opts,
            "sizes": [law.to_dict() for law in self.sizes],
            "warnings": list(self.warnings),
        }


def curves_from_table(
    df: pd.DataFrame,
    options: CurveOptions | None = None,
    *,
    need_curves: bool = True,
    warnings: list[str] | None = None,
) -> list[RunCurve]:
    """The runs of a curves table, each with its LR: from its ``lr`` column when the table has
    one (:func:`.traces.trace_curves`), else its schedule rebuilt from its config columns
    (:func:`.runs.schedule_curves`); what was assumed is appended to ``warnings``.  Raises
    :class:`DataError` with one line for a table the law cannot use (with ``need_curves``, also
    for a table whose every run has one row).  ``options`` is accepted for symmetry."""
    warnings = [] if warnings is None else warnings
    if LR_COLUMN in df.columns:
        return trace_curves(df, warnings, need_curves=need_curves)
    return schedule_curves(df, warnings, need_curves=need_curves)


def fit_curves(df: pd.DataFrame, options: CurveOptions | None = None, **overrides: Any) -> CurveFit:
    """The curve law of each model size in a curves table ``df`` (one row per logged
    validation point: ``run, step, lr, loss`` (:mod:`.traces`), or ``run_id, params, tokens,
    loss`` and the runs' ``train.*`` / ``model.*`` config columns).  ``overrides`` replace
    fields of ``options`` (``fit_curves(df, form="tissue", lam=0.99, bootstrap=0)``).
    Raises :class:`UserError` / :class:`DataError`.
    """
    options = replace(options or CurveOptions(), **overrides)
    options.check()
    warnings: list[str] = []
    runs = curves_from_table(df, options, warnings=warnings)
    sizes = group_sizes(runs)
    lam_scores = None
    lam: float | None = None
    if not form_of(options.form).uses_lambda:
        lam = None
    elif options.lam == "fit":
        lam_scores = {lam: lambda_objective(sizes, options, lam) for lam in LAMBDA_GRID}
        lam = min(lam_scores, key=lambda k: lam_scores[k])
    else:
        lam = float(options.lam)
    laws = []
    for k, size_runs in enumerate(sizes):
        try:
            laws.append(fit_size(size_runs, options, lam, k))
        except DataError as err:
            warnings.append(f"skipped: {err}")
    if not laws:
        raise DataError(
            "no model size has enough curve points to fit the law: "
            + "; ".join(w.removeprefix("skipped: ") for w in warnings if w.startswith("skipped"))
        )
    fitted = {law.params for law in laws}
    for law in laws:
        warnings.extend(law.warnings)
    return CurveFit(
        sizes=tuple(laws),
        runs=tuple(r for r in runs if r.params in fitted),
        options=replace(options, lam=lam) if options.lam == "fit" else options,
        lam=lam,
        warnings=tuple(warnings),
        lam_scores=lam_scores,
    )
