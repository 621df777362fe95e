"""Benchmark: does a planned ladder predict the compute-optimal run 10x beyond it?

    .venv/bin/python benchmarks/bench_prediction.py                      # C* = 1e12, ~21 min
    .venv/bin/python benchmarks/bench_prediction.py --target-flops 3e13 --no-naive  # ~2 h
    .venv/bin/python benchmarks/bench_prediction.py --no-naive           # the planned design only
    .venv/bin/python benchmarks/bench_prediction.py --no-naive --schedule wsd  # cooldown branches
    .venv/bin/python benchmarks/bench_prediction.py data=text data.path=my_corpus/

The closed loop of a scaling study, run twice through the real CLI (subprocesses, one at a time):

1. **Planned.** ``scaling plan --target-flops C* --lr auto --batch-size auto --shapes free
   --head-dim 8``
   (budgets up to C*/10, sizes centred on ``--prior`` or the published law), the sweep of the
   preset it writes (ending with its IsoFLOP fit), then ``scaling verify --bracket``: the fit's
   predicted optimum at C* and its 0.5x and 2x neighbours, trained and scored.
2. **Naive** (the baseline, the harness before the planner): the same budgets with a fixed size
   grid (``model.n_layer`` 1, 2, 3, 4, 6 on the aspect rule at every budget, guards or not) at
   one LR (the default 3e-3) and batch (8 sequences), fitted with approach 3 (the Chinchilla law,
   every sweep's fit before the planner) and verified
   the same way (``--allow-unhealthy``: it gets a number even when its fit is refused).

Both fits are redone at ``--level`` (0.9: the measurement is judged by the 90% prediction
interval of a new run) before the verification.

Prints, for each design: the fit's health, the predicted optimum (N, tokens), the predicted loss
with its prediction interval, the measured loss, the error, whether the measurement is inside,
and the allocation verdict; then the ratio of the two designs' absolute errors (the baseline
measured in the same run). Checks (exit status 1 if one fails): the planned fit is healthy, its
error is within ``--max-error`` (1.5%), the measurement is inside its prediction interval, and the
predicted optimum is no worse than its neighbours beyond the noise. Extra arguments are Hydra
overrides for every run (the data group: any user repeats it on their own corpus).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _verdict import verdict  # benchmarks/ is sys.path[0] when a script runs

ROOT = Path(__file__).resolve().parent.parent
NAIVE_LAYERS = (1, 2, 3, 4, 6)
NAIVE_BATCH = 8  # sequences: the pre-planner presets' batch (the default 32 leaves too few steps)


def run(cmd: list[str], work: Path, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    if proc.returncode not in ok:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"{' '.join(cmd[:6])} ... exited {proc.returncode}")
    return proc


def store(work: Path, name: str) -> list[str]:
    """Overrides that put a design's runs (and its verification) in its own MLflow store."""
    return [
        f"results_dir={work / name}",
        f"tracking.uri=sqlite:///{work / name / 'mlflow.db'}",
        "progress=false",
        "threads=1",
    ]


def sweep(work: Path, name: str, args: list[str]) -> float:
    """One sweep into its own store, ending with its fit in analysis/NAME; its wall-clock."""
    started = time.perf_counter()
    cmd = [sys.executable, "-m", "scaling.sweep", "-m", *args, *store(work, name)]
    run(cmd, work)
    return time.perf_counter() - started


def refit(work: Path, name: str, level: float, approach: int = 2) -> None:
    """The design's fit again at the benchmark's interval level (the sweep fits at 95%)."""
    table = work / name / f"{name}.csv"
    out = work / "analysis" / name
    cmd = [sys.executable, "-m", "scaling", "fit", str(table), "--approach", str(approach)]
    run([*cmd, "--level", f"{level:g}", "--out", str(out)], work, ok=(0, 3))


