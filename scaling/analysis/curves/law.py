"""The loss-curve law with learning-rate annealing and the schedule areas it reads.

Tissue et al. 2024, "Scaling Law with Learning Rate Annealing" (arXiv:2408.11029), eq. 1::

    L(s) = L0 + A * S1(s)^(-alpha) - C * S2(s)

the validation loss after ``s`` optimizer steps of a run whose learning rate at step ``i`` was
``eta_i``.  Definitions, as used here:

- ``eta_i = train.lr * scaling.schedule.lr_factor(i, total_steps, cfg)``: the *actual* LR (as in
  the paper), so that runs of one size with different peak LRs share the law.  During warmup
  ``eta_i`` is taken as the peak ``train.lr`` (the paper's reference code and its Sec. 3.4:
  warmup is short and counting its rising LR would give the annealing area a spurious negative
  start); :attr:`CurveOptions.warmup_as_peak` turns this off.
- forward area ``S1(s) = sum_{i<s} eta_i``: the updates applied before the evaluation at ``s``
  (the paper's code sums ``i <= s``; one step's difference, immaterial).
- annealing momentum ``m_0 = 0``, ``m_i = lam * m_{i-1} + (eta_{i-1} - eta_i)``, and annealing
  area ``S2(s) = sum_{i<s} m_i``.  A drop of the LR by ``d`` at step ``j`` adds
  ``d (1 - lam^(s-j)) / (1 - lam)`` to ``S2(s)``: its benefit builds up over about
  ``1 / (1 - lam)`` steps.  ``lam = 0.999`` (the paper's value, :data:`LAMBDA`) is the default:
  for runs of a few hundred to a few thousand steps it acts as ``lam -> 1``, where ``S2`` is
  the area between the peak LR and the schedule, summed; ``lam="fit"`` picks it from
  :data:`LAMBDA_GRID` by the least total residual over all sizes (the bootstrap then holds it
  fixed).

:class:`CurveOptions` are the options of the fit (:mod:`.size_fit`, :mod:`.curve`).  No torch:
:mod:`scaling.schedule` is numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from typing import Any

import numpy as np

from scaling.errors import UserError
from scaling.schedule import lr_factors, warmup_length
from scaling.schema import SCHEDULES, TrainConfig

Array = np.ndarray

LAW_NAME = "curve"
EQUATION = "L(s) = L0 + A*S1(s)^(-alpha) - C*S2(s)"
CITATION = "Tissue et al. 2024, Scaling Law with Learning Rate Annealing (arXiv:2408.11029), eq. 1"
PARAMS = ("L0", "A", "alpha", "C")
LAMBDA = 0.999  # the paper's decay factor of the annealing momentum
LAMBDA_GRID = (0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999, 0.9995)  # lam="fit" picks one
SKIP = 0.1  # points before this fraction of the size's longest horizon are not fitted
RESAMPLE_KINDS = ("blocks", "runs")
FORM_NAMES = (
    "mpl",
    "tissue",
)  # the curve forms (scaling.analysis.curves.forms); the first: default

# TrainConfig's defaults: a Schedule's, and a curves table's where a schedule column is missing
TRAIN_DEFAULTS = {f.name: f.default for f in fields(TrainConfig)}


@dataclass(frozen=True)
class Schedule:
    """A run's LR schedule: the ``train.*`` keys :mod:`scaling.schedule` reads and the peak LR.

    Satisfies :class:`scaling.schedule.ScheduleConfig`; defaults are
    :class:`scaling.schema.TrainConfig`'s.
    """

    schedule: str = TRAIN_DEFAULTS["schedule"]
    warmup: float = TRAIN_DEFAULTS["warmup"]
    warmup_steps: int | None = TRAIN_DEFAULTS["warmup_steps"]
    cooldown: float = TRAIN_DEFAULTS["cooldown"]
    min_lr_ratio: float = TRAIN_DEFAULTS["min_lr_ratio"]
    lr: float = TRAIN_DEFAULTS["lr"]

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise UserError(f"schedule {self.schedule!r} is not one of {', '.join(SCHEDULES)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UserError(f"the peak learning rate must be positive, got {self.lr}")
        for key in ("warmup", "cooldown", "min_lr_ratio"):
            value = getattr(self, key)
            if not 0.0 <= value <= 1.0:
                raise UserError(f"schedule key {key}={value} must be in [0, 1]")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise UserError(f"warmup_steps={self.warmup_steps} must be >= 0")

    def label(self) -> str:
        """``cosine``, ``wsd cooldown 0.2``, ``constant``, with the warmup if given in steps."""
        text = self.schedule + (f" cooldown {self.cooldown:g}" if self.schedule == "wsd" else "")
        return text + (f" warmup {self.warmup_steps}" if self.warmup_steps is not None else "")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def schedule_areas(
    factors: Sequence[float] | Array, lr: float = 1.0, lam: float = LAMBDA
) -> tuple[Array, Array]:
    """Forward area ``S1`` and annealing area ``S2`` after ``s = 0 .. T`` steps of a schedule.

    ``factors[i]`` multiplies ``lr`` at optimizer step ``i`` (``T = len(factors)`` steps), so
    ``eta_i = lr * factors[i]``.  Returns two arrays of length ``T + 1``: ``S1[s] = sum_{i<s}
    eta_i``; ``S2[s] = sum_{i<s} m_i`` with ``m_0 = 0`` and ``m_i = lam * m_{i-1} + (eta_{i-1}
    - eta_i)``.
    """
    eta = lr * np.asarray(factors, dtype=float)
    T = eta.size
    S1 = np.zeros(T + 1)
    np.cumsum(eta, out=S1[1:])
    drops = np.zeros(T)
    drops[1:] = eta[:-1] - eta[1:]
    m = np.empty(T)
    acc = 0.0
    for i, d in enumerate(drops.tolist()):
        acc = lam * acc + d
        m[i] = acc
    S2 = np.zeros(T + 1)
    np.cumsum(m, out=S2[1:])
    return S1, S2


@lru_cache(maxsize=256)
def _cached_eta(schedule: Schedule, total_steps: int, warmup_as_peak: bool) -> Array:
    factors = lr_factors(total_steps, schedule)
    if warmup_as_peak:
        factors[: min(warmup_length(total_steps, schedule), total_steps)] = 1.0
    eta = schedule.lr * factors
    eta.setflags(write=False)
    return eta


def run_eta(schedule: Schedule, total_steps: int, warmup_as_peak: bool = True) -> Array:
    """The LR of each update ``0 .. total_steps - 1`` of a run of ``schedule``:
    ``scaling.schedule.lr_factors`` times the peak LR, the warmup at the peak unless
    ``warmup_as_peak`` is False (read-only)."""
    if total_steps < 1:
        raise UserError(f"a run needs at least one optimizer step, got {total_steps}")
    return _cached_eta(schedule, int(total_steps), bool(warmup_as_peak))


LRSource = Schedule | Sequence[float] | Array | Callable[[int], float]


def eta_from(source: LRSource, total_steps: int, warmup_as_peak: bool = True) -> Array:
    """The LR of each update of a ``total_steps`` run from a :class:`Schedule` (:func:`run_eta`),
    an LR trace (one LR per update, at least ``total_steps`` of them) or a function of the
    0-based update; raises :class:`UserError` for a trace too short or an LR < 0 or not finite."""
    if isinstance(source, Schedule):
        return run_eta(source, total_steps, warmup_as_peak)
    if total_steps < 1:
        raise UserError(f"a run needs at least one optimizer step, got {total_steps}")
    if callable(source):
        eta = np.array([float(source(i)) for i in range(int(total_steps))])
    else:
        eta = np.asarray(source, dtype=float)
        if eta.ndim != 1 or eta.size < total_steps:
            raise UserError(
                f"an LR trace needs one LR per update: {total_steps} values, got {eta.size}"
            )
        eta = eta[: int(total_steps)]
    if not np.all(np.isfinite(eta)) or np.any(eta < 0):
        raise UserError("learning rates must be finite and >= 0")
    return eta


def run_areas(
    schedule: Schedule, total_steps: int, lam: float = LAMBDA, warmup_as_peak: bool = True
) -> tuple[Array, Array]:
    """``S1``, ``S2`` (length ``total_steps + 1``) of a run: :func:`run_eta`'s LRs."""
    return _cached_areas(schedule, int(total_steps), float(lam), bool(warmup_as_peak))


