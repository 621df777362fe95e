"""Benchmark: does approach 2's 90% prediction interval 10x beyond an IsoFLOP ladder cover a new
run when the true loss frontier is not of the fitted form? (issue 21, "Coverage under the wrong
form")

    .venv/bin/python benchmarks/bench_coverage.py                 # 300 tables a cell, ~9 min
    .venv/bin/python benchmarks/bench_coverage.py --quick         # 40 tables a cell, ~1.5 min
    .venv/bin/python benchmarks/bench_coverage.py --tables 400 --truths irreducible --budgets 3

For each truth and ladder (3, 4 or 6 budgets x3 apart, the top one at 1e19 FLOPs), ``--tables``
seeded run tables: at each budget 5 sizes spaced evenly in log N over the true optimum
``10^±0.6`` (what ``scaling plan`` lays out around its prior), plus 2 more seeds of the centre
size (seed replicates, from which the fit measures run noise), every loss the truth times
``exp(0.01 z)``. Each table is fitted with approach 2 (``fit(..., approach=2)``, default
options, ``--bootstrap`` resamples, seed = the table's, 90% intervals); its compute-optimal
prediction at 1e20 (10x the top budget) gives the size a user would train, and the prediction
interval of that size's run (``Predictor.at_size``, what ``scaling verify`` prints) is judged
against a new run of that size drawn from the truth with the same noise.

Truths (none is a pure power-law frontier; each misses a power law through 3 budgets by about 3%
at 10x):

* ``irreducible``: Hoffmann et al.'s law ``E + A/N^α + B/D^β`` (E = 1.69, A = 406.4, B = 410.7,
  α = 0.34, β = 0.28): the frontier flattens towards E.
* ``steepening``: the same law without E times ``(1 + C/3e18)^-0.03``: the frontier's slope
  steepens from -0.154 to -0.184 around 3e18.
* ``size_penalty``: the law without E plus ``0.15 (N/1e9)^0.5``: a cost of large models at a
  fixed token count, which flattens the frontier and shrinks the optimal size.

Columns: coverage (share of new runs inside the 90% PI, with its binomial standard error), the
median half-width of the PI relative to the predicted loss, the median signed error
``measured / predicted - 1`` (positive: the prediction was optimistic). Tables whose fit raised
are counted in ``failed`` and left out.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar

from scaling.analysis.fitting.fit import FitOptions, fit
from scaling.analysis.prediction.predict import Predictor
from scaling.errors import UserError

TOP = 1e19  # the largest budget of every ladder
TARGET = 10 * TOP  # where the prediction is asked
STEP = 3.0  # budgets x3 apart
SIZES = np.linspace(-0.6, 0.6, 5)  # decades around the true optimum (scaling plan's span)
REPLICATES = 2  # extra seeds of each budget's centre size
NOISE = 0.01  # multiplicative run noise, sd of log loss
LEVEL = 0.9

# Hoffmann et al. 2022, eq. 10
E, A, B, ALPHA, BETA = 1.69, 406.4, 410.7, 0.34, 0.28


def _reducible(N: np.ndarray, D: np.ndarray) -> np.ndarray:
    return A / N**ALPHA + B / D**BETA


def irreducible(N: np.ndarray, D: np.ndarray) -> np.ndarray:
    return E + _reducible(N, D)


def steepening(N: np.ndarray, D: np.ndarray) -> np.ndarray:
    return _reducible(N, D) * (1.0 + 6.0 * N * D / 3e18) ** -0.03


def size_penalty(N: np.ndarray, D: np.ndarray) -> np.ndarray:
    return _reducible(N, D) + 0.15 * (N / 1e9) ** 0.5


TRUTHS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "irreducible": irreducible,
    "steepening": steepening,
    "size_penalty": size_penalty,
}


@cache
def true_optimum(truth: str, C: float) -> tuple[float, float]:
    """``(N_opt, L_opt)`` of a truth at compute ``C`` (``D = C / 6N``), minimised over ln N."""
    law = TRUTHS[truth]
    res = minimize_scalar(
        lambda u: float(law(np.exp(u), C / (6 * np.exp(u)))),
        bounds=(math.log(1e3), math.log(C / 6e3)),
        method="bounded",
        options={"xatol": 1e-10},
    )
    return float(np.exp(res.x)), float(res.fun)


def budgets(n: int) -> list[float]:
    return [TOP / STEP**k for k in range(n - 1, -1, -1)]


def ladder(truth: str, n_budgets: int, seed: int) -> pd.DataFrame:
    """One noisy IsoFLOP table: 5 sizes a budget around the truth's optimum, the centre size
    ``1 + REPLICATES`` times (seeds 0, 1, ...)."""
    rng = np.random.default_rng([seed, n_budgets])
    rows = []
    for c in budgets(n_budgets):
        n_opt, _ = true_optimum(truth, c)
        N = n_opt * 10.0 ** np.concatenate([SIZES, np.zeros(REPLICATES)])
        run_seed = np.concatenate([np.zeros(SIZES.size), np.arange(1, REPLICATES + 1)])
        D = c / (6 * N)
        loss = TRUTHS[truth](N, D) * np.exp(NOISE * rng.standard_normal(N.size))
        columns = {"params": N, "tokens": D, "flops": c, "planned_flops": c, "loss": loss}
        rows.append(pd.DataFrame({**columns, "seed": run_seed.astype(int)}))
    return pd.concat(rows, ignore_index=True)


@dataclass(frozen=True)
class Trial:
    covered: bool
    half_width: float  # of the PI, relative to the predicted loss
    error: float  # measured / predicted - 1


def trial(truth: str, n_budgets: int, seed: int, bootstrap: int, approach: int = 2) -> Trial:
    """Fit one table, predict the run at TARGET, draw that run from the truth, judge the PI."""
    options = FitOptions(bootstrap=bootstrap, seed=seed, level=LEVEL)
    result = fit(ladder(truth, n_budgets, seed), approach=approach, options=options)
    predictor = Predictor(result)
    at = predictor.at_budget(TARGET)
    run = predictor.at_size(at.params, at.tokens)
    assert run.loss is not None and run.loss_pi is not None
    rng = np.random.default_rng([seed, n_budgets, 1])
    measured = float(TRUTHS[truth](at.params, at.tokens)) * math.exp(NOISE * rng.standard_normal())
    lo, hi = run.loss_pi
    return Trial(
        covered=lo <= measured <= hi,
        half_width=(hi - lo) / 2 / run.loss,
        error=measured / run.loss - 1,
    )


def cell(
    truth: str, n_budgets: int, tables: int, bootstrap: int, approach: int = 2
) -> dict[str, object]:
    trials, failed = [], 0
    for seed in range(tables):
        try:
            trials.append(trial(truth, n_budgets, seed, bootstrap, approach))
        except (UserError, ValueError):
            failed += 1
    n = len(trials)
    cover = float(np.mean([t.covered for t in trials])) if n else math.nan
    return {
        "truth": truth,
        "budgets": n_budgets,
        "n": n,
        "failed": failed,
        "coverage": cover,
        "se": math.sqrt(cover * (1 - cover) / n) if n else math.nan,
        "half_width": float(np.median([t.half_width for t in trials])) if n else math.nan,
        "error": float(np.median([t.error for t in trials])) if n else math.nan,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tables", type=int, default=300, help="seeded tables per cell")
    ap.add_argument("--bootstrap", type=int, default=200, help="resamples per fit")
    ap.add_argument("--quick", action="store_true", help="40 tables per cell")
    ap.add_argument("--truths", nargs="+", choices=sorted(TRUTHS), default=list(TRUTHS))
    ap.add_argument("--budgets", nargs="+", type=int, default=[3, 4, 6])
    ap.add_argument(
        "--approach", type=int, choices=(2, 3), default=2, help="3: Chinchilla's law fitted"
    )
    args = ap.parse_args(argv)
    tables = 40 if args.quick else args.tables
    print(
        f"approach {args.approach}, 90% PI of a new run at {TARGET:.0e} FLOPs (10x the top "
        "budget), "
        f"{args.bootstrap} resamples a fit, {tables} tables a cell, noise {NOISE:.0%}"
    )
    head = (
        f"{'truth':<13} {'budgets':>7} {'n':>4} {'failed':>6} {'coverage':>13} "
        f"{'half-width':>10} {'error':>7}"
    )
    print(head)
    print("-" * len(head))
    t0 = time.perf_counter()
    for truth in args.truths:
        for nb in args.budgets:
            r = cell(truth, nb, tables, args.bootstrap, args.approach)
            print(
                f"{truth:<13} {nb:>7} {r['n']:>4} {r['failed']:>6} "
                f"{r['coverage']:>7.1%} ±{r['se']:>4.1%} {r['half_width']:>10.2%} "
                f"{r['error']:>+7.2%}",
                flush=True,
            )
    print(f"{time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