def verify(work: Path, name: str, flops: float, overrides: list[str]) -> dict:
    """``scaling verify --bracket --json`` of analysis/NAME/fit.json (an unhealthy fit too)."""
    fit = work / "analysis" / name / "fit.json"
    cmd = [
        sys.executable,
        "-m",
        "scaling",
        "verify",
        "--fit",
        str(fit),
        "--flops",
        f"{flops:g}",
        "--bracket",
        "--json",
        "--allow-unhealthy",
        *overrides,
        *store(work, name),
        f"tracking.experiment={name}-verify",
    ]
    started = time.perf_counter()
    proc = run(cmd, work)
    doc = json.loads(proc.stdout[proc.stdout.index("[") :]) if "[" in proc.stdout else []
    fitted = json.loads(fit.read_text())
    health = fitted.get("health", {})
    noise = (fitted.get("noise") or {}).get("sigma_log")
    return {
        "runs": doc,
        "health": health,
        "sigma_log": noise,
        "seconds": time.perf_counter() - started,
    }


def naive_points(budgets: list[float], seq_len: int) -> tuple[list[str], int]:
    """``sweep.point`` values of the fixed grid (every size at every budget, as the presets
    were before the planner) and how many of them fail the planner's guards."""
    from scaling.analysis.design.plan import run_problem
    from scaling.config import build_run_config

    points, failing = [], 0
    for flops in budgets:
        for n_layer in NAIVE_LAYERS:
            cfg = build_run_config(
                {
                    "model": {"n_layer": n_layer, "seq_len": seq_len},
                    "data": {},
                    "train": {"tokens": None, "flops": flops, "batch_size": NAIVE_BATCH},
                    "seed": 0,
                }
            )
            failing += run_problem(cfg) is not None
            points.append(
                f"{{n_layer: {n_layer}, d_model: {cfg.model.d_model}, flops: {flops!r}, seed: 0}}"
            )
    return points, failing


def verifications(docs: list[dict]) -> list:
    """``scaling verify --json`` rows back as :class:`~scaling.training.verify.Verification`."""
    from dataclasses import fields

    from scaling.training.verify import Verification

    names = [f.name for f in fields(Verification)]
    out = []
    for doc in docs:
        row = {k: doc[k] for k in names}
        for key in ("loss_ci", "loss_pi"):
            row[key] = tuple(row[key]) if row[key] else None
        out.append(Verification(**row))
    return out


