"""A run table file in, a fit directory out: ``fit.json``, ``runs.csv``, ``report.md``, plots.

What ``scaling fit`` and the end of a sweep both do: fit, backtest, and the health verdict
(:mod:`..prediction.health`) that ``scaling predict`` checks.  Everything is written into a
temporary folder beside ``out`` and moved in only when the whole fit and report succeeded, so a
failed fit leaves no half-written directory.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from scaling.analysis.columns import columns, conventions
from scaling.analysis.fitting.fit import fit
from scaling.analysis.fitting.results import FitOptions, FitResult, save_fit
from scaling.analysis.outdir import staged_dir
from scaling.analysis.prediction.health import assess
from scaling.analysis.report.stats import backtest, final_rows
from scaling.analysis.table import read_run_table, write_table


@dataclass(frozen=True)
class FitOutput:
    """A finished fit: the result, its ``fit.json`` document and the files written."""

    result: FitResult
    doc: dict[str, Any]
    written: tuple[Path, ...]


def fit_to_dir(
    table: Path,
    out: Path,
    *,
    law: str = "chinchilla",
    approach: int = 3,
    options: FitOptions | None = None,
    params_column: str = "params",
    report: bool = True,
) -> FitOutput:
    """Fit the run table at ``table`` and write the results into ``out`` (raises UserError)."""
    runs = read_run_table(table, params_column, curves=approach == 1)
    result = fit(runs, law=law, approach=approach, options=options)
    source = {"path": str(table), "params_column": params_column, "rows": len(runs)}
    # which N and C the fit used: the estimator's own record, else the table's (one per fit)
    used = {**conventions(runs), **(result.conventions or {})}
    result = replace(result, data=source, conventions=used)
    bt = backtest(runs, result)  # the top budgets held out (FitOptions.backtest_holdout)
    N, D, _, _ = columns(final_rows(runs, result.approach))
    result = replace(result, health=assess(result, backtest=bt, N=N, D=D))
    with staged_dir(out) as (stage, written):
        doc = save_fit(result, stage / "fit.json")
        write_table(runs, stage / "runs.csv")
        if report:
            from scaling.analysis.report.markdown import write_report

            write_report(
                result,
                runs,
                stage,
                source=str(table),
                backtest_result=bt,
                history=out / "verifications.csv",
            )
    return FitOutput(result=result, doc=doc, written=tuple(written))
