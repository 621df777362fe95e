"""Benchmark: ``scaling study`` on real corpora, end to end (issue 22's acceptance run).

    .venv/bin/python benchmarks/bench_study.py --corpus stdlib                 # ~45 min at 1e13
    .venv/bin/python benchmarks/bench_study.py --corpus stdlib sitepackages --flops 1e13
    .venv/bin/python benchmarks/bench_study.py --corpus text:path/to/prose --flops 1e12
    .venv/bin/python benchmarks/bench_study.py --quick                        # 2e11, ~4 min

For each corpus, in a fresh work folder (``--work``, default a new temporary folder), runs
``scaling study --target-flops C --verify --bracket --name <corpus>`` with the corpus's data
overrides, times it, and reads back what a user gets: the health verdict, the prediction at C,
the verification of the predicted optimum (error, inside the interval) and its 0.5x / 2x
neighbours (``analysis/<name>/verifications.csv``). A corpus passes when the fit is healthy
(no ``--allow-unhealthy``), the optimum's loss is within 1.5% of the prediction and inside its
interval, and no neighbour beats the optimum by more than 2 run-to-run noise sds (the fit's
``noise`` sd, relative). Corpora: ``stdlib`` (the embedded default), ``sitepackages``
(``data=sitepackages``), ``text:PATH`` (``data=text data.path=PATH``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LIMIT_ERROR_PCT = 1.5
LIMIT_MINUTES = 75.0


def overrides(corpus: str) -> tuple[str, list[str]]:
    """The study's name and data overrides of a corpus spec."""
    if corpus == "stdlib":
        return "stdlib", []
    if corpus == "sitepackages":
        return "sitepackages", ["data=sitepackages"]
    if corpus.startswith("text:"):
        path = Path(corpus[5:]).resolve()
        return path.stem.replace(".", "_") or "text", ["data=text", f"data.path={path}"]
    raise SystemExit(f"--corpus {corpus}: expected stdlib, sitepackages or text:PATH")


def run_one(corpus: str, flops: float, work: Path) -> dict:
    name, data = overrides(corpus)
    argv = [
        sys.executable,
        "-m",
        "scaling",
        "study",
        "--target-flops",
        f"{flops:g}",
        "--verify",
        "--bracket",
        "--name",
        name,
        *data,
    ]
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=work, capture_output=True, text=True)
    minutes = (time.monotonic() - started) / 60
    (work / f"{name}.log").write_text(proc.stdout + proc.stderr)
    out: dict = {"corpus": corpus, "status": proc.returncode, "minutes": minutes}
    fit_path = work / "analysis" / name / "fit.json"
    if fit_path.exists():
        fit = json.loads(fit_path.read_text())
        out["healthy"] = bool((fit.get("health") or {}).get("ok"))
        out["noise"] = (fit.get("noise") or {}).get("sigma_log")
    history = work / "analysis" / name / "verifications.csv"
    if history.exists():
        rows = list(csv.DictReader(history.open()))
        by_role = {r["role"]: r for r in rows}
        out["verify"] = by_role
    return out


def verdict(r: dict) -> tuple[str, str]:
    v = r.get("verify") or {}
    opt = v.get("optimum")
    if not opt:
        return "-", "NO (no verification)"
    measured, predicted = float(opt["measured"]), float(opt["predicted"])
    err = 100 * (measured / predicted - 1)
    lo, hi = float(opt.get("pi_lo") or "nan"), float(opt.get("pi_hi") or "nan")
    inside = lo <= measured <= hi
    noise = float(r.get("noise") or 0.0)
    beaten = [
        role
        for role in ("0.5x", "2x")
        if role in v and float(v[role]["measured"]) < measured * (1 - 2 * noise)
    ]
    ok = (
        r.get("healthy")
        and abs(err) <= LIMIT_ERROR_PCT
        and inside
        and not beaten
        and r["minutes"] <= LIMIT_MINUTES
    )
    text = (
        f"predicted {predicted:.4f} [{lo:.4f}, {hi:.4f}], measured {measured:.4f}, "
        f"{err:+.2f}%, inside {'yes' if inside else 'no'}, beaten by {beaten or 'none'}"
    )
    return text, "OK" if ok else "NO"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", nargs="+", default=["stdlib"])
    ap.add_argument("--flops", type=float, default=1e13)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--quick", action="store_true", help="the demo's 2e11 on stdlib (~4 min)")
    args = ap.parse_args()
    if args.quick:
        args.flops, args.corpus = 2e11, ["stdlib"]
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_study_"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"work folder: {work}", flush=True)
    print("| corpus | C | healthy | verification | wall-clock | verdict |")
    print("|---|---|---|---|---|---|")
    for corpus in args.corpus:
        r = run_one(corpus, args.flops, work)
        text, ok = verdict(r)
        print(
            f"| {corpus} | {args.flops:.0e} | {r.get('healthy')} | {text} | "
            f"{r['minutes']:.1f} min (exit {r['status']}) | {ok} |",
            flush=True,
        )
    print(
        f"limits: error within {LIMIT_ERROR_PCT}%, inside the interval, no neighbour better "
        f"by 2 noise sd, <= {LIMIT_MINUTES:g} min; logs in {work}"
    )
    _ = math


if __name__ == "__main__":
    main()
