"""``scaling verify``: train the run a fit predicts at a budget and score the prediction (the
training stack is imported only when the command runs)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from scaling.cli.common import Commands, number
from scaling.errors import UserError

EPILOG_VERIFY = """\
examples:
  scaling verify --fit analysis/ladder/fit.json --flops 3e13
  scaling verify --fit analysis/ladder/fit.json --flops 3e13 --bracket data=text data.path=corpus/
  scaling verify --fit analysis/ladder/fit.json --flops 3e13 --json tracking.experiment=ladder-v

exit status: 0 verified (whatever the error: the line says how far off the prediction was),
2 a bad input, 3 the fit is unhealthy or does not support the budget asked (as `scaling
predict`: too far beyond the data, or too wide an interval there).
"""


def add_verify(commands: Commands) -> None:
    """The parser of ``scaling verify``."""
    p = commands.add_parser(
        "verify",
        help="train the run a fit predicts and score the prediction",
        description="Train the compute-optimal run that a fit predicts at --flops (snapped to the "
        "nearest valid model shape) and compare: one line 'predicted P [lo, hi], measured M, "
        "error E%, inside: yes|no' judged by the prediction interval of a new run. The result is "
        "recorded on the MLflow run (tags scaling.verify.*) and appended to verifications.csv "
        "beside fit.json, which `scaling report DIR` shows.",
        epilog=EPILOG_VERIFY,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--fit", required=True, type=Path, help="fit.json written by `scaling fit`")
    p.add_argument("--flops", required=True, type=number, help="the budget to verify, FLOPs")
    p.add_argument(
        "--bracket",
        action="store_true",
        help="also train the shapes nearest 0.5x and 2x the predicted N at the same compute",
    )
    p.add_argument("--json", action="store_true", help="print the verifications as JSON")
    p.add_argument("--allow-unhealthy", action="store_true", help="verify even an unhealthy fit")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="training config overrides, as for python -m scaling.train: the ladder's data, "
        "tokenizer, batch and tracking settings (default experiment: verify)",
    )
    p.set_defaults(handler=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> int:
    """``scaling verify``: train the predicted optimum and score the prediction."""
    from scaling.training.verify import summary_lines, verify

    if not (math.isfinite(args.flops) and args.flops > 0):
        raise UserError(f"--flops must be a positive number, got {args.flops:g}")
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        raise UserError(f"overrides are key=value, got {' '.join(bad)!r}")
    results = verify(
        args.fit,
        args.flops,
        args.overrides,
        bracket=args.bracket,
        allow_unhealthy=args.allow_unhealthy,
    )
    if args.json:
        print(json.dumps([v.to_json() for v in results]))
        return 0
    print("\n".join(summary_lines(results, args.fit)))
    return 0
