"""Many horizons from one run: WSD cooldown branches (``train.horizons``).

    python -m scaling.train train.schedule=wsd 'train.horizons=[3e5,1e6,3e6]'

A warmup-stable-decay run is constant after warmup until its cooldown starts, so runs of one
size that differ only in horizon share everything before their cooldowns (Hägele et al. 2024,
"Scaling laws and compute-optimal training beyond fixed training durations"). A group trains:

1. **the stable run** (:meth:`RunConfig.stable <scaling.run_config.RunConfig.stable>`): warmup, then
   the peak LR up to the last horizon's cooldown start, keeping a checkpoint at every horizon's
   cooldown start (:func:`keep_checkpoints_at`, in :func:`points_folder`);
2. **one branch per horizon** (:meth:`RunConfig.branches <scaling.run_config.RunConfig.branches>`):
   exactly the plain ``wsd`` run of that horizon with the warmup fixed in steps -- its key is that
   run's key -- started from the stable checkpoint at its cooldown start instead of from step 0.
   It restores weights, optimizer moments, RNG states and data position, so it takes the same
   steps as the plain run would, bit for bit; only the cooldown is trained.

Each member is an ordinary run of :func:`scaling.training.run.train` (own MLflow run, key, lease,
checkpoints, skip and resume): a rerun after a kill skips the FINISHED members and resumes or
trains the missing ones. Branches are MLflow child runs of the stable run
(``mlflow.parentRunId``) and carry ``branch.*`` params: ``role`` (``stable``/``branch``),
``group`` (the group's key), ``start_step`` (0: no stable checkpoint was there, trained from
scratch), ``stable_flops`` (6N x the stable run's tokens). ``scaling collect`` leaves the stable
run out of a run table (its LR never decays: no result of a schedule) and keeps it in curves.
A branch whose stable checkpoint is gone (the stable run FINISHED before this horizon was asked
for) trains from step 0, which gives the same result at the full cost.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from scaling.counting import compute_from, count_params
from scaling.files import atomic_write
from scaling.identity import run_key
from scaling.run_config import RunConfig
from scaling.training.data import train_epochs
from scaling.training.leases import checkpoint_folder
from scaling.training.prepare import PreparedRun

ROLE = "branch.role"
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own: the UI nests the branches under the stable run


@dataclass(frozen=True)
class Branching:
    """A run's part in a group (what :func:`scaling.training.run.train` adds to a plain run):
    ``params``/``tags`` added to its MLflow record; ``start``, a branch's first checkpoint (the
    stable run's at its cooldown start), used when the run has none of its own; ``points``, the
    steps at which the stable run keeps a checkpoint in ``points_dir`` for the branches."""

    params: dict[str, Any]
    tags: dict[str, str]
    start: Path | None = None
    points: tuple[int, ...] = ()
    points_dir: Path | None = None


def points_folder(stable: RunConfig) -> Path:
    """Where the stable run keeps its checkpoints at the branches' cooldown starts: beside its
    own checkpoint folder (removed when the stable run finishes), removed once every branch of
    the group is FINISHED."""
    folder = checkpoint_folder(
        stable.results_dir, stable.tracking.uri, stable.tracking.experiment, run_key(stable)
    )
    return folder.with_name(folder.name + ".branches")


def point_path(folder: Path, step: int) -> Path:
    return folder / f"step={step}.ckpt"


def keep_checkpoints_at(steps: tuple[int, ...], folder: Path):  # -> lightning Callback
    """A Lightning checkpoint callback that writes a full checkpoint (what a resume reads) after
    each optimizer step in ``steps``, atomically (:func:`scaling.files.atomic_write`).

    Every rank calls ``trainer.save_checkpoint`` (it ends in a barrier); under DDP only global
    rank zero writes the file, so only rank zero moves it into place."""
    from lightning.pytorch.callbacks import Checkpoint

    wanted = frozenset(steps)

    class KeepAt(Checkpoint):  # a Checkpoint: Lightning runs it after the module's step hooks
        def __init__(self) -> None:
            self.saved: set[int] = set()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
            step = trainer.global_step
            if step not in wanted or step in self.saved:
                return
            self.saved.add(step)
            path = point_path(folder, step)
            if path.exists():  # written by an earlier attempt of the stable run
                return
            if trainer.is_global_zero:
                atomic_write(path, lambda tmp: trainer.save_checkpoint(tmp, weights_only=False))
            else:  # writes nothing here, but joins rank zero's save
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                trainer.save_checkpoint(tmp, weights_only=False)

    return KeepAt()


def member(prep: PreparedRun, cfg: RunConfig) -> PreparedRun:
    """A member of ``prep``'s group (a :class:`~scaling.training.prepare.PreparedRun`) as a
    prepared run of its own: the same corpus, no new checks."""
    epochs = train_epochs(prep.corpus, cfg.tokens, cfg.data.allow_repeat)
    return replace(prep, cfg=cfg, epochs=epochs)


# training.run.train: (prep, resume, branching) -> its RunResult
TrainOne = Callable[[PreparedRun, bool, Branching], Any]


def train_group(
    prep: PreparedRun, resume: bool, train: TrainOne, report: Callable[[Any], str]
) -> Any:
    """Train a ``train.horizons`` group: the stable run, then every branch, shortest first.

    Returns the group's result: FINISHED (SKIPPED when every member already was), its
    ``val_loss`` and ``tokens`` the longest branch's. A member's failure or a signal stops the
    group there, as it stops a run (:func:`~scaling.training.run.train` raises); the rerun
    skips what FINISHED and resumes the rest.
    """
    cfg = prep.cfg
    group = prep.key
    stable = member(prep, cfg.stable())
    branches = [member(prep, b) for b in cfg.branches()]
    starts = cfg.branch_starts()
    folder = points_folder(stable.cfg)
    n = count_params(cfg.model).total
    stable_flops = compute_from(n, stable.cfg.tokens)
    print(
        f"{prep.name}: {len(branches)} WSD horizons from one stable run of "
        f"{stable.cfg.steps:,} steps (cooldowns start at steps {', '.join(map(str, starts))}); "
        f"{cfg.spent_tokens():,} tokens trained for {sum(b.cfg.tokens for b in branches):,} "
        "tokens of points",
        file=sys.stderr,
        flush=True,
    )
    shared = {ROLE: "stable", "branch.group": group}
    results = [
        train(
            stable,
            resume,
            Branching(
                params={**shared, "branch.points": ",".join(map(str, starts))},
                tags={},
                points=tuple(starts),
                points_dir=folder,
            ),
        )
    ]
    print(report(results[0]), file=sys.stderr, flush=True)
    for branch, start in zip(branches, starts):
        path = point_path(folder, start)
        if not path.exists():
            print(
                f"{branch.name}: no stable checkpoint at step {start} ({path}); this branch "
                "trains from step 0 (the same run, at its full cost)",
                file=sys.stderr,
                flush=True,
            )
        params: dict[str, Any] = {
            **shared,
            ROLE: "branch",
            # where its first attempt starts (a resumed attempt's params are already logged)
            "branch.start_step": start if path.exists() else 0,
            "branch.stable_flops": stable_flops,
        }
        result = train(
            branch,
            resume,
            Branching(
                params=params,
                tags={PARENT_TAG: results[0].run_id} if results[0].run_id else {},
                start=path if path.exists() else None,
            ),
        )
        results.append(result)
        if result.status != "SKIPPED":
            print(report(result), file=sys.stderr, flush=True)
    shutil.rmtree(folder, ignore_errors=True)  # every branch is FINISHED: nothing starts there
    status = "SKIPPED" if all(r.status == "SKIPPED" for r in results) else "FINISHED"
    return replace(
        results[-1],
        run_key=group,
        run_name=prep.name,
        status=status,
        reason="every horizon already FINISHED in MLflow" if status == "SKIPPED" else None,
        wall_s=sum(r.wall_s for r in results),
        params=n,
    )


def member_keys(cfg: RunConfig) -> tuple[str, ...]:
    """The keys a group's runs are recorded under: the branches' (its points), then the stable
    run's; a plain run's own key."""
    if cfg.train.horizons is None:
        return (run_key(cfg),)
    return (*(run_key(b) for b in cfg.branches()), run_key(cfg.stable()))
