"""``scaling compare``: two fits of one law side by side and the compute multiplier between
them at a budget, written as DIR/compare.md, .json and .png."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from scaling.cli.common import Commands, number

EPILOG_COMPARE = """\
examples:
  scaling compare analysis/raw/fit.json analysis/dedup/fit.json --labels raw,dedup --flops 1e14
  scaling compare analysis/raw analysis/dedup --flops 1e14 --out analysis/dedup_study --json

The better side has the lower expected loss at --flops; the multiplier is the compute the other
side needs to reach that loss, over --flops, with an interval over paired bootstrap replicates
(it covers the ratio of the fitted mean curves). exit status: 0 compared, 2 a bad input, 3 a fit
is unhealthy (as `scaling predict`; --allow-unhealthy compares anyway and flags it).
"""


def add_compare(commands: Commands) -> None:
    """The parser of ``scaling compare``."""
    p = commands.add_parser(
        "compare",
        help="compare two fits: parameters side by side and the compute multiplier at a budget",
        description="Compare two fits of one law and approach (e.g. one ladder on a raw and on "
        "a deduplicated corpus): their parameters and exponents with intervals, each "
        "compute-optimal loss at --flops with its CI and PI, and the compute the worse side "
        "needs to match the better one, as a multiplier with an interval. Writes "
        "DIR/compare.md, DIR/compare.json and DIR/compare.png.",
        epilog=EPILOG_COMPARE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("fits", nargs=2, type=Path, metavar="FIT", help="fit.json (or its folder)")
    p.add_argument("--flops", required=True, type=number, help="the target budget, FLOPs")
    p.add_argument(
        "--labels", default="A,B", help="names of the two fits, comma-separated (default: A,B)"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("analysis/compare"),
        metavar="DIR",
        help="output directory (default: %(default)s)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the replicate pairing")
    p.add_argument("--json", action="store_true", help="print compare.json to stdout")
    p.add_argument(
        "--allow-unhealthy",
        action="store_true",
        help="compare even fits whose health verdict lists problems (flagged in the report)",
    )
    p.set_defaults(handler=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    """``scaling compare``: two fits side by side and the compute multiplier at --flops."""
    from scaling.analysis.prediction.compare import compare, multiplier_line
    from scaling.analysis.report.compare import write_comparison

    cmp = compare(
        args.fits,
        args.labels.split(","),
        args.flops,
        allow_unhealthy=args.allow_unhealthy,
        seed=args.seed,
    )
    for w in cmp.warnings:
        print(f"warning: {w}", file=sys.stderr)
    written = write_comparison(cmp, args.out)
    if args.json:
        print(json.dumps(cmp.to_json(), indent=2))
    else:
        print(multiplier_line(cmp))
    print(f"wrote {', '.join(str(w) for w in written)}", file=sys.stderr)
    return 0
