"""``scaling study``: the whole study on the user's corpus in one command (pilot, LR check,
ladder, fit, prediction, verification, report). The stages are :mod:`.study_run`."""

from __future__ import annotations

import argparse
import shlex
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from scaling.cli.common import Commands, number
from scaling.errors import EXIT_UNHEALTHY_FIT, UnhealthyFitError, UserError

if TYPE_CHECKING:
    from scaling.analysis.design.options import PlanOptions
    from scaling.analysis.design.plan import Plan
    from scaling.analysis.design.prior import Prior
    from scaling.cli.study_run import Study

EPILOG_STUDY = """\
examples:
  scaling study --target-flops 1e13 --verify                              # the embedded corpus
  scaling study --target-flops 1e13 --verify data=text data.path=my_corpus/ --name mine
  scaling study --target-flops 1e13 --budget-hours 1 --verify data=sitepackages

stages (each prints a line; each trains MLflow runs in the experiment NAME, so a rerun after a
kill trains only what is missing):
  1 pilot      two budgets below the ladder's, 7 sizes over +-1 decade of the published law's
               N_opt (or --prior's): brackets the optimum when that guess is off by 10x; a budget
               whose lowest loss is at an edge gets 2 more sizes beyond it (twice at most)
  2 LR check   the pilot's centre size at LR x 0.5, 0.71, 1, 1.41, 2 of the hparams rule's: when
               the best is more than 1.41x away the rule's LR is shifted for this study
  3 ladder     `scaling plan`'s IsoFLOP ladder centred on the pilot's minima, budgets up to
               C/--extrapolation, seed replicates of each centre size
  4 fit        approach 2 (IsoFLOP) into analysis/NAME/ with its health verdict, the prediction
               at C and its compute-optimal (N, D), snapped to a model the harness builds
  5 verify     (--verify) trains that run at C (--bracket: and its 0.5x / 2x neighbours) and
               prints "predicted P [lo, hi], measured M, error E%, inside: yes|no"
  6 report     analysis/NAME/report.md opens with the study: each stage's design and cost

exit status: 0 the fit is healthy (and with --verify the run at C was trained), 1 a run failed,
2 a bad input (nothing trained), 3 the fit is unhealthy or cannot support C (nothing trained at
C), 130 / 143 interrupted (rerun the same command to finish).
"""

# What the study sets beyond `scaling plan`'s defaults (which are the measured recipe: the hparams
# rule's LR and batch, free shapes, 32-token context, 8-wide heads): sizes over +-0.45 decades of
# the pilot's optimum (the pilot has placed it), a ladder up to C/3 (README, "Your own corpus":
# at 10x the interval's model error refuses), at most 5 budgets, one seed replicate.
STUDY_RECIPE = {
    "replicates": 1,
    "span": 0.45,
    "extrapolation": 3.0,
    "max_budgets": 5,
}


