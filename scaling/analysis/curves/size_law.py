"""The law fitted to one model size and its predictions of a run's loss.

:class:`CurveLaw` holds one size's curve form and parameters, their bootstrap replicates and its
run-to-run noise; :meth:`CurveLaw.predict_final` gives the loss of a run of any LR (a
:class:`~.law.Schedule`, an LR trace or a function of the update) and horizon with a confidence
interval (the bootstrap replicates of the law at that LR) and a prediction interval for one new
run (:func:`scaling.analysis.fitting.noise.prediction_interval`: that CI plus run-to-run noise).
:func:`resolve_schedule` turns a partial schedule into a full one over the size's typical
schedule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from scaling.analysis.curves.forms import CurveForm, form_of
from scaling.analysis.curves.law import LRSource, Schedule, eta_from
from scaling.analysis.curves.mpl import MAX_BLOCKS
from scaling.analysis.fitting.bootstrap import percentile_interval
from scaling.analysis.fitting.noise import Noise, prediction_interval
from scaling.errors import UserError

Array = np.ndarray


@dataclass(frozen=True)
class CurvePrediction:
    """The law's loss after ``steps`` steps of an LR (``schedule``, None for a trace or a
    function) run for ``total_steps``."""

    params: float
    steps: int
    total_steps: int
    tokens: int | None
    schedule: Schedule | None
    loss: float
    loss_ci: tuple[float, float] | None
    loss_pi: tuple[float, float] | None
    level: float

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["schedule"] = self.schedule.to_dict() if self.schedule is not None else None
        return doc


@dataclass(frozen=True)
class CurveLaw:
    """The law of a curve form (:mod:`.forms`) fitted to the runs of one model size."""

    params: float
    form: str  # the curve form's name (mpl, tissue)
    theta: tuple[float, ...]  # its parameters, in the form's order
    lam: float | None  # tissue: the annealing momentum's decay
    warmup_as_peak: bool
    level: float
    ci: dict[str, tuple[float, float] | None]
    noise: Noise | None
    n_runs: int
    n_points: int
    rms_log: float  # root mean square of the fit's log residuals
    bootstrap: dict[str, Any]
    tokens_per_step: int | None
    schedule: Schedule | None  # the size's typical schedule: the base of predictions
    max_steps: int  # the longest horizon fitted
    run_ids: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    samples: Array | None = field(default=None, compare=False, repr=False)  # (B, params)
    max_blocks: int = MAX_BLOCKS

    @property
    def curve_form(self) -> CurveForm:
        return form_of(self.form)

    def values(self) -> dict[str, float]:
        return dict(zip(self.curve_form.params, self.theta, strict=True))

    def points(self, lr: LRSource, total_steps: int, steps: Sequence[int] | Array) -> Any:
        """The form's points at ``steps`` of a ``total_steps`` run of the LR ``lr``."""
        eta = eta_from(lr, total_steps, self.warmup_as_peak)
        steps = np.asarray(steps, dtype=int)
        return self.curve_form.points(eta, steps, self.lam or 0.0, self.max_blocks)

    def curve(
        self, lr: LRSource, total_steps: int, steps: Sequence[int] | Array | None = None
    ) -> Array:
        """The law's loss at ``steps`` (default: every step ``1 .. total_steps``) of a run of
        the LR ``lr``: a :class:`Schedule`, an LR trace (one LR per update) or a function of
        the 0-based update."""
        idx = np.arange(1, total_steps + 1) if steps is None else np.asarray(steps, dtype=int)
        return self.curve_form.loss(self.theta, self.points(lr, total_steps, idx))

    def predict_final(
        self, lr: LRSource, total_steps: int, *, at_step: int | None = None, seed: int = 0
    ) -> CurvePrediction:
        """The loss at the end of a ``total_steps`` run of the LR ``lr`` (or at ``at_step``),
        with the bootstrap CI of the law and the prediction interval of one new run."""
        total_steps = int(total_steps)
        step = total_steps if at_step is None else int(at_step)
        if not 1 <= step <= total_steps:
            raise UserError(f"step {step} is outside the run's 1..{total_steps} steps")
        form = self.curve_form
        pts = self.points(lr, total_steps, [step])
        loss = float(form.loss(self.theta, pts)[0])
        ci = pi = None
        draws = None
        if self.samples is not None and len(self.samples):
            ok = np.all(np.isfinite(self.samples), axis=1)
            with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
                draws = np.array([form.loss(t, pts)[0] for t in self.samples[ok]])
            ci = percentile_interval(draws, self.level, min_values=10)
        if self.noise is not None and loss > 0:
            pi = prediction_interval(loss, self.noise, self.level, draws, seed)
        return CurvePrediction(
            params=self.params,
            steps=step,
            total_steps=total_steps,
            tokens=None if self.tokens_per_step is None else step * self.tokens_per_step,
            schedule=lr if isinstance(lr, Schedule) else None,
            loss=loss,
            loss_ci=ci,
            loss_pi=pi,
            level=self.level,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "form": self.form,
            **self.values(),
            "lam": self.lam,
            "ci": {k: list(v) if v else None for k, v in self.ci.items()},
            "noise": self.noise.to_dict() if self.noise else None,
            "n_runs": self.n_runs,
            "n_points": self.n_points,
            "rms_log": self.rms_log,
            "bootstrap": self.bootstrap,
            "tokens_per_step": self.tokens_per_step,
            "schedule": self.schedule.to_dict() if self.schedule is not None else None,
            "max_steps": self.max_steps,
            "runs": list(self.run_ids),
            "warnings": list(self.warnings),
        }


def predict_final(
    size_fit: CurveLaw, schedule: LRSource, total_steps: int, *, seed: int = 0
) -> CurvePrediction:
    """The final loss of a ``total_steps`` run of ``schedule`` under one size's law, with its
    intervals (:meth:`CurveLaw.predict_final`)."""
    return size_fit.predict_final(schedule, total_steps, seed=seed)


def resolve_schedule(law: CurveLaw, schedule: Schedule | Mapping[str, Any] | None) -> Schedule:
    """``schedule`` as a :class:`Schedule`: given, or the size's typical one with the given
    fields replaced (a ``wsd`` prediction from cosine runs keeps their cooldown default)."""
    if isinstance(schedule, Schedule):
        return schedule
    changes = {k: v for k, v in (schedule or {}).items() if v is not None}
    unknown = set(changes) - {f.name for f in fields(Schedule)}
    if unknown:
        raise UserError(f"unknown schedule key(s) {', '.join(sorted(unknown))}")
    if law.schedule is None:
        if "schedule" not in changes or "lr" not in changes:
            raise UserError(
                "the runs of this size are LR traces, with no schedule to extend: give the "
                "schedule and its peak lr (Python: fit.predict(params, Schedule(...) or an LR "
                "trace, total_steps))"
            )
        return Schedule(**changes)
    return replace(law.schedule, **changes)
