"""The closing lines the checking benchmarks share (not a benchmark: run_all skips ``_*.py``)."""

from __future__ import annotations

from pathlib import Path


def verdict(work: Path, failures: list[str]) -> int:
    """Print the work folder, each failed check and PASS (or the count); the exit status."""
    print(f"\nwork folder: {work}")
    for f in failures:
        print(f"FAIL: {f}")
    print("PASS" if not failures else f"{len(failures)} check(s) failed")
    return 1 if failures else 0
