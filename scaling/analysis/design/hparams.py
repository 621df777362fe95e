"""``scaling fit --law hparams``: the LR and batch size that scale with compute.

DeepSeek LLM (DeepSeek-AI 2024, arXiv 2401.02954, Sec. 3.1) fits the near-optimal learning rate
and batch size of small runs as power laws of the compute budget, ``eta_opt = a C^b`` and
``B_opt = c C^d`` (B in tokens), and sets both for every larger run from them.  This module does
the same on a run table whose runs vary ``lr`` and ``batch_size`` at several budgets
(``sweeps=hparams``), with ``C = 6 N D`` (N: total parameters, D: training tokens).

**Budgets** are grouped as for approach 2 (:func:`scaling.analysis.fitting.isoflop.budget_labels`:
``planned_flops`` when every run has one, else counted compute within a tolerance); a budget's
``C`` is the geometric mean of its runs' ``flops``.  Each budget's LR and batch optima come from
:mod:`.hparams_optima`, the power laws through them from :mod:`.hparams_law`, and the rule file
that ``train.lr=auto`` / ``train.batch_size=auto`` read from :mod:`.hparams_file`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from scaling.analysis.design.hparams_law import DEFAULT_LEVEL, LawFit, fit_power_law
from scaling.analysis.design.hparams_optima import (
    BudgetOptima,
    budget_optima,
    distinct_values,
    with_variances,
)
from scaling.analysis.fitting.isoflop import budget_labels
from scaling.errors import DataError

Array = np.ndarray

DEFAULT_TOLERANCE = 0.1  # decades of counted compute that share a budget without planned_flops


@dataclass(frozen=True)
class HparamsFit:
    budgets: tuple[BudgetOptima, ...]
    lr: LawFit
    batch_tokens: LawFit | None
    level: float
    n_runs: int
    grouped_by: str
    warnings: tuple[str, ...]

    @property
    def compute_range(self) -> tuple[float, float]:
        used = [b.flops for b in self.budgets if b.lr.value is not None]
        return min(used), max(used)


def _batch_tokens(df: pd.DataFrame, where: str) -> Array | None:
    """Each run's batch in tokens: a ``batch_tokens`` column, else ``batch_size`` (sequences) x
    ``seq_len``; None without either."""
    if "batch_tokens" in df.columns:
        return _positive(df, "batch_tokens", where)
    if "batch_size" not in df.columns:
        return None
    if "seq_len" not in df.columns:
        raise DataError(
            f"{where}: has batch_size but no seq_len column: batches are compared in tokens "
            "(batch_size x seq_len); add seq_len or a batch_tokens column"
        )
    return _positive(df, "batch_size", where) * _positive(df, "seq_len", where)


def _positive(df: pd.DataFrame, col: str, where: str) -> Array:
    values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
    bad = ~(np.isfinite(values) & (values > 0))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{where}: column {col!r} needs a positive number on every row; row {row + 1} has "
            f"{df[col].iloc[row]!r}"
        )
    return values


def _law(
    budgets: Sequence[BudgetOptima], which: str, level: float, warnings: list[str]
) -> tuple[tuple[BudgetOptima, ...], LawFit | None]:
    """The budgets with ``which`` (``lr`` | ``batch_tokens``) optima given their ``log_se``, and
    the power law through those optima (None, with a warning, at fewer than two)."""
    optima, dof = with_variances([getattr(b, which) for b in budgets if getattr(b, which)])
    it = iter(optima)
    budgets = tuple(replace(b, **{which: next(it)}) if getattr(b, which) else b for b in budgets)
    name = "LR" if which == "lr" else "batch"
    for b in budgets:
        o = getattr(b, which)
        if o is not None and o.value is None:
            warnings.append(f"budget {b.flops:.3g} FLOPs has no {name} optimum: {o.problem}")
    good = [b for b in budgets if getattr(b, which) and getattr(b, which).value is not None]
    if len(good) < 2:
        return budgets, None
    law = fit_power_law(
        [b.flops for b in good],
        [getattr(b, which).value for b in good],
        [getattr(b, which).log_se for b in good],
        level,
        dof,
    )
    return budgets, law


def _arrays(runs: pd.DataFrame, where: str) -> tuple[Array, Array | None]:
    """Each run's lr and batch in tokens (None: no batch column), checked."""
    if "lr" not in runs.columns:
        raise DataError(
            f"{where}: no lr column; --law hparams needs runs that vary lr (and batch_size) at "
            "several compute budgets, e.g. python -m scaling.sweep -m sweeps=hparams"
        )
    lr = _positive(runs, "lr", where)
    if distinct_values(lr)[0].size < 2:
        raise DataError(
            f"{where}: every run has lr={lr[0]:g}: --law hparams needs several learning rates "
            "per compute budget (e.g. python -m scaling.sweep -m sweeps=hparams)"
        )
    return lr, _batch_tokens(runs, where)


def fit_hparams(
    runs: pd.DataFrame,
    *,
    level: float = DEFAULT_LEVEL,
    tolerance: float = DEFAULT_TOLERANCE,
    where: str = "the run table",
) -> HparamsFit:
    """Per-budget LR and batch optima of ``runs`` (a run table) and their power laws in C
    (raises :class:`DataError` with one line when the table cannot give an LR rule)."""
    lr, bt = _arrays(runs, where)
    flops = runs["flops"].to_numpy(dtype=float)
    labels, grouped_by = budget_labels(runs, flops, tolerance)
    if np.unique(labels).size < 2:
        raise DataError(
            f"{where}: all {len(runs)} runs are at one compute budget "
            f"({math.exp(np.log(flops).mean()):.3g} FLOPs): a power law in C needs budgets at "
            "two or more (sweeps=hparams has 3)"
        )
    budgets = [budget_optima(runs, np.flatnonzero(labels == k), lr, bt) for k in np.unique(labels)]
    if all(len(b.lr.tried) < 2 for b in budgets):
        raise DataError(
            f"{where}: each compute budget has a single learning rate: --law hparams needs "
            "several per budget (e.g. python -m scaling.sweep -m sweeps=hparams)"
        )
    warnings = [
        f"budget {b.flops:.3g} FLOPs has {len(b.params)} model sizes: its profiles take the best "
        "over sizes too"
        for b in budgets
        if len(b.params) > 1
    ]
    with_lr, lr_law = _law(budgets, "lr", level, warnings)
    if lr_law is None:
        found = sum(b.lr.value is not None for b in with_lr)
        reasons = "; ".join(
            f"at {b.flops:.3g} FLOPs {b.lr.problem}" for b in with_lr if b.lr.problem
        )
        raise DataError(
            f"{where}: an LR optimum at {found} of {len(with_lr)} budgets, a power law needs 2: "
            f"{reasons}"
        )
    final, batch_law = _law(with_lr, "batch_tokens", level, warnings)
    if batch_law is None:
        why = (
            "batch_size does not vary within any budget"
            if all(b.batch_tokens is None for b in final)
            else "a batch optimum at fewer than 2 budgets"
        )
        warnings.append(
            f"{why}: no batch law (train.batch_size=auto refuses this rule; vary "
            "train.batch_size around the optimum to get one)"
        )
    return HparamsFit(
        budgets=final,
        lr=lr_law,
        batch_tokens=batch_law,
        level=level,
        n_runs=len(runs),
        grouped_by=grouped_by,
        warnings=tuple(warnings),
    )
