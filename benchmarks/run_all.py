"""Run every benchmark script in benchmarks/ and print their outputs (what `make bench` runs).

    .venv/bin/python benchmarks/run_all.py                  # all of them, ~24 minutes on 2 cores
    .venv/bin/python benchmarks/run_all.py --quick          # --quick to the scripts that take it
    .venv/bin/python benchmarks/run_all.py --only train sweep
    .venv/bin/python benchmarks/run_all.py --only chaos     # the chaos benchmark (issue 8)

Scripts are every ``*.py`` here except this one and ``_private.py`` helpers, run one at a time
(they measure the machine; never in parallel) with this interpreter, from the repository root.
Each one's output is printed as it runs, then a summary of exit status and wall time. Exits
non-zero if any script failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def scripts() -> list[Path]:
    me = Path(__file__).resolve()
    return sorted(p for p in HERE.glob("*.py") if p.resolve() != me and not p.name.startswith("_"))


def takes_quick(path: Path) -> bool:
    try:
        return '"--quick"' in path.read_text(encoding="utf-8")
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="pass --quick to the scripts that accept it"
    )
    ap.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        default=None,
        help="run only scripts whose file name contains one of these",
    )
    ap.add_argument("--list", action="store_true", help="list the scripts and exit")
    args = ap.parse_args(argv)

    todo = scripts()
    if args.only:
        todo = [p for p in todo if any(s in p.name for s in args.only)]
    if args.list or not todo:
        for p in todo:
            print(p.relative_to(REPO))
        if not todo:
            print("no benchmark script matches", file=sys.stderr)
        return 0 if todo else 2

    print(
        f"run_all: {len(todo)} benchmark(s): {', '.join(p.name for p in todo)}; "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    results: list[tuple[str, int, float]] = []
    for path in todo:
        cmd = [sys.executable, str(path.relative_to(REPO))]
        if args.quick and takes_quick(path):
            cmd.append("--quick")
        print(f"\n{'=' * 100}\n$ {' '.join(cmd[1:])}\n{'=' * 100}", flush=True)
        t0 = time.perf_counter()
        try:
            code = subprocess.run(cmd, cwd=REPO, check=False).returncode
        except KeyboardInterrupt:
            print(f"\ninterrupted during {path.name}", file=sys.stderr)
            return 130
        results.append((path.name, code, time.perf_counter() - t0))

    print(f"\n{'=' * 100}\nbenchmark            status      wall")
    for name, code, wall in results:
        status = "ok" if code == 0 else f"FAILED ({code})"
        print(f"{name:<20} {status:<10} {wall:6.0f} s")
    failed = [name for name, code, _ in results if code]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
