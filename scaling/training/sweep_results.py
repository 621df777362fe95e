"""The end of a sweep: what happened to every point, the run table, the fit.

:func:`print_summary` asks MLflow how each grid point ended (finished by this sweep, skipped as
finished before, failed, or not started when a signal stopped the sweep);
:func:`collect_and_fit` writes each experiment's run table and fits it as ``scaling fit`` would
(``sweep.collect``, ``sweep.fit``), then trains the fit's predicted optimum under
``sweep.verify_flops``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from scaling.config import SweepConfig
from scaling.errors import UnhealthyFitError, UserError
from scaling.training.sweep_grid import GridPoint


def outcome(point: GridPoint, since_ms: int) -> tuple[str, Any]:
    """finished (trained by this sweep) / skipped (finished before) / failed, from MLflow."""
    from scaling.training.tracking import find_runs

    states = []
    for key in point.members or (point.key,):  # a branched group: all its runs
        runs = find_runs(point.uri, point.experiment, key)
        done = [r for r in runs if r.info.status == "FINISHED"]
        if not done:
            return "failed", (runs[0] if runs else None)
        run = done[0]
        states.append((("finished" if (run.info.end_time or 0) >= since_ms else "skipped"), run))
    return next((s for s in states if s[0] == "finished"), states[0])


def print_summary(points: list[GridPoint], started_ms: int, interrupted: str | None = None) -> int:
    """Print what happened to every point (MLflow's record) of a sweep started at
    ``started_ms``; returns how many failed. ``interrupted``: the signal that stopped it."""
    from scaling.training.tracking import REASON_TAG

    tally: dict[str, list[str]] = {"finished": [], "skipped": [], "failed": [], "todo": []}
    for point in points:
        state, run = outcome(point, started_ms)
        if (
            interrupted
            and state == "failed"
            and (run is None or (run.info.start_time or 0) < started_ms)
        ):
            state = "todo"  # not started by this sweep: the signal came first
        reason = ""
        if state == "failed" and run is not None:
            reason = run.data.tags.get(REASON_TAG, run.info.status)
        tally[state].append(f"{point.name}{': ' + reason if reason else ''}")
    head = f"sweep interrupted by {interrupted}; " if interrupted else ""
    print(
        f"{head}sweep summary: {len(tally['finished'])} finished, "
        f"{len(tally['skipped'])} skipped (already done), {len(tally['failed'])} failed"
        + (f", {len(tally['todo'])} not started" if interrupted else ""),
        flush=True,
    )
    for line in tally["failed"]:
        print(f"  FAILED {line}", flush=True)
    if interrupted:
        print("rerun the same command to finish the grid (finished runs are skipped)")
    return len(tally["failed"])


def collect_and_fit(config: DictConfig, points: list[GridPoint], options: SweepConfig) -> None:
    """The run table of every experiment the grid recorded to, written to ``results_dir``;
    with ``sweep.fit`` fitted into ``analysis/<experiment>/`` (and ``sweep.verify_flops``:
    the predicted optimum trained)."""
    from scaling.analysis.table import write_table
    from scaling.training.collect import collect_runs

    by_experiment = {(p.uri, p.experiment) for p in points}
    for uri, experiment in sorted(by_experiment):
        try:
            df = collect_runs(uri, experiment)
        except UserError as err:
            print(f"collect: {err}")
            continue
        table = write_table(df, Path(config.results_dir) / f"{experiment}.csv")
        dropped = df.attrs.get("dropped_duplicates", 0)
        extra = f"; dropped {dropped} older duplicate(s) of a run key" if dropped else ""
        diverged = int(df["diverged"].astype(bool).sum()) if "diverged" in df else 0
        if diverged:  # rows without a loss, left out of the fit
            extra += f"; {diverged} diverged run(s), left out of the fit"
        print(f"run table: {table} ({len(df) - diverged} finished runs{extra})")
        # the envelope (approach 1) fits every run's loss curve; the report draws them
        curve_table: Path | None = None
        try:
            curves = collect_runs(uri, experiment, curves=True)
        except UserError as err:
            print(f"collect --curves: {err}")
        else:
            curve_table = write_table(curves, Path(config.results_dir) / f"{experiment}_curves.csv")
            print(f"curves table: {curve_table} ({len(curves)} points)")
        if options.approach == 1 and curve_table is not None:
            table = curve_table
        if options.fit:
            fitted = fit_table(table, Path("analysis") / experiment, options, curve_table)
            if options.verify_flops and not fitted:
                raise UnhealthyFitError(
                    "sweep.verify_flops: no fit to verify (see 'fit skipped' above): add "
                    "runs, or rerun without sweep.verify_flops"
                )
            if options.verify_flops:
                verify_optimum(
                    config, points[0], options, Path("analysis") / experiment / "fit.json"
                )


def verify_optimum(
    config: DictConfig, first: GridPoint, options: SweepConfig, fit_path: Path
) -> None:
    """``sweep.verify_flops``: train the fit's predicted optimum with the grid's own data
    and hyperparameters (its first point's config, shape and horizon replaced)."""
    from hydra.core.global_hydra import GlobalHydra

    from scaling.training.verify import summary_lines, verify

    flops = float(options.verify_flops)  # type: ignore[arg-type]
    base = GlobalHydra.instance().config_loader().load_sweep_config(config, list(first.overrides))
    print(f"verify: training the predicted compute-optimal run at {flops:.3g} FLOPs")
    results = verify(fit_path, flops, base_config=base)
    print("\n".join(f"verify {line}" for line in summary_lines(results, fit_path)))


def fit_table(table: Path, out: Path, options: SweepConfig, curves: Path | None = None) -> bool:
    """Fit the run table into ``out`` as ``scaling fit`` would (``curves``: ``--curves``);
    True when a fit was written.

    A table the law cannot be fitted to (too few runs or budgets) is reported and skipped: the
    sweep did its job.  Anything else raises, and the sweep exits non-zero.
    """
    from scaling.analysis.fitting.fit_dir import fit_to_dir
    from scaling.analysis.fitting.results import FitOptions

    try:
        output = fit_to_dir(
            table,
            out,
            law=options.law,
            approach=options.approach,
            options=FitOptions(bootstrap=options.bootstrap),
            curves=curves,
        )
    except UserError as err:  # e.g. too few runs for the law: the sweep itself succeeded
        print(f"fit skipped: {err}")
        return False
    for warning in output.result.warnings:
        print(f"fit warning: {warning}")
    health = output.result.health or {}
    if health.get("ok"):
        print("fit health: OK (scaling predict will answer)")
    elif health:
        from scaling.analysis.prediction.health import problem_line

        print(f"fit health: NOT OK, scaling predict will refuse it: {problem_line(health)}")
    print(f"fit report: {out / 'report.md'}")
    return True
