"""Curves from any trainer: a curves table with the learning rate of each point.

A table with an ``lr`` column (``run, step, lr, loss``, plus ``params`` / ``tokens`` when known,
e.g. an MLflow or W&B export, or ``scaling collect --curves`` of runs that logged ``lr``) gives
each run's LR from it, not from a rebuilt schedule.  A row's ``lr`` is the LR of the update
after its step (0-based update ``step``: what a trainer's scheduler reports after ``step``
updates, and what ``scaling.schedule.lr_factor(step)`` gives); between a run's rows the LR is
interpolated linearly; before its first row it is the first row's LR (the warmup counted at the
peak, as the curve law does), unless the table has a ``warmup_steps`` column: then the updates
``i < warmup_steps`` before the first row ramp linearly, ``lr_first * (i + 1) / warmup_steps``.
A run's horizon is its last row.  Without a ``params`` column the table is one model size
(``params`` 0); without ``step``, steps are ``tokens / (train.batch_size * model.seq_len)``.

A run that also has this project's schedule columns (``train.schedule``, ...) and whose logged
``lr`` equals its rebuilt schedule at every row after warmup (within :data:`MATCH_RTOL` of its
peak) is read
through its schedule (:class:`.runs.ScheduleReader`): the same LRs, known at every update, not
only at the validation points; one whose ``lr`` differs is read from its trace, with a warning.

Bad tables raise :class:`DataError` (one line): a missing column, steps not increasing within a
run, an LR negative or not finite, a loss missing or not positive.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from scaling.analysis.curves.runs import (
    _BATCH_COLUMNS,
    _SEQ_COLUMNS,
    RunCurve,
    ScheduleReader,
    branch_warmups,
)
from scaling.errors import DataError
from scaling.schedule import lr_factor

Array = np.ndarray

LR_COLUMN = "lr"
RUN_COLUMNS = ("run", "run_id")
MATCH_RTOL = 1e-3  # a logged LR within this fraction of the peak of its rebuilt schedule


def lr_trace(
    steps: Sequence[int] | Array,
    lrs: Sequence[float] | Array,
    total_steps: int,
    warmup_steps: int | None = None,
) -> Array:
    """The LR of each update ``0 .. total_steps - 1`` from rows ``(steps[i], lrs[i])`` (the LR
    of update ``steps[i]``): linear between rows, the first row's before it (or a linear warmup
    over ``warmup_steps``), the last row's after it."""
    steps = np.asarray(steps, dtype=float)
    lrs = np.asarray(lrs, dtype=float)
    eta = np.interp(np.arange(int(total_steps), dtype=float), steps, lrs)
    if warmup_steps:
        w = int(min(warmup_steps, steps[0], total_steps))
        eta[:w] = lrs[0] * (np.arange(w) + 1.0) / warmup_steps
    return eta


def _first(df: pd.DataFrame, names: Sequence[str]) -> str | None:
    return next((c for c in names if c in df.columns), None)


def _numbers(rows: pd.DataFrame, col: str, run: str) -> Array:
    values = pd.to_numeric(rows[col], errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"run {run}: column {col!r} has a missing, NaN or non-numeric value "
            f"({rows[col].iloc[k]!r}) at row {rows.index[k] + 1} of the table"
        )
    return values


def trace_curves(
    df: pd.DataFrame, warnings: list[str], *, need_curves: bool = True
) -> list[RunCurve]:
    """The runs of a table with an ``lr`` column (module docstring), in the table's order."""
    run_col = _first(df, RUN_COLUMNS)
    batch_col, seq_col = _first(df, _BATCH_COLUMNS), _first(df, _SEQ_COLUMNS)
    has_steps = "step" in df.columns or (
        "tokens" in df.columns and batch_col is not None and seq_col is not None
    )
    missing = [name for name, ok in (("run", run_col), ("loss", "loss" in df.columns)) if not ok]
    if not has_steps:
        missing.append("step")
    if missing:
        raise DataError(
            f"a curves table with an lr column needs column(s) {', '.join(missing)} "
            "(run, step, lr, loss; params and tokens when known)"
        )
    if len(df) == 0:
        raise DataError("the curves table has no rows")
    if need_curves and df.groupby(run_col, sort=False).size().max() < 2:
        raise DataError("--law curve needs loss curves: every run of the table has one row")
    schedules = None
    if "train.schedule" in df.columns and {"run_id", "params", "tokens"} <= set(df.columns):
        try:
            schedules = ScheduleReader(df, [])
        except DataError:
            schedules = None
    runs = []
    for key, rows in df.groupby(run_col, sort=False):
        runs.append(_trace_run(str(key), rows, schedules, warnings))
    return branch_warmups(runs, warnings)


