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

import pandas as pd

from scaling.analysis.columns import columns, conventions
from scaling.analysis.fitting.fit import fit
from scaling.analysis.fitting.outliers import find_suspects
from scaling.analysis.fitting.results import FitOptions, FitResult, save_fit
from scaling.analysis.outdir import staged_dir
from scaling.analysis.prediction.health import assess
from scaling.analysis.report.stats import backtest, final_rows
from scaling.analysis.table import (
    DIVERGED,
    canonical_order,
    diverged_mask,
    read_run_table,
    run_names,
    write_table,
)


@dataclass(frozen=True)
class FitOutput:
    """A finished fit: the result, its ``fit.json`` document and the files written."""

    result: FitResult
    doc: dict[str, Any]
    written: tuple[Path, ...]
    backtest: dict[str, Any] | None = None  # stats.backtest's record (None: approach 1)


def fit_to_dir(
    table: Path,
    out: Path,
    *,
    law: str = "chinchilla",
    approach: int = 3,
    options: FitOptions | None = None,
    params_column: str = "params",
    report: bool = True,
    keep_diverged: bool = False,
    curves: Path | None = None,
) -> FitOutput:
    """Fit the run table at ``table`` and write the results into ``out`` (raises UserError).

    Diverged runs are left out (``keep_diverged``: only those without a final loss), and a
    warning names them; another names finished runs with loss spikes that nothing contained.
    Finished runs whose final loss is an outlier of their IsoFLOP budget or seed group are
    recorded as suspects (:mod:`..fitting.outliers`), which the health verdict judges.
    ``curves`` (a curves table of the same runs, ``scaling collect --curves``; diverged runs
    kept) is drawn in the report as the runs' training curves with their spikes marked.
    """
    runs = read_run_table(table, params_column, curves=approach == 1, keep_diverged=keep_diverged)
    curve_table = None
    if curves is not None:
        curve_table = read_run_table(curves, params_column, curves=True, keep_diverged=True)
    left_out = list(runs.attrs.get("left_out_diverged", []))
    if approach != 1:
        runs = canonical_order(runs)
    result = fit(runs, law=law, approach=approach, options=options)
    source = {
        "path": str(table),
        "params_column": params_column,
        "rows": len(runs),
        "left_out_diverged": left_out,
    }
    # which N and C the fit used: the estimator's own record, else the table's (one per fit)
    used = {**conventions(runs), **(result.conventions or {})}
    notes = spike_warnings(runs, left_out, keep_diverged)
    result = replace(result, data=source, conventions=used, warnings=(*result.warnings, *notes))
    final = final_rows(runs, result.approach)
    outliers = find_suspects(final, result.options.isoflop_tolerance)
    result = replace(result, outliers=outliers)
    bt = backtest(runs, result)  # the top budgets held out (FitOptions.backtest_holdout)
    N, D, _, _ = columns(final)
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
                curves=curve_table,
            )
    return FitOutput(result=result, doc=doc, written=tuple(written), backtest=bt)


def spike_warnings(runs: Any, left_out: list[str], keep_diverged: bool) -> list[str]:
    """One line for the diverged runs left out, one for fitted runs whose loss spiked more
    often than their updates were skipped (``train.spike.action=warn``: nothing contained)."""
    lines = []
    if left_out:
        why = "no final loss" if keep_diverged else "pass --keep-diverged to fit those with a loss"
        lines.append(
            f"left out {len(left_out)} diverged run(s) (MLflow tag scaling.diverged; {why}): "
            + ", ".join(left_out)
        )
    if "spikes" in runs.columns:
        spikes = pd.to_numeric(runs["spikes"], errors="coerce").fillna(0)
        skipped = 0
        if "skipped_steps" in runs.columns:
            skipped = pd.to_numeric(runs["skipped_steps"], errors="coerce").fillna(0)
        loose = runs[spikes > skipped]
        if len(loose):
            lines.append(
                f"{len(run_names(loose))} fitted run(s) had loss spikes that were not skipped "
                "(train.spike.action=warn); check their curves: " + ", ".join(run_names(loose))
            )
    if keep_diverged and DIVERGED in runs.columns and diverged_mask(runs).any():
        kept = run_names(runs[diverged_mask(runs)])
        lines.append(f"kept {len(kept)} diverged run(s) (--keep-diverged): " + ", ".join(kept))
    return lines
