"""``scaling predict``: from a fit.json, the compute-optimal allocation of a budget, the loss of
a given size and token count, or the least compute that reaches a loss, with its intervals."""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from pathlib import Path

from scaling.cli.common import Commands, number
from scaling.errors import UnhealthyFitError, UserError

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

the question is judged where it is asked: refused when the budget (approach 3: also the size
or the token count) lies more than 10x beyond the largest fitted, when the new run's 90%
prediction interval is wider than +-10% of the loss, or when a budget's compute-optimal size
has a 90% interval wider than 4x (the 0.5x-2x bracket). A parameter the runs do not pin is a
warning, not a refusal, when the question does not need it.

exit status: 0 a prediction, 2 a bad input, 3 the fit is unhealthy (fit.json's `health`
lists why: too few runs, parameters on a bound, IsoFLOP minima at the edge, a failed
backtest...) or does not support the question; --allow-unhealthy predicts anyway and prints
the problems as warnings (and in --json's "warnings", each starting "unsupported:").
"""

# The number options of `scaling predict`, with their help. A negative value reaches the
# command's own check (see scaling.cli.common.attach_negative_numbers).
NUMBER_OPTIONS = {
    "--flops": "compute budget C in FLOPs",
    "--params": "model parameters N (with --tokens)",
    "--tokens": "training tokens D (with --params)",
    "--target-loss": "loss to reach (nats/token)",
    "--gpu-hours": "budget in accelerator hours",
    "--peak-flops": "peak FLOP/s per accelerator (with --gpu-hours)",
    "--mfu": "model FLOPs utilisation in (0, 1] (with --gpu-hours)",
}


def add_predict(commands: Commands) -> None:
    """The parser of ``scaling predict``."""
    p = commands.add_parser(
        "predict",
        help="predict compute-optimal size, tokens and loss from a fit.json",
        description="Predict from a fit: the compute-optimal allocation for a budget, the loss "
        "of a given model size and token count, or the least compute that reaches a loss.",
        epilog=EPILOG_PREDICT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--fit", required=True, type=Path, help="fit.json written by `scaling fit`")
    for option, text in NUMBER_OPTIONS.items():
        p.add_argument(option, type=number, help=text)
    p.add_argument("--json", action="store_true", help="print the prediction as JSON")
    p.add_argument(
        "--allow-unhealthy",
        action="store_true",
        help="predict even when the fit's health verdict lists problems (otherwise exit 3)",
    )
    p.set_defaults(handler=cmd_predict)


def cmd_predict(args: argparse.Namespace) -> int:
    """``scaling predict``: a budget, a model size, or a target loss -> prediction."""
    from scaling.analysis.fitting.results import load_fit
    from scaling.analysis.prediction.health import problem_line
    from scaling.analysis.prediction.predict import Predictor, gpu_hours_to_flops
    from scaling.analysis.prediction.question import judge
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
    allocation = args.flops is not None or args.gpu_hours is not None
    notes = judge(predictor, pred, args.fit, args.allow_unhealthy, allocation=allocation)
    pred = replace(pred, warnings=(*pred.warnings, *notes))
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