def add_study(commands: Commands) -> None:
    """The parser of ``scaling study``."""
    p = commands.add_parser(
        "study",
        help="the whole study on your corpus: pilot, LR check, ladder, fit, prediction, verify",
        description="Predict the compute-optimal run at --target-flops on the corpus the "
        "overrides name (default: the embedded standard library): a pilot ladder, an LR check, "
        "an IsoFLOP ladder centred on the pilot, its fit and health verdict, the prediction with "
        "its interval, and with --verify the run at C trained and scored. Writes "
        "analysis/NAME/ (report.md, fit.json, study.json).",
        epilog=EPILOG_STUDY,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--target-flops", required=True, type=number, metavar="C", help="the compute to predict"
    )
    budget = p.add_mutually_exclusive_group()
    budget.add_argument(
        "--budget-flops",
        type=number,
        metavar="F",
        help="the whole study's FLOPs at most (pilot, LR check, ladder, verify)",
    )
    budget.add_argument(
        "--budget-hours",
        type=number,
        metavar="H",
        help="the ladder's training hours at most (the throughput model)",
    )
    p.add_argument(
        "--name",
        default="study",
        help="experiment, presets sweeps/NAME*.yaml and analysis/NAME/ (default: study)",
    )
    p.add_argument(
        "--prior",
        type=Path,
        metavar="FIT.json",
        help="centre the pilot on this fit's N_opt (default: Hoffmann et al. 2022)",
    )
    p.add_argument(
        "--extrapolation",
        type=number,
        default=STUDY_RECIPE["extrapolation"],
        metavar="K",
        help="the ladder's top budget is C/K (default: %(default)g)",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="train the predicted optimum at C and score the prediction",
    )
    p.add_argument(
        "--bracket",
        action="store_true",
        help="with --verify, also train the 0.5x and 2x sizes at C",
    )
    p.add_argument(
        "--allow-unhealthy",
        action="store_true",
        help="predict and verify even when the fit is unhealthy (reported as such)",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="the corpus and training keys of every run, e.g. data=text "
        "data.path=corpus/ (as for python -m scaling.sweep)",
    )
    p.set_defaults(handler=cmd_study)


def _check_overrides(overrides: list[str]) -> None:
    for o in overrides:
        if "=" not in o or o.startswith("-"):
            raise UserError(f"{o!r} is not a key=value override (e.g. data=text data.path=dir/)")
        key = o.split("=", 1)[0].lstrip("+~")
        if key.split(".")[0] in ("model", "sweep") or key in (
            "seed",
            "train.lr",
            "train.batch_size",
            "train.flops",
            "train.tokens",
            "tracking.experiment",
        ):
            raise UserError(
                f"{key} is set by the study for each run; give the corpus and training keys "
                "only (data=..., data.*, train.schedule, ...)"
            )


def cmd_study(args: argparse.Namespace) -> int:
    """``scaling study``: every stage; see the epilog."""
    from scaling.analysis.design.options import PlanOptions
    from scaling.analysis.design.preset import check_name
    from scaling.analysis.design.prior import default_prior, prior_from_fit
    from scaling.analysis.design.study import check_study
    from scaling.analysis.design.throughput import Throughput
    from scaling.cli.study_run import Study

    check_name(args.name)
    overrides = list(args.overrides)
    _check_overrides(overrides)
    if args.bracket and not args.verify:
        raise UserError("--bracket trains the neighbours of the verification: add --verify")
    opts = PlanOptions(
        target_flops=args.target_flops,
        budget_flops=args.budget_flops,
        budget_hours=args.budget_hours,
        **{**STUDY_RECIPE, "extrapolation": args.extrapolation},
    )
    opts.check()
    start = prior_from_fit(args.prior) if args.prior is not None else default_prior()
    throughput = Throughput.default()

    check_study(opts, start, throughput)  # one line naming what works, before any training
    corpus_id, vocab, uri = _check_corpus(opts, overrides, start)
    if vocab != opts.vocab_size:
        opts = replace(opts, vocab_size=vocab)
        check_study(opts, start, throughput)
    study = Study(args.name, opts, overrides, start, throughput, uri, corpus_id, args.bracket)
    prior = study.pilot()
    study.lr_stage(prior)
    plan = study.ladder_plan(prior)
    study.ladder(plan)
    study.save()
    status = _fit_and_verify(study, plan, args)
    return status or (1 if study.failed else 0)


