"""Benchmark: approach-3 fit with the full 4,500-start grid vs scipy L-BFGS-B once per start.

    .venv/bin/python benchmarks/bench_fit.py            # ~1 minute on 2 cores
    .venv/bin/python benchmarks/bench_fit.py --bootstrap 1000 --workers 2

Data: the Chinchilla points published with Besiroglu et al. 2024 (data/ in this repository),
5 highest-loss points dropped.  The baseline is the straightforward recipe, measured in the same
run: scipy's L-BFGS-B from every start of the same grid, with the same bounds and an analytic
gradient of the same summed Huber objective, keeping the best.  Prints the speed ratio and both
objectives.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from scaling.analysis.fitting.fit import FitOptions, fit_law
from scaling.analysis.fitting.laws import CHINCHILLA

DATA = Path(__file__).resolve().parents[1] / "data" / "chinchilla_epoch_ndl.csv"


def load(path: Path) -> pd.DataFrame:
    df = pd.read_csv(path)
    df = df[df["excluded_top5_loss"] == 0]
    return df.rename(columns={"N": "params", "D": "tokens", "C": "flops"})


def baseline(runs: pd.DataFrame, delta: float, starts: np.ndarray) -> tuple[float, np.ndarray]:
    """scipy L-BFGS-B once per start (analytic gradient), keeping the best."""
    x = np.log(runs["params"].to_numpy())
    y = np.log(runs["tokens"].to_numpy())
    target = np.log(runs["loss"].to_numpy())

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        a, b, e, alpha, beta = theta
        t1, t2, E = np.exp(a - alpha * x), np.exp(b - beta * y), np.exp(e)
        total = t1 + t2 + E
        r = target - np.log(total)
        psi = np.clip(r, -delta, delta)
        w = psi / total
        grad = -np.array(
            [(w * t1).sum(), (w * t2).sum(), w.sum() * E, -(w * t1) @ x, -(w * t2) @ y]
        )
        return float((psi * (r - 0.5 * psi)).sum()), grad

    bounds = list(zip(CHINCHILLA.lower, CHINCHILLA.upper, strict=True))
    best_f, best_x = np.inf, starts[0]
    for s in starts:
        res = minimize(objective, s, jac=True, method="L-BFGS-B", bounds=bounds)
        if res.fun < best_f:
            best_f, best_x = float(res.fun), res.x
    return best_f, best_x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    runs = load(args.data)
    starts = CHINCHILLA.start_grid()
    print(f"points: {len(runs)}, starts: {len(starts):,}")

    t0 = time.perf_counter()
    ours = fit_law(runs, "chinchilla", FitOptions())
    t_ours = time.perf_counter() - t0
    print(f"batched L-BFGS + polish : {t_ours:7.2f} s  objective {ours.objective:.12g}")

    t0 = time.perf_counter()
    f_base, _ = baseline(runs, 1e-3, starts)
    t_base = time.perf_counter() - t0
    print(f"scipy L-BFGS-B per start: {t_base:7.2f} s  objective {f_base:.12g}")
    print(
        f"speed ratio (baseline / ours): {t_base / t_ours:.1f}x;  objective no worse: "
        f"{ours.objective <= f_base * (1 + 1e-12)} "
        f"(ours - baseline = {ours.objective - f_base:+.3g})"
    )

    if args.bootstrap:
        t0 = time.perf_counter()
        fit_law(runs, "chinchilla", FitOptions())
        t_fit = time.perf_counter() - t0
        opts = FitOptions(bootstrap=args.bootstrap, workers=args.workers, seed=0)
        t0 = time.perf_counter()
        boot = fit_law(runs, "chinchilla", opts)
        t_total = time.perf_counter() - t0
        print(
            f"fit + {args.bootstrap:,}-resample bootstrap on {args.workers} worker(s): "
            f"{t_total:.1f} s (the fit alone, just before: {t_fit:.1f} s, so the bootstrap "
            f"~{max(t_total - t_fit, 0.0):.1f} s); failed refits: {boot.bootstrap.n_failed}"
        )
        for k in ("alpha", "beta", "a"):
            lo, hi = boot.ci[k]
            value = boot.params.get(k, boot.exponents.get(k))
            print(f"  {k:>5} = {value:.4f}  95% [{lo:.4f}, {hi:.4f}]")


if __name__ == "__main__":
    main()
