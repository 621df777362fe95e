"""One training run: config -> result. The function every launcher calls.

    python -m scaling.train                                  # the default run
    python -m scaling.train model.n_layer=2 train.flops=3e11 # any Hydra key (docs/ARCHITECTURE.md)

A run is first prepared (:mod:`scaling.training.prepare`: config, tracking store and data
checked, nothing written), then :func:`train` takes the key's lease, opens its MLflow record
(:mod:`scaling.training.record`), builds the Lightning Trainer (:mod:`scaling.training.trainer`)
and fits; every way out of it (finished, failed, a signal) is recorded.
``python -m scaling.train`` is :func:`main`, with :class:`ValidateCallback` checking the config
before Hydra creates the run's folder.
"""

from __future__ import annotations

import shutil
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from scaling.config import CONF_DIR, build_run_config, register_configs
from scaling.counting import FLOPS_CONVENTIONS, count_params
from scaling.errors import SIGNAL_EXIT, exit_on_user_error
from scaling.identity import run_key
from scaling.run_config import RunConfig
from scaling.training.branches import Branching, keep_checkpoints_at, train_group
from scaling.training.hydra_errors import hydra_config_errors
from scaling.training.leases import Lease, checkpoint_folder, lease_file
from scaling.training.prepare import PreparedRun, check_results_dir, prepare
from scaling.training.record import choose_run, open_record
from scaling.training.tracking import (
    DIVERGED_STEP_TAG,
    DIVERGED_TAG,
    ROLLBACKS_TAG,
    RunRecorder,
    check_reachable,
    finished_run_id,
)
from scaling.training.trainer import (
    check_world_size,
    make_trainer,
    quiet_libraries,
    record_checkpoints,
    resume_from,
    resume_step,
    set_threads,
)


@dataclass
class RunResult:
    """What a run produced; ``status`` is FINISHED, FAILED or SKIPPED (already finished)."""

    run_key: str
    run_name: str
    status: str
    run_id: str | None = None
    val_loss: float | None = None
    tokens: int = 0
    params: int = 0
    tokens_per_s: float | None = None
    wall_s: float = 0.0
    reason: str | None = None
    resumed_from_step: int = 0


def checkpoint_dir(cfg: RunConfig) -> Path:
    """The run's checkpoint folder: per key, experiment and store
    (:func:`scaling.training.leases.checkpoint_folder`)."""
    return checkpoint_folder(
        cfg.results_dir, cfg.tracking.uri, cfg.tracking.experiment, run_key(cfg)
    )


def lease_path(cfg: RunConfig) -> Path:
    """The lock file of the run's key, beside its checkpoint folder."""
    return lease_file(cfg.results_dir, cfg.tracking.uri, cfg.tracking.experiment, run_key(cfg))


def train(prep: PreparedRun, resume: bool = True, branching: Branching | None = None) -> RunResult:
    """Train one prepared run, tracked in MLflow; one run per key.

    The process first takes the key's lease (:class:`~scaling.training.leases.Lease`, waiting
    while another process trains the key), then: a key FINISHED meanwhile is SKIPPED; a run a
    dead process left RUNNING, or the run a checkpoint belongs to, is continued (same MLflow run,
    from the checkpoint if there is one, else from step 0); otherwise a new run is created.

    Every exit once the MLflow run exists records it: FINISHED (any old failure reason
    removed), KILLED for Ctrl-C and SIGTERM (exit as the signalled process would,
    :data:`~scaling.errors.SIGNAL_EXIT`), FAILED with the reason for any exception (re-raised;
    the caller decides whether to go on), in set-up, training or the recording of the result
    alike; a run that diverged (:class:`~scaling.training.module.DivergedError`) is FAILED with
    the tags ``scaling.diverged=true`` and ``scaling.diverged_step``.

    Under DDP every process runs this; only the Trainer's global zero holds the lease, records
    the MLflow run and deletes the checkpoint once FINISHED.
    """
    import lightning as L

    cfg = prep.cfg
    if cfg.train.horizons is not None:  # a group: a stable run and its cooldown branches
        return train_group(prep, resume, train, report)
    started = time.perf_counter()
    set_threads(cfg.threads)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    recording = record_checkpoints()
    extra: tuple[Any, ...] = (recording,)
    if branching is not None and branching.points and branching.points_dir is not None:
        extra += (keep_checkpoints_at(branching.points, branching.points_dir),)
    # The trainer knows this process's rank before anything is locked or recorded.
    trainer = make_trainer(cfg, checkpoint_dir(cfg), extra_callbacks=extra)
    check_world_size(cfg, trainer.world_size)
    lease = Lease.acquire(lease_path(cfg), prep.name) if trainer.is_global_zero else None
    try:
        return _train_leased(prep, trainer, recording, lease, resume, started, branching)
    finally:
        if lease is not None:
            lease.release()