def _check_corpus(opts: PlanOptions, overrides: list[str], prior: Prior) -> tuple[str, int, str]:
    """The corpus of the overrides loaded (its token cache built) and checked against the
    study's longest run; its id, vocabulary and the tracking store."""
    from scaling.analysis.design.shapes import nearest_shape
    from scaling.training.hydra_errors import hydra_config_errors
    from scaling.training.prepare import prepare
    from scaling.training.verify import compose_run

    shape = nearest_shape(
        prior.n_opt(opts.target_flops) / 3, opts.seq_len, opts.vocab_size, "free", opts.head_dim
    )
    with hydra_config_errors():
        raw = compose_run(
            [
                *overrides,
                f"model.n_layer={shape.n_layer}",
                f"model.d_model={shape.d_model}",
                f"model.seq_len={opts.seq_len}",
                f"model.head_dim={opts.head_dim}",
                "train.tokens=null",
                f"train.flops={opts.target_flops:g}",
            ]
        )
    prep = prepare(raw, check_tracking=False)
    if prep.epochs > 1:
        fits = opts.target_flops / prep.epochs**2  # tokens grow about as C^0.5 along the optimum
        raise UserError(
            f"the corpus {prep.corpus.corpus_id} holds {len(prep.corpus.train):,} training "
            f"tokens; a study at {opts.target_flops:.3g} FLOPs trains runs of about "
            f"{prep.cfg.tokens:,} ({prep.epochs:.3g} epochs; repeated text bends the law): give "
            f"a larger corpus or --target-flops {fits:.2g} or less"
        )
    return prep.corpus.corpus_id, int(prep.corpus.vocab_size), str(prep.cfg.tracking.uri)


def _fit_and_verify(study: Study, plan: Plan, args: argparse.Namespace) -> int:
    """Stages 4-6: fit the ladder (made denser once if its backtest alone missed), judge it,
    predict at C, verify, write the report."""
    import time

    from scaling.analysis.design.preset import duration
    from scaling.analysis.fitting.fit_dir import FitOutput, fit_to_dir
    from scaling.analysis.fitting.results import FitOptions, load_fit
    from scaling.analysis.prediction.health import backtest_misses_only, problem_line
    from scaling.analysis.prediction.predict import Predictor
    from scaling.analysis.prediction.question import judge
    from scaling.analysis.report.study_report import StageRecord
    from scaling.cli.study_run import progress
    from scaling.config import SweepConfig

    C = float(args.target_flops)

    def fit() -> FitOutput:
        table = study.write_table()
        progress(f"fit: approach 2 on {table}")
        started = time.monotonic()
        output = fit_to_dir(
            table,
            study.out,
            approach=2,
            options=FitOptions(bootstrap=SweepConfig.bootstrap),
            curves=study.write_curves(),
        )
        study.stages.append(StageRecord("fit", 0, 0.0, time.monotonic() - started, []))
        return output

    output = fit()
    health = output.result.health or {}
    if not health.get("ok") and backtest_misses_only(health) and output.backtest:
        progress(f"fit health: NOT OK: {problem_line(health)}")
        if study.denser(plan, len(output.backtest.get("test_budgets") or [])):
            study.save()
            output = fit()
    fit_path = study.out / "fit.json"
    health = output.result.health or {}
    lines: list[str] = []
    status = 0
    if health.get("ok"):
        progress("fit health: OK")
    else:
        line = f"fit health: NOT OK: {problem_line(health)}"
        progress(line)
        lines.append(
            line + (" (--allow-unhealthy: reported as such)" if args.allow_unhealthy else "")
        )
        if not args.allow_unhealthy:
            status = EXIT_UNHEALTHY_FIT
    predictor = Predictor(load_fit(fit_path))
    optimum = predictor.at_budget(C)
    if status == 0:
        try:
            for note in judge(predictor, optimum, fit_path, args.allow_unhealthy, allocation=True):
                lines.append(note)
        except UnhealthyFitError as err:
            progress(str(err))
            lines.append(str(err))
            status = EXIT_UNHEALTHY_FIT
    lo, hi = optimum.loss_pi or (float("nan"), float("nan"))
    pred = (
        f"at {C:.3g} FLOPs: N = {optimum.params:,.0f} params, D = {optimum.tokens:,.0f} tokens, "
        f"loss {optimum.loss:.4g}, {100 * (optimum.level or 0.95):.0f}% prediction interval "
        f"[{lo:.4g}, {hi:.4g}]"
    )
    progress(f"prediction {pred}")
    lines.insert(0, pred)
    if status == 0 and args.verify:
        estimate = verify_estimate(study, optimum.params, C, args.bracket)
        progress(
            f"verify: training the predicted optimum at {C:.3g} FLOPs, about {duration(estimate)}"
        )
        started = time.monotonic()
        said: list[str] = []
        code = _verify_in_process(study, fit_path, C, args, said)
        verified = [line for line in said if "predicted" in line and "measured" in line]
        runs = 3 if args.bracket else 1
        study.stages.append(
            StageRecord(
                "verify",
                runs,
                C * runs,
                time.monotonic() - started,
                [f"the predicted optimum at {C:.3g} FLOPs."],
                estimate,
            )
        )
        if code != 0:
            status = code
        lines += verified
    write_report(study, args, lines)
    if status == 0 and args.verify:
        print("\n".join(verified[:1]), flush=True)  # the contract's last line
    return status