def report(label: str, result: dict, wall: float) -> dict:
    from scaling.training.verify import allocation_verdict

    runs = {v.role: v for v in verifications(result["runs"])}
    opt = runs.get("optimum")
    health = result["health"]
    ok = bool(health.get("ok", False))
    print(
        f"\n== {label}: ladder {wall:.0f} s, verification {result['seconds']:.0f} s; fit health "
        f"{'OK' if ok else 'NOT OK: ' + '; '.join(health.get('problems', []))[:300]}"
    )
    if opt is None:
        print("   no verification")
        return {"ok": ok, "error": None, "inside": None, "allocation": None}
    for role in ("0.5x", "optimum", "2x"):
        if v := runs.get(role):
            print(f"   {role:>7}: N {v.params:>9,}  D {v.tokens:>11,}  measured {v.measured:.4f}")
    what = f" ({opt.level:.0%} PI of a new run)" if opt.level and opt.loss_pi else ""
    print(f"   {opt.line()}{what}")
    allocation = None
    if line := allocation_verdict(list(runs.values()), result["sigma_log"]):
        allocation = "beat the predicted optimum" not in line
        print(f"   {line}")
    return {"ok": ok, "error": opt.error_pct, "inside": opt.inside, "allocation": allocation}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target-flops", type=float, default=1e12)
    parser.add_argument("--extrapolation", type=float, default=10.0)
    parser.add_argument("--seq-len", type=int, default=32)
    parser.add_argument("--head-dim", type=int, default=8, help="the planned shapes' head_dim")
    parser.add_argument("--replicates", type=int, default=1)
    parser.add_argument(
        "--prior",
        default=str(ROOT / "data" / "priors" / "stdlib-seq32-pilot.json"),
        help="fit.json to centre the planned sizes on (default: the embedded corpus's first "
        "ladder, data/priors/; 'none': Hoffmann et al.'s law; your own fit for another corpus)",
    )
    parser.add_argument("--max-error", type=float, default=1.5, help="percent")
    parser.add_argument(
        "--level", type=float, default=0.9, help="the prediction interval's coverage (0.9)"
    )
    parser.add_argument("--no-naive", action="store_true", help="skip the baseline design")
    parser.add_argument(
        "--schedule",
        choices=("cosine", "wsd"),
        default="cosine",
        help="the planned ladder's design: separate cosine runs, or WSD cooldown branches of one "
        "stable run per size (scaling plan --schedule wsd; verified with a wsd run at C*)",
    )
    parser.add_argument("--keep", help="work folder to keep (default: a temporary one)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run")
    args = parser.parse_args()
    target = args.target_flops
    work = Path(args.keep or tempfile.mkdtemp(prefix="bench-prediction-"))
    work.mkdir(parents=True, exist_ok=True)
    extra = list(args.overrides)

    plan_cmd = [
        sys.executable,
        "-m",
        "scaling",
        "plan",
        "--target-flops",
        f"{target:g}",
        "--extrapolation",
        f"{args.extrapolation:g}",
        "--lr",
        "auto",
        "--batch-size",
        "auto",
        "--shapes",
        "free",
        "--seq-len",
        str(args.seq_len),
        "--head-dim",
        str(args.head_dim),
        "--replicates",
        str(args.replicates),
        "--name",
        "planned",
    ]
    if args.prior and args.prior.lower() != "none":
        plan_cmd += ["--prior", str(Path(args.prior).resolve())]
    plan_cmd += ["--schedule", args.schedule]
    printed = run(plan_cmd, work).stdout
    print(printed.split("\nwrote")[0])
    preset = (work / "sweeps" / "planned.yaml").read_text()
    budgets = sorted(
        {float(v) for v in re.findall(r"d_model: \d+, flops: ([0-9.e+-]+)", preset)}
        | {float(v) for h in re.findall(r"horizons: \[([^\]]*)\]", preset) for v in h.split(",")}
    )

    common = [
        f"train.schedule={args.schedule}",
        "train.lr=auto",
        "train.batch_size=auto",
        f"model.seq_len={args.seq_len}",
        f"model.head_dim={args.head_dim}",
        *extra,
    ]
    t_plan = sweep(work, "planned", ["sweeps=planned", *extra])
    refit(work, "planned", args.level)
    planned = report(
        "planned ladder (lr, batch auto)", verify(work, "planned", target, common), t_plan
    )

    naive = None
    if not args.no_naive:
        points, failing = naive_points(budgets, args.seq_len)
        print(
            f"\nnaive grid: {len(points)} runs (n_layer {NAIVE_LAYERS} x {len(budgets)} budgets), "
            f"{failing} of them below the planner's guards (< 200 steps or tokens/param outside "
            "1..1000); fitted with approach 3 (Chinchilla's law), as sweeps ended before"
        )
        grid = [
            "tracking.experiment=naive",
            "train.tokens=null",
            "train.flops=${sweep.point.flops}",
            "model.n_layer=${sweep.point.n_layer}",
            "model.d_model=${sweep.point.d_model}",
            f"model.seq_len={args.seq_len}",
            f"train.batch_size={NAIVE_BATCH}",
            "seed=${sweep.point.seed}",
            "sweep.approach=3",
            "sweep.point=" + ",".join(points),
            *extra,
        ]
        t_naive = sweep(work, "naive", grid)
        refit(work, "naive", args.level, approach=3)
        naive_overrides = [
            f"model.seq_len={args.seq_len}",
            f"train.batch_size={NAIVE_BATCH}",
            *extra,
        ]
        naive = report(
            "naive grid (fixed sizes, one lr and batch)",
            verify(work, "naive", target, naive_overrides),
            t_naive,
        )

    failures = []
    if not planned["ok"]:
        failures.append("the planned ladder's fit is unhealthy")
    if planned["error"] is None or abs(planned["error"]) > args.max_error:
        failures.append(f"planned error {planned['error']}% beyond {args.max_error}%")
    if planned["inside"] is not True:
        failures.append("the measurement is outside the planned fit's prediction interval")
    if planned["allocation"] is False:
        failures.append("a neighbour beat the predicted optimum beyond the noise")
    if naive and naive["error"] is not None and planned["error"] is not None:
        ratio = abs(planned["error"]) / max(abs(naive["error"]), 1e-9)
        print(
            f"\n|error| planned / naive: {abs(planned['error']):.2f}% / "
            f"{abs(naive['error']):.2f}% = {ratio:.2f}"
        )
    return verdict(work, failures)


if __name__ == "__main__":
    sys.exit(main())
