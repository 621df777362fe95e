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
  and exits as a signalled process does (:data:`~scaling.errors.SIGNAL_EXIT`); rerunning the
  same command finishes the grid.
* A launcher worker that dies (the OOM killer, a segfault, ``kill -9``: joblib's loky then stops
  every worker) does not end the sweep with a traceback: the runs it left RUNNING are closed
  KILLED and named, the grid is launched once more (finished points are skipped, the lost runs
  resume from their checkpoints), and the sweep exits 1 naming them.
* :func:`task` is what each job runs: it looks the run's key up in MLflow and skips a FINISHED
  run, resumes from a checkpoint if a previous attempt was killed, and never raises: an exception
  or a diverging loss marks that MLflow run FAILED and the sweep goes on (Hydra's basic launcher
  would otherwise stop launching after a failed job).

This module is the driver (the callback, :func:`main` and the signals); the grid is
:mod:`.sweep_grid`, the jobs and their progress lines :mod:`.sweep_jobs`, the summary, run table
and fit :mod:`.sweep_results`.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from collections.abc import Sequence
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from scaling.config import SweepConfig, structured
from scaling.errors import (
    EXIT_SIGINT,
    EXIT_SIGTERM,
    UserError,
    exit_on_user_error,
    exit_status,
)
from scaling.training.sweep_grid import (
    GridPoint,
    duplicates_line,
    expand_grid,
    plan_table,
    point_label,
    validate_grid,
)
from scaling.training.sweep_jobs import keep_started_ms, publish, run_point, sweep_started_ms
from scaling.training.sweep_results import collect_and_fit, print_summary

_ACTIVE: list[SweepCallback] = []  # the driver's callback, for the summary after a signal
WORKER_DIED = (
    "a launcher worker process died (out of memory, a crash or a signal) while this run was "
    "in progress; relaunched"
)


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
        from scaling.training.tracking import check_reachable, ensure_experiment
        from scaling.training.trainer import quiet_libraries

        quiet_libraries()
        _ACTIVE[:] = [self]
        self.options = sweep_options(config)
        _check_law(self.options)
        self.started_ms = sweep_started_ms()
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
        # duplicates, planned work, count and start, for the jobs
        publish(self.points, len(jobs), str(config.hydra.sweep.dir))
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
            collect_and_fit(config, self.points, self.options)
        if failed:
            raise SystemExit(1)

    def summary(self, interrupted: str | None = None) -> int:
        """Print what happened to every point; returns how many failed."""
        return print_summary(self.points, self.started_ms, interrupted)

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
    progress records as KILLED and :func:`main` turns into the summary and exit status
    :data:`~scaling.errors.EXIT_SIGTERM`.

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
    raise SystemExit(EXIT_SIGTERM) if exceptions is None else exceptions.SIGTERMException


def _worker_died(err: BaseException) -> bool:
    """Whether ``err`` is a parallel launcher reporting a dead worker process (joblib/loky)."""
    from concurrent.futures.process import BrokenProcessPool

    return isinstance(err, BrokenProcessPool) or type(err).__name__ == "TerminatedWorkerError"


def close_lost_runs(callback: SweepCallback) -> list[str]:
    """Close the runs no live process trains any more (a dead worker's, and those of the workers
    the launcher stopped with it) KILLED; returns their names."""
    from scaling.training.leases import orphans
    from scaling.training.tracking import end_run

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
        return "SIGINT", EXIT_SIGINT
    if isinstance(err, SystemExit):
        if type(err).__name__ == "SIGTERMException" or err.code == EXIT_SIGTERM:
            return "SIGTERM", EXIT_SIGTERM
        if err.code == EXIT_SIGINT:
            return "SIGINT", EXIT_SIGINT
    return None


def task(cfg: DictConfig) -> dict[str, Any]:
    """Hydra's task function: one grid point (:func:`~scaling.training.sweep_jobs.run_point`).
    Defined here because Hydra names every job (and its log file) after this function's
    module."""
    return run_point(cfg)


def _argv_defaults(argv: list[str]) -> list[str]:
    """Bound submitit_local's concurrency to the cores."""
    extra = []
    if any(a.endswith("launcher=submitit_local") for a in argv) and not any(
        a.startswith("hydra.sweeper.max_batch_size") for a in argv
    ):
        extra.append(f"hydra.sweeper.max_batch_size={os.cpu_count() or 1}")
    return argv + extra


def main() -> None:
    """``python -m scaling.sweep``: the sweep of ``sys.argv``; exits with its status."""
    import hydra

    from scaling.config import CONF_DIR, register_configs
    from scaling.training.hydra_errors import hydra_config_errors

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


def run_sweep(args: Sequence[str]) -> int:
    """The sweep ``python -m scaling.sweep -m ARGS`` runs, in this process; its exit status.

    What one process runs in turn (a study's stages) shares the joblib launcher's workers: they
    have imported torch and Lightning once, and each sweep after the first starts training at
    once. The signal handlers, ``sys.argv`` and Hydra's global state are as before afterwards.
    """
    from hydra.core.global_hydra import GlobalHydra

    saved = sys.argv, signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    sys.argv = ["scaling.sweep", "-m", *args]
    try:
        main()
        return 0
    except SystemExit as err:
        return exit_status(err)
    finally:
        sys.argv = saved[0]
        signal.signal(signal.SIGTERM, saved[1])
        signal.signal(signal.SIGINT, saved[2])
        _ACTIVE.clear()
        keep_started_ms(None)
        GlobalHydra.instance().clear()


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
    keep_started_ms(callback.started_ms)
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
