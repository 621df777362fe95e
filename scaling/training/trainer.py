"""The Lightning side of a run: the Trainer, the checkpoints it writes, and where a resume
starts.

No Lightning logger: metrics go to MLflow directly (:mod:`scaling.training.tracking`). Every
checkpoint carries the id of the MLflow run it belongs to (:data:`RUN_ID_KEY`), so that a
resume reopens that run; it is read back without unpickling code.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

from scaling.errors import ConfigError
from scaling.run_config import RunConfig
from scaling.training.prepare import PreparedRun
from scaling.training.tracking import RunRecorder

RUN_ID_KEY = "scaling.run_id"  # the MLflow run a checkpoint belongs to


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


def set_threads(threads: int) -> int:
    """Torch intra-op threads for this run (0 = every core); returns the number set."""
    import torch

    n = threads or os.cpu_count() or 1
    torch.set_num_threads(n)
    return n


def _progress_enabled(cfg: RunConfig) -> bool:
    if cfg.progress == "auto":
        return sys.stderr.isatty()
    return cfg.progress == "true"


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

    class PacedCheckpoint(ModelCheckpoint):
        """``last.ckpt`` every ``checkpoint_every`` steps once ``checkpoint_min_s`` seconds have
        passed since the run's start or its last checkpoint (rank 0's clock decides for every
        rank: saving is collective)."""

        def __init__(self, min_s: float, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.min_s, self.since = min_s, time.monotonic()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
            if trainer.global_step % self._every_n_train_steps:
                return
            if self.min_s > 0:
                due = time.monotonic() - self.since >= self.min_s
                if not trainer.strategy.broadcast(due):
                    return
            saved = self._last_global_step_saved
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
            if self._last_global_step_saved != saved:
                self.since = time.monotonic()

        def on_train_epoch_end(self, trainer, pl_module) -> None:  # type: ignore[no-untyped-def]
            """No ``last.ckpt`` at the end of the run's one epoch: nothing would resume it."""

        def on_train_end(self, trainer, pl_module) -> None:  # type: ignore[no-untyped-def]
            """Nor at the end of training."""

    callbacks = list(extra_callbacks)
    if cfg.train.checkpoint_every > 0:
        callbacks.append(
            PacedCheckpoint(
                cfg.train.checkpoint_min_s,
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


# ---- checkpoints and resume -------------------------------------------------------------------


def record_checkpoints():  # -> lightning Callback
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


def resume_step(ckpt: Path) -> int:
    """Optimizer steps already done by a checkpoint (read without unpickling code)."""
    return checkpoint_state(ckpt)[0]


def checkpoint_state(ckpt: Path) -> tuple[int, str | None]:
    """(optimizer steps done, MLflow run id) of a checkpoint, read without unpickling code."""
    import torch

    state = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
    run_id = state.get(RUN_ID_KEY)
    return int(state["global_step"]), (str(run_id) if run_id else None)


def resume_from(prep: PreparedRun, ckpt: Path, resume: bool) -> tuple[int, str | None]:
    """(optimizer steps a readable checkpoint has done, the MLflow run it belongs to): (0, None)
    without one or for a torn one (deleted); (0, its run) for one at the final step (deleted)."""
    if not (resume and ckpt.exists()):
        return 0, None
    try:
        start_step, run_id = checkpoint_state(ckpt)
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