def _train_leased(
    prep: PreparedRun,
    trainer: Any,
    recording: Any,
    lease: Lease | None,
    resume: bool,
    started: float,
    branching: Branching | None = None,
) -> RunResult:
    from scaling.training.data.batches import TokenDataModule, val_windows
    from scaling.training.module import DivergedError, LMModule

    cfg, key = prep.cfg, prep.key
    ckpt_dir = checkpoint_dir(cfg)
    ckpt = ckpt_dir / "last.ckpt"
    result = RunResult(
        run_key=key,
        run_name=prep.name,
        status="FAILED",
        params=count_params(cfg.model).total,
        tokens=cfg.tokens,
    )
    if lease is not None:
        done = finished_run_id(cfg.tracking.uri, cfg.tracking.experiment, key)
        if done is not None:  # finished meanwhile (by the holder waited for, or long ago)
            shutil.rmtree(ckpt_dir, ignore_errors=True)  # left if killed right after FINISHED
            result.status, result.run_id = "SKIPPED", done
            result.reason = f"already FINISHED in MLflow (run {done})"
            result.wall_s = time.perf_counter() - started
            return result
    start_step, ckpt_run = resume_from(prep, ckpt, resume)
    if not start_step and branching is not None and branching.start is not None:
        ckpt, start_step = branching.start, resume_step(branching.start)  # the stable run's
    result.resumed_from_step = start_step
    recorder = None
    if trainer.is_global_zero:
        recorder = RunRecorder(cfg.tracking.uri, cfg.tracking.experiment)
    module = None
    try:
        if recorder is not None:
            unnamed = bool(start_step and not ckpt_run and ckpt.parent == ckpt_dir)
            resume_id = choose_run(prep, lease, ckpt_run, unnamed)
            result.run_id = open_record(prep, recorder, lease, resume_id, branching)
            recording.recorder = recorder
        module = LMModule(
            cfg.model,
            cfg.train,
            total_steps=cfg.steps,
            tokens_per_step=cfg.tokens_per_step,
            val_windows=val_windows(prep.corpus, cfg.model.seq_len),
            eval_batch_size=cfg.eval_batch_size,
            sink=recorder.log_metrics if recorder is not None else None,
        )
        datamodule = TokenDataModule(
            prep.corpus,
            seq_len=cfg.model.seq_len,
            micro_batch_size=cfg.micro_batch_size,
            n_sequences=cfg.steps * cfg.train.batch_size,
            seed=cfg.seed,
            start_sequence=start_step * cfg.train.batch_size,
            sequences_per_step=cfg.train.batch_size,
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*ended before the epoch ended.*")
            # a WSD branch starts from the stable run's checkpoint, saved in another folder
            warnings.filterwarnings("ignore", message=".*dirpath has changed from.*")
            trainer.fit(
                module,
                datamodule=datamodule,
                ckpt_path=str(ckpt) if start_step else None,
                weights_only=True,
            )
        if trainer.interrupted:  # Lightning swallows Ctrl-C; the checkpoint allows a resume
            raise KeyboardInterrupt
        if module.final_val_loss is None:
            raise RuntimeError("training ended before the final validation")
        result.val_loss = module.final_val_loss
        result.tokens_per_s = module.throughput()
        result.wall_s = time.perf_counter() - started
        if recorder is not None:
            # val/loss at step=tokens was logged by the final evaluation; add the steady rate.
            if result.tokens_per_s == result.tokens_per_s:  # not NaN
                recorder.log_metrics({"throughput/tokens_per_s": result.tokens_per_s}, cfg.tokens)
            recorder.log_dict(_summary(prep, result, module), "summary.json")
            _tag_rollbacks(recorder, module)
            recorder.finish("FINISHED")
        result.status = "FINISHED"
    except BaseException as err:
        result.status = "FAILED"
        signal_name = _interruption(err, trainer)
        if signal_name is None:
            result.reason = f"{type(err).__name__}: {err}".strip().rstrip(":") or "unknown error"
        else:
            result.reason = (
                f"{signal_name}: interrupted at step {trainer.global_step:,} of {cfg.steps:,}; "
                "rerun the same command to resume from the last checkpoint"
            )
        if recorder is not None and recorder.run_id is not None:
            try:
                if isinstance(err, DivergedError):  # FAILED, and why: diverged at a step
                    recorder.set_tags({DIVERGED_TAG: "true", DIVERGED_STEP_TAG: err.step})
                    _tag_rollbacks(recorder, module)
                recorder.finish("FAILED" if signal_name is None else "KILLED", reason=result.reason)
            except Exception as record_err:  # noqa: BLE001 -- keep the original error
                print(
                    f"{prep.name}: could not record the run's end in MLflow ({record_err})",
                    file=sys.stderr,
                    flush=True,
                )
        if signal_name == "SIGTERM" or (signal_name == "SIGINT" and trainer.interrupted):
            # exit as a signalled process does (128 + signal number); a KeyboardInterrupt
            # raised outside Lightning's loop (recorded KILLED too) propagates as it is
            raise SystemExit(SIGNAL_EXIT[signal_name]) from err
        raise
    finally:
        result.wall_s = time.perf_counter() - started
    if trainer.is_global_zero:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    if getattr(trainer, "received_sigterm", False):
        # SIGTERM after Lightning last looked for it (the end of the last epoch), before it gave
        # the handler back: the run is complete and recorded; stop now, as the signal asked
        raise SystemExit(SIGNAL_EXIT["SIGTERM"])
    return result


def _tag_rollbacks(recorder: RunRecorder, module: Any) -> None:
    """``scaling.rollbacks``: a rolling-back run's count of rollbacks, at its end."""
    if module is not None and module.rollbacks is not None:
        recorder.set_tags({ROLLBACKS_TAG: module.rollbacks.count})


def _interruption(err: BaseException, trainer: Any) -> str | None:
    """The signal that stopped training, if one did: SIGTERM (SLURM preemption or timeout,
    ``kill``, ``docker stop``: Lightning raises its SIGTERMException, a SystemExit with no code)
    or SIGINT (Ctrl-C: Lightning marks the trainer interrupted and exits 1)."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    if isinstance(err, SIGTERMException):
        return "SIGTERM"
    if isinstance(err, KeyboardInterrupt) or (isinstance(err, SystemExit) and trainer.interrupted):
        return "SIGINT"
    return None


def _summary(prep: PreparedRun, result: RunResult, module: Any) -> dict[str, Any]:
    """The run's ``summary.json`` artifact."""
    counts = count_params(prep.cfg.model)
    return {
        "run_key": result.run_key,
        "run_name": result.run_name,
        "run_id": result.run_id,
        "status": "FINISHED",
        "val_loss": result.val_loss,
        "train_loss": module.last_train_loss,
        **counts.as_dict(),
        "tokens": prep.cfg.tokens,
        "steps": prep.cfg.steps,
        "flops": {c: prep.cfg.flops(c) for c in FLOPS_CONVENTIONS},
        "tokens_per_s": result.tokens_per_s,
        "wall_s": result.wall_s,
        "epochs": prep.epochs,
        "resumed_from_step": result.resumed_from_step,
        "corpus": prep.corpus.describe(),
        "entropy_rate": prep.corpus.entropy_rate,
    }


def report(result: RunResult) -> str:
    """A run's result in one line."""
    if result.status == "FINISHED":
        tps = f", {result.tokens_per_s:,.0f} tokens/s" if result.tokens_per_s else ""
        return (
            f"{result.run_name}: val/loss {result.val_loss:.4f} nats/token after "
            f"{result.tokens:,} tokens ({result.wall_s:.1f} s{tps}) [run {result.run_id}]"
        )
    return f"{result.run_name}: {result.status} {result.reason or ''}".strip()


# ---- python -m scaling.train --------------------------------------------------------------------


def _main(cfg: DictConfig) -> None:
    quiet_libraries()
    prep = prepare(cfg)
    c = prep.cfg
    n = count_params(c.model)
    print(
        f"{prep.name}: {n.total:,} params ({n.nonembedding:,} non-embedding), "
        f"{c.tokens:,} tokens in {c.steps:,} steps of {c.tokens_per_step:,}, "
        f"{c.flops('6N'):.3g} FLOPs (6ND); corpus {prep.corpus.corpus_id}, "
        f"tokenizer {prep.corpus.tokenizer_id}",
        file=sys.stderr,
    )
    result = train(prep)
    print(report(result))
    print(
        f"tracking: {c.tracking.uri} (experiment {c.tracking.experiment!r}); "
        f"view with: mlflow ui --backend-store-uri {c.tracking.uri}"
    )


class ValidateCallback(Callback):
    """A Hydra callback that validates a single run's config before Hydra creates the run's
    output folder (``results_dir/hydra/runs/<time>/``): ``on_run_start`` precedes it, the task
    function follows it. A bad config exits with one line and status 2 (an exception raised in a
    callback would only be a warning). Enabled by ``hydra.callbacks`` in ``conf/config.yaml``;
    multiruns validate their grid in :class:`scaling.training.sweep.SweepCallback` instead.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        exit_on_user_error(_validate_config)(config)


def _validate_config(config: DictConfig) -> None:
    cfg = build_run_config(config)
    check_results_dir(cfg.results_dir)
    check_reachable(cfg.tracking.uri, create=False)


def main() -> None:
    import hydra

    register_configs()
    app = hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")(
        exit_on_user_error(_main)
    )
    with hydra_config_errors():
        app()


if __name__ == "__main__":
    main()
