"""Sweeps: Hydra multirun over the single-run config, idempotent, crash-proof, launcher-agnostic.

    python -m scaling.sweep -m model.n_layer=2,4,8
    python -m scaling.sweep -m sweeps=isoflop hydra/launcher=joblib hydra.launcher.n_jobs=2

How it works:

* :class:`SweepCallback` (a Hydra callback, so it works with every launcher) runs in the driver.
  Before any job starts it expands the grid, validates every point (an invalid point is reported
  with the whole list of offenders, and nothing trains), builds the token cache once, and creates
  the MLflow store and experiment (concurrent first creation of a SQLite store fails). After the
  last job it asks MLflow what happened to every point, prints finished / skipped / failed,
  collects the run table and fits it, and exits non-zero if any point failed.
* :func:`task` is what each job runs: it looks the run's key up in MLflow and skips a FINISHED
  run, resumes from a checkpoint if a previous attempt was killed, and never raises: an exception
  or a diverging loss marks that MLflow run FAILED and the sweep goes on (Hydra's basic launcher
  would otherwise stop launching after a failed job).
"""

from __future__ import annotations

import itertools
import os
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from scaling.config import SweepConfig, structured
from scaling.errors import UserError, exit_on_user_error

_ENV_TOTAL = "SCALING_SWEEP_TOTAL"
_ENV_START = "SCALING_SWEEP_START"


@dataclass(frozen=True)
class GridPoint:
    overrides: tuple[str, ...]
    key: str
    name: str
    uri: str
    experiment: str
    params: int
    tokens: int
    flops: float


def plan_table(points: list[GridPoint]) -> str:
    """What a sweep would train (``sweep.dry_run=true``), one line per run."""
    lines = [f"{'run':<44} {'params':>10} {'tokens':>12} {'FLOPs (6ND)':>12}"]
    for p in points:
        lines.append(f"{p.name:<44} {p.params:>10,} {p.tokens:>12,} {p.flops:>12.3g}")
    total = sum(p.flops for p in points)
    lines.append(f"{len(points)} runs, {total:.3g} FLOPs in all")
    return "\n".join(lines)


# ---- grid expansion and validation (driver) ---------------------------------------------------


