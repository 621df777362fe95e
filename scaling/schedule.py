"""The learning-rate schedule: one definition, read by training and by the curve law.

:func:`lr_factor` is the multiplier of the peak LR (``train.lr``) at each optimizer step;
``training.module`` drives torch's ``LambdaLR`` with it, and the loss-curve law
(``analysis.curves``) rebuilds every run's schedule from its logged config with
:func:`lr_factors`. Pure Python and numpy: no torch.

Schedules (``train.schedule``):

- ``cosine``: linear warmup, then cosine decay to ``min_lr_ratio`` at the end of *this* run's
  horizon (Hoffmann et al. 2022, Sec. 3 / Fig. A1: a schedule longer than the run overestimates
  its loss).
- ``wsd``: warmup, constant, then a linear cooldown to ``min_lr_ratio`` over the final
  ``cooldown`` fraction of the steps (Hu et al. 2024, "MiniCPM"; Hägele et al. 2024).
- ``constant``: warmup, then constant: the shared stable phase that WSD cooldown branches
  (``train.horizons``) start from.

Warmup lasts ``train.warmup_steps`` optimizer steps when that is set, else the ``train.warmup``
fraction of the run's steps. Branches of one stable run share the warmup in steps, so that every
branch's schedule is the stable run's up to its cooldown start.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np


class ScheduleConfig(Protocol):
    """The ``train.*`` keys a schedule reads (:class:`scaling.schema.TrainConfig` has them)."""

    schedule: str
    warmup: float
    warmup_steps: int | None
    cooldown: float
    min_lr_ratio: float


def warmup_length(total_steps: int, cfg: ScheduleConfig) -> int:
    """Optimizer steps of linear warmup: ``warmup_steps`` if set, else the ``warmup`` fraction
    of ``total_steps`` (at least one step when the fraction is positive)."""
    if cfg.warmup_steps is not None:
        return int(cfg.warmup_steps)
    return max(1, round(cfg.warmup * total_steps)) if cfg.warmup > 0 else 0


def cooldown_start(total_steps: int, cooldown: float) -> int:
    """First step of a ``wsd`` run's cooldown: the final ``cooldown`` fraction of the steps (at
    least one step) decays."""
    return total_steps - max(1, round(cooldown * total_steps))


def lr_factor(step: int, total_steps: int, cfg: ScheduleConfig) -> float:
    """Multiplier of the peak LR at optimizer ``step`` (0-based) of a ``total_steps`` run."""
    warmup = warmup_length(total_steps, cfg)
    floor = cfg.min_lr_ratio
    if step < warmup:
        return (step + 1) / warmup
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "cosine":
        span = max(1, total_steps - warmup)
        progress = min(1.0, (step - warmup) / span)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    start = cooldown_start(total_steps, cfg.cooldown)
    if step < start:
        return 1.0
    progress = min(1.0, (step - start + 1) / max(1, total_steps - start))
    return 1.0 - (1.0 - floor) * progress


def lr_factors(total_steps: int, cfg: ScheduleConfig) -> np.ndarray:
    """:func:`lr_factor` at every step ``0 .. total_steps - 1``: the LR each update used."""
    return np.array([lr_factor(s, total_steps, cfg) for s in range(total_steps)], dtype=float)
