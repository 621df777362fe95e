"""Reproduce published scaling-law estimates with this package's estimators.

    .venv/bin/python benchmarks/repro_chinchilla.py [--bootstrap 1000]

1. Approach 3 on the Chinchilla points published with Besiroglu et al. 2024 (arXiv:2404.10102),
   the 5 highest-loss points dropped as they did, against their estimate
   E=1.82, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658 (a = beta/(alpha+beta)).
2. Approach 2 (IsoFLOP parabolas) on each of the 15 configurations of Porian et al. 2024
   (arXiv:2406.19146), against the exponent ``a`` of ``N_opt ∝ C^a`` fitted (least squares in log
   space) to the authors' own per-budget optima (porian2024_optimal_pairs.csv).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from scaling.analysis.fitting.allocation import chinchilla_exponents
from scaling.analysis.fitting.fit import FitOptions, fit_isoflop, fit_law
from scaling.analysis.fitting.frontier import fit_power_law
from scaling.analysis.fitting.laws import CHINCHILLA
from scaling.analysis.fitting.optimize import make_objective

DATA = Path(__file__).resolve().parents[1] / "data"  # published points, see data/README.md
PUBLISHED = {"E": 1.82, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}
CONFIG = ["dataset", "hparams", "warmup", "decay", "param_count", "loss_type"]


def chinchilla(bootstrap: int, workers: int | None) -> None:
    df = pd.read_csv(DATA / "chinchilla_epoch_ndl.csv")
    df = df[df["excluded_top5_loss"] == 0].rename(
        columns={"N": "params", "D": "tokens", "C": "flops"}
    )
    t0 = time.perf_counter()
    r = fit_law(df, "chinchilla", FitOptions(bootstrap=bootstrap, workers=workers))
    dt = time.perf_counter() - t0
    a_pub, b_pub, _ = chinchilla_exponents(PUBLISHED)
    X = CHINCHILLA.design(N=df["params"].to_numpy(), D=df["tokens"].to_numpy())
    fg = make_objective(CHINCHILLA, X, np.log(df["loss"].to_numpy()), 1e-3)
    f_pub = fg(CHINCHILLA.from_params(PUBLISHED)[None, :])[0][0]
    print(
        f"Approach 3, Chinchilla points (n={r.n_points}), {dt:.1f} s incl. "
        f"{bootstrap} bootstrap resamples"
    )
    print(f"{'':>6} {'ours':>10} {'95% interval':>22} {'Besiroglu':>10} {'rel. diff':>9}")
    rows = [(k, r.params[k], PUBLISHED[k]) for k in ("E", "A", "B", "alpha", "beta")]
    rows += [("a", r.exponents["a"], a_pub), ("b", r.exponents["b"], b_pub)]
    for k, ours, pub in rows:
        lo, hi = r.ci.get(k, (np.nan, np.nan))
        print(f"{k:>6} {ours:10.4f} [{lo:9.4f}, {hi:9.4f}] {pub:10.4f} {ours / pub - 1:+9.2%}")
    print(f"objective: ours {r.objective:.10g}, at the published estimate {f_pub:.10g}")
    print(f"converged: {r.convergence.converged}; on bounds: {r.convergence.on_bounds or 'none'}")


def porian(bootstrap: int) -> None:
    iso = pd.read_csv(DATA / "porian2024_isoflop.csv")
    pairs = pd.read_csv(DATA / "porian2024_optimal_pairs.csv")
    print("\nApproach 2, Porian et al. 2024 IsoFLOP configurations: exponent a of N_opt ∝ C^a")
    print(f"{'configuration':<44} {'ours':>7} {'95% interval':>17} {'authors':>8} {'diff':>7}")
    diffs = []
    for key, g in iso.groupby(CONFIG, sort=True):
        runs = g.rename(columns={"N": "params", "D": "tokens", "C": "flops"})
        mine = fit_isoflop(runs, FitOptions(bootstrap=bootstrap))
        p = pairs[(pairs[CONFIG] == pd.Series(key, index=CONFIG)).all(axis=1)].dropna(
            subset=["N_opt"]
        )
        theirs = fit_power_law(p["C"].to_numpy(), p["N_opt"].to_numpy()).exponent
        a = mine.exponents["a"]
        lo, hi = mine.ci.get("a", (np.nan, np.nan))
        diffs.append(a - theirs)
        print(
            f"{'/'.join(key):<44} {a:7.3f} [{lo:6.3f}, {hi:6.3f}] {theirs:8.3f} {a - theirs:+7.3f}"
        )
    d = np.abs(diffs)
    print(f"|ours - authors|: median {np.median(d):.3f}, max {d.max():.3f} over {len(d)} configs")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    chinchilla(args.bootstrap, args.workers)
    porian(min(args.bootstrap, 200))


if __name__ == "__main__":
    main()
