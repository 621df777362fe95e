"""How long a run takes: the throughput model behind ``scaling plan``'s hours and the sweep's ETA.

A run's wall-clock is its tokens at a throughput that is a power law of the parameters, plus a
fixed cost per optimizer step and per run (:class:`Throughput`).  The default model
(:meth:`Throughput.default`) is fitted to the tokens per second measured at three sizes on this
project's reference machine (README, "Training throughput"); :func:`throughput_from_runs` fits one
to a collected run table of the user's own machine.

Pure: numpy and the core; the run table is read only when asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from scaling.errors import UserError

# The default throughput: (params, tokens/s) measured at three sizes on this project's reference
# machine (README, "Training throughput": benchmarks/bench_train.py).
README_THROUGHPUT = ((124_672, 63_607.0), (842_496, 12_665.0), (3_290_624, 4_135.0))

# The default fixed costs on the same machine: seconds per optimizer step (what decides the
# wall-clock of the smallest models, where the FLOPs take under a millisecond a step) and per
# run (start-up, evaluations and tracking).
README_STEP_S = 0.0075
README_RUN_S = 3.0


@dataclass(frozen=True)
class Throughput:
    """Wall-clock of a run: ``tokens / tps(N) + steps · step_s + run_s``, with tokens per second
    a power law of parameters, ``tps = t0 (N / n0)^slope``.

    ``step_s`` is the fixed cost of an optimizer step (Python, kernel launches, the optimizer):
    for the smallest models it, not the FLOPs, decides the wall-clock. A throughput fitted to a
    run table's ``tokens_per_s`` already holds the step cost at those runs' batch, so it has
    ``step_s = 0``. ``run_s``: start-up, evaluations and tracking of one run.
    """

    n0: float
    t0: float
    slope: float
    source: str
    step_s: float = 0.0
    run_s: float = 0.0

    def tokens_per_s(self, params: float) -> float:
        return self.t0 * (params / self.n0) ** self.slope

    def seconds(self, params: float, tokens: float, steps: int = 0) -> float:
        """Wall-clock of one run of ``tokens`` tokens in ``steps`` optimizer steps."""
        return tokens / self.tokens_per_s(params) + steps * self.step_s + self.run_s

    def describe(self) -> str:
        text = f"{self.source}: tokens/s = {self.t0:,.0f} x (N / {self.n0:.3g})^{self.slope:.3f}"
        if self.step_s or self.run_s:
            text += f", + {1000 * self.step_s:.3g} ms a step + {self.run_s:.3g} s a run"
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
    def default(cls) -> Throughput:
        return _readme_throughput()


@lru_cache(maxsize=1)
def _readme_throughput() -> Throughput:
    """:meth:`Throughput.default`, fitted once (the sweep asks for it at every grid point)."""
    params, tps = zip(*README_THROUGHPUT, strict=True)
    source = (
        "default (README's measured 63,607 tok/s at 125K params, 12,665 at 842K, 4,135 at 3.3M "
        "on the 2-core CPU; pass --runs for your machine)"
    )
    fitted = Throughput.fit(params, tps, source)
    return replace(fitted, step_s=README_STEP_S, run_s=README_RUN_S)


def throughput_from_runs(path: str | Path) -> Throughput:
    """Fit throughput to a collected run table's ``tokens_per_s`` and ``params`` columns."""
    from scaling.analysis.table import read_run_table

    df = read_run_table(path)
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
