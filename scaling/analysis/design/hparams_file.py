"""The rule file ``hparams.json`` that ``fit --law hparams`` writes and ``train.lr=auto`` reads.

:func:`rule_document` holds the fitted laws with their intervals, the fitted range of C, the
per-budget optima and where they came from, in the format the core's reader
(:class:`scaling.hparams_rule.HparamsRule`) reads back before it is written; :func:`summary` is the
text the command prints.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

import pandas as pd

from scaling.analysis.design.hparams import DEFAULT_TOLERANCE, HparamsFit, fit_hparams
from scaling.analysis.design.hparams_law import DEFAULT_LEVEL
from scaling.analysis.table import read_run_table
from scaling.errors import UserError
from scaling.files import atomic_write_text
from scaling.hparams_rule import (
    EXTRAPOLATION_WARN,
    HPARAMS_CITATION,
    HPARAMS_FILE,
    HPARAMS_FORMAT,
    LR_RANGE,
    HparamsRule,
)
from scaling.numbers import fmt_g, jsonable

COMPUTE_CONVENTION = "C = 6 N D (N: total parameters, D: training tokens)"
METHOD = (
    "Runs grouped into compute budgets (planned_flops, else counted compute within a tolerance), "
    "losses averaged over seeds per (lr, batch) cell. Per budget, the LR profile (least loss over "
    "the batches tried at each LR) and the batch profile (least loss over the LRs tried at each "
    "batch) each get a least-squares parabola in log x through the best grid point and up to two "
    "neighbours either side; its vertex is the optimum when the best point is strictly inside "
    "the grid, the parabola convex and the vertex inside its points. ln x* = ln a + b ln C is "
    "fitted by weighted least squares, weights 1/Var(ln x*) (delta method on each parabola, "
    "floored at 1% of the median). Intervals: the regression's standard errors, the vertex "
    "variances' covariance (X'WX)^-1 scaled by the reduced chi-square of the scatter about the "
    "line when it exceeds 1 (Student t, n - 2 dof; normal quantiles otherwise); without vertex "
    "variances, ordinary least squares (t, n - 2 dof)."
)


def _unique(runs: pd.DataFrame, *cols: str) -> list[str] | None:
    for col in cols:
        if col in runs.columns:
            return sorted({str(v) for v in runs[col].dropna()})
    return None


def rule_document(
    fit: HparamsFit,
    runs: pd.DataFrame | None = None,
    *,
    table: str | None = None,
    command: str | None = None,
    date: str | None = None,
) -> dict[str, Any]:
    """The rule file (``hparams.json``): the laws with intervals, the fitted range of C, the
    per-budget optima and where it came from -- what ``train.lr=auto`` reads."""
    lo, hi = fit.compute_range
    source: dict[str, Any] = {
        "date": date or _dt.date.today().isoformat(),
        "command": command,
        "table": table,
        "runs": fit.n_runs,
        "budgets": len(fit.budgets),
        "grouped_by": fit.grouped_by,
    }
    if runs is not None:
        source["corpus"] = _unique(runs, "data.source", "corpus")
        source["corpus_id"] = _unique(runs, "corpus")
        source["tokenizer"] = _unique(runs, "tokenizer", "data.tokenizer")
    doc = {
        "format": HPARAMS_FORMAT,
        "equation": "lr(C) = coef * C^exponent; batch_tokens(C) = coef * C^exponent",
        "lr": fit.lr.to_dict(),
        "batch_tokens": None if fit.batch_tokens is None else fit.batch_tokens.to_dict(),
        "level": fit.level,
        "compute_convention": COMPUTE_CONVENTION,
        "fitted_compute": [lo, hi],
        "lr_range": list(LR_RANGE),
        "extrapolation_warn": EXTRAPOLATION_WARN,
        "source": source,
        "citation": HPARAMS_CITATION,
        "method": METHOD,
        "budgets": [b.to_dict() for b in fit.budgets],
        "warnings": list(fit.warnings),
    }
    doc = jsonable(doc)
    HparamsRule.from_document(doc, "fit", "the fitted rule")  # what auto will read, read back
    return doc


def write_rule(doc: dict[str, Any], out: Path) -> Path:
    """``out/hparams.json``, written atomically."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory; choose another output folder")
    out.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(out / HPARAMS_FILE, json.dumps(doc, indent=2) + "\n")


