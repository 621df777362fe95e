"""Benchmark: WSD cooldown branches against separate cosine runs, for the same points.

    .venv/bin/python benchmarks/bench_horizons.py            # ~26 minutes on 2 cores
    .venv/bin/python benchmarks/bench_horizons.py --quick    # ~5 minutes: 2 sizes, shorter
    .venv/bin/python benchmarks/bench_horizons.py --lr-cosine 0.02218,0.01603,0.008639 \
        --lr-wsd 0.01442,0.00954,0.007225                    # the scan's LRs given: ~14 minutes
    .venv/bin/python benchmarks/bench_horizons.py ... seed=0,1,2   # per point, a mean of 3 seeds
    .venv/bin/python benchmarks/bench_horizons.py data=text data.path=my_corpus/

0. **LR per schedule** (``--lr-grid``; ``--no-tune`` keeps the presets' ``lr: auto``): each
   size's peak LR is tuned for each schedule at the longest horizon (a plain cosine run, a plain
   wsd run, every LR of the grid; the minimum of a parabola in ln(LR) through the best grid
   point and its neighbours). Cosine spends half its steps at a low LR, so its best peak LR is
   higher than WSD's; comparing the two at one LR (or at the rule's) compares an LR, not a
   schedule. The scan runs under the joblib launcher, outside the timing.
1. **Cosine.** ``sweeps=horizons``: 3 sizes x 8 horizons, every point a separate run with its
   own full cosine schedule (Chinchilla approach 1's design), into store A.
2. **Branches.** ``sweeps=horizons_wsd``: the same 24 points as warmup-stable-decay cooldown
   branches of one stable run per size (``train.horizons``), into store B.
3. **Checks** (exit status 1 if one fails): B's wall-clock is at most ``--max-ratio`` (0.5) of
   A's; no point's final validation loss in B is worse than A's by more than 2 standard errors
   of the difference (with ``seed=...``; one seed: by more than ``--max-loss-diff``, 1%), WSD
   being judged as "not worse than cosine" (Hägele et al. 2024 find it better); the Chinchilla
   law fitted to each table (approach 3, bootstrap 95% intervals) has every parameter of one fit
   inside the other's interval; the multi-power curve law (``--law curve``, Luo et al. 2025)
   fitted per size (and seed) on the stable run plus ONE cooldown branch (the middle horizon)
   predicts every other horizon's final loss within ``--max-curve-error`` (1%) or 2 standard
   deviations of that point's seeds, whichever is larger; Tissue et al.'s law on the same
   split is printed beside it. With ``seed=...`` the points are means over seeds. Printed, not
   checked: the curve law's floor, fitted on every branch (in-sample), also with
   ``C * S2^zeta``.

Both sweeps are the real CLI in a subprocess (``python -m scaling.sweep -m sweeps=...``),
one after the other (never concurrently: 2 cores), with the same extra overrides (the data
group, a shorter grid). The token cache is built beforehand by a dry run, outside the timing.
Prints one table per point and a summary; the wall-clock ratio is measured in the same run.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _verdict import verdict  # benchmarks/ is sys.path[0] when a script runs

ROOT = Path(__file__).resolve().parent.parent
QUICK = [
    "model.n_layer=1,2",
    "model.seq_len=64",
    "train.batch_size=16",
]
QUICK_HORIZONS = [6e4, 1.2e5, 1.8e5, 2.4e5, 3e5, 3.6e5]
LR_GRID = (4e-3, 8e-3, 1.6e-2, 3.2e-2, 6.4e-2)
PRESET_SIZES = (1, 2, 3)  # sweeps/horizons*.yaml: model.n_layer
PRESET_LONGEST = 2e6  # sweeps/horizons*.yaml: the longest horizon in tokens
SCAN = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]


def sweep(work: Path, preset: str, extra: list[str], store: str, dry: bool = False) -> float:
    """Run one preset in a subprocess into ``store``; returns its wall-clock seconds."""
    cmd = [
        sys.executable,
        "-m",
        "scaling.sweep",
        "-m",
        f"sweeps={preset}",
        f"results_dir={work / store}",
        f"tracking.uri=sqlite:///{work / store / 'mlflow.db'}",
        "progress=false",
        "sweep.fit=false",
        *extra,
    ]
    if dry:
        cmd.append("sweep.dry_run=true")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"{preset} sweep exited {proc.returncode}")
    return wall


def best_lr(lrs: np.ndarray, losses: np.ndarray) -> tuple[float, bool]:
    """The LR of least final loss: the vertex of a parabola in ln(LR) through the best grid
    point and its two neighbours (kept between them); (LR, True) when the best is an edge."""
    order = np.argsort(lrs)
    x, y = np.log(lrs[order]), losses[order]
    i = int(np.argmin(y))
    if i in (0, len(x) - 1):
        return float(np.exp(x[i])), True
    a, b, _ = np.polyfit(x[i - 1 : i + 2], y[i - 1 : i + 2], 2)
    vertex = -b / (2 * a) if a > 0 else x[i]
    return float(np.exp(np.clip(vertex, x[i - 1], x[i + 1]))), False


def tune_lr(
    work: Path,
    extra: list[str],
    sizes: list[int],
    longest: float,
    grid: list[float],
    schedules: list[str],
) -> dict[str, dict[int, float]]:
    """Per schedule, per ``model.n_layer``: the tuned peak LR at the ``longest`` horizon."""
    from scaling.analysis.table import read_run_table

    out: dict[str, dict[int, float]] = {}
    for schedule in schedules:
        store = f"lr-{schedule}"
        overrides = (
            extra
            + SCAN
            + [
                "model.n_layer=" + ",".join(map(str, sizes)),
                f"train.tokens={longest:g}",
                f"train.schedule={schedule}",
                "train.lr=" + ",".join(f"{v:g}" for v in grid),
            ]
        )
        wall = sweep(work, "horizons", overrides, store)
        df = read_run_table(work / store / "horizons.csv")
        out[schedule] = {}
        for n_layer, rows in df.groupby("n_layer"):
            lr, edge = best_lr(rows["lr"].to_numpy(float), rows["loss"].to_numpy(float))
            out[schedule][int(n_layer)] = round(lr, 5)
            losses = "  ".join(
                f"{r.lr:g}: {r.loss:.4f}" for r in rows.sort_values("lr").itertuples()
            )
            print(
                f"  {schedule:>6} L{int(n_layer)}  {losses}  -> lr {lr:.4g}"
                + ("  (the grid's edge: widen --lr-grid)" if edge else "")
            )
        print(f"  ({schedule} scan: {len(df)} runs, {wall:.0f} s)")
    return out


def sweep_sizes(
    work: Path, preset: str, extra: list[str], store: str, lrs: dict[int, float] | None
) -> float:
    """One preset, one subprocess per size when each size has its own LR; summed wall-clock."""
    if lrs is None:
        return sweep(work, preset, extra, store)
    rest = without_sizes(extra)
    return sum(
        sweep(work, preset, rest + [f"model.n_layer={k}", f"train.lr={lr:g}"], store)
        for k, lr in sorted(lrs.items())
    )


def without_sizes(overrides: list[str]) -> list[str]:
    """``overrides`` less a ``model.n_layer=`` one (the caller sets the sizes itself)."""
    return [o for o in overrides if not o.startswith("model.n_layer=")]


def sizes_of(overrides: list[str]) -> list[int]:
    """The ``model.n_layer`` values an override list sweeps, else the presets'."""
    given = [o.split("=", 1)[1] for o in overrides if o.startswith("model.n_layer=")]
    return [int(v) for v in given[-1].split(",")] if given else list(PRESET_SIZES)


