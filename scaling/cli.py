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

User mistakes exit with status 2 and one ``error: ...`` line; nothing is written unless the whole
command succeeds.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from scaling.config import DEFAULT_EXPERIMENT, DEFAULT_TRACKING_URI
from scaling.errors import UnhealthyFitError, UserError, exit_on_user_error

EPILOG_FIT = """\
examples:
  scaling fit results/runs.csv --out analysis/sweep1            # Chinchilla law, approach 3
  scaling fit results/runs.csv --law kaplan --bootstrap 0       # Kaplan L(N, D), no intervals
  scaling fit results/isoflop.csv --approach 2 --out analysis/iso
  scaling fit results/curves.csv --approach 1                   # from `scaling collect --curves`
  scaling fit results/curves.csv --law curve --predict-tokens 4e6 --schedule wsd  # loss curves

The run table needs columns params, tokens, loss (optional flops; default 6*params*tokens).
Approach 1 needs a curves table: run_id, params, tokens, loss, one row per logged point.
"""

EPILOG_PREDICT = """\
examples:
  scaling predict --fit analysis/sweep1/fit.json --flops 1e21
  scaling predict --fit analysis/sweep1/fit.json --params 1e9 --tokens 2e10 --json
  scaling predict --fit analysis/sweep1/fit.json --target-loss 2.5
  scaling predict --fit analysis/sweep1/fit.json --gpu-hours 1000 --peak-flops 989e12 --mfu 0.4

two intervals of the loss, at the fit's level (--level of `scaling fit`):
  CI of the expected loss   where the fitted mean curve lies (bootstrap over runs)
  prediction interval       where the loss of one new run will land: the CI plus the
                            run-to-run noise (from seed replicates, else the fit's residuals)

exit status: 0 a prediction, 2 a bad input, 3 the fit is unhealthy (fit.json's `health`
lists why: too few runs, parameters on a bound, IsoFLOP minima at the edge, a failed
backtest...); --allow-unhealthy predicts anyway and prints the problems as warnings.
"""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number such as 1e21, got {text!r}") from None


# Options of `scaling fit` that set a field of FitOptions of the same name, with its default:
# (field, type, metavar, help).
FIT_OPTIONS = (
    ("seed", int, None, "bootstrap seed (default: %(default)s)"),
    ("level", float, None, "interval coverage, e.g. 0.95 (default: %(default)s)"),
    ("workers", int, None, "processes for the bootstrap (default: all available CPUs)"),
    (
        "huber_delta",
        float,
        None,
        "Huber delta on log-residuals (default: %(default)g, Hoffmann et al.)",
    ),
    (
        "grid_stride",
        int,
        "K",
        "use every K-th start of the published 4,500-point grid (default: %(default)s)",
    ),
    (
        "isoflop_tolerance",
        float,
        "DECADES",
        "runs within this many decades of compute share a budget (default: %(default)s)",
    ),
)

# Options of `scaling predict` that take a number. argparse reads "-1e20" as an option name, so
# `--flops -1e20` would end in a usage dump; :func:`_attach_negative_numbers` hands such a value
# over as `--flops=-1e20`, and the user gets the one-line "must be positive" error instead.
NUMBER_OPTIONS = {
    "--flops": "compute budget C in FLOPs",
    "--params": "model parameters N (with --tokens)",
    "--tokens": "training tokens D (with --params)",
    "--target-loss": "loss to reach (nats/token)",
    "--gpu-hours": "budget in accelerator hours",
    "--peak-flops": "peak FLOP/s per accelerator (with --gpu-hours)",
    "--mfu": "model FLOPs utilisation in (0, 1] (with --gpu-hours)",
}
PLAN_NUMBER_OPTIONS = ("--target-flops", "--budget-flops", "--budget-hours")
_NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _attach_negative_numbers(argv: Sequence[str]) -> list[str]:
    """``argv`` with ``--flops -1e20`` (any of :data:`NUMBER_OPTIONS`) as ``--flops=-1e20``."""
    out: list[str] = []
    for arg in argv:
        if (
            out
            and out[-1] in (*NUMBER_OPTIONS, *PLAN_NUMBER_OPTIONS)
            and _NEGATIVE_NUMBER.match(arg)
        ):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