def fit_hparams_to_dir(
    table: Path,
    out: Path,
    *,
    level: float = DEFAULT_LEVEL,
    tolerance: float = DEFAULT_TOLERANCE,
    command: str | None = None,
) -> tuple[dict[str, Any], Path]:
    """Read ``table``, fit, write ``out/hparams.json``; the document and its path."""
    runs = read_run_table(table)
    fit = fit_hparams(runs, level=level, tolerance=tolerance, where=str(table))
    doc = rule_document(fit, runs, table=str(table), command=command)
    return doc, write_rule(doc, out)


def _ci(law: dict[str, Any], key: str) -> str:
    ci = (law.get("ci") or {}).get(key)
    return f" [{fmt_g(ci[0], 3)}, {fmt_g(ci[1], 3)}]" if ci and None not in ci else " [no interval]"


def summary(doc: dict[str, Any]) -> str:
    """The text ``scaling fit --law hparams`` prints: the rule, then the per-budget optima."""
    lo, hi = doc["fitted_compute"]
    level = f"{doc['level']:.0%}"
    src = doc.get("source") or {}
    lines = [
        f"hparams rule ({doc['citation'].split(':')[0]}), {doc['compute_convention']}; "
        f"fitted on {src.get('runs')} runs at {len(doc['budgets'])} budgets, C = "
        f"{lo:.3g}..{hi:.3g} FLOPs",
    ]
    lr = doc["lr"]
    lines.append(
        f"  lr(C)           = {fmt_g(lr['coef'])} x C^{fmt_g(lr['exponent'])}   "
        f"{level} intervals: coef{_ci(lr, 'coef')}, exponent{_ci(lr, 'exponent')}"
    )
    bt = doc.get("batch_tokens")
    if bt:
        lines.append(
            f"  batch_tokens(C) = {fmt_g(bt['coef'])} x C^{fmt_g(bt['exponent'])}   "
            f"{level} intervals: coef{_ci(bt, 'coef')}, exponent{_ci(bt, 'exponent')}"
        )
    else:
        lines.append("  batch_tokens(C): none (see the warnings)")
    lines.append(f"  intervals: {lr['interval']}")
    lines.append("per budget (optimum = parabola vertex of the profile; se of ln x):")
    lines.append(
        f"  {'C (FLOPs)':>10} {'runs':>5} {'params':>9} {'best lr':>9} {'se':>6} "
        f"{'batch tok':>9} {'se':>6} {'batch seq':>9} {'best run (lr, batch tok, loss)':>32}"
    )
    for b in doc["budgets"]:
        blr, bbt, bs = b["lr"], b.get("batch_tokens") or {}, b.get("batch_size") or {}
        run = b["best_run"]
        best = (
            f"{fmt_g(run['lr'], 3)}, {fmt_g(run.get('batch_tokens'), 4)}, {fmt_g(run['loss'], 4)}"
        )
        sizes = ",".join(f"{p:.3g}" for p in b["params"])
        lines.append(
            f"  {b['flops']:>10.3g} {b['n_runs']:>5} {sizes:>9} {fmt_g(blr['best'], 3):>9} "
            f"{fmt_g(blr['log_se'], 2):>6} {fmt_g(bbt.get('best'), 4):>9} "
            f"{fmt_g(bbt.get('log_se'), 2):>6} {fmt_g(bs.get('best'), 3):>9} {best:>32}"
        )
    return "\n".join(lines)
