"""How long a run takes: the throughput model behind ``scaling plan``'s hours and the sweep's ETA.

A run's wall-clock is its tokens at a throughput that is a power law of the parameters, plus a
fixed cost per optimizer step and per run (:class:`Throughput`); a set of runs trained several at
once (a study's stages: one worker per core) takes :meth:`Throughput.wall_seconds`.  The default
model (:meth:`Throughput.default`) is this project's measurement on its reference machine (README,
"What a ladder costs"); :func:`throughput_from_runs` fits one to a collected run table of the
user's own machine: to each run's wall-clock (``wall_s``) when the table has it.

Pure: numpy and the core; the run table is read only when asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from scaling.errors import UserError

# The default throughput: Throughput.fit_wall on 22 runs of this project's reference machine
# (2-core CPU, one torch thread a run, two runs at once: a study's stages), README "What a
# ladder costs"; tests/data/throughput_reference.csv holds them.
DEFAULT_FIT = {
    "n0": 23_270.0,
    "t0": 177_243.0,
    "slope": -0.7395,
    "step_s": 1.535e-3,
    "run_s": 0.588,
}
# A sweep job's time outside its MLflow run (composing, the token cache and run key look-ups;
# all a finished run costs when the sweep skips it) and a sweep's own start, on the same
# machine: 5, 13 and 30 skipped runs took 9.2, 15.4 and 27.9 s, 2 at a time.
DEFAULT_JOB_S = 1.56
DEFAULT_SWEEP_S = 4.5
# The same costs of a sweep run inside a process that has run one before (a study's stages,
# training.sweep.run_sweep), on the same machine: the driver is started and the launcher's
# workers have imported torch and Lightning. Before its first job it composes and validates
# every grid point (point_s each); a trained job costs job_s outside its MLflow run. The
# process's first sweep that trains also waits for its workers' imports (WORKER_START_S). The
# README's "What a ladder costs" has the measurement.
IN_PROCESS_COSTS = {"sweep_s": 0.9, "point_s": 0.23, "job_s": 0.5}
WORKER_START_S = 4.5
# A wall-clock fit needs this many runs (four coefficients) spanning this many decades of N.
MIN_WALL_RUNS = 6
MIN_WALL_DECADES = 0.5


@dataclass(frozen=True)
class Throughput:
    """Wall-clock of a run: ``tokens / tps(N) + steps · step_s + run_s``, with tokens per second
    a power law of parameters, ``tps = t0 (N / n0)^slope``.

    ``step_s`` is the fixed cost of an optimizer step (Python, kernel launches, the optimizer):
    for the smallest models it, not the FLOPs, decides the wall-clock. A throughput fitted to a
    run table's ``tokens_per_s`` already holds the step cost at those runs' batch, so it has
    ``step_s = 0``. ``run_s``: start-up, evaluations and tracking of one run (inside its MLflow
    run); ``job_s``: a sweep job's time outside it, ``sweep_s``: a sweep's start
    (:meth:`wall_seconds`).
    """

    n0: float
    t0: float
    slope: float
    source: str
    step_s: float = 0.0
    run_s: float = 0.0
    job_s: float = 0.0
    sweep_s: float = 0.0
    point_s: float = 0.0

    def tokens_per_s(self, params: float) -> float:
        return self.t0 * (params / self.n0) ** self.slope

    def seconds(self, params: float, tokens: float, steps: int = 0) -> float:
        """Wall-clock of one run of ``tokens`` tokens in ``steps`` optimizer steps."""
        return tokens / self.tokens_per_s(params) + steps * self.step_s + self.run_s

    def wall_seconds(self, seconds: Sequence[float], workers: int = 1) -> float:
        """Wall-clock of a sweep whose jobs train for ``seconds`` each (0: a run already
        finished, skipped), dispatched in that order to ``workers`` that each take the next job
        when free (Hydra's joblib launcher): its start and the validation of its points, plus
        the last worker's finish, every job costing ``job_s`` more."""
        free = [0.0] * max(1, workers)
        for s in seconds:
            i = free.index(min(free))
            free[i] += s + self.job_s
        return self.sweep_s + self.point_s * len(seconds) + max(free)

    def describe(self) -> str:
        text = f"{self.source}: tokens/s = {self.t0:,.0f} x (N / {self.n0:.3g})^{self.slope:.3f}"
        if self.step_s or self.run_s:
            text += f", + {1000 * self.step_s:.3g} ms a step + {self.run_s:.3g} s a run"
        if self.job_s or self.sweep_s:
            text += f" + {self.job_s:.3g} s a job + {self.sweep_s:.3g} s a sweep"
        if self.point_s:
            text += f" + {self.point_s:.3g} s a grid point"
        return text

    @classmethod
    def fit(cls, params: Sequence[float], tps: Sequence[float], source: str) -> Throughput:
        """Least squares of ``log tps`` on ``log N``; one size keeps the default slope."""
        logn, logt = np.log(np.asarray(params, float)), np.log(np.asarray(tps, float))
        n0 = float(np.exp(logn.mean()))
        if np.ptp(logn) < 1e-9:
            slope = cls.default().slope
        else:
            slope = float(np.polyfit(logn, logt, 1)[0])
        # the line passes through the centroid (mean log N, mean log tps)
        return cls(n0=n0, t0=float(np.exp(logt.mean())), slope=slope, source=source)

    @classmethod
    def fit_wall(
        cls,
        params: Sequence[float],
        tokens: Sequence[float],
        steps: Sequence[float],
        wall_s: Sequence[float],
        source: str,
    ) -> Throughput:
        """Every coefficient of :meth:`seconds` from runs' measured wall-clock: least squares
        of ``log wall_s`` (a run's share of the error, whatever its length), ``step_s`` and
        ``run_s`` non-negative."""
        n, d, k, w = (np.asarray(x, float) for x in (params, tokens, steps, wall_s))
        n0 = float(np.exp(np.log(n).mean()))

        def model(x: np.ndarray) -> np.ndarray:
            log_t0, slope, step_ms, run_s = x
            return d / (np.exp(log_t0) * (n / n0) ** slope) + k * step_ms / 1e3 + run_s

        start = cls.fit(n, d / w, source)  # every second counted as token time
        x0 = [np.log(start.t0), start.slope, 0.5, 0.5]
        lo, hi = [-np.inf, -3.0, 0.0, 0.0], [np.inf, 1.0, np.inf, np.inf]
        x = least_squares(lambda x: np.log(model(x)) - np.log(w), x0, bounds=(lo, hi)).x
        return cls(
            n0=n0,
            t0=float(np.exp(x[0])),
            slope=float(x[1]),
            source=source,
            step_s=float(x[2]) / 1e3,
            run_s=float(x[3]),
        )

    @classmethod
    def default(cls) -> Throughput:
        return _default_throughput()


@lru_cache(maxsize=1)
def _default_throughput() -> Throughput:
    """:meth:`Throughput.default` (the sweep asks for it at every grid point)."""
    source = (
        "default (this project's 2-core CPU, one thread a run, two at once: README, \"What a "
        'ladder costs"; pass --runs for your machine)'
    )
    return Throughput(**DEFAULT_FIT, source=source, job_s=DEFAULT_JOB_S, sweep_s=DEFAULT_SWEEP_S)


def throughput_from_runs(path: str | Path) -> Throughput:
    """Fit throughput to a collected run table: to each run's wall-clock (``wall_s``, with
    ``tokens``, ``batch_size`` and ``seq_len`` for its steps) when at least
    :data:`MIN_WALL_RUNS` runs spanning :data:`MIN_WALL_DECADES` of N have it, else to the
    ``tokens_per_s`` and ``params`` columns (no fixed costs)."""
    from scaling.analysis.table import read_run_table

    df = read_run_table(path)
    wall = throughput_from_wall(df, f"{path}")
    if wall is not None:
        return wall
    if "tokens_per_s" not in df.columns:
        raise UserError(
            f"--runs {path}: no tokens_per_s column; use a table written by `scaling collect`"
        )
    tps = np.asarray(df["tokens_per_s"], dtype=float)
    params = np.asarray(df["params"], dtype=float)
    ok = np.isfinite(tps) & (tps > 0) & np.isfinite(params) & (params > 0)
    if not ok.any():
        raise UserError(f"--runs {path}: no row has a positive tokens_per_s and params")
    n = int(ok.sum())
    return Throughput.fit(params[ok], tps[ok], f"fitted to {n} run{'s' if n > 1 else ''} of {path}")


def throughput_from_wall(df, where: str) -> Throughput | None:  # df: pandas.DataFrame
    """:meth:`Throughput.fit_wall` on the rows of a run table that have a wall-clock (a WSD
    branch's covers its cooldown only: left out); None when too few rows have one."""
    need = {"wall_s", "params", "tokens", "batch_size", "seq_len"}
    if not need <= set(df.columns):
        return None
    if "branch_role" in df.columns:
        df = df[df["branch_role"].isna()]
    cols = {c: np.asarray(df[c], dtype=float) for c in need}
    steps = cols["tokens"] / (cols["batch_size"] * cols["seq_len"])
    ok = np.isfinite(cols["wall_s"]) & (cols["wall_s"] > 0) & (cols["params"] > 0)
    ok &= np.isfinite(steps) & (steps > 0)
    if ok.sum() < MIN_WALL_RUNS or np.ptp(np.log10(cols["params"][ok])) < MIN_WALL_DECADES:
        return None
    n = int(ok.sum())
    fitted = Throughput.fit_wall(
        cols["params"][ok],
        cols["tokens"][ok],
        steps[ok],
        cols["wall_s"][ok],
        f"fitted to the wall-clock of {n} runs of {where}",
    )
    default = Throughput.default()
    return replace(fitted, job_s=default.job_s, sweep_s=default.sweep_s)