def _verify_in_process(
    study: Study, fit_path: Path, flops: float, args: argparse.Namespace, said: list[str]
) -> int:
    """``scaling verify`` of the study's fit at ``flops`` with the study's keys, in this process
    (its imports already made); its lines printed and kept in ``said``; the status it would
    exit with."""
    from scaling.errors import exit_on_user_error, exit_status
    from scaling.training.verify import summary_lines, verify

    def run() -> None:
        results = verify(
            fit_path,
            flops,
            study_train_overrides(study),
            bracket=args.bracket,
            allow_unhealthy=args.allow_unhealthy,
        )
        said.extend(summary_lines(results, fit_path))
        print("\n".join(said), flush=True)

    try:
        exit_on_user_error(run)()
    except SystemExit as err:  # a user error's status, or a signal's (the run recorded KILLED)
        return exit_status(err)
    return 0


def verify_estimate(study: Study, params: float, flops: float, bracket: bool) -> float:
    """What the throughput model expects the verification to take: the runs ``scaling verify``
    will train (the shapes it snaps to, one after another), those already finished left out."""
    from scaling.analysis.design.plan import planned_run
    from scaling.analysis.design.shapes import nearest_shape
    from scaling.training.verify import ROLES

    o = replace(study.opts, hparams_rule=study.rule_path)
    factors = ROLES.values() if bracket else (1.0,)
    shapes = {
        nearest_shape(params * f, o.seq_len, o.vocab_size, "free", o.head_dim) for f in factors
    }
    runs = [planned_run(s, flops, 0, o, study.throughput) for s in shapes]
    done = study.finished(runs)
    return study.throughput.wall_seconds([0.0 if r in done else r.seconds for r in runs])


def study_train_overrides(study: Study) -> list[str]:
    """The keys every run of the study's ladder set, as overrides (what verify trains with)."""
    o = study.opts
    keys = [
        f"tracking.experiment={study.name}",
        f"model.seq_len={o.seq_len}",
        f"model.head_dim={o.head_dim}",
        f"train.lr={o.lr}",
        f"train.batch_size={o.batch_size}",
        "threads=1",
    ]
    if study.rule_path is not None:
        keys.append(f"train.hparams_rule={study.rule_path}")
    return [*keys, *study.overrides]


def write_report(study: Study, args: argparse.Namespace, prediction: list[str]) -> None:
    """The study section at the top of ``analysis/NAME/report.md`` and ``study.json``."""
    from scaling.analysis.report.study_report import study_section, with_study_section
    from scaling.files import atomic_write_text

    study.save()
    report = study.out / "report.md"
    command = shlex.join(["scaling", *args.argv])
    section = study_section(float(args.target_flops), command, study.stages, prediction)
    text = report.read_text() if report.exists() else "# Study\n"
    atomic_write_text(report, with_study_section(text, section))
    print(f"study: report {report}", flush=True)
