"""The MLflow record of one run: which run an attempt continues, and opening it with its
params, tags and artifacts (docs/ARCHITECTURE.md, "MLflow record of a run").

An attempt at a key continues the run its checkpoint names, else a RUNNING run whose process
died (an orphan), else creates a new run (:func:`choose_run`); :func:`open_record` then starts
or reopens it and logs what the run is: the params of :func:`run_params`, ``config.yaml`` (the
config the run trains with, :attr:`PreparedRun.resolved
<scaling.training.prepare.PreparedRun.resolved>`) and the data-processing report.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from scaling.counting import all_conventions, count_params
from scaling.training.branches import Branching
from scaling.training.leases import Lease, lease_holder
from scaling.training.prepare import PreparedRun
from scaling.training.tracking import HOLDER_TAG, LEASE_TAG, RunRecorder, end_run, find_runs


def git_commit() -> str:
    """The commit of the code that trains (``unknown`` outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_params(prep: PreparedRun) -> dict[str, Any]:
    """Everything logged as MLflow params: config, counted params, FLOPs, data identity."""
    cfg = prep.cfg
    counts = count_params(cfg.model)
    params: dict[str, Any] = {
        **cfg.flat_params(),
        **counts.as_dict(),
        **cfg.describe_horizon(),
        **all_conventions(cfg.model, cfg.tokens),
    }
    params.update(prep.corpus.describe())
    params.update({"data.epochs": round(prep.epochs, 4), "git_commit": git_commit()})
    return params


def choose_run(
    prep: PreparedRun, lease: Lease | None, ckpt_run: str | None, unnamed_checkpoint: bool
) -> str | None:
    """The MLflow run this attempt continues, if any (called holding the key's lease).

    The run its checkpoint names, unless FINISHED or gone; else the newest RUNNING run of the key
    whose process died (an orphan: nobody else holds the key's lease); else, resuming a
    checkpoint older than run ids in checkpoints (``unnamed_checkpoint``), the newest unfinished
    run; else none (a new run).
    Other orphans of the key are closed FAILED, so that no RUNNING run is left behind. A run
    another live process trains (under another ``results_dir``) is left alone.
    """
    cfg = prep.cfg
    runs = find_runs(cfg.tracking.uri, cfg.tracking.experiment, prep.key)  # newest first
    open_ids = {r.info.run_id for r in runs if r.info.status != "FINISHED"}
    ours = str(lease.path.resolve()) if lease is not None else None

    def orphaned(run: Any) -> bool:
        path = run.data.tags.get(LEASE_TAG)
        return not path or path == ours or lease_holder(path) is None

    running = [r for r in runs if r.info.status == "RUNNING"]
    live = [r for r in running if not orphaned(r)]
    if live:
        print(
            f"{prep.name}: warning: run {live[0].info.run_id} of this key is RUNNING under "
            f"another lease ({live[0].data.tags.get(LEASE_TAG)}); use one results_dir per store",
            file=sys.stderr,
            flush=True,
        )
    chosen = ckpt_run if ckpt_run in open_ids else None
    if ckpt_run is not None and chosen is None:
        print(
            f"{prep.name}: warning: the checkpoint's run {ckpt_run} is not in "
            f"{cfg.tracking.uri} (experiment {cfg.tracking.experiment!r}); recording a new run",
            file=sys.stderr,
            flush=True,
        )
    orphans = [r.info.run_id for r in running if orphaned(r)]
    if chosen is None and orphans:
        chosen = orphans[0]
    if chosen is None and unnamed_checkpoint:
        chosen = next((r.info.run_id for r in runs if r.info.status != "FINISHED"), None)
    for run_id in orphans:
        if run_id != chosen:
            end_run(
                cfg.tracking.uri,
                run_id,
                "FAILED",
                "orphaned: its process died; a later attempt at the key "
                + (f"continued run {chosen}" if chosen else "trained it in a new run"),
            )
    return chosen


def open_record(
    prep: PreparedRun,
    recorder: RunRecorder,
    lease: Lease | None,
    resume_run_id: str | None,
    branching: Branching | None = None,
) -> str:
    """Create the MLflow run (or reopen ``resume_run_id``, the one this attempt continues); log
    its params, config.yaml and the data-repeat warning. Returns the run id."""
    cfg, key = prep.cfg, prep.key
    tags = {
        "mlflow.source.git.commit": git_commit(),
        HOLDER_TAG: f"{socket.gethostname()}:{os.getpid()}",
    }
    if lease is not None:
        tags[LEASE_TAG] = str(lease.path.resolve())
    if branching is not None:
        tags.update(branching.tags)
    run_id = recorder.start(prep.name, key, tags=tags, resume_run_id=resume_run_id)
    if lease is not None:
        lease.note(run_id)
    recorder.log_params({**run_params(prep), **(branching.params if branching else {})})
    recorder.log_text(OmegaConf.to_yaml(OmegaConf.create(prep.resolved)), "config.yaml")
    report = prep.corpus.report_path  # data.process: what each stage removed, and why
    if report is not None and Path(report).is_file():
        recorder.log_dict(json.loads(Path(report).read_text()), "data_processing.json")
    if prep.epochs > 1:
        msg = (
            f"train.tokens={cfg.tokens:,} is {prep.epochs:.2f} epochs of the corpus "
            f"({len(prep.corpus.train):,} training tokens): data repeats"
        )
        print(f"warning: {msg}", file=sys.stderr, flush=True)
        recorder.set_tags({"scaling.warning.epochs": msg})
    return run_id