def expand_grid(config: DictConfig) -> list[list[str]]:
    """The job overrides Hydra's basic sweeper will launch, in its order.

    As the basic sweeper does: ``hydra.sweeper.params`` then the command line's task overrides,
    one list of ``key=value`` per key (a key given again replaces its values but keeps its
    place), and their cartesian product with the last key varying fastest. Parsed with Hydra's
    public override parser, so choice, range and glob sweeps expand exactly as they launch.
    """
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    task = list(OmegaConf.to_container(config.hydra.overrides.task, resolve=False))
    params = config.hydra.sweeper.get("params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()] + task
    hydra = GlobalHydra.instance()
    loader = hydra.config_loader() if hydra.is_initialized() else None
    values: dict[str, list[str]] = {}
    for override in OverridesParser.create(config_loader=loader).parse_overrides(arguments):
        key = override.get_key_element()
        if not override.is_sweep_override():
            values[key] = [f"{key}={override.get_value_element_as_str()}"]
        elif override.is_discrete_sweep():
            values[key] = [f"{key}={v}" for v in override.sweep_string_iterator()]
        else:
            raise UserError(
                f"{override.input_line}: the basic sweeper enumerates value lists, range() and "
                f"glob(), not {override.value_type.name.lower()} sweeps"
            )
    return [list(job) for job in itertools.product(*values.values())]


def validate_grid(master: DictConfig, jobs: list[list[str]]) -> tuple[list[GridPoint], list[str]]:
    """Compose and check every grid point; returns (points, errors) without training anything.

    Points are composed exactly as the launchers will compose them. Loading each point's corpus
    here also builds the token cache (and trains a BPE tokenizer) once, in the driver, instead of
    in every parallel worker at once.
    """
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from scaling.config import run_key, run_name
    from scaling.counting import count_params
    from scaling.training.run import hydra_error_line, prepare

    loader = GlobalHydra.instance().config_loader()
    points: list[GridPoint] = []
    errors: list[str] = []
    for job in jobs:
        try:
            cfg = loader.load_sweep_config(master, job)
            prep = prepare(cfg, check_tracking=False)
        except UserError as err:
            errors.append(f"{point_label(job, jobs)}: {err}")
            continue
        except (HydraException, OmegaConfBaseException) as err:
            errors.append(f"{point_label(job, jobs)}: {hydra_error_line(err)}")
            continue
        c = prep.cfg
        points.append(
            GridPoint(
                tuple(job),
                run_key(c),
                run_name(c),
                c.tracking.uri,
                c.tracking.experiment,
                count_params(c.model).total,
                c.tokens,
                c.flops("6N"),
            )
        )
    return points, errors


def point_label(job: list[str], jobs: list[list[str]]) -> str:
    """A grid point named by the overrides that vary across the grid (``seed=abc``), not the
    dozen it shares with every other point."""
    varying = [o for i, o in enumerate(job) if len({j[i] for j in jobs if len(j) > i}) > 1]
    return " ".join(varying or job) or "(defaults)"


def outcome(point: GridPoint, since_ms: int) -> tuple[str, Any]:
    """finished (trained by this sweep) / skipped (finished before) / failed, from MLflow."""
    from scaling.training.tracking import find_runs

    runs = find_runs(point.uri, point.experiment, point.key)
    done = [r for r in runs if r.info.status == "FINISHED"]
    if done:
        run = done[0]
        return ("finished" if (run.info.end_time or 0) >= since_ms else "skipped"), run
    return "failed", (runs[0] if runs else None)


def sweep_options(config: DictConfig) -> SweepConfig:
    """The ``sweep.*`` keys, validated (one ConfigError line naming the key)."""
    raw = OmegaConf.to_container(config.get("sweep") or {}, resolve=True)
    return structured(SweepConfig, "sweep", raw)  # type: ignore[arg-type]


class SweepCallback(Callback):
    """Driver-side hooks of a multirun: validate before, summarise/collect/fit after."""

    def __init__(self) -> None:
        self.points: list[GridPoint] = []
        self.options = SweepConfig()
        self.started_ms = 0

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._guard(self._start, config)

    def _start(self, config: DictConfig) -> None:
        from scaling.training.run import quiet_libraries
        from scaling.training.tracking import check_reachable, ensure_experiment

        quiet_libraries()
        self.options = sweep_options(config)
        self.started_ms = int(time.time() * 1000)
        jobs = expand_grid(config)
        self.points, errors = validate_grid(config, jobs)
        if errors:
            listing = "; ".join(errors)
            raise UserError(
                f"{len(errors)} of {len(jobs)} grid points are invalid, nothing was "
                f"trained: {listing}"
            )
        if self.options.dry_run:
            print(plan_table(self.points))
            raise SystemExit(0)
        stores = sorted({(p.uri, p.experiment) for p in self.points})
        for uri in sorted({uri for uri, _ in stores}):  # every store usable before any is made
            check_reachable(uri, create=False)
        for uri, experiment in stores:
            ensure_experiment(uri, experiment)
        os.environ[_ENV_TOTAL] = str(len(self.points))
        os.environ[_ENV_START] = str(time.time())
        print(
            f"sweep: {len(self.points)} runs -> {self.points[0].uri} "
            f"(experiment {self.points[0].experiment!r})",
            file=sys.stderr,
            flush=True,
        )

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._guard(self._end, config)

    def _end(self, config: DictConfig) -> None:
        from scaling.training.tracking import REASON_TAG

        tally: dict[str, list[str]] = {"finished": [], "skipped": [], "failed": []}
        for point in self.points:
            state, run = outcome(point, self.started_ms)
            reason = ""
            if state == "failed" and run is not None:
                reason = run.data.tags.get(REASON_TAG, run.info.status)
            tally[state].append(f"{point.name}{': ' + reason if reason else ''}")
        print(
            f"sweep summary: {len(tally['finished'])} finished, {len(tally['skipped'])} skipped "
            f"(already done), {len(tally['failed'])} failed"
        )
        for line in tally["failed"]:
            print(f"  FAILED {line}")
        if self.options.collect and self.points:
            self._collect_and_fit(config)
        if tally["failed"]:
            raise SystemExit(1)

    def _collect_and_fit(self, config: DictConfig) -> None:
        from scaling.analysis.table import write_table
        from scaling.training.collect import collect_runs

        by_experiment = {(p.uri, p.experiment) for p in self.points}
        for uri, experiment in sorted(by_experiment):
            try:
                df = collect_runs(uri, experiment)
            except UserError as err:
                print(f"collect: {err}")
                continue
            table = write_table(df, Path(config.results_dir) / f"{experiment}.csv")
            dropped = df.attrs.get("dropped_duplicates", 0)
            extra = f"; dropped {dropped} older duplicate(s) of a run key" if dropped else ""
            print(f"run table: {table} ({len(df)} finished runs{extra})")
            if self.options.fit:
                fit_table(table, Path("analysis") / experiment, self.options.bootstrap)

    @staticmethod
    def _guard(fn: Any, *args: Any) -> None:
        exit_on_user_error(fn)(*args)


def fit_table(table: Path, out: Path, bootstrap: int) -> None:
    """Fit the run table into ``out`` as ``scaling fit`` would; report a problem, never raise."""
    from scaling.analysis.fit_dir import fit_to_dir
    from scaling.analysis.results import FitOptions

    try:
        output = fit_to_dir(table, out, options=FitOptions(bootstrap=bootstrap))
    except UserError as err:  # e.g. too few runs for the law: the sweep itself succeeded
        print(f"fit: {err}")
        return
    for warning in output.result.warnings:
        print(f"fit warning: {warning}")
    print(f"fit report: {out / 'report.md'}")


# ---- the job (runs in the launcher's process) -------------------------------------------------


def _threads_for_launcher(threads: int) -> int:
    """Never oversubscribe: parallel workers x threads <= cores (NOTES: 2x2 threads collapses)."""
    if threads:
        return threads
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
    except (ImportError, ValueError):
        return 0
    cores = os.cpu_count() or 1
    target = str(hc.launcher.get("_target_", ""))
    if "Joblib" in target:
        n_jobs = int(hc.launcher.get("n_jobs") or -1)
        workers = cores if n_jobs < 1 else n_jobs
    elif "Submitit" in target and "Local" in target:
        workers = int(hc.sweeper.get("max_batch_size") or cores)
    else:
        return 0
    return max(1, cores // max(1, workers))


def task(cfg: DictConfig) -> dict[str, Any]:
    """One grid point. Never raises for a failed run: the sweep goes on."""
    from scaling.training.run import RunResult, prepare, quiet_libraries, report, train
    from scaling.training.tracking import finished_run_id

    quiet_libraries()
    started = time.perf_counter()
    threads = _threads_for_launcher(int(cfg.get("threads", 0)))
    if threads:
        cfg = OmegaConf.merge(cfg, {"threads": threads})
    try:
        prep = prepare(cfg)
    except UserError as err:  # validated by the driver; only a changed environment gets here
        print(f"error: {err}", file=sys.stderr)
        return {"status": "FAILED", "reason": str(err)}
    _progress_line(cfg, prep.name)
    c = prep.cfg
    done = finished_run_id(c.tracking.uri, c.tracking.experiment, prep.key)
    if done is not None:
        result = RunResult(
            run_key=prep.key,
            run_name=prep.name,
            status="SKIPPED",
            run_id=done,
            wall_s=time.perf_counter() - started,
        )
        print(f"{prep.name}: already FINISHED in MLflow (run {done}), skipped", flush=True)
        return asdict(result)
    try:
        result = train(prep)
    except Exception as err:  # noqa: BLE001 -- isolate the failure, keep the sweep going
        print(f"{prep.name}: FAILED {type(err).__name__}: {err}", file=sys.stderr, flush=True)
        if not isinstance(err, UserError) and os.environ.get("SCALING_DEBUG"):
            traceback.print_exc()
        return {
            "run_key": prep.key,
            "run_name": prep.name,
            "status": "FAILED",
            "reason": f"{type(err).__name__}: {err}",
        }
    print(report(result), flush=True)
    return asdict(result)


def _progress_line(cfg: DictConfig, name: str) -> None:
    total = int(os.environ.get(_ENV_TOTAL, "0") or 0)
    try:
        from hydra.core.hydra_config import HydraConfig

        num = int(HydraConfig.get().job.num)
    except (ImportError, ValueError, AttributeError, TypeError):
        return
    if not total:
        return
    msg = f"[run {num + 1}/{total}] {name}"
    start = float(os.environ.get(_ENV_START, "0") or 0)
    if start and num:
        elapsed = time.time() - start
        eta = elapsed / num * (total - num)
        msg += f" -- elapsed {elapsed / 60:.1f} min, ETA {eta / 60:.1f} min"
    print(msg, file=sys.stderr, flush=True)


def _argv_defaults(argv: list[str]) -> list[str]:
    """Bound submitit_local's concurrency to the cores."""
    extra = []
    if any(a.endswith("launcher=submitit_local") for a in argv) and not any(
        a.startswith("hydra.sweeper.max_batch_size") for a in argv
    ):
        extra.append(f"hydra.sweeper.max_batch_size={os.cpu_count() or 1}")
    return argv + extra


def main() -> None:
    import hydra

    from scaling.config import CONF_DIR, register_configs
    from scaling.training.run import hydra_config_errors

    register_configs()
    sys.argv = [sys.argv[0], *_argv_defaults(sys.argv[1:])]
    app = hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="sweep")(task)
    with hydra_config_errors():
        app()


if __name__ == "__main__":
    main()
