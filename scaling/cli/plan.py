"""``scaling plan``: design an IsoFLOP ladder for a target compute, print it and write its sweep
preset ``sweeps/NAME.yaml``."""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

from scaling.cli.common import Commands, number, or_auto

EPILOG_PLAN = """\
examples:
  scaling plan --target-flops 1e15 --budget-hours 8               # the default prior and machine
  scaling plan --target-flops 1e15 --prior analysis/pilot/fit.json --runs results/pilot.csv
  scaling plan --target-flops 3e13 --budget-flops 3e13 --name ladder3e13
  scaling plan --target-flops 1e12 --verify           # ends the sweep with the closed loop
  python -m scaling.sweep -m sweeps=ladder                          # then run what it wrote

design: budgets x--ratio apart up to C*/--extrapolation (the target is a 10x extrapolation),
as many as the budget affords (at least --min-budgets); at each, --sizes model sizes about
+-span decades around N_opt(C) (from --prior, else Hoffmann et al. 2022 eq. 10) that bracket
it; the centre size of each budget again with seeds 1..--replicates (the noise estimate). A run
with fewer than --min-steps optimizer steps or tokens per parameter outside --tpp-range is not
planned. The defaults are the recipe measured best here: free shapes (d_model any multiple of
--head-dim within 2x of the aspect rule's 16 n_layer, for nearly continuous sizes; --shapes
aspect keeps d_model = 16 n_layer), a 32-token context, 8-wide heads, and the hparams rule's LR
and batch at each budget (train.lr=auto, train.batch_size=auto, resolved in the sweep to the
numbers printed); --lr 0.003 --batch-size 32 fixes them for every run. --verify ends the
sweep with the closed loop: the fit's predicted optimum at C* is trained and its prediction
scored (sweep.verify_flops).
Wall-clock comes from --runs (a collected run table's tokens_per_s against params), else from
the README's measured throughput on the 2-core CPU plus a fixed cost per optimizer step and per
run (at the smallest sizes the step count, not the FLOPs, sets the time).

writes sweeps/NAME.yaml under the working directory (one sweep.point per run) and prints the
plan; exit status 2 with one line saying what is affordable when no healthy ladder fits.
"""

# The number options of `scaling plan` whose value may come negative; PlanOptions.check says
# in one line that it must be positive (see scaling.cli.common.attach_negative_numbers).
PLAN_NUMBER_OPTIONS = ("--target-flops", "--budget-flops", "--budget-hours")


def _tpp_range(text: str) -> tuple[float, float]:
    parts = re.split(r"\.\.|,", text)
    try:
        lo, hi = (float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO..HI such as 1..1000, got {text!r}") from None
    return lo, hi


def add_plan(commands: Commands) -> None:
    """The parser of ``scaling plan``: one option per field of PlanOptions, its dest the field's
    name and its default the field's (what :func:`cmd_plan` reads back), plus --prior, --name
    and --runs."""
    from scaling.analysis.design.options import SCHEDULES, PlanOptions
    from scaling.analysis.design.shapes import SHAPE_FAMILIES

    d = PlanOptions(target_flops=1.0)
    p = commands.add_parser(
        "plan",
        help="design a healthy IsoFLOP ladder for a target compute and write its sweep preset",
        description="Design an IsoFLOP ladder whose fit can predict the compute-optimal run at "
        "--target-flops: print every run (size, tokens, steps, batch, lr, FLOPs, estimated "
        "wall-clock) and the total, and write the sweep preset sweeps/NAME.yaml.",
        epilog=EPILOG_PLAN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--target-flops", required=True, type=number, metavar="C", help="the compute to predict"
    )
    budget = p.add_mutually_exclusive_group()
    budget.add_argument(
        "--budget-flops", type=number, metavar="F", help="the ladder's total FLOPs at most"
    )
    budget.add_argument(
        "--budget-hours",
        type=number,
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
        type=number,
        default=d.extrapolation,
        metavar="K",
        help="the top budget is C/K (default: %(default)g)",
    )
    p.add_argument(
        "--ratio",
        type=number,
        default=d.ratio,
        help="between consecutive budgets (default: %(default)g)",
    )
    p.add_argument(
        "--sizes", type=int, default=d.sizes, help="model sizes per budget (default: %(default)s)"
    )
    p.add_argument(
        "--span",
        type=number,
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
    p.add_argument(
        "--max-budgets", type=int, default=d.max_budgets, help="most budgets (default: no cap)"
    )
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
        type=or_auto(int, "a whole number"),
        default=d.batch_size,
        help="train.batch_size of every run, sequences per step, or auto: the hparams rule's "
        "batch at each budget (default: %(default)s)",
    )
    p.add_argument(
        "--lr",
        type=or_auto(float, "a number"),
        default=d.lr,
        help="train.lr of every run, or auto: the hparams rule's LR at each budget (default: "
        "%(default)s)",
    )
    p.add_argument(
        "--hparams-rule",
        default=d.hparams_rule,
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
        "--schedule",
        choices=SCHEDULES,
        default=d.schedule,
        help="cosine: every point its own run with its own schedule; wsd: each size one "
        "warmup-stable-decay run with a cooldown branch per budget, the budgets sharing sizes "
        "(fewer FLOPs; prints both designs' cost) (default: %(default)s)",
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


def cmd_plan(args: argparse.Namespace) -> int:
    """``scaling plan``: design an IsoFLOP ladder, print it, write ``sweeps/NAME.yaml``."""
    import shlex

    from scaling.analysis.design.options import PlanOptions
    from scaling.analysis.design.plan import plan_ladder
    from scaling.analysis.design.preset import check_name, plan_table, preset_yaml, validate_points
    from scaling.analysis.design.prior import default_prior, prior_from_fit
    from scaling.analysis.design.throughput import Throughput, throughput_from_runs
    from scaling.files import atomic_write_text

    check_name(args.name)
    # Every field of PlanOptions is the option of the same dest: add_plan defines one per field.
    fields = dataclasses.fields(PlanOptions)
    options = PlanOptions(**{f.name: getattr(args, f.name) for f in fields})
    options.check()
    prior = prior_from_fit(args.prior) if args.prior is not None else default_prior()
    throughput = throughput_from_runs(args.runs) if args.runs is not None else Throughput.default()
    command = shlex.join(["scaling", *args.argv])
    out = Path("sweeps") / f"{args.name}.yaml"
    if options.schedule == "wsd":
        from scaling.analysis.design.wsd import plan_wsd
        from scaling.analysis.design.wsd_preset import validate_groups, wsd_preset, wsd_table

        branched = plan_wsd(options, prior, throughput)
        validate_groups(branched)
        atomic_write_text(out, wsd_preset(branched, args.name, command))
        print(wsd_table(branched))
    else:
        plan = plan_ladder(options, prior, throughput)
        validate_points(plan)  # each run as the sweep will build it
        atomic_write_text(out, preset_yaml(plan, args.name, command))
        print(plan_table(plan))
    print(
        f"wrote {out}; run it with:\n  python -m scaling.sweep -m sweeps={args.name}\n"
        f"it ends with an IsoFLOP fit (approach 2) in analysis/{args.name}/"
    )
    return 0
