"""A curves table read into runs, each with the LR of every update.

A table with an ``lr`` column gives each run's LR from it (:mod:`.traces`: curves from any
trainer).  Otherwise (``scaling collect --curves`` of runs that did not log ``lr``) every run's
schedule is rebuilt from its own config columns (``train.schedule``,
``train.warmup``, ``train.warmup_steps``, ``train.cooldown``, ``train.min_lr_ratio``,
``train.lr``) from step 0; its step ``s`` is ``tokens / (train.batch_size * model.seq_len)`` and
its horizon ``final_tokens``, else ``train.tokens``, else its last logged step.  A
``branch_role`` of ``stable`` / ``branch`` marks a WSD cooldown branch and the constant-LR run
it starts from: a branch without ``train.warmup_steps`` takes its stable run's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from scaling.analysis.curves.law import (
    TRAIN_DEFAULTS,
    CurveOptions,
    Schedule,
    eta_from,
    schedule_areas,
)
from scaling.errors import DataError, UserError
from scaling.schedule import warmup_length

Array = np.ndarray

# run-table columns of the schedule: (field of Schedule, its columns in order of preference)
_SCHEDULE_COLUMNS = {
    "schedule": ("train.schedule",),
    "warmup": ("train.warmup",),
    "warmup_steps": ("train.warmup_steps",),
    "cooldown": ("train.cooldown",),
    "min_lr_ratio": ("train.min_lr_ratio",),
    "lr": ("train.lr", "lr"),
}
_BATCH_COLUMNS = ("train.batch_size", "batch_size")
_SEQ_COLUMNS = ("model.seq_len", "seq_len")
_TOTAL_COLUMNS = ("final_tokens", "train.tokens")  # a run's planned horizon, in tokens
# columns that differ between seed replicates only by `seed` (plus the schedule's)
_REPLICATE_PREFIXES = ("model.", "train.", "data.")


@dataclass(frozen=True)
class RunCurve:
    """One run's logged curve with its schedule: steps (optimizer steps done at each
    validation) and losses, in step order."""

    run_id: str
    params: float  # 0: a table without a params column (one model size, its count unknown)
    schedule: Schedule | None  # None: the run's LR is its trace
    tokens_per_step: int | None  # None: a table of steps without tokens
    total_steps: int
    steps: Array = field(compare=False, repr=False)
    loss: Array = field(compare=False, repr=False)
    role: str | None = None
    seed: Any = None
    config: tuple[tuple[str, str], ...] = field(default=(), compare=False, repr=False)
    trace: Array | None = field(default=None, compare=False, repr=False)  # LR of each update

    @property
    def final_step(self) -> int:
        return int(self.steps[-1])

    @property
    def final_loss(self) -> float:
        return float(self.loss[-1])

    @property
    def final_tokens(self) -> int | None:
        """Tokens seen at the last logged point (None without tokens per step)."""
        return None if self.tokens_per_step is None else self.final_step * self.tokens_per_step

    @property
    def label(self) -> str:
        """The schedule's label, or ``lr trace``."""
        return self.schedule.label() if self.schedule is not None else "lr trace"

    @property
    def lr_source(self) -> Schedule | Array:
        """What the law reads the run's LRs from: its schedule, else its trace."""
        return self.schedule if self.schedule is not None else self.trace  # type: ignore[return-value]

    def eta(self, options: CurveOptions) -> Array:
        """The LR of each update ``0 .. total_steps - 1``."""
        return eta_from(self.lr_source, self.total_steps, options.warmup_as_peak)

    def warmup(self) -> int:
        """Updates of warmup (0 for a trace: its rows say what it is)."""
        return 0 if self.schedule is None else warmup_length(self.total_steps, self.schedule)

    def areas(self, options: CurveOptions, lam: float | None = None) -> tuple[Array, Array]:
        """Tissue's ``S1``, ``S2`` at this run's logged steps."""
        lam = float(options.lam) if lam is None else lam
        S1, S2 = schedule_areas(self.eta(options), 1.0, lam)
        return S1[self.steps], S2[self.steps]


def _first(df: pd.DataFrame, names: Iterable[str]) -> str | None:
    return next((c for c in names if c in df.columns), None)


