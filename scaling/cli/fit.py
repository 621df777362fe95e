"""``scaling fit`` (a run table -> a fit folder: fit.json, report.md, plots; or a curve-law or
hyperparameter-rule fit) and ``scaling report`` (re-render a fit folder's report)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from scaling.analysis.report import HOLDOUT_MANY
from scaling.cli.common import Commands, positive_int
from scaling.errors import UserError

EPILOG_FIT = """\
examples:
  scaling fit results/runs.csv --out analysis/sweep1            # Chinchilla law, approach 3
  scaling fit results/runs.csv --law kaplan --bootstrap 0       # Kaplan L(N, D), no intervals
  scaling fit results/isoflop.csv --approach 2 --out analysis/iso
  scaling fit results/curves.csv --approach 1                   # from `scaling collect --curves`
  scaling fit results/curves.csv --law curve --predict-tokens 4e6 --schedule wsd  # loss curves
  scaling fit train.csv --law curve --score held.csv --json    # run, step, lr, loss: any trainer

The run table needs columns params, tokens, loss (optional flops; default 6*params*tokens).
Approach 1 needs a curves table: run_id, params, tokens, loss, one row per logged point.
"""

HOLDOUT_HELP = f"default: the top one, the top two from {HOLDOUT_MANY} budgets on"

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
    ("backtest_holdout", int, "K", f"the backtest holds out the top K budgets ({HOLDOUT_HELP})"),
)
REPLACED = (
    "--backtest-quantile was replaced by --backtest-holdout K (the backtest holds out the top K "
    f"budgets by compute; {HOLDOUT_HELP}): drop it or pass --backtest-holdout"
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
    "--curve-form",
    "--score",
)


def add_fit(commands: Commands) -> None:
    """The parser of ``scaling fit``."""
    from scaling.analysis.fitting.laws import CHINCHILLA, LAWS
    from scaling.analysis.fitting.results import CLI_BOOTSTRAP, FitOptions

    defaults = FitOptions()
    p = commands.add_parser(
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
        default=CHINCHILLA.name,
        choices=[*LAWS, "curve", "hparams"],
        help="law to fit with approach 3 (default: chinchilla); curve: the loss-curve law with "
        "LR annealing per model size, on a curves table (the multi-power law of Luo et al. "
        "2025, or --curve-form tissue); hparams: the best "
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
        type=positive_int,
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
    p.add_argument("--backtest-quantile", help=argparse.SUPPRESS)  # replaced: exits 2
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
    p.add_argument(
        "--keep-diverged",
        action="store_true",
        help="fit the runs marked diverged (column diverged) that have a loss; by default they "
        "are left out and named in the report",
    )
    p.add_argument(
        "--curves",
        type=Path,
        metavar="CURVES",
        help="a curves table of the same runs (scaling collect --curves; a sweep writes "
        "results/<experiment>_curves.csv): the report draws their training curves with the "
        "loss spikes marked",
    )
    _add_curve_options(p)
    p.set_defaults(handler=cmd_fit)


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
        "--curve-form",
        choices=("mpl", "tissue"),
        help="mpl: the multi-power law (Luo et al. 2025; the default); tissue: Tissue et al. "
        "2024's law with a linear annealing term",
    )
    g.add_argument(
        "--score",
        type=Path,
        metavar="HELD",
        help="a curves table of held-out runs (same format): predict each at its last row from "
        'its own LR and print run, predicted, measured, error %% (--json: "score")',
    )
    g.add_argument(
        "--curve-lambda",
        metavar="λ|fit",
        help="tissue: decay of the annealing momentum (default: 0.999, the paper's), or 'fit'",
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
    _validate_holdout(args)
    from scaling.analysis.fitting.laws import CHINCHILLA

    if args.approach != 3 and args.law != CHINCHILLA.name:  # --law left at its default
        raise UserError(
            f"--law {args.law} applies to approach 3; approaches 1 and 2 fit power laws in C"
        )


def _validate_holdout(args: argparse.Namespace) -> None:
    if args.backtest_quantile is not None:
        raise UserError(REPLACED)
    if args.backtest_holdout is not None and args.backtest_holdout < 1:
        raise UserError(f"--backtest-holdout must be >= 1, got {args.backtest_holdout}")


def _out_dir(args: argparse.Namespace) -> Path:
    """``--out``, else ``analysis/<RUNS name>``."""
    return args.out if args.out is not None else Path("analysis") / args.runs.stem


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
        _out_dir(args),
        law=args.law,
        approach=args.approach,
        options=FitOptions(bootstrap=args.bootstrap, **chosen),
        params_column=args.params_column,
        report=not args.no_report,
        keep_diverged=args.keep_diverged,
        curves=args.curves,
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
    from scaling.analysis.design.hparams_file import fit_hparams_to_dir, summary

    command = " ".join(["scaling", *getattr(args, "argv", ["fit", str(args.runs)])])
    doc, path = fit_hparams_to_dir(
        args.runs,
        _out_dir(args),
        level=args.level,
        tolerance=args.isoflop_tolerance,
        command=command,
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
        "form": args.curve_form,
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
    schedule = {
        "schedule": args.schedule,
        "cooldown": args.cooldown,
        "warmup_steps": args.warmup_steps,
    }
    output = fit_curves_to_dir(
        args.runs,
        _out_dir(args),
        options,
        predict_tokens=parse_tokens(args.predict_tokens),
        schedule=schedule,
        score=args.score,
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


def add_report(commands: Commands) -> None:
    """The parser of ``scaling report``."""
    p = commands.add_parser(
        "report",
        help="re-render report.md and plots from an existing fit directory",
        description="Re-render DIR/report.md and DIR/*.png from DIR/fit.json and DIR/runs.csv.",
    )
    p.add_argument("dir", type=Path, metavar="DIR", help="directory written by `scaling fit`")
    p.add_argument(
        "--backtest-holdout",
        type=int,
        metavar="K",
        help="hold out the top K budgets in the report's backtest (default: the fit's own "
        f"--backtest-holdout, else {HOLDOUT_HELP.removeprefix('default: ')}); fit.json's "
        "health keeps the fit's backtest",
    )
    p.add_argument("--backtest-quantile", help=argparse.SUPPRESS)  # replaced: exits 2
    p.set_defaults(handler=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    """``scaling report DIR``: re-render report.md and plots from DIR/fit.json + DIR/runs.csv;
    the report's files are replaced whole, the folder's other files are kept."""
    from dataclasses import replace

    from scaling.analysis.fitting.results import load_fit
    from scaling.analysis.outdir import staged_dir
    from scaling.analysis.report.markdown import write_report
    from scaling.analysis.table import read_run_table

    _validate_holdout(args)
    result = load_fit(args.dir / "fit.json")
    if args.backtest_holdout is not None:
        options = replace(result.options, backtest_holdout=args.backtest_holdout)
        result = replace(result, options=options)
    runs_path = args.dir / "runs.csv"
    runs = read_run_table(runs_path, curves=result.approach == 1)
    with staged_dir(args.dir) as (stage, _):
        write_report(
            result,
            runs,
            stage,
            source=str((result.data or {}).get("path", runs_path)),
            history=args.dir / "verifications.csv",
        )
    print(f"wrote {args.dir / 'report.md'}", file=sys.stderr)
    return 0
