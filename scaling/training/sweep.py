"""Sweeps: Hydra multirun over the single-run config, idempotent, crash-proof, launcher-agnostic.

    python -m scaling.sweep -m model.n_layer=2,4,8
    python -m scaling.sweep -m sweeps=isoflop hydra/launcher=joblib hydra.launcher.n_jobs=2

How it works:

* :class:`SweepCallback` (a Hydra callback, so it works with every launcher) runs in the driver.
  Before any job starts it expands the grid, validates every point (an invalid point is reported
  with the whole list of offenders, and nothing trains), builds the token cache once, and creates
  the MLflow store and experiment (a new SQLite store is built aside and linked into place, so
  two sweeps starting at once, or a kill during its creation, leave one whole store). After the
  last job it asks MLflow what happened to every point, prints finished / skipped / failed,
  collects the run table and fits it, and exits non-zero if any point failed or collect/fit
  raised.  An exception inside a callback would only be a warning to Hydra (the grid would launch
  unvalidated, or a failed sweep would exit 0), so every callback turns its errors into an exit
  status itself.
* SIGTERM (SLURM preemption or time limit, ``kill``) and Ctrl-C stop the sweep at any moment: the
  run in progress is recorded KILLED (its checkpoint kept), the driver prints the summary so far
  and exits 143 or 130; rerunning the same command finishes the grid.
* A launcher worker that dies (the OOM killer, a segfault, ``kill -9``: joblib's loky then stops
  every worker) does not end the sweep with a traceback: the runs it left RUNNING are closed
  KILLED and named, the grid is launched once more (finished points are skipped, the lost runs
  resume from their checkpoints), and the sweep exits 1 naming them.
* :func:`task` is what each job runs: it looks the run's key up in MLflow and skips a FINISHED
  run, resumes from a checkpoint if a previous attempt was killed, and never raises: an exception
  or a diverging loss marks that MLflow run FAILED and the sweep goes on (Hydra's basic launcher
  would otherwise stop launching after a failed job).
"""

from __future__ import annotations

import itertools
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from scaling.config import SweepConfig, structured
from scaling.errors import UnhealthyFitError, UserError, exit_on_user_error

_ACTIVE: list[SweepCallback] = []  # the driver's callback, for the summary after a signal
_ENV_TOTAL = "SCALING_SWEEP_TOTAL"
_ENV_SINCE = "SCALING_SWEEP_SINCE"  # start of the first pass, kept across a relaunch
_ENV_FLOPS = "SCALING_SWEEP_FLOPS"  # planned seconds still to train, by job (the ETA's weights)
WORKER_DIED = (
    "a launcher worker process died (out of memory, a crash or a signal) while this run was "
    "in progress; relaunched"
)
_ENV_START = "SCALING_SWEEP_START"


@dataclass(frozen=True)
class GridPoint:
    """One run of a grid: the first grid point with its run key (in its tracking experiment);
    later points with the same key are its ``duplicates``, launched but never trained."""

    overrides: tuple[str, ...]
    key: str
    name: str
    uri: str
    experiment: str
    params: int
    tokens: int
    flops: float
    seconds: float  # the planned wall-clock (plan.Throughput): the ETA's weight
    job: int = 0  # Hydra's job number (hydra.job.num): the point's place in the grid
    members: tuple[str, ...] = ()  # train.horizons: the keys of the group's runs (else its key)
    duplicate_jobs: tuple[int, ...] = ()  # job numbers of later points with this key
    duplicate_labels: tuple[str, ...] = ()  # ...named by their varying overrides (train.lr=1.0)


_ENV_DUPLICATES = "SCALING_SWEEP_DUPLICATES"  # {job number: [key, name, owner job]}, JSON


def plan_table(points: list[GridPoint]) -> str:
    """What a sweep would train (``sweep.dry_run=true``), one line per run."""
    lines = [f"{'run':<44} {'params':>10} {'tokens':>12} {'FLOPs (6ND)':>12}"]
    for p in points:
        lines.append(f"{p.name:<44} {p.params:>10,} {p.tokens:>12,} {p.flops:>12.3g}")
    total = sum(p.flops for p in points)
    lines.append(f"{len(points)} runs, {total:.3g} FLOPs in all")
    dropped = duplicates_line(points)
    if dropped:
        lines.append(dropped)
    return "\n".join(lines)


