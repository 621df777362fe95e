"""``scaling``: the command line (also ``python -m scaling``).

Subcommands::

    scaling collect [--tracking-uri URI] [--experiment NAME] [--curves] [--where K=V] --out FILE
    scaling fit RUNS [--law chinchilla|kaplan|...] [--approach 1|2|3] [--bootstrap N]
                [--out DIR] [--json]
    scaling predict --fit DIR/fit.json (--flops C | --params N --tokens D | --target-loss L
                    | --gpu-hours H --peak-flops F --mfu U) [--json]
    scaling report DIR
    scaling plan --target-flops C [--budget-flops F | --budget-hours H] [--prior FIT.json]
                 [--name NAME] [--runs RUNS.csv]
    scaling verify --fit DIR/fit.json --flops C [--bracket] [--json] [key=value ...]
    scaling process [--json] [data=NAME] [data.KEY=VALUE ...]
    scaling compare FIT_A FIT_B --flops C [--labels A,B] [--out DIR] [--json]
    scaling study --target-flops C [--budget-flops F | --budget-hours H] [--verify] [--bracket]
                  [--name NAME] [key=value ...]

Each command lives in a module of this package with its parser beside it: ``data`` (collect,
process), ``fit`` (fit, report), ``predict``, ``plan``, ``verify``, ``compare``; ``common`` holds
what their parsers share. Only the commands that train or read the tracking store (collect,
process, verify) import the training stack, and only when they run.

User mistakes exit with status 2 and one ``error: ...`` line; nothing is written unless the whole
command succeeds.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from scaling.cli.common import Commands, Parser, attach_negative_numbers
from scaling.cli.compare import add_compare
from scaling.cli.data import add_collect, add_process
from scaling.cli.fit import add_fit, add_report
from scaling.cli.plan import PLAN_NUMBER_OPTIONS, add_plan
from scaling.cli.predict import NUMBER_OPTIONS, add_predict
from scaling.cli.study import add_study
from scaling.cli.verify import add_verify
from scaling.errors import exit_on_user_error

# Each subcommand's parser, in the order `scaling --help` lists them.
COMMANDS: tuple[Callable[[Commands], None], ...] = (
    add_collect,
    add_fit,
    add_predict,
    add_report,
    add_plan,
    add_verify,
    add_process,
    add_compare,
    add_study,
)

# Options whose value may be a negative number (of any subcommand that has them).
NUMBER_FLAGS = frozenset((*NUMBER_OPTIONS, *PLAN_NUMBER_OPTIONS, "--extrapolation"))


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of the ``scaling`` command."""
    parser = Parser(
        prog="scaling",
        description="Scaling-law harness: plan a ladder of runs, collect them, fit "
        "Kaplan/Chinchilla laws with uncertainty, predict compute-optimal allocations with "
        "intervals that say what they cover, write reports, and verify a prediction by "
        "training the run it names.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(commands)
    return parser


@exit_on_user_error
def _run(argv: Sequence[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(attach_negative_numbers(argv, NUMBER_FLAGS))
    args.argv = list(argv)  # `scaling plan` records its command line in the preset
    return int(args.handler(args) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``scaling`` console script; returns the exit status."""
    return _run(argv)