@lru_cache(maxsize=256)
def _cached_areas(
    schedule: Schedule, total_steps: int, lam: float, warmup_as_peak: bool
) -> tuple[Array, Array]:
    S1, S2 = schedule_areas(run_eta(schedule, total_steps, warmup_as_peak), 1.0, lam)
    S1.setflags(write=False)
    S2.setflags(write=False)
    return S1, S2


def law_loss(theta: Sequence[float] | Array, S1: Array | float, S2: Array | float) -> Array:
    """``L0 + A * S1^(-alpha) - C * S2`` for ``theta = (L0, A, alpha, C)``."""
    L0, A, alpha, C = (float(v) for v in theta)
    with np.errstate(divide="ignore", over="ignore"):
        return L0 + A * np.asarray(S1, dtype=float) ** (-alpha) - C * np.asarray(S2, dtype=float)


@dataclass(frozen=True)
class CurveOptions:
    """How :func:`~scaling.analysis.curves.curve.fit_curves` fits (defaults: those of
    :mod:`.size_fit`'s docstring)."""

    form: str = "mpl"  # the curve form: "mpl" (Luo et al. 2025) or "tissue" (Tissue et al. 2024)
    lam: float | str = LAMBDA  # tissue: or "fit", the best of LAMBDA_GRID over all sizes
    warmup_as_peak: bool = True
    skip: float = SKIP
    bootstrap: int = 200
    resample: str = "blocks"
    block: int | None = None
    level: float = 0.9
    seed: int = 0
    max_blocks: int = 256  # mpl: blocks of LR drops per run (scaling.analysis.curves.mpl)

    def check(self) -> None:
        """Raise :class:`UserError` with one line for an option out of range."""
        if self.form not in FORM_NAMES:
            raise UserError(f"curve form {self.form!r} is not one of {', '.join(FORM_NAMES)}")
        if self.form != "tissue" and self.lam != LAMBDA:
            raise UserError(
                "lambda (the annealing momentum's decay) applies to the tissue form only "
                "(--curve-form tissue)"
            )
        if self.max_blocks < 1:
            raise UserError(f"max_blocks must be >= 1, got {self.max_blocks}")
        if isinstance(self.lam, str):
            if self.lam != "fit":
                raise UserError(f"lambda must be a number in (0, 1) or 'fit', got {self.lam!r}")
        elif not 0.0 < float(self.lam) < 1.0:
            raise UserError(f"lambda must be in (0, 1) (the paper: 0.999), got {self.lam:g}")
        if not 0.0 <= self.skip < 1.0:
            raise UserError(f"skip must be a fraction in [0, 1), got {self.skip:g}")
        if self.bootstrap < 0:
            raise UserError(f"bootstrap must be >= 0, got {self.bootstrap}")
        if self.resample not in RESAMPLE_KINDS:
            raise UserError(f"resample {self.resample!r} is not one of {', '.join(RESAMPLE_KINDS)}")
        if self.block is not None and self.block < 1:
            raise UserError(f"block must be >= 1 point, got {self.block}")
        if not 0.0 < self.level < 1.0:
            raise UserError(f"level must be in (0, 1), got {self.level:g}")