def _trace_run(
    run: str, rows: pd.DataFrame, schedules: ScheduleReader | None, warnings: list[str]
) -> RunCurve:
    lr = _numbers(rows, LR_COLUMN, run)
    loss = _numbers(rows, "loss", run)
    if (lr < 0).any():
        k = int(np.flatnonzero(lr < 0)[0])
        raise DataError(f"run {run}: lr must be >= 0, got {lr[k]:g} at row {rows.index[k] + 1}")
    if (loss <= 0).any():
        k = int(np.flatnonzero(loss <= 0)[0])
        raise DataError(f"run {run}: loss must be positive, got {loss[k]:g}")
    tokens = _numbers(rows, "tokens", run) if "tokens" in rows.columns else None
    if "step" in rows.columns:
        steps_f = _numbers(rows, "step", run)
    else:
        tps = _numbers(rows, _first(rows, _BATCH_COLUMNS), run) * _numbers(
            rows, _first(rows, _SEQ_COLUMNS), run
        )
        steps_f = np.rint(tokens / tps)
    if (steps_f < 0).any() or np.any(steps_f != np.round(steps_f)):
        raise DataError(f"run {run}: steps must be whole numbers >= 0")
    steps = steps_f.astype(int)
    if np.any(np.diff(steps) <= 0):
        k = int(np.flatnonzero(np.diff(steps) <= 0)[0])
        raise DataError(
            f"run {run}: steps must increase from row to row; step {steps[k + 1]} follows "
            f"{steps[k]} (sort the table by run, then step)"
        )
    params = 0.0
    if "params" in rows.columns:
        values = _numbers(rows, "params", run)
        if not (values > 0).all() or np.ptp(values) > 0:
            raise DataError(f"run {run}: params must be one positive number per run")
        params = float(values[0])
    if schedules is not None:
        rebuilt = schedules.run(run, rows)
        peak = rebuilt.schedule.lr  # type: ignore[union-attr]
        expected = np.array(
            [peak * lr_factor(s, rebuilt.total_steps, rebuilt.schedule) for s in steps]
        )
        after = steps > rebuilt.warmup()  # a logged warmup is interpolated: not compared
        if np.allclose(lr[after], expected[after], rtol=0, atol=MATCH_RTOL * peak):
            return rebuilt
        k = int(np.argmax(np.abs(lr - expected) * after))
        warnings.append(
            f"run {run}: its lr column ({lr[k]:.4g} at step {steps[k]}) is not its rebuilt "
            f"{rebuilt.label} schedule ({expected[k]:.4g}): read from the lr column"
        )
    total_steps = max(1, int(steps[-1]))
    warmup = None
    if "warmup_steps" in rows.columns and rows["warmup_steps"].notna().any():
        value = float(pd.to_numeric(rows["warmup_steps"], errors="coerce").dropna().iloc[0])
        warmup = int(value) if math.isfinite(value) and value > 0 else None
    tps_out = None
    if tokens is not None and steps[-1] > 0:
        tps_out = int(round(tokens[-1] / steps[-1]))
    seed = rows["seed"].iloc[0] if "seed" in rows.columns else None
    role = rows["branch_role"].iloc[0] if "branch_role" in rows.columns else None
    return RunCurve(
        run_id=run,
        params=params,
        schedule=None,
        tokens_per_step=tps_out,
        total_steps=total_steps,
        steps=steps,
        loss=loss,
        role=role.strip() if isinstance(role, str) and role.strip() else None,
        seed=None if seed is None or pd.isna(seed) else seed,
        trace=lr_trace(steps, lr, total_steps, warmup),
    )