class _Parser(argparse.ArgumentParser):
    """A bad option is one line (what is wrong, where the usage is) and exit status 2, not the
    usage block followed by the error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of the ``scaling`` command."""
    from scaling.analysis.fitting.laws import LAWS
    from scaling.analysis.fitting.results import CLI_BOOTSTRAP, FitOptions
    from scaling.analysis.report import BACKTEST_QUANTILE

    defaults = FitOptions()

    parser = _Parser(
        prog="scaling",
        description="Scaling-law harness: plan a ladder of runs, collect them, fit "
        "Kaplan/Chinchilla laws with uncertainty, predict compute-optimal allocations with "
        "intervals that say what they cover, write reports, and verify a prediction by "
        "training the run it names.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "collect",
        help="export tracked runs (MLflow) to a run table",
        description="Read finished runs from the tracking store and write the run table "
        "(CSV or Parquet by the extension of --out).",
    )
    p.add_argument(
        "--tracking-uri",
        default=DEFAULT_TRACKING_URI,
        help=f"MLflow tracking URI (default: {DEFAULT_TRACKING_URI})",
    )
    p.add_argument(
        "--experiment",
        default=DEFAULT_EXPERIMENT,
        help=f"experiment name (default: {DEFAULT_EXPERIMENT})",
    )
    p.add_argument(
        "--curves",
        action="store_true",
        help="write loss-vs-tokens curves (one row per logged point) for approach 1",
    )
    p.add_argument("--out", required=True, type=Path, help="output table, .csv or .parquet")
    p.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keep only runs whose MLflow param KEY equals VALUE, e.g. 'data.process=[]' or "
        "data.processed_id=ab12cd34ef56 (repeatable: all must hold; lists compare without "
        "quotes and spaces, numbers as numbers)",
    )
    p.set_defaults(handler=cmd_collect)

    p = sub.add_parser(
        "fit",
        help="fit a scaling law to a run table and write fit.json, report.md and plots",
        description="Fit a scaling law to a run table (CSV or Parquet) and write "
        "DIR/fit.json, DIR/report.md and DIR/*.png.",
        epilog=EPILOG_FIT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("runs", type=Path, metavar="RUNS", help="run table (.csv or .parquet)")
    p.add_argument(
        "--law",
        default="chinchilla",
        choices=[*LAWS, "curve", "hparams"],
        help="law to fit with approach 3 (default: chinchilla); curve: the loss-curve law with "
        "LR annealing per model size, on a curves table (Tissue et al. 2024); hparams: the best "
        "lr and batch per compute budget as power laws of C (DeepSeek LLM 2024), written as "
        "DIR/hparams.json for train.lr=auto / train.batch_size=auto",
    )
    p.add_argument(
        "--approach",
        type=int,
        default=3,
        choices=(1, 2, 3),
        help="1: envelope of loss curves, 2: IsoFLOP parabolas, 3: parametric law (default: 3)",
    )
    p.add_argument(
        "--bootstrap",
        type=_positive_int,
        default=CLI_BOOTSTRAP,
        metavar="N",
        help="bootstrap resamples over runs for intervals; 0 = none (default: %(default)s)",
    )
    for field, kind, metavar, text in FIT_OPTIONS:
        flag = "--" + field.replace("_", "-")
        default = getattr(defaults, field)
        p.add_argument(flag, type=kind, default=default, metavar=metavar, help=text)
    p.add_argument(
        "--params-column",
        default="params",
        help="column with the parameter count, e.g. params_nonembed (default: params)",
    )
    p.add_argument(
        "--backtest-quantile",
        type=float,
        default=BACKTEST_QUANTILE,
        help="backtest fits runs below this compute quantile, predicts the rest "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="output directory (default: analysis/<RUNS name>)",
    )
    p.add_argument(
        "--no-report", action="store_true", help="write fit.json only (skip report.md and plots)"
    )
    p.add_argument("--json", action="store_true", help="also print fit.json to stdout")
    _add_curve_options(p)
    p.set_defaults(handler=cmd_fit)

    p = sub.add_parser(
        "predict",
        help="predict compute-optimal size, tokens and loss from a fit.json",
        description="Predict from a fit: the compute-optimal allocation for a budget, the loss "
        "of a given model size and token count, or the least compute that reaches a loss.",
        epilog=EPILOG_PREDICT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--fit", required=True, type=Path, help="fit.json written by `scaling fit`")
    for option, text in NUMBER_OPTIONS.items():
        p.add_argument(option, type=_number, help=text)
    p.add_argument("--json", action="store_true", help="print the prediction as JSON")
    p.add_argument(
        "--allow-unhealthy",
        action="store_true",
        help="predict even when the fit's health verdict lists problems (otherwise exit 3)",
    )
    p.set_defaults(handler=cmd_predict)

    p = sub.add_parser(
        "report",
        help="re-render report.md and plots from an existing fit directory",
        description="Re-render DIR/report.md and DIR/*.png from DIR/fit.json and DIR/runs.csv.",
    )
    p.add_argument("dir", type=Path, metavar="DIR", help="directory written by `scaling fit`")
    p.add_argument("--backtest-quantile", type=float, default=BACKTEST_QUANTILE)
    p.set_defaults(handler=cmd_report)

    _add_plan_parser(sub)
    _add_process_parser(sub)
    _add_compare_parser(sub)
    return parser


EPILOG_VERIFY = """\
examples:
  scaling verify --fit analysis/ladder/fit.json --flops 3e13
  scaling verify --fit analysis/ladder/fit.json --flops 3e13 --bracket data=text data.path=corpus/
  scaling verify --fit analysis/ladder/fit.json --flops 3e13 --json tracking.experiment=ladder-v

exit status: 0 verified (whatever the error: the line says how far off the prediction was),
2 a bad input, 3 the fit is unhealthy (as `scaling predict`).
"""

EPILOG_PLAN = """\
examples:
  scaling plan --target-flops 1e15 --budget-hours 8               # the default prior and machine
  scaling plan --target-flops 1e15 --prior analysis/pilot/fit.json --runs results/pilot.csv
  scaling plan --target-flops 3e13 --shapes free --batch-size 8 --name ladder3e13
  scaling plan --target-flops 1e12 --lr auto --batch-size auto --seq-len 32 --verify
  python -m scaling.sweep -m sweeps=ladder                          # then run what it wrote

design: budgets x--ratio apart up to C*/--extrapolation (the target is a 10x extrapolation),
as many as the budget affords (at least --min-budgets); at each, --sizes model sizes about
+-span decades around N_opt(C) (from --prior, else Hoffmann et al. 2022 eq. 10) that bracket
it; the centre size of each budget again with seeds 1..--replicates (the noise estimate). A run
with fewer than --min-steps optimizer steps or tokens per parameter outside --tpp-range is not
planned. Shapes follow the model's aspect rule (d_model = 16 n_layer; --shapes free lets d_model
vary within 2x of it, for nearly continuous sizes). lr and batch are the project's defaults, or
with --lr auto --batch-size auto the hparams rule's at each budget (what train.lr=auto and
train.batch_size=auto resolve to in the sweep). --verify ends the sweep with the closed loop:
the fit's predicted optimum at C* is trained and its prediction scored (sweep.verify_flops).
Wall-clock comes from --runs (a collected run table's tokens_per_s against params), else from
the README's measured throughput on the 2-core CPU plus a fixed cost per optimizer step and per
run (at the smallest sizes the step count, not the FLOPs, sets the time).

writes sweeps/NAME.yaml under the working directory (one sweep.point per run) and prints the
plan; exit status 2 with one line saying what is affordable when no healthy ladder fits.
"""


def _tpp_range(text: str) -> tuple[float, float]:
    parts = re.split(r"\.\.|,", text)
    try:
        lo, hi = (float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO..HI such as 1..1000, got {text!r}") from None
    return lo, hi


def _or_auto(parse: Callable[[str], float], kind: str) -> Callable[[str], float | str]:
    """An argparse type: ``auto``, else ``parse(text)``; one line naming ``kind`` otherwise."""

    def convert(text: str) -> float | str:
        if text.strip().lower() == "auto":
            return "auto"
        try:
            return parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind} or auto, got {text!r}") from None

    return convert


def _add_plan_parser(sub: Any) -> None:
    from scaling.analysis.design.plan import SHAPE_FAMILIES, PlanOptions

    d = PlanOptions(target_flops=1.0)
    p = sub.add_parser(
        "plan",
        help="design a healthy IsoFLOP ladder for a target compute and write its sweep preset",
        description="Design an IsoFLOP ladder whose fit can predict the compute-optimal run at "
        "--target-flops: print every run (size, tokens, steps, batch, lr, FLOPs, estimated "
        "wall-clock) and the total, and write the sweep preset sweeps/NAME.yaml.",
        epilog=EPILOG_PLAN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--target-flops", required=True, type=_number, metavar="C", help="the compute to predict"
    )
    budget = p.add_mutually_exclusive_group()
    budget.add_argument(
        "--budget-flops", type=_number, metavar="F", help="the ladder's total FLOPs at most"
    )
    budget.add_argument(
        "--budget-hours",
        type=_number,
        metavar="H",
        help="the ladder's total training hours at most (through the throughput model)",
    )
    p.add_argument(
        "--prior",
        type=Path,
        metavar="FIT.json",
        help="centre the sizes on this fit's N_opt(C) (default: Hoffmann et al. 2022 eq. 10)",
    )
    p.add_argument(
        "--name",
        default="ladder",
        help="preset, experiment and run-table name: writes sweeps/NAME.yaml (default: ladder)",
    )
    p.add_argument(
        "--runs",
        type=Path,
        metavar="RUNS.csv",
        help="a collected run table (tokens_per_s, params): fit the throughput for wall-clock",
    )
    p.add_argument(
        "--extrapolation",
        type=_number,
        default=d.extrapolation,
        metavar="K",
        help="the top budget is C/K (default: %(default)g)",
    )
    p.add_argument(
        "--ratio",
        type=_number,
        default=d.ratio,
        help="between consecutive budgets (default: %(default)g)",
    )
    p.add_argument(
        "--sizes", type=int, default=d.sizes, help="model sizes per budget (default: %(default)s)"
    )
    p.add_argument(
        "--span",
        type=_number,
        default=d.span,
        metavar="DECADES",
        help="the sizes aim at N_opt x 10^(+-span) (default: %(default)g)",
    )
    p.add_argument(
        "--min-budgets",
        type=int,
        default=d.min_budgets,
        help="fewest budgets a ladder may have (default: %(default)s)",
    )
    p.add_argument("--max-budgets", type=int, default=None, help="most budgets (default: no cap)")
    p.add_argument(
        "--min-steps",
        type=int,
        default=d.min_steps,
        help="a run needs this many optimizer steps (default: %(default)s)",
    )
    p.add_argument(
        "--tpp-range",
        type=_tpp_range,
        default=d.tpp_range,
        metavar="LO..HI",
        help="tokens per parameter a run may have (default: 1..1000)",
    )
    p.add_argument(
        "--replicates",
        type=int,
        default=d.replicates,
        help="extra seeds of each budget's centre size (default: %(default)s)",
    )
    p.add_argument(
        "--shapes",
        choices=SHAPE_FAMILIES,
        default=d.shapes,
        help="aspect: d_model = aspect x n_layer (the model's rule); free: d_model any multiple "
        "of head_dim within 2x of it (default: %(default)s)",
    )
    p.add_argument(
        "--batch-size",
        type=_or_auto(int, "a whole number"),
        default=d.batch_size,
        help="train.batch_size of every run, sequences per step, or auto: the hparams rule's "
        "batch at each budget (default: %(default)s)",
    )
    p.add_argument(
        "--lr",
        type=_or_auto(float, "a number"),
        default=d.lr,
        help="train.lr of every run, or auto: the hparams rule's LR at each budget (default: "
        "%(default)g)",
    )
    p.add_argument(
        "--hparams-rule",
        metavar="HPARAMS.json",
        help="the rule auto reads (train.hparams_rule; default: ./hparams.json when the sweep "
        "runs, else the shipped rule)",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="end the preset's sweep by training the fit's predicted optimum at --target-flops "
        "and scoring the prediction (sweep.verify_flops)",
    )
    p.add_argument(
        "--seq-len",
        type=int,
        default=d.seq_len,
        help="model.seq_len of every run (default: %(default)s)",
    )
    p.add_argument(
        "--head-dim",
        type=int,
        default=d.head_dim,
        help="model.head_dim of every run: d_model per head; free widths are its multiples, so "
        "8 adds smaller and denser sizes (default: %(default)s)",
    )
    p.add_argument(
        "--vocab-size",
        type=int,
        default=d.vocab_size,
        help="the corpus's vocabulary, for parameter counts (default: %(default)s, the byte "
        "tokenizer; give data.vocab_size for bpe)",
    )
    p.set_defaults(handler=cmd_plan)

    p = sub.add_parser(
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
    p.add_argument("--flops", required=True, type=_number, help="the budget to verify, FLOPs")
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


EPILOG_PROCESS = """\
examples:
  scaling process data=sitepackages                                # its default: exact + near dedup
  scaling process data=stdlib 'data.process=[dedup_exact,dedup_near]'
  scaling process data=text data.path=notes/ 'data.process=[dedup_exact,filter_quality]'
  scaling process data=text data.path=src/ 'data.process=[dedup_near]' data.dedup_near.threshold=0.9

The stages run once into data.cache_dir/processed/ (with progress bars on a terminal); a
second call with the same source and config reads that entry back ("cached") without reading
any text, and so does every training run on it. exit status: 0 processed or cached, 2 a bad
input (one line; nothing written).
"""

EPILOG_COMPARE = """\
examples:
  scaling compare analysis/raw/fit.json analysis/dedup/fit.json --labels raw,dedup --flops 1e14
  scaling compare analysis/raw analysis/dedup --flops 1e14 --out analysis/dedup_study --json

The better side has the lower expected loss at --flops; the multiplier is the compute the other
side needs to reach that loss, over --flops, with an interval over paired bootstrap replicates
(it covers the ratio of the fitted mean curves). exit status: 0 compared, 2 a bad input, 3 a fit
is unhealthy (as `scaling predict`; --allow-unhealthy compares anyway and flags it).
"""


def _add_process_parser(sub: Any) -> None:
    p = sub.add_parser(
        "process",
        help="run a corpus's data.process (dedup, filters) without training; print its report",
        description="Process a corpus as a training run would (data.process: dedup_exact, "
        "dedup_near, filter_length, filter_quality), into the processing cache, and print the "
        "per-stage report: documents in, out and removed, bytes removed, shares removed; the "
        "processed_id and where report.json lives.",
        epilog=EPILOG_PROCESS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="data.KEY=VALUE",
        help="data overrides as for python -m scaling.train: data=NAME, data.path=..., "
        "'data.process=[...]', data.<stage>.<parameter>=...",
    )
    p.set_defaults(handler=cmd_process)


def _add_compare_parser(sub: Any) -> None:
    p = sub.add_parser(
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
    p.add_argument("--flops", required=True, type=_number, help="the target budget, FLOPs")
    p.add_argument(
        "--labels", default="A,B", help="names of the two fits, comma-separated (default: A,B)"
    )
    p.add_argument(
        "--out", type=Path, default=Path("analysis/compare"), metavar="DIR",
        help="output directory (default: %(default)s)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seed of the replicate pairing")
    p.add_argument("--json", action="store_true", help="print compare.json to stdout")
    p.add_argument(
        "--allow-unhealthy",
        action="store_true",
        help="compare even fits whose health verdict lists problems (flagged in the report)",
    )
    p.set_defaults(handler=cmd_compare)


# --------------------------------------------------------------------------------------------
# Handlers
# --------------------------------------------------------------------------------------------


def cmd_collect(args: argparse.Namespace) -> int:
    """``scaling collect``: tracked runs -> run table."""
    from scaling.analysis.table import write_table
    from scaling.training.collect import collect_runs

    suffix = args.out.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise UserError(f"--out {args.out}: use a .csv or .parquet file name")
    df = collect_runs(
        args.tracking_uri, args.experiment, curves=args.curves, where=_where(args.where)
    )
    path = write_table(df, args.out)
    print(f"wrote {len(df):,} rows to {path}", file=sys.stderr)
    if df.attrs.get("dropped_duplicates"):
        n = df.attrs["dropped_duplicates"]
        print(f"kept the newest FINISHED run of each run key: dropped {n} older", file=sys.stderr)
    return 0


def _where(conditions: Sequence[str]) -> dict[str, str]:
    """``--where KEY=VALUE`` options as a mapping (each KEY once)."""
    out: dict[str, str] = {}
    for cond in conditions:
        key, eq, value = cond.partition("=")
        if not eq or not key.strip():
            raise UserError(f"--where takes KEY=VALUE, e.g. 'data.process=[]'; got {cond!r}")
        if key.strip() in out:
            raise UserError(f"--where names {key.strip()} twice: give each key once")
        out[key.strip()] = value.strip()
    return out


def _validate_fit_args(args: argparse.Namespace) -> None:
    if not 0 < args.level < 1:
        raise UserError(f"--level must be in (0, 1), got {args.level:g}")
    if not args.huber_delta > 0:
        raise UserError(f"--huber-delta must be positive, got {args.huber_delta:g}")
    if args.grid_stride < 1:
        raise UserError(f"--grid-stride must be >= 1, got {args.grid_stride}")
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be >= 1, got {args.workers}")
    if not args.isoflop_tolerance > 0:
        raise UserError("--isoflop-tolerance must be positive")
    if not 0 < args.backtest_quantile < 1:
        raise UserError("--backtest-quantile must be in (0, 1)")
    if args.approach != 3 and args.law != "chinchilla":
        raise UserError(
            f"--law {args.law} applies to approach 3; approaches 1 and 2 fit power laws in C"
        )


# Options of `scaling fit --law curve` only (their dests default to None).
CURVE_FLAGS = (
    "--predict-tokens",
    "--schedule",
    "--cooldown",
    "--warmup-steps",
    "--curve-lambda",
    "--curve-skip",
    "--curve-resample",
)


def _add_curve_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("--law curve (a curves table; writes DIR/curve_fit.json and .png)")
    g.add_argument(
        "--predict-tokens",
        metavar="D1,D2",
        help="also predict the final loss of these horizons (tokens) for every size",
    )
    g.add_argument(
        "--schedule",
        choices=("cosine", "wsd", "constant"),
        help="schedule of the predicted horizons (default: the size's runs')",
    )
    g.add_argument("--cooldown", type=float, help="wsd cooldown fraction of those horizons")
    g.add_argument("--warmup-steps", type=int, help="warmup (optimizer steps) of those horizons")
    g.add_argument(
        "--curve-lambda",
        metavar="λ|fit",
        help="decay of the annealing momentum (default: 0.999, the paper's), or 'fit'",
    )
    g.add_argument(
        "--curve-skip",
        type=float,
        metavar="F",
        help="leave out points before this fraction of each size's longest horizon (default: 0.1)",
    )
    g.add_argument(
        "--curve-resample",
        choices=("blocks", "runs"),
        help="bootstrap residual blocks (default) or whole runs",
    )


def cmd_fit(args: argparse.Namespace) -> int:
    """``scaling fit``: run table -> fit.json, report.md, plots (written only on success)."""
    from scaling.analysis.fitting.fit_dir import fit_to_dir
    from scaling.analysis.fitting.results import FitOptions

    _validate_fit_args(args)
    if args.law == "curve":
        return _cmd_fit_curve(args)
    given = [f for f in CURVE_FLAGS if getattr(args, f[2:].replace("-", "_")) is not None]
    if given:
        raise UserError(f"{', '.join(given)} apply to --law curve only")
    if args.law == "hparams":
        return _cmd_fit_hparams(args)
    chosen = {field: getattr(args, field) for field, *_ in FIT_OPTIONS}
    output = fit_to_dir(
        args.runs,
        args.out if args.out is not None else Path("analysis") / args.runs.stem,
        law=args.law,
        approach=args.approach,
        options=FitOptions(bootstrap=args.bootstrap, **chosen),
        params_column=args.params_column,
        report=not args.no_report,
        backtest_quantile=args.backtest_quantile,
    )
    for w in output.result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if args.json:
        print(json.dumps(output.doc, indent=2))
    else:
        print(_fit_summary(output.doc))
    print(
        f"wrote {', '.join(str(w) for w in output.written if w.suffix != '.png')} and "
        f"{sum(w.suffix == '.png' for w in output.written)} plot(s)",
        file=sys.stderr,
    )
    return 0


def _cmd_fit_hparams(args: argparse.Namespace) -> int:
    """``scaling fit --law hparams``: a table of runs varying lr and batch_size at several
    budgets -> the rule DIR/hparams.json (what train.lr=auto / batch_size=auto read)."""
    from scaling.analysis.design.hparams import fit_hparams_to_dir, summary

    out = args.out if args.out is not None else Path("analysis") / args.runs.stem
    command = " ".join(["scaling", *getattr(args, "argv", ["fit", str(args.runs)])])
    doc, path = fit_hparams_to_dir(
        args.runs, out, level=args.level, tolerance=args.isoflop_tolerance, command=command
    )
    for w in doc["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    print(json.dumps(doc, indent=2) if args.json else summary(doc))
    print(
        f"wrote {path} (use it: train.lr=auto train.batch_size=auto "
        f"train.hparams_rule={path}, or copy it to ./hparams.json)",
        file=sys.stderr,
    )
    return 0


def _cmd_fit_curve(args: argparse.Namespace) -> int:
    """``scaling fit --law curve``: curves table -> DIR/curve_fit.json and DIR/curve_fit.png."""
    from scaling.analysis.curves.curve import CurveOptions
    from scaling.analysis.curves.curve_dir import (
        fit_curves_to_dir,
        parse_lambda,
        parse_tokens,
        summary,
    )

    chosen = {
        "lam": parse_lambda(args.curve_lambda),
        "skip": args.curve_skip,
        "resample": args.curve_resample,
    }
    options = CurveOptions(
        bootstrap=args.bootstrap,
        seed=args.seed,
        level=args.level,
        **{k: v for k, v in chosen.items() if v is not None},
    )
    schedule = {"schedule": args.schedule, "cooldown": args.cooldown}
    schedule["warmup_steps"] = args.warmup_steps
    output = fit_curves_to_dir(
        args.runs,
        args.out if args.out is not None else Path("analysis") / args.runs.stem,
        options,
        predict_tokens=parse_tokens(args.predict_tokens),
        schedule=schedule,
    )
    for w in output.fit.warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(json.dumps(output.doc, indent=2) if args.json else summary(output.doc))
    print(f"wrote {', '.join(str(w) for w in output.written)}", file=sys.stderr)
    return 0


def _fit_summary(doc: dict[str, Any]) -> str:
    lines = [f"law {doc['law']} (approach {doc['approach']}), {doc['n_points']} points"]
    ci = doc.get("ci") or {}
    for group in ("params", "exponents"):
        for k, v in (doc.get(group) or {}).items():
            if v is None:
                continue
            interval = ci.get(k)
            extra = (
                f"  [{interval[0]:.4g}, {interval[1]:.4g}]"
                if interval and None not in interval
                else ""
            )
            lines.append(f"  {k:>8} = {v:.4g}{extra}")
    return "\n".join(lines)


def cmd_predict(args: argparse.Namespace) -> int:
    """``scaling predict``: a budget, a model size, or a target loss -> prediction."""
    from scaling.analysis.fitting.results import load_fit
    from scaling.analysis.prediction.health import problem_line
    from scaling.analysis.prediction.predict import Predictor, gpu_hours_to_flops
    from scaling.numbers import fmt_g

    modes = [
        args.flops is not None,
        args.params is not None or args.tokens is not None,
        args.target_loss is not None,
        any(v is not None for v in (args.gpu_hours, args.peak_flops, args.mfu)),
    ]
    if sum(modes) != 1:
        raise UserError(
            "give exactly one of --flops C, --params N --tokens D, --target-loss L, or "
            "--gpu-hours H --peak-flops F --mfu U"
        )
    predictor = Predictor(load_fit(args.fit))
    health = predictor.health
    if not health["ok"]:
        if not args.allow_unhealthy:
            raise UnhealthyFitError(
                f"{args.fit}: the fit cannot support a prediction: {problem_line(health)}; "
                "add runs and refit, or pass --allow-unhealthy"
            )
        for problem in health["problems"]:
            print(f"warning: unhealthy fit: {problem}", file=sys.stderr)
    if args.flops is not None:
        pred = predictor.at_budget(args.flops)
    elif modes[1]:
        if args.params is None or args.tokens is None:
            raise UserError("--params and --tokens go together")
        pred = predictor.at_size(args.params, args.tokens)
    elif args.target_loss is not None:
        pred = predictor.for_target_loss(args.target_loss)
    else:
        if None in (args.gpu_hours, args.peak_flops, args.mfu):
            raise UserError("--gpu-hours needs --peak-flops (FLOP/s) and --mfu (0..1)")
        pred = predictor.at_budget(gpu_hours_to_flops(args.gpu_hours, args.peak_flops, args.mfu))
    for w in pred.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if args.json:
        print(json.dumps(pred.to_json()))
        return 0
    level = f"{pred.level:.0%}" if pred.level else ""

    def row(
        name: str,
        value: float | None,
        ci: tuple[float, float] | None,
        unit: str,
        what: str = "interval",
    ) -> str:
        text = f"{name:>16}: {fmt_g(value, missing='n/a')} {unit}".rstrip()
        if ci is not None:
            lo, hi = (fmt_g(v, missing="n/a") for v in ci)
            hi = "unbounded" if ci[1] == math.inf else hi
            text += f"   ({level} {what} {lo} .. {hi})"
        return text

    lines = [
        row("compute", pred.flops, pred.flops_ci, "FLOPs"),
        row("params", pred.params, pred.params_ci, ""),
        row("tokens", pred.tokens, pred.tokens_ci, ""),
    ]
    if pred.tokens_per_param is not None:
        lines.append(f"{'tokens/param':>16}: {pred.tokens_per_param:.3g}")
    lines.append(row("loss", pred.loss, pred.loss_ci, "nats/token", "CI of the expected loss"))
    if pred.loss_pi is not None:
        lines.append(row("new run's loss", pred.loss, pred.loss_pi, "", "prediction interval"))
        lines.append(f"{'':>18}(run-to-run noise: {pred.noise})")
    if pred.unreachable_share:
        lines.append(
            f"{'unreachable':>16}: {pred.unreachable_share:.0%} of the bootstrap replicates "
            "never reach this loss"
        )
    print("\n".join(line for line in lines if ": n/a" not in line))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """``scaling report DIR``: re-render report.md and plots from DIR/fit.json + DIR/runs.csv."""
    from scaling.analysis.fitting.results import load_fit
    from scaling.analysis.report.markdown import write_report
    from scaling.analysis.table import read_run_table

    result = load_fit(args.dir / "fit.json")
    runs_path = args.dir / "runs.csv"
    runs = read_run_table(runs_path, curves=result.approach == 1)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix=".report.") as tmp:
        stage = Path(tmp)
        write_report(
            result,
            runs,
            stage,
            source=str((result.data or {}).get("path", runs_path)),
            backtest_quantile=args.backtest_quantile,
            history=args.dir / "verifications.csv",
        )
        for item in sorted(stage.iterdir()):
            item.replace(args.dir / item.name)
    print(f"wrote {args.dir / 'report.md'}", file=sys.stderr)
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    """``scaling plan``: design an IsoFLOP ladder, print it, write ``sweeps/NAME.yaml``."""
    import shlex

    from scaling.analysis.design.plan import (
        PlanOptions,
        Throughput,
        check_name,
        default_prior,
        plan_ladder,
        plan_table,
        preset_yaml,
        prior_from_fit,
        throughput_from_runs,
        validate_points,
    )

    check_name(args.name)
    options = PlanOptions(
        target_flops=args.target_flops,
        budget_flops=args.budget_flops,
        budget_hours=args.budget_hours,
        extrapolation=args.extrapolation,
        ratio=args.ratio,
        sizes=args.sizes,
        span=args.span,
        min_budgets=args.min_budgets,
        max_budgets=args.max_budgets,
        min_steps=args.min_steps,
        tpp_range=args.tpp_range,
        replicates=args.replicates,
        shapes=args.shapes,
        batch_size=args.batch_size,
        lr=args.lr,
        hparams_rule=args.hparams_rule,
        verify=args.verify,
        seq_len=args.seq_len,
        head_dim=args.head_dim,
        vocab_size=args.vocab_size,
    )
    options.check()
    prior = prior_from_fit(args.prior) if args.prior is not None else default_prior()
    throughput = throughput_from_runs(args.runs) if args.runs is not None else Throughput.default()
    plan = plan_ladder(options, prior, throughput)
    validate_points(plan)  # each run as the sweep will build it
    command = shlex.join(["scaling", *args.argv])
    text = preset_yaml(plan, args.name, command)
    out = Path("sweeps") / f"{args.name}.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=out.parent, suffix=".tmp", delete=False) as tmp:
        tmp.write(text)
    Path(tmp.name).replace(out)
    print(plan_table(plan))
    print(
        f"wrote {out}; run it with:\n  python -m scaling.sweep -m sweeps={args.name}\n"
        f"it ends with an IsoFLOP fit (approach 2) in analysis/{args.name}/"
    )
    return 0


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


def cmd_process(args: argparse.Namespace) -> int:
    """``scaling process``: run (or read from the cache) a corpus's data.process; print it."""
    from scaling.training.process_corpus import data_config, process_corpus, summary
    from scaling.training.run import hydra_config_errors

    with hydra_config_errors():
        data = data_config(args.overrides)
    outcome = process_corpus(data, announce=lambda text: print(text, file=sys.stderr))
    print(json.dumps(outcome.to_json(), indent=2) if args.json else summary(outcome))
    return 0


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


@exit_on_user_error
@exit_on_user_error
def _run(argv: Sequence[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(_attach_negative_numbers(argv))
    args.argv = list(argv)  # `scaling plan` records its command line in the preset
    return int(args.handler(args) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``scaling`` console script; returns the exit status."""
    return _run(argv)
