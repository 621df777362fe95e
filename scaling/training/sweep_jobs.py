"""A sweep's jobs: what each one runs (:func:`run_point`), and what the driver tells them.

The driver and the jobs share no memory (joblib, submitit and SLURM run jobs in other
processes), so the driver hands them what they need in a file in the sweep's folder
(``hydra.sweep.dir``, where every job's own folder is, on every launcher): which grid points are
duplicates of another point's run, the planned seconds of each job (the ETA's weights), the
count of jobs and when the sweep started (:func:`publish`). Not the environment: joblib's
workers outlive a sweep (a study's stages, run in one process, reuse them) and keep the
environment they started with. Each job prints its place in the grid with the elapsed time and
an ETA (:func:`_progress_line`).
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from scaling.errors import UserError
from scaling.files import atomic_write_text
from scaling.training.sweep_grid import GridPoint

STATE_FILE = "scaling-sweep.json"  # in the sweep's folder: what the driver tells its jobs
_since_ms: list[int] = []  # start of the first pass, kept across a relaunch (driver side)


# ---- the driver's side ------------------------------------------------------------------------


def publish(points: list[GridPoint], n_jobs: int, folder: str | Path) -> None:
    """Everything the ``n_jobs`` jobs of a validated grid need from the driver, written to
    ``folder/STATE_FILE`` (``folder``: the sweep's ``hydra.sweep.dir``): its duplicates, each
    job's planned work, the count of jobs (duplicates included) and the time now."""
    state = {
        "duplicates": duplicates_table(points),  # their jobs return SKIPPED at once
        "work": planned_work(points, n_jobs),
        "total": n_jobs,  # job numbers count duplicates too
        "start": time.time(),
    }
    atomic_write_text(Path(folder) / STATE_FILE, json.dumps(state))


def sweep_started_ms() -> int:
    """When the sweep's first pass started (ms since the epoch): now, unless a relaunch after a
    dead worker kept it (:func:`keep_started_ms`)."""
    return _since_ms[0] if _since_ms else int(time.time() * 1000)


def keep_started_ms(started_ms: int | None) -> None:
    """Keep the first pass's start for the second pass (its summary counts runs since then);
    None forgets it (the sweep is over)."""
    _since_ms[:] = [] if started_ms is None else [started_ms]


def duplicates_table(points: list[GridPoint]) -> dict[str, list[Any]]:
    """``{job number: [key, run name, owner job]}`` for every duplicate grid point: Hydra's
    sweeper launches every point of the product and cannot be told to leave one out, so a
    duplicate's job returns SKIPPED at once (:func:`duplicate_of`)."""
    return {str(j): [p.key, p.name, p.job] for p in points for j in p.duplicate_jobs}


def planned_work(points: list[GridPoint], n_jobs: int) -> list[float]:
    """The planned seconds each job will train, by job number, for the ETA: 0 for a duplicate
    or a point already FINISHED in MLflow (skipped in about a second)."""
    from scaling.training.tracking import finished_keys

    done = {store: finished_keys(*store) for store in {(p.uri, p.experiment) for p in points}}
    work = [0.0] * n_jobs
    for p in points:
        if p.job < n_jobs and not set(p.members or (p.key,)) <= done[(p.uri, p.experiment)]:
            work[p.job] = p.seconds
    return work


# ---- the job's side (runs in the launcher's process) -------------------------------------------


def _hydra_config() -> Any | None:
    """This job's Hydra config (``hydra.*``: its number, the sweep's folder, the launcher);
    None outside a Hydra job."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return HydraConfig.get()
    except (ImportError, ValueError):
        return None


def job_state() -> dict[str, Any]:
    """What the driver published for this job's sweep (:func:`publish`); empty outside a
    sweep."""
    hc = _hydra_config()
    try:
        folder = Path(str(hc.sweep.dir))  # type: ignore[union-attr]
        return dict(json.loads((folder / STATE_FILE).read_text()))
    except (AttributeError, TypeError, OSError, ValueError):  # no Hydra job, or no file
        return {}


def _job_num() -> int | None:
    hc = _hydra_config()
    try:
        return None if hc is None else int(hc.job.num)
    except (AttributeError, TypeError, ValueError):
        return None


def duplicate_of(job: int | None, table: dict[str, Any]) -> tuple[str, str, int] | None:
    """``(key, run name, job number)`` of the point that trains job ``job``'s run when that job
    is a duplicate grid point in ``table`` (:func:`duplicates_table`), else None."""
    entry = table.get(str(job)) if job is not None else None
    return (str(entry[0]), str(entry[1]), int(entry[2])) if entry else None


def eta_seconds(elapsed: float, work: list[float], done_jobs: int) -> float | None:
    """Time left if the remaining work trains at the rate the finished jobs' did (work: each
    job's planned seconds, so a run of 10x the steps and FLOPs takes about 10x as long, whatever
    the count of runs); None before any work is done."""
    done = sum(work[:done_jobs])
    if done <= 0 or elapsed <= 0:
        return None
    return elapsed * sum(work[done_jobs:]) / done


def _local_workers() -> int | None:
    """How many jobs this machine's launcher runs at once (joblib, submitit_local); None for a
    sequential launcher or one whose jobs run elsewhere (SLURM)."""
    hc = _hydra_config()
    if hc is None:
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
    """Never oversubscribe: parallel workers x threads <= cores (``threads``, unless set)."""
    if threads:
        return threads
    workers = _local_workers()
    if workers is None:
        return 0
    return max(1, (os.cpu_count() or 1) // workers)


def run_point(cfg: DictConfig) -> dict[str, Any]:
    """One grid point. Never raises for a failed run: the sweep goes on."""
    from scaling.training.prepare import prepare
    from scaling.training.run import RunResult, report, train
    from scaling.training.tracking import finished_run_id
    from scaling.training.trainer import quiet_libraries

    quiet_libraries()
    started = time.perf_counter()
    state = job_state()
    # this job's run is another grid point's: never trained twice
    duplicate = duplicate_of(_job_num(), state.get("duplicates") or {})
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
    _progress_line(state, prep.name)
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


def _progress_line(state: dict[str, Any], name: str) -> None:
    """``[run k/n] name``, with the elapsed time and an ETA once a job is done, on stderr
    (``state``: :func:`job_state`)."""
    total = int(state.get("total") or 0)
    num = _job_num()
    if not total or num is None:
        return
    msg = f"[run {num + 1}/{total}] {name}"
    start = float(state.get("start") or 0)
    # jobs before this one have started; with parallel workers the last (workers - 1) of them
    # may still be training, so only the ones before those count as done (a pessimistic ETA)
    done = num - ((_local_workers() or 1) - 1)
    if start and done > 0:
        elapsed = time.time() - start
        work = list(state.get("work") or [])
        eta = eta_seconds(elapsed, work, done) if len(work) == total else None
        if eta is None:  # no FLOPs known yet: by the count of runs
            eta = elapsed / done * (total - done)
        msg += f" -- elapsed {elapsed / 60:.1f} min, ETA {eta / 60:.1f} min"
    print(msg, file=sys.stderr, flush=True)
