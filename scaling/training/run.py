"""One training run: config -> result. The function every launcher calls.

    python -m scaling.train                                  # the default run
    python -m scaling.train model.n_layer=2 train.flops=3e11 # any Hydra key (docs/ARCHITECTURE.md)

Order of work, so that bad input costs nothing: validate the config, check the tracking store,
load (or build and cache) the token data and check the horizon against it -- only then create the
MLflow run and start Lightning.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from scaling.config import (
    CONF_DIR,
    GROUPS,
    TOP_LEVEL_KEYS,
    RunConfig,
    build_run_config,
    fields_at,
    plain_config,
    register_configs,
    run_key,
    run_name,
    unknown_key_message,
)
from scaling.counting import FLOPS_CONVENTIONS, all_conventions, count_params
from scaling.errors import EXIT_USER_ERROR, ConfigError, exit_on_user_error
from scaling.training.branches import Branching, keep_checkpoints_at, train_group
from scaling.training.data import Corpus, load_corpus, train_epochs
from scaling.training.tracking import (
    HOLDER_TAG,
    LEASE_TAG,
    Lease,
    RunRecorder,
    check_reachable,
    checkpoint_folder,
    end_run,
    find_runs,
    finished_run_id,
    lease_file,
    lease_holder,
)

log = logging.getLogger("scaling.train")


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


@dataclass(frozen=True)
class PreparedRun:
    """A run whose every input has been checked; nothing has been written yet.

    ``cfg`` carries the loaded corpus's :class:`~scaling.config.DataIdentity`, so :attr:`key`
    (and :attr:`name`, the checkpoint folder, the MLflow tag) identify the data by content.
    """

    cfg: RunConfig
    corpus: Corpus
    epochs: float
    resolved: dict[str, Any]

    @property
    def key(self) -> str:
        return run_key(self.cfg)

    @property
    def name(self) -> str:
        return run_name(self.cfg)


def prepare(raw: DictConfig | dict[str, Any], check_tracking: bool = True) -> PreparedRun:
    """Validate a composed config, the tracking store and the data (raises UserError).

    Nothing is written before every check has passed except the token cache of a valid data
    config (and its BPE tokenizer): not the tracking store, its folder, a checkpoint or a run.
    """
    cfg = build_run_config(raw)
    check_results_dir(cfg.results_dir)
    if check_tracking:
        check_reachable(cfg.tracking.uri, create=False)
    corpus = load_corpus(cfg.data, seq_len=cfg.model.seq_len)
    # Again with the corpus's real vocabulary and its content identity, which the key hashes
    # instead of the data config's text (paths, names, ignored keys).
    cfg = build_run_config(raw, vocab_size=corpus.vocab_size, data_identity=corpus.identity())
    epochs = train_epochs(corpus, cfg.tokens, cfg.data.allow_repeat)
    resolved = plain_config(raw)
    # train.lr=auto / batch_size=auto: config.yaml records the numbers the run trains with
    resolved.setdefault("train", {}).update(lr=cfg.train.lr, batch_size=cfg.train.batch_size)
    return PreparedRun(cfg=cfg, corpus=corpus, epochs=epochs, resolved=resolved)


def check_results_dir(path: str) -> None:
    """``results_dir`` (checkpoints, run tables, Hydra's folders) must be a folder or creatable
    as one; checked without creating it."""
    folder = Path(path).expanduser()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ConfigError(
            f"results_dir={path} cannot be a folder: {folder} is a file; pass a folder, e.g. "
            "results_dir=results"
        )


def set_threads(threads: int) -> int:
    """Torch intra-op threads for this run (0 = every core); returns the number set."""
    import torch

    n = threads or os.cpu_count() or 1
    torch.set_num_threads(n)
    return n


def git_commit() -> str:
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


def checkpoint_dir(cfg: RunConfig) -> Path:
    """The run's checkpoint folder: per key, experiment and store
    (:func:`scaling.training.tracking.checkpoint_folder`)."""
    return checkpoint_folder(
        cfg.results_dir, cfg.tracking.uri, cfg.tracking.experiment, run_key(cfg)
    )


def lease_path(cfg: RunConfig) -> Path:
    """The lock file of the run's key, beside its checkpoint folder."""
    return lease_file(cfg.results_dir, cfg.tracking.uri, cfg.tracking.experiment, run_key(cfg))


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


def _progress_enabled(cfg: RunConfig) -> bool:
    if cfg.progress == "auto":
        return sys.stderr.isatty()
    return cfg.progress == "true"


RUN_ID_KEY = "scaling.run_id"  # the MLflow run a checkpoint belongs to


def _resume_step(ckpt: Path) -> int:
    """Optimizer steps already done by a checkpoint (read without unpickling code)."""
    return _checkpoint_state(ckpt)[0]


def _checkpoint_state(ckpt: Path) -> tuple[int, str | None]:
    """(optimizer steps done, MLflow run id) of a checkpoint, read without unpickling code."""
    import torch

    state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
    run_id = state.get(RUN_ID_KEY)
    return int(state["global_step"]), (str(run_id) if run_id else None)


def _resume_from(prep: PreparedRun, ckpt: Path, resume: bool) -> tuple[int, str | None]:
    """(optimizer steps a readable checkpoint has done, the MLflow run it belongs to): (0, None)
    without one or for a torn one (deleted); (0, its run) for one at the final step (deleted)."""
    if not (resume and ckpt.exists()):
        return 0, None
    try:
        start_step, run_id = _checkpoint_state(ckpt)
    except Exception as err:  # noqa: BLE001 -- a checkpoint torn by a kill: start over
        print(f"{prep.name}: unreadable checkpoint {ckpt} ({err}); starting over", file=sys.stderr)
        ckpt.unlink(missing_ok=True)
        return 0, None
    if start_step >= prep.cfg.steps:
        # Saved after the last step, then killed before the final validation was recorded: no
        # step is left to resume into, and Lightning would end at once without validating.
        print(
            f"{prep.name}: checkpoint {ckpt} is at the final step {start_step:,}; the run was "
            "killed before it was recorded, starting over",
            file=sys.stderr,
        )
        ckpt.unlink(missing_ok=True)
        return 0, run_id
    print(
        f"{prep.name}: resumed from step {start_step:,} of {prep.cfg.steps:,} ({ckpt})",
        file=sys.stderr,
        flush=True,
    )
    return start_step, run_id


def _record_checkpoints():  # -> lightning Callback
    """A callback that, before each checkpoint is written, flushes the run's buffered metrics to
    MLflow (a kill after the checkpoint loses no logged point) and stores the run's id in it (a
    resume reopens that run). ``.recorder`` is set once the MLflow run exists."""
    from lightning.pytorch.callbacks import Callback as LightningCallback

    class RecordCheckpoints(LightningCallback):
        recorder: RunRecorder | None = None

        def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:  # type: ignore[no-untyped-def]
            if self.recorder is not None and self.recorder.run_id is not None:
                self.recorder.flush()
                checkpoint[RUN_ID_KEY] = self.recorder.run_id

    return RecordCheckpoints()


def make_trainer(
    cfg: RunConfig, ckpt_dir: Path, extra_callbacks: tuple[Any, ...] = ()
):  # -> lightning.Trainer
    """The Lightning Trainer of a run (no Lightning logger: metrics go to MLflow directly).

    Lightning's rejection of a ``trainer.*`` value (an unknown accelerator, no GPU, a bad device
    count) is a ConfigError line, raised before any MLflow run exists.
    """
    import lightning as L
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.callbacks import ModelCheckpoint

    callbacks = list(extra_callbacks)
    if cfg.train.checkpoint_every > 0:
        callbacks.append(
            ModelCheckpoint(
                dirpath=ckpt_dir,
                filename="last",
                save_top_k=0,
                save_last=True,
                every_n_train_steps=cfg.train.checkpoint_every,
                enable_version_counter=False,
            )
        )
    try:
        return L.Trainer(
            max_steps=cfg.steps,
            accumulate_grad_batches=cfg.accumulate,
            gradient_clip_val=cfg.train.grad_clip or None,
            precision=cfg.train.precision,  # type: ignore[arg-type]
            accelerator=cfg.trainer.accelerator,
            devices=cfg.trainer.devices,
            num_nodes=cfg.trainer.num_nodes,
            strategy=cfg.trainer.strategy,
            logger=False,
            callbacks=callbacks,
            enable_checkpointing=cfg.train.checkpoint_every > 0,
            enable_progress_bar=_progress_enabled(cfg),
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
            use_distributed_sampler=True,
            deterministic=False,
        )
    except (MisconfigurationException, ValueError, TypeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        settings = " ".join(f"trainer.{k}={v}" for k, v in asdict(cfg.trainer).items())
        raise ConfigError(f"Lightning rejects {settings}: {first}") from None


def _choose_run(
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


def _open_record(
    prep: PreparedRun,
    recorder: RunRecorder,
    lease: Lease | None,
    resume_run_id: str | None,
    branching: Branching | None = None,
) -> str:
    """Create the MLflow run (or reopen ``resume_run_id``, the one this attempt continues); log
    its params, config.yaml and the data-repeat warning. Returns the run id."""
    import socket

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


def train(prep: PreparedRun, resume: bool = True, branching: Branching | None = None) -> RunResult:
    """Train one prepared run, tracked in MLflow; one run per key.

    The process first takes the key's lease (:class:`~scaling.training.tracking.Lease`, waiting
    while another process trains the key), then: a key FINISHED meanwhile is SKIPPED; a run a
    dead process left RUNNING, or the run a checkpoint belongs to, is continued (same MLflow run,
    from the checkpoint if there is one, else from step 0); otherwise a new run is created.

    Every exit once the MLflow run exists records it: FINISHED (any old failure reason
    removed), KILLED for Ctrl-C and SIGTERM (exit as the signalled process would, 130 / 143),
    FAILED with the reason for any exception (re-raised; the caller decides whether to go on),
    in set-up, training or the recording of the result alike.

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
    recording = _record_checkpoints()
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
    from scaling.training.module import LMModule

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
    start_step, ckpt_run = _resume_from(prep, ckpt, resume)
    if not start_step and branching is not None and branching.start is not None:
        ckpt, start_step = branching.start, _resume_step(branching.start)  # the stable run's
    result.resumed_from_step = start_step
    recorder = None
    if trainer.is_global_zero:
        recorder = RunRecorder(cfg.tracking.uri, cfg.tracking.experiment)
    module = None
    try:
        if recorder is not None:
            unnamed = bool(start_step and not ckpt_run and ckpt.parent == ckpt_dir)
            resume_id = _choose_run(prep, lease, ckpt_run, unnamed)
            result.run_id = _open_record(prep, recorder, lease, resume_id, branching)
            recording.recorder = recorder
        module = LMModule(
            cfg.model,
            cfg.train,
            total_steps=cfg.steps,
            tokens_per_step=cfg.tokens_per_step,
            val_windows=val_windows(prep.corpus, cfg.model.seq_len),
            eval_batch_size=cfg.micro_batch_size,
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
            raise SystemExit(INTERRUPT_EXIT[signal_name]) from err
        raise
    finally:
        result.wall_s = time.perf_counter() - started
    if trainer.is_global_zero:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    if getattr(trainer, "received_sigterm", False):
        # SIGTERM after Lightning last looked for it (the end of the last epoch), before it gave
        # the handler back: the run is complete and recorded; stop now, as the signal asked
        raise SystemExit(INTERRUPT_EXIT["SIGTERM"])
    return result


def check_world_size(cfg: RunConfig, trainer_world_size: int) -> None:
    """The Trainer's count of training processes must be the config's: the global batch is split
    by it, tokens are counted by it, and it is part of the run key. ``trainer.devices=auto`` or
    ``-1`` on a multi-GPU node (or a SLURM allocation that disagrees) is refused before anything
    is recorded, with the count to pass instead."""
    if trainer_world_size == cfg.trainer.world_size:
        return
    nodes = max(1, cfg.trainer.num_nodes)
    raise ConfigError(
        f"trainer.devices={cfg.trainer.devices!r} with trainer.num_nodes={nodes} gives "
        f"{trainer_world_size} training processes here, not {cfg.trainer.world_size}: pass "
        f"trainer.devices={max(1, trainer_world_size // nodes)} so that the batch split, the "
        "token count and the run key agree with what trains"
    )


INTERRUPT_EXIT = {"SIGTERM": 143, "SIGINT": 130}


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


def quiet_libraries() -> None:
    """Keep Lightning's banner lines out of a one-line-per-run log."""
    for name in (
        "lightning.pytorch.utilities.rank_zero",
        "lightning.pytorch.accelerators.cuda",
        "lightning.fabric.utilities.seed",
        "lightning.fabric.utilities.distributed",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def report(result: RunResult) -> str:
    if result.status == "FINISHED":
        tps = f", {result.tokens_per_s:,.0f} tokens/s" if result.tokens_per_s else ""
        return (
            f"{result.run_name}: val/loss {result.val_loss:.4f} nats/token after "
            f"{result.tokens:,} tokens ({result.wall_s:.1f} s{tps}) [run {result.run_id}]"
        )
    return f"{result.run_name}: {result.status} {result.reason or ''}".strip()


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


@contextmanager
def hydra_config_errors() -> Iterator[None]:
    """Hydra's own config errors as one ``error:`` line and exit status 2, like any bad input.

    An unknown key (``model.foo=1``), a missing option (``data=nope``) or an override Hydra cannot
    parse is rejected while Hydra composes the config, before the task runs; Hydra would print it
    over several lines and exit 1. With ``HYDRA_FULL_ERROR=1`` it raises instead, and the error is
    caught here; any other exception propagates with its traceback (exit status 1). A user who
    set ``HYDRA_FULL_ERROR=1`` keeps Hydra's full traceback for everything.
    """
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    before = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield
    except (HydraException, OmegaConfBaseException) as err:
        if before == "1":
            raise
        print(f"error: {hydra_error_line(err)}", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR) from None
    finally:
        if before is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = before


def hydra_error_line(err: BaseException) -> str:
    """One line for a Hydra composition error: an unknown key names the known ones (as
    :func:`scaling.config.structured` does), other errors are joined onto one line."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    cause = err.__cause__
    key = str(getattr(cause, "full_key", "") or "")
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and key:
        group = key.split(".")[0]
        if group in GROUPS and "." in key:
            owner, _ = fields_at(GROUPS[group], key.split(".", 1)[1])
            return unknown_key_message(key, [f.name for f in fields(owner)])
        if "." not in key:
            return unknown_key_message(key, [*TOP_LEVEL_KEYS, *GROUPS])
    text = str(err).split("Config search path:")[0]
    text = text.replace(":\n\t", ": ").replace("\n\t", ", ")
    lines = [line.strip().rstrip(".") for line in text.splitlines() if line.strip()]
    if cause is not None and str(cause).strip():
        lines.append(str(cause).strip().splitlines()[0].rstrip("."))
    return "; ".join(lines) or type(err).__name__


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