def tables(work: Path, store: str, experiment: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(final run table without stable runs, curves table with them) of a store."""
    from scaling.analysis.table import read_run_table, write_table
    from scaling.training.collect import collect_runs

    uri = f"sqlite:///{work / store / 'mlflow.db'}"
    final = write_table(collect_runs(uri, experiment), work / f"{store}.csv")
    curves = write_table(collect_runs(uri, experiment, curves=True), work / f"{store}_curves.csv")
    return read_run_table(final), read_run_table(curves, curves=True)


def law_check(a: pd.DataFrame, b: pd.DataFrame, boot: int) -> list[tuple[str, float, float, str]]:
    """Chinchilla law on each table: (parameter, estimate A, estimate B, verdict) rows."""
    from scaling.analysis.fitting.fit import fit
    from scaling.analysis.fitting.results import FitOptions

    options = FitOptions(bootstrap=boot, seed=0)
    fa, fb = fit(a, "chinchilla", 3, options), fit(b, "chinchilla", 3, options)
    rows = []
    for name in fa.params:
        va, vb = fa.params[name], fb.params[name]
        (la, ha), (lb, hb) = fa.ci[name], fb.ci[name]
        ok = la <= vb <= ha and lb <= va <= hb
        rows.append(
            (
                name,
                va,
                vb,
                f"A [{la:.4g}, {ha:.4g}] B [{lb:.4g}, {hb:.4g}] "
                + ("inside each other" if ok else "OUTSIDE"),
            )
        )
    return rows


def branch_groups(curves: pd.DataFrame) -> list[list]:  # type: ignore[type-arg]
    """The runs of each branch group (a stable run and its branches: one size, one seed), by
    size then seed."""
    from scaling.analysis.curves.curve import curves_from_table

    runs = curves_from_table(curves)
    keys = sorted({(r.params, str(r.seed)) for r in runs})
    return [[r for r in runs if (r.params, str(r.seed)) == k] for k in keys]


def point_means(df: pd.DataFrame) -> pd.DataFrame:
    """One row per point (params, tokens): the mean final loss over seeds, its standard error
    (NaN with one seed) and the number of seeds."""
    g = df.groupby(["params", "tokens"])["loss"]
    out = g.agg(loss="mean", sd="std", n="count").reset_index()
    out["se"] = out["sd"] / np.sqrt(out["n"])
    return out


def curve_check(
    curves: pd.DataFrame, form: str = "mpl"
) -> list[tuple[float, int, float, float, float]]:
    """The curve law (``form``: the multi-power law or Tissue et al.'s) per size, fitted on the
    stable run plus the middle horizon's branch; (params, horizon tokens, predicted, measured,
    error %) for every other branch."""
    from scaling.analysis.curves.curve import CurveOptions, fit_size

    out = []
    for size in branch_groups(curves):
        n = size[0].params
        branches = sorted((r for r in size if r.role == "branch"), key=lambda r: r.final_step)
        stable = [r for r in size if r.role == "stable"]
        held = branches[len(branches) // 2]
        law = fit_size(stable + [held], CurveOptions(bootstrap=0, form=form))
        for r in branches:
            if r is held:
                continue
            pred = law.predict_final(r.schedule, r.total_steps).loss
            out.append((n, r.final_tokens, pred, r.final_loss, 100 * (pred / r.final_loss - 1)))
    return out


def _law_zeta(th: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
    """L0 + A * S1^-alpha - C * S2^zeta, with (L0, ln A, alpha, ln C, zeta) = th."""
    return th[0] + np.exp(th[1]) * s1 ** -th[2] - np.exp(th[3]) * s2 ** th[4]


def _zeta_residuals(th: np.ndarray, s1: np.ndarray, s2: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (y - _law_zeta(th, s1, s2)) / y


def curve_floor(curves: pd.DataFrame) -> list[tuple[float, float, float, float]]:
    """How close a smooth law gets with every branch of a size fitted (in-sample): per size,
    (params, worst |error| % of the branches' final losses under Tissue et al.'s law, the same
    with the annealing term C * S2**zeta, zeta free, and under the multi-power law). A held-out
    prediction cannot be expected to beat these: what is left there is the runs' own noise."""
    from scipy.optimize import least_squares

    from scaling.analysis.curves.curve import CurveOptions, fit_size
    from scaling.analysis.curves.size_fit import size_points

    options = CurveOptions(bootstrap=0, form="tissue")  # Tissue's areas S1, S2
    out = []
    for size in branch_groups(curves):
        n = size[0].params
        branches = [r for r in size if r.role == "branch"]
        law = fit_size(size, options)
        tissue = max(
            abs(law.predict_final(r.schedule, r.total_steps).loss / r.final_loss - 1)
            for r in branches
        )
        pts = size_points(size, options, float(options.lam))  # the points fit_size fits
        S1, S2, y = pts.S1, pts.S2, pts.loss
        fits = [
            least_squares(
                _zeta_residuals,
                [0.7 * y.min(), 0.0, a0, 0.0, z0],
                bounds=([0, -20, 1e-3, -20, 0.05], [10, 20, 4, 20, 2]),
                args=(S1, S2, y),
            )
            for a0 in (0.2, 0.5, 1.0)
            for z0 in (0.3, 0.6, 1.0)
        ]
        th = min(fits, key=lambda f: f.cost).x
        zeta = max(
            abs(float(_law_zeta(th, *(a[-1:] for a in r.areas(options)))[0]) / r.final_loss - 1)
            for r in branches
        )
        mpl_law = fit_size(size, CurveOptions(bootstrap=0))
        mpl = max(
            abs(mpl_law.predict_final(r.schedule, r.total_steps).loss / r.final_loss - 1)
            for r in branches
        )
        out.append((n, 100 * tissue, 100 * zeta, 100 * mpl))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 sizes, 6 shorter horizons")
    parser.add_argument("--max-ratio", type=float, default=0.5)
    parser.add_argument("--max-loss-diff", type=float, default=1.0, help="percent")
    parser.add_argument("--max-curve-error", type=float, default=1.0, help="percent")
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--keep", help="work folder to keep (default: a temporary one)")
    parser.add_argument(
        "--lr-grid",
        default=",".join(f"{v:g}" for v in LR_GRID),
        help="peak LRs scanned per schedule and size at the longest horizon (comma-separated)",
    )
    parser.add_argument(
        "--no-tune", action="store_true", help="no LR scan: both sweeps at the presets' lr: auto"
    )
    for schedule in ("cosine", "wsd"):
        parser.add_argument(
            f"--lr-{schedule}",
            help=f"{schedule}'s peak LR per size, comma-separated in model.n_layer order (a "
            "previous scan's result): skips that schedule's scan",
        )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for both sweeps")
    args = parser.parse_args()

    extra = list(args.overrides)
    longest = PRESET_LONGEST
    if args.quick:
        extra += QUICK
        longest = max(QUICK_HORIZONS)
        cosine = extra + ["train.tokens=" + ",".join(f"{t:g}" for t in QUICK_HORIZONS)]
        wsd = extra + ["train.horizons=[" + ",".join(f"{t:g}" for t in QUICK_HORIZONS) + "]"]
    else:
        cosine = wsd = extra
    sizes = sizes_of(extra)
    lrs: dict[str, dict[int, float] | None] = {"cosine": None, "wsd": None}
    for k in lrs:
        given_lrs = getattr(args, f"lr_{k}")
        if given_lrs and len(given_lrs.split(",")) != len(sizes):
            parser.error(
                f"--lr-{k}={given_lrs}: give one LR per size ({len(sizes)}: model.n_layer "
                f"{', '.join(map(str, sizes))}), comma-separated"
            )
        if given_lrs and not args.no_tune:
            lrs[k] = dict(zip(sizes, (float(x) for x in given_lrs.split(",")), strict=True))
    work = Path(args.keep or tempfile.mkdtemp(prefix="bench-horizons-"))
    work.mkdir(parents=True, exist_ok=True)
    sweep(work, "horizons", cosine, "cache-warm", dry=True)  # token cache, outside the timing

    missing = [k for k, v in lrs.items() if v is None]
    if missing and not args.no_tune:
        print("LR scan at the longest horizon, final val/loss per peak LR:")
        grid = [float(v) for v in args.lr_grid.split(",")]
        lrs.update(tune_lr(work, without_sizes(extra), sizes, longest, grid, missing))
    print(f"peak LR per size (None: the presets' lr: auto): {lrs}")
    t_cos = sweep_sizes(work, "horizons", cosine, "cosine", lrs["cosine"])
    t_wsd = sweep_sizes(work, "horizons_wsd", wsd, "wsd", lrs["wsd"])
    a, _ = tables(work, "cosine", "horizons")
    b, curves = tables(work, "wsd", "horizons_wsd")

    failures = []
    pa, pb = point_means(a), point_means(b)
    merged = pa.merge(pb, on=["params", "tokens"], suffixes=("_cos", "_wsd")).copy()
    merged["diff_pct"] = 100 * (merged["loss_wsd"] / merged["loss_cos"] - 1)
    # standard error of the difference of the two means, in % (seed replicates only)
    merged["se_pct"] = 100 * np.hypot(
        merged["se_cos"] / merged["loss_cos"], merged["se_wsd"] / merged["loss_wsd"]
    )
    seeds = int(merged["n_cos"].min()) if len(merged) else 0
    print(f"per point, the mean over {seeds} seed(s):" if seeds > 1 else "per point:")
    print(f"{'params':>10} {'tokens':>10} {'cosine':>8} {'wsd':>8} {'diff %':>7}")
    for _, r in merged.sort_values(["params", "tokens"]).iterrows():
        se = f"  +- {r['se_pct']:.2f}" if np.isfinite(r["se_pct"]) else ""
        print(
            f"{r['params']:>10,.0f} {r['tokens']:>10,.0f} {r['loss_cos']:>8.4f} "
            f"{r['loss_wsd']:>8.4f} {r['diff_pct']:>+7.2f}{se}"
        )
    if len(merged) != len(pa) or len(pa) != len(pb):
        failures.append(f"points differ: {len(pa)} cosine, {len(pb)} wsd, {len(merged)} matched")
    worst = float(merged["diff_pct"].abs().max())
    # decision 1: no branch worse than cosine's run of its point by more than 2 standard errors
    # of the difference (seeds), or than --max-loss-diff with one seed
    allowed = 2 * merged["se_pct"] if seeds > 1 else pd.Series(args.max_loss_diff, merged.index)
    worse = merged[merged["diff_pct"] > allowed]
    rule = "2 standard errors of the difference" if seeds > 1 else f"{args.max_loss_diff}%"
    print(
        f"decision 1 (no branch worse than cosine by more than {rule}): "
        + ("passed" if worse.empty else f"{len(worse)} point(s) worse")
    )
    for _, r in worse.iterrows():
        failures.append(
            f"N {r['params']:,.0f} D {r['tokens']:,.0f}: wsd {r['diff_pct']:+.2f}% worse than "
            f"cosine (allowed {allowed[r.name]:.2f}%)"
        )

    from scaling.analysis.table import compute_spent

    represented, spent = compute_spent(b) or (math.nan, math.nan)
    ratio = t_wsd / t_cos
    print(
        f"\nwall-clock: cosine {t_cos:.0f} s, wsd branches {t_wsd:.0f} s, ratio {ratio:.2f} "
        f"(compute: {spent / represented:.2f}x of the points' {represented:.3g} FLOPs)"
    )
    if ratio > args.max_ratio:
        failures.append(f"wall-clock ratio {ratio:.2f} > {args.max_ratio}")
    print(
        f"per-point loss, wsd vs cosine: mean {merged['diff_pct'].mean():+.2f}%, "
        f"worst |diff| {worst:.2f}%"
    )

    print("\nChinchilla law (approach 3), A = cosine, B = wsd branches, 95% bootstrap intervals:")
    for name, va, vb, inside in law_check(a, b, args.bootstrap):
        print(f"  {name:>6}: A {va:.4g}  B {vb:.4g}  {inside}")
        if "OUTSIDE" in inside:
            failures.append(f"law parameter {name}: {inside}")

    print(
        "\nCurve law per size (and seed), fitted on the stable run + the middle horizon's "
        "cooldown: the multi-power law (Luo et al. 2025; Tissue et al. 2024 beside it). A "
        f"held-out horizon passes within {args.max_curve_error}% or 2 sd of its point's seeds:"
    )
    errors = curve_check(curves, "mpl")
    tissue = [e[-1] for e in curve_check(curves, "tissue")]  # the same groups, same order
    spread = pb.set_index(["params", "tokens"])
    misses = 0
    for (n, tokens, pred, meas, err), err_tissue in zip(errors, tissue, strict=True):
        sd = spread.loc[(n, tokens), "sd"] / spread.loc[(n, tokens), "loss"] * 100
        tol = max(args.max_curve_error, 2 * sd) if np.isfinite(sd) else args.max_curve_error
        misses += abs(err) > tol
        print(
            f"  N {n:>9,.0f}  D {tokens:>10,.0f}  predicted {pred:.4f}  measured {meas:.4f}  "
            f"error {err:+.2f}% (allowed {tol:.2f}%)  tissue {err_tissue:+.2f}%"
        )
    worst_curve = max(abs(e[-1]) for e in errors) if errors else math.nan
    worst_tissue = max(abs(e) for e in tissue) if tissue else math.nan
    print(
        f"  worst |error| {worst_curve:.2f}% (multi-power), {worst_tissue:.2f}% (Tissue et al.) "
        f"over {len(errors)} held-out horizons; {misses} beyond their allowance"
    )
    print("  noise floor: the law fitted on every branch of a size (in-sample), worst |error|:")
    for n, tissue, zeta, mpl in curve_floor(curves):
        print(
            f"  N {n:>9,.0f}  Tissue et al. {tissue:.2f}%   with C*S2^zeta, zeta free {zeta:.2f}%"
            f"   multi-power {mpl:.2f}%"
        )
    if misses or not errors:
        failures.append(f"curve law: {misses} held-out horizon(s) beyond their allowance")

    return verdict(work, failures)


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