def duplicates_line(points: list[GridPoint]) -> str | None:
    """One line naming the grid points dropped as duplicates of another point's run, or None."""
    pairs = [f"{label} = {p.name}" for p in points for label in p.duplicate_labels]
    if not pairs:
        return None
    n = len(pairs)
    return (
        f"{n} duplicate grid point{'s' if n > 1 else ''} dropped (the same training as another "
        f"point, so the same run key; launched as SKIPPED): {'; '.join(pairs)}"
    )


def publish_duplicates(points: list[GridPoint]) -> None:
    """Tell every job which grid points are duplicates, through the environment the launchers'
    workers inherit (joblib, submitit, SLURM): Hydra's sweeper launches every point of the
    product and cannot be told to leave one out, so a duplicate's job returns SKIPPED at once
    (:func:`duplicate_of`)."""
    import json

    table = {str(j): [p.key, p.name, p.job] for p in points for j in p.duplicate_jobs}
    if table:
        os.environ[_ENV_DUPLICATES] = json.dumps(table)
    else:
        os.environ.pop(_ENV_DUPLICATES, None)


def _planned_seconds(cfg: Any) -> float:
    """A run's (or branch group's) wall-clock under the planner's default throughput model:
    its FLOPs' time plus a fixed cost per optimizer step and per run. Only the ratios between
    runs matter: the ETA scales them by the time the finished runs really took."""
    from scaling.analysis.design.plan import Throughput
    from scaling.counting import count_params

    tokens = cfg.spent_tokens()
    steps = tokens // cfg.tokens_per_step
    return Throughput.default().seconds(count_params(cfg.model).total, tokens, steps)


def publish_work(points: list[GridPoint], n_jobs: int) -> None:
    """The planned seconds each job will train, by job number, for the ETA: 0 for a duplicate
    or a point already FINISHED in MLflow (skipped in about a second)."""
    import json

    from scaling.training.tracking import finished_keys

    done = {store: finished_keys(*store) for store in {(p.uri, p.experiment) for p in points}}
    work = [0.0] * n_jobs
    for p in points:
        if p.job < n_jobs and not set(p.members or (p.key,)) <= done[(p.uri, p.experiment)]:
            work[p.job] = p.seconds
    os.environ[_ENV_FLOPS] = json.dumps(work)


def eta_seconds(elapsed: float, work: list[float], done_jobs: int) -> float | None:
    """Time left if the remaining work trains at the rate the finished jobs' did (work: each
    job's planned seconds, so a run of 10x the steps and FLOPs takes about 10x as long, whatever
    the count of runs); None before any work is done."""
    done = sum(work[:done_jobs])
    if done <= 0 or elapsed <= 0:
        return None
    return elapsed * sum(work[done_jobs:]) / done