def _number(value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return math.nan
    return x


def _run_schedule(rows: pd.DataFrame, cols: Mapping[str, str | None], run_id: str) -> Schedule:
    row = rows.iloc[0]
    values: dict[str, Any] = {}
    for key, col in cols.items():
        raw = row[col] if col is not None else None
        if key == "schedule":
            values[key] = str(raw).strip()
            continue
        x = _number(raw)
        if key == "lr" and not math.isfinite(x):
            raise DataError(f"run {run_id}: no peak learning rate ({col}={raw!r})")
        if key == "warmup_steps":
            values[key] = None if not math.isfinite(x) else int(round(x))
        else:
            values[key] = x if math.isfinite(x) else TRAIN_DEFAULTS[key]
    try:
        return Schedule(**values)
    except UserError as err:
        raise DataError(f"run {run_id}: {err}") from None


def schedule_curves(
    df: pd.DataFrame, warnings: list[str], *, need_curves: bool = True
) -> list[RunCurve]:
    """The runs of a curves table without an ``lr`` column, each with its schedule rebuilt
    from its config columns (what was assumed is appended to ``warnings``); raises
    :class:`DataError` with one line for a table the law cannot use (with ``need_curves``, also
    for a table whose every run has one row: nothing to fit)."""
    reader = ScheduleReader(df, warnings)
    _need_curves(df, "run_id", need_curves)
    runs = [reader.run(str(k), rows) for k, rows in df.groupby("run_id", sort=False)]
    return branch_warmups(runs, warnings)


def _need_curves(df: pd.DataFrame, run_col: str, need_curves: bool) -> None:
    if need_curves and df.groupby(run_col, sort=False).size().max() < 2:
        raise DataError(
            "--law curve needs loss curves: every run has one row; collect them with "
            "`scaling collect --curves --out FILE`"
        )


class ScheduleReader:
    """Each run's schedule rebuilt from a curves table's config columns (``scaling collect
    --curves``); raises :class:`DataError` for a table without them."""

    def __init__(self, df: pd.DataFrame, warnings: list[str]) -> None:
        missing = [c for c in ("run_id", "params", "tokens", "loss") if c not in df.columns]
        if missing:
            raise DataError(f"--law curve needs column(s) {', '.join(missing)} of a curves table")
        needed = {
            "train.lr (or lr)": _first(df, _SCHEDULE_COLUMNS["lr"]),
            "train.batch_size (or batch_size)": _first(df, _BATCH_COLUMNS),
            "model.seq_len (or seq_len)": _first(df, _SEQ_COLUMNS),
            "train.schedule": _first(df, _SCHEDULE_COLUMNS["schedule"]),
        }
        absent = [name for name, col in needed.items() if col is None]
        if absent:
            raise DataError(
                f"--law curve needs column(s) {', '.join(absent)} to rebuild each run's LR "
                "schedule (a table from `scaling collect --curves` has them), or an lr column "
                "(run, step, lr, loss)"
            )
        self.cols = {key: _first(df, names) for key, names in _SCHEDULE_COLUMNS.items()}
        for key in ("warmup", "cooldown", "min_lr_ratio"):
            if self.cols[key] is None:
                warnings.append(
                    f"no column train.{key}: assumed the default {TRAIN_DEFAULTS[key]:g} for "
                    "every run"
                )
        self.batch_col = needed["train.batch_size (or batch_size)"]
        self.seq_col = needed["model.seq_len (or seq_len)"]
        self.total_col = _first(df, _TOTAL_COLUMNS)
        self.config_cols = sorted(
            c for c in df.columns if c.startswith(_REPLICATE_PREFIXES) and c != "seed"
        )
        self.warnings = warnings

    def run(self, run_id: str, rows: pd.DataFrame) -> RunCurve:
        """The run of ``rows`` (one run's rows), its schedule rebuilt from step 0."""
        rows = rows.sort_values("tokens", kind="stable")
        schedule = _run_schedule(rows, self.cols, run_id)
        batch_col, seq_col, total_col = self.batch_col, self.seq_col, self.total_col
        batch, seq = _number(rows[batch_col].iloc[0]), _number(rows[seq_col].iloc[0])
        if not (batch > 0 and seq > 0):
            raise DataError(
                f"run {run_id}: {batch_col}={rows[batch_col].iloc[0]!r} and "
                f"{seq_col}={rows[seq_col].iloc[0]!r} must be positive numbers"
            )
        tps = int(round(batch * seq))
        tokens = rows["tokens"].to_numpy(dtype=float)
        steps = np.rint(tokens / tps).astype(int)
        total = math.nan
        if total_col is not None and rows[total_col].notna().any():
            total = _number(rows[total_col].dropna().iloc[0])
        total_steps = int(total // tps) if math.isfinite(total) and total > 0 else int(steps.max())
        if steps.max() > total_steps:
            self.warnings.append(
                f"run {run_id}: logged up to step {steps.max()}, beyond its planned "
                f"{total_steps}; its horizon taken as the last logged step"
            )
            total_steps = int(steps.max())
        role = None
        if "branch_role" in rows.columns:
            value = rows["branch_role"].iloc[0]
            role = str(value).strip() if isinstance(value, str) and value.strip() else None
        seed = rows["seed"].iloc[0] if "seed" in rows.columns else None
        return RunCurve(
            run_id=run_id,
            params=float(rows["params"].iloc[0]),
            schedule=schedule,
            tokens_per_step=tps,
            total_steps=total_steps,
            steps=steps,
            loss=rows["loss"].to_numpy(dtype=float),
            role=role,
            seed=None if seed is None or pd.isna(seed) else seed,
            config=tuple((c, str(rows[c].iloc[0])) for c in self.config_cols),
        )


def branch_warmups(runs: list[RunCurve], warnings: list[str]) -> list[RunCurve]:
    """A branch logged without ``train.warmup_steps`` takes its stable run's (same size): every
    branch's schedule is the stable run's up to its cooldown start."""
    stable = {
        r.params: r.schedule.warmup_steps
        for r in runs
        if r.role == "stable" and r.schedule is not None and r.schedule.warmup_steps is not None
    }
    out = []
    for r in runs:
        if (
            r.role == "branch"
            and r.schedule is not None
            and r.schedule.warmup_steps is None
            and r.params in stable
        ):
            warnings.append(
                f"run {r.run_id}: a branch without train.warmup_steps: took its stable run's "
                f"({stable[r.params]} steps)"
            )
            r = replace(r, schedule=replace(r.schedule, warmup_steps=stable[r.params]))
        out.append(r)
    return out


def group_sizes(runs: Sequence[RunCurve]) -> list[list[RunCurve]]:
    """Runs grouped by ``params``, smallest size first."""
    by: dict[float, list[RunCurve]] = {}
    for r in runs:
        by.setdefault(r.params, []).append(r)
    return [by[k] for k in sorted(by)]
