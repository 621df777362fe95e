"""Benchmark: sweep rerun cost and parallel speed-up, through the real CLI (subprocesses).

    .venv/bin/python benchmarks/bench_sweep.py            # ~9 minutes on 2 cores
    .venv/bin/python benchmarks/bench_sweep.py --quick    # ~3 minutes, shorter runs

1. **Rerun.** A finished 6-point sweep (``model.n_layer=1,2,3 x train.tokens=T,2T``, runs of
   ~20-60 s on this 2-core VM) is run again: every point is found FINISHED in MLflow and
   skipped. Prints the rerun's wall time / the first run's (target <= 0.10).
2. **Parallel.** 4 equal small runs (``model.n_layer=2 seed=0,1,2,3``): Hydra's basic launcher
   (sequential, one process, ``threads=0`` = all cores) vs ``hydra/launcher=joblib
   hydra.launcher.n_jobs=2`` (the sweep gives each worker cores / workers = 1 thread). Prints
   joblib wall / sequential wall (target <= 0.7).

Every measurement is ``python -m scaling.sweep -m ...`` from the repository root with a fresh
temporary ``results_dir`` (its own MLflow SQLite store) and ``sweep.fit=false``; all share one
token cache (``$SCALING_CACHE``, else .cache/scaling), built before any timing by a dry run.
Wall time = the whole command, interpreter start-up and imports included.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_RERUN = 0.10
TARGET_PARALLEL = 0.70


def sweep(args: list[str], results: Path, cache: str, label: str) -> tuple[float, str]:
    """Run the sweep CLI; returns (wall seconds, combined output). Raises on failure."""
    cmd = [
        sys.executable,
        "-m",
        "scaling.sweep",
        "-m",
        *args,
        f"results_dir={results}",
        "sweep.fit=false",
        "progress=false",
    ]
    env = {
        **os.environ,
        "SCALING_CACHE": cache,
        "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "false",
        "PYTHONWARNINGS": "ignore",
    }
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        tail = "\n".join(out.splitlines()[-30:])
        raise RuntimeError(f"{label}: exit {proc.returncode}\n$ {' '.join(cmd)}\n{tail}")
    print(
        f"  {label:<44} {wall:7.1f} s  {summary(out)}  (load {os.getloadavg()[0]:.2f})",
        file=sys.stderr,
        flush=True,
    )
    return wall, out


def summary(out: str) -> str:
    m = re.search(r"sweep summary: .*", out)
    return m.group(0) if m else "(no summary line)"


def counts(out: str) -> dict[str, int]:
    m = re.search(r"(\d+) finished, (\d+) skipped .*?, (\d+) failed", out)
    if not m:
        return {}
    return dict(zip(("finished", "skipped", "failed"), map(int, m.groups()), strict=True))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter runs (~3 min in all)")
    ap.add_argument(
        "--tokens",
        type=float,
        default=None,
        help="train.tokens T of the 6-point grid (T and 2T; default 1.5e6, quick 4e5)",
    )
    ap.add_argument(
        "--parallel-tokens",
        type=float,
        default=None,
        help="train.tokens of each of the 4 parallel runs (default 2e6, quick 5e5)",
    )
    ap.add_argument(
        "--skip",
        choices=("rerun", "parallel"),
        action="append",
        default=[],
        help="leave out one part",
    )
    ap.add_argument(
        "--cache",
        default=os.environ.get("SCALING_CACHE", str(REPO / ".cache" / "scaling")),
        help="token cache dir (default: $SCALING_CACHE or .cache/scaling)",
    )
    args = ap.parse_args(argv)
    tokens = int(args.tokens or (4e5 if args.quick else 1.5e6))
    ptokens = int(args.parallel_tokens or (5e5 if args.quick else 2e6))
    cores = os.cpu_count() or 1
    load0 = os.getloadavg()[0]
    print(f"bench_sweep: {cores} cores, load average {load0:.2f}, cache {args.cache}", flush=True)

    grid6 = [
        "model.n_layer=1,2,3",
        f"train.tokens={tokens},{2 * tokens}",
        "tracking.experiment=bench_rerun",
    ]
    grid4 = [
        "model.n_layer=2",
        "seed=0,1,2,3",
        f"train.tokens={ptokens}",
        "tracking.experiment=bench_parallel",
    ]
    rows: list[tuple[str, float, str, str]] = []
    problems: list[str] = []
    t_begin = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_sweep-") as tmp:
        tmpdir = Path(tmp)
        # Build the token cache (and warm the page cache) outside any timing.
        sweep([*grid6, "sweep.dry_run=true"], tmpdir / "warm", args.cache, "warm-up (dry run)")

        if "rerun" not in args.skip:
            results = tmpdir / "rerun"
            first, out1 = sweep(grid6, results, args.cache, "6-point sweep, first run")
            again, out2 = sweep(grid6, results, args.cache, "6-point sweep, rerun")
            c1, c2 = counts(out1), counts(out2)
            if c1.get("finished") != 6:
                problems.append(f"first run: {summary(out1)}")
            if c2.get("skipped") != 6:
                problems.append(f"rerun retrained something: {summary(out2)}")
            ratio = again / first
            rows.append(("6-point sweep, first run (basic launcher)", first, "", ""))
            rows.append(
                (
                    "6-point sweep, rerun (6 skipped)",
                    again,
                    f"{ratio:.3f}",
                    f"<= {TARGET_RERUN:.2f} {'ok' if ratio <= TARGET_RERUN else 'MISSED'}",
                )
            )

        if "parallel" not in args.skip:
            seq, out_s = sweep(
                grid4, tmpdir / "sequential", args.cache, "4 runs, basic launcher (threads=0)"
            )
            par, out_p = sweep(
                [*grid4, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
                tmpdir / "joblib",
                args.cache,
                "4 runs, joblib n_jobs=2",
            )
            for label, out in (("sequential", out_s), ("joblib", out_p)):
                if counts(out).get("finished") != 4:
                    problems.append(f"{label}: {summary(out)}")
            ratio = par / seq
            rows.append((f"4 runs, basic launcher (1 process x {cores} threads)", seq, "", ""))
            verdict = "ok" if ratio <= TARGET_PARALLEL else "MISSED"
            rows.append(
                (
                    "4 runs, joblib (2 workers x 1 thread)",
                    par,
                    f"{ratio:.3f}",
                    f"<= {TARGET_PARALLEL:.2f} {verdict}",
                )
            )

    print()
    print(
        "Sweep benchmark: python -m scaling.sweep -m ... (subprocess, wall time incl. "
        f"start-up); 6-point grid train.tokens={tokens:,}/{2 * tokens:,}, 4 runs of "
        f"{ptokens:,} tokens (n_layer 2, d_model 32)"
    )
    header = f"{'measurement':<48} {'wall (s)':>9} {'ratio':>7}  target"
    print(header)
    print("-" * (len(header) + 12))
    for label, wall, ratio, target in rows:
        print(f"{label:<48} {wall:>9.1f} {ratio:>7}  {target}")
    for p in problems:
        print(f"PROBLEM: {p}")
    print(
        f"load average (1 min) at start {load0:.2f}, at end {os.getloadavg()[0]:.2f}; "
        f"total {time.perf_counter() - t_begin:.0f} s"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