def duplicate_of(job: int | None = None) -> tuple[str, str, int] | None:
    """``(key, run name, job number)`` of the point that trains this job's run when this job
    (``hydra.job.num`` unless given) is a duplicate grid point, else None."""
    import json

    raw = os.environ.get(_ENV_DUPLICATES)
    if not raw:
        return None
    if job is None:
        try:
            from hydra.core.hydra_config import HydraConfig

            job = int(HydraConfig.get().job.num)
        except (ImportError, ValueError, AttributeError, TypeError):
            return None
    entry = json.loads(raw).get(str(job))
    return (str(entry[0]), str(entry[1]), int(entry[2])) if entry else None


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
    in every parallel worker at once. Each point is keyed as its job will key it (the prepared
    run: canonical config, the corpus's content, the tokenizer); a point whose key an earlier
    point of the same experiment has is not returned but listed as that point's duplicate.
    """
    from dataclasses import replace

    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from scaling.counting import compute_from, count_params
    from scaling.training.branches import member_keys
    from scaling.training.run import hydra_error_line, prepare

    loader = GlobalHydra.instance().config_loader()
    points: list[GridPoint] = []
    errors: list[str] = []
    first: dict[tuple[str, str, str], int] = {}  # (uri, experiment, key) -> index in points
    for num, job in enumerate(jobs):
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
        where = (c.tracking.uri, c.tracking.experiment, prep.key)
        if where in first:
            owner = points[first[where]]
            points[first[where]] = replace(
                owner,
                duplicate_jobs=(*owner.duplicate_jobs, num),
                duplicate_labels=(*owner.duplicate_labels, point_label(job, jobs)),
            )
            continue
        first[where] = len(points)
        points.append(
            GridPoint(
                tuple(job),
                prep.key,
                prep.name,
                c.tracking.uri,
                c.tracking.experiment,
                count_params(c.model).total,
                c.tokens,
                compute_from(count_params(c.model).total, c.spent_tokens()),
                seconds=_planned_seconds(c),
                job=num,
                members=member_keys(c) if c.train.horizons is not None else (),
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

    states = []
    for key in point.members or (point.key,):  # a branched group: all its runs
        runs = find_runs(point.uri, point.experiment, key)
        done = [r for r in runs if r.info.status == "FINISHED"]
        if not done:
            return "failed", (runs[0] if runs else None)
        run = done[0]
        states.append((("finished" if (run.info.end_time or 0) >= since_ms else "skipped"), run))
    return next((s for s in states if s[0] == "finished"), states[0])


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
        self.results_dir = "."

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._guard(self._start, config)

    def _start(self, config: DictConfig) -> None:
        from scaling.training.run import quiet_libraries
        from scaling.training.tracking import check_reachable, ensure_experiment

        quiet_libraries()
        _ACTIVE[:] = [self]
        self.options = sweep_options(config)
        _check_law(self.options)
        self.started_ms = int(os.environ.get(_ENV_SINCE) or time.time() * 1000)
        self.results_dir = str(config.results_dir)
        jobs = expand_grid(config)
        self.points, errors = validate_grid(config, jobs)
        if errors:
            listing = "; ".join(errors)
            if len(errors) == len(jobs):  # one mistake shared by every point: say it once
                reasons = {e[len(point_label(j, jobs)) + 2 :] for e, j in zip(errors, jobs)}
                if len(reasons) == 1:
                    listing = f"every point: {reasons.pop()}"
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
        signal.signal(signal.SIGTERM, _terminate)  # between runs too, not only inside a fit
        publish_duplicates(self.points)  # their jobs return SKIPPED at once
        publish_work(self.points, len(jobs))
        os.environ[_ENV_TOTAL] = str(len(jobs))  # job numbers count duplicates too
        os.environ[_ENV_START] = str(time.time())
        print(
            f"sweep: {len(self.points)} runs -> {self.points[0].uri} "
            f"(experiment {self.points[0].experiment!r})",
            file=sys.stderr,
            flush=True,
        )
        dropped = duplicates_line(self.points)
        if dropped:
            print(dropped, file=sys.stderr, flush=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        self._guard(self._end, config)

    def _end(self, config: DictConfig) -> None:
        failed = self.summary()
        if self.options.collect and self.points:
            self._collect_and_fit(config)
        if failed:
            raise SystemExit(1)

    def summary(self, interrupted: str | None = None) -> int:
        """Print what happened to every point (MLflow's record); returns how many failed."""
        from scaling.training.tracking import REASON_TAG

        tally: dict[str, list[str]] = {"finished": [], "skipped": [], "failed": [], "todo": []}
        for point in self.points:
            state, run = outcome(point, self.started_ms)
            if (
                interrupted
                and state == "failed"
                and (run is None or (run.info.start_time or 0) < self.started_ms)
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
            if self.options.approach == 1:  # the envelope reads every run's loss curve
                curves = collect_runs(uri, experiment, curves=True)
                table = write_table(curves, Path(config.results_dir) / f"{experiment}_curves.csv")
                print(f"curves table: {table} ({len(curves)} points)")
            if self.options.fit:
                fitted = fit_table(table, Path("analysis") / experiment, self.options)
                if self.options.verify_flops and not fitted:
                    raise UnhealthyFitError(
                        "sweep.verify_flops: no fit to verify (see 'fit skipped' above): add "
                        "runs, or rerun without sweep.verify_flops"
                    )
                if self.options.verify_flops:
                    self._verify(config, Path("analysis") / experiment / "fit.json")

    def _verify(self, config: DictConfig, fit_path: Path) -> None:
        """``sweep.verify_flops``: train the fit's predicted optimum with the grid's own data
        and hyperparameters (its first point's config, shape and horizon replaced)."""
        from hydra.core.global_hydra import GlobalHydra

        from scaling.training.verify import summary_lines, verify

        flops = float(self.options.verify_flops)  # type: ignore[arg-type]
        first = (
            GlobalHydra.instance()
            .config_loader()
            .load_sweep_config(config, list(self.points[0].overrides))
        )
        print(f"verify: training the predicted compute-optimal run at {flops:.3g} FLOPs")
        results = verify(fit_path, flops, base_config=first)
        print("\n".join(f"verify {line}" for line in summary_lines(results, fit_path)))

    @staticmethod
    def _guard(fn: Any, *args: Any) -> None:
        """Run a callback step; a user error exits 2, any other error exits 1 (never a warning)."""
        try:
            exit_on_user_error(fn)(*args)
        except Exception as err:  # noqa: BLE001 -- Hydra would turn it into a warning
            step = "start" if fn.__name__ == "_start" else "end (summary, collect, fit)"
            print(f"error: sweep {step} failed: {type(err).__name__}: {err}", file=sys.stderr)
            if os.environ.get("SCALING_DEBUG"):
                traceback.print_exc()
            raise SystemExit(1) from None


def _check_law(options: SweepConfig) -> None:
    """An unknown ``sweep.law`` is a bad input: refuse it before anything trains."""
    from scaling.analysis.fitting.laws import LAWS

    if options.law not in LAWS:
        raise UserError(f"sweep.law={options.law!r} is not a known law; known: {', '.join(LAWS)}")


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM in the driver: raise Lightning's SIGTERMException (a SystemExit), which a run in
    progress records as KILLED and :func:`main` turns into the summary and exit status 143.

    Inside a Lightning fit, Lightning's own handler (then installed) calls this one after noting
    the signal; it stops at the next step boundary (a checkpoint is never cut in half), so this
    one defers. During an import (a run's first ``import lightning`` takes seconds) it asks again
    50 ms later: an exception there would leave torch half-imported, every later point of the
    sweep failing and the SIGTERM lost. Lightning is never imported here.
    """
    if signal.getsignal(signal.SIGTERM) is not _terminate:
        return  # called by Lightning's handler, inside a fit
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            threading.Timer(0.05, os.kill, (os.getpid(), signum)).start()
            return
        frame = frame.f_back
    exceptions = sys.modules.get("lightning.pytorch.utilities.exceptions")
    raise SystemExit(143) if exceptions is None else exceptions.SIGTERMException


def _worker_died(err: BaseException) -> bool:
    """Whether ``err`` is a parallel launcher reporting a dead worker process (joblib/loky)."""
    from concurrent.futures.process import BrokenProcessPool

    return isinstance(err, BrokenProcessPool) or type(err).__name__ == "TerminatedWorkerError"


def close_lost_runs(callback: SweepCallback) -> list[str]:
    """Close the runs no live process trains any more (a dead worker's, and those of the workers
    the launcher stopped with it) KILLED; returns their names."""
    from scaling.training.tracking import end_run, orphans

    lost = []
    by_store: dict[tuple[str, str], list[GridPoint]] = {}
    for point in callback.points:
        by_store.setdefault((point.uri, point.experiment), []).append(point)
    for (uri, experiment), points in by_store.items():
        names = {p.key: p.name for p in points}
        for key, run_id in orphans(uri, experiment, list(names), callback.results_dir):
            end_run(uri, run_id, "KILLED", WORKER_DIED)
            lost.append(names[key])
    return lost


def _signal_exit(err: BaseException) -> tuple[str, int] | None:
    """``(signal name, exit status)`` when ``err`` is how a signal ended the sweep."""
    if isinstance(err, KeyboardInterrupt):
        return "SIGINT", 130
    if isinstance(err, SystemExit):
        if type(err).__name__ == "SIGTERMException" or err.code == 143:
            return "SIGTERM", 143
        if err.code == 130:
            return "SIGINT", 130
    return None


def fit_table(table: Path, out: Path, options: SweepConfig) -> bool:
    """Fit the run table into ``out`` as ``scaling fit`` would; True when a fit was written.

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


# ---- the job (runs in the launcher's process) -------------------------------------------------


def _local_workers() -> int | None:
    """How many jobs this machine's launcher runs at once (joblib, submitit_local); None for a
    sequential launcher or one whose jobs run elsewhere (SLURM)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
    except (ImportError, ValueError):
        return None
    cores = os.cpu_count() or 1
    target = str(hc.launcher.get("_target_", ""))
    if "Joblib" in target:
        n_jobs = int(hc.launcher.get("n_jobs") or -1)
        return max(1, cores if n_jobs < 1 else n_jobs)
    if "Submitit" in target and "Local" in target:
        return max(1, int(hc.sweeper.get("max_batch_size") or cores))
    return None


def _threads_for_launcher(threads: int) -> int:
    """Never oversubscribe: parallel workers x threads <= cores (NOTES: 2x2 threads collapses)."""
    if threads:
        return threads
    workers = _local_workers()
    if workers is None:
        return 0
    return max(1, (os.cpu_count() or 1) // workers)


def task(cfg: DictConfig) -> dict[str, Any]:
    """One grid point. Never raises for a failed run: the sweep goes on."""
    from scaling.training.run import RunResult, prepare, quiet_libraries, report, train
    from scaling.training.tracking import finished_run_id

    quiet_libraries()
    started = time.perf_counter()
    duplicate = duplicate_of()  # this job's run is another grid point's: never trained twice
    if duplicate is not None:
        key, name, owner = duplicate
        reason = f"duplicate of grid point {owner + 1} (the same run key {key})"
        print(f"{name}: {reason}, skipped", flush=True)
        return asdict(
            RunResult(
                run_key=key,
                run_name=name,
                status="SKIPPED",
                reason=reason,
                wall_s=time.perf_counter() - started,
            )
        )
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
    import json

    msg = f"[run {num + 1}/{total}] {name}"
    start = float(os.environ.get(_ENV_START, "0") or 0)
    # jobs before this one have started; with parallel workers the last (workers - 1) of them
    # may still be training, so only the ones before those count as done (a pessimistic ETA)
    done = num - ((_local_workers() or 1) - 1)
    if start and done > 0:
        elapsed = time.time() - start
        work = json.loads(os.environ.get(_ENV_FLOPS) or "[]")
        eta = eta_seconds(elapsed, work, done) if len(work) == total else None
        if eta is None:  # no FLOPs known yet: by the count of runs
            eta = elapsed / done * (total - done)
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
    lost: list[str] = []
    try:
        for attempt in (1, 2):
            try:
                with hydra_config_errors():
                    app()
                break
            except Exception as err:
                if not _worker_died(err) or not _ACTIVE:
                    raise
                lost += _relaunch_after_dead_worker(err, attempt)
    except (KeyboardInterrupt, SystemExit) as err:
        _print_lost(lost)
        stopped = _signal_exit(err)
        if stopped is None:
            raise
        for callback in _ACTIVE:
            callback.summary(interrupted=stopped[0])
        raise SystemExit(stopped[1]) from None
    if lost:
        _print_lost(lost)
        raise SystemExit(1)


def _relaunch_after_dead_worker(err: BaseException, attempt: int) -> list[str]:
    """Close the lost runs and prepare a second pass; after a second death, stop (exit 1)."""
    from hydra.core.global_hydra import GlobalHydra

    callback = _ACTIVE[0]
    lost = close_lost_runs(callback)
    print(
        f"sweep: {type(err).__name__}: {err}".splitlines()[0][:300]
        + f"; runs lost: {', '.join(lost) or 'none'}",
        file=sys.stderr,
        flush=True,
    )
    if attempt == 2:
        callback.summary()
        _print_lost(lost)
        raise SystemExit(1)
    print("sweep: launching the unfinished points once more", file=sys.stderr, flush=True)
    os.environ[_ENV_SINCE] = str(callback.started_ms)
    GlobalHydra.instance().clear()
    return lost


def _print_lost(lost: list[str]) -> None:
    if lost:
        print(
            f"sweep: exit status 1: a launcher worker died while training {', '.join(lost)} "
            "(relaunched once; see the summary for how they ended)",
            flush=True,
        )


if __name__ == "__main__":
    main()
