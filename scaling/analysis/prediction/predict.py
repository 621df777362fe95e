"""Predictions from a fit: the compute-optimal allocation of a budget, the loss of a given model
size, the least compute that reaches a loss.

Approach-3 fits predict through their law (:mod:`..fitting.allocation` for the optimum);
approaches 1 and 2 through their power laws ``N_opt = k_N C^a`` and loss frontier ``L_opt(C)``.
Intervals come from pushing each bootstrap replicate of the parameters through the same
computation and taking percentiles.  Two intervals of the loss are given, named for what they
cover: ``loss_ci``, a confidence interval of the *expected* loss (the fitted mean curve), and
``loss_pi``, a prediction interval for the loss of *one new run*, which adds the run-to-run noise
recorded in the fit (:mod:`scaling.analysis.fitting.noise`). Approach 2 beyond its largest
budget also draws the loss frontier's form error onto each resample of the frontier
(:mod:`scaling.analysis.fitting.misfit`), so both intervals hold the doubt about the form.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import wraps
from typing import Any, TypeVar

import numpy as np
from scipy.optimize import brentq

from scaling.analysis.fitting.allocation import optimal_allocation
from scaling.analysis.fitting.bootstrap import percentile_interval
from scaling.analysis.fitting.laws import get_law
from scaling.analysis.fitting.misfit import model_error_sd, model_errors
from scaling.analysis.fitting.noise import Noise, prediction_interval
from scaling.analysis.fitting.results import FitResult
from scaling.analysis.prediction.health import assess
from scaling.counting import compute_from
from scaling.errors import UserError
from scaling.numbers import finite_or_none

Array = np.ndarray
T = TypeVar("T")

EXTRAPOLATION_WARN = 10.0  # warn when a budget exceeds the largest fitted compute by this factor
_JSON_KEYS = (
    "flops",
    "params",
    "tokens",
    "loss",
    "loss_ci",
    "loss_pi",
    "params_ci",
    "tokens_ci",
    "flops_ci",
    "unreachable_share",
    "noise",
)


@dataclass(frozen=True)
class Prediction:
    """A prediction with intervals (``None`` where a quantity does not apply)."""

    flops: float | None = None
    params: float | None = None
    tokens: float | None = None
    loss: float | None = None
    loss_ci: tuple[float, float] | None = None  # confidence interval of the expected loss
    loss_pi: tuple[float, float] | None = None  # prediction interval of one new run's loss
    params_ci: tuple[float, float] | None = None
    tokens_ci: tuple[float, float] | None = None
    flops_ci: tuple[float, float] | None = None
    level: float | None = None
    # --target-loss: share of bootstrap replicates whose law never reaches the target
    unreachable_share: float | None = None
    noise: str | None = None  # where loss_pi's run-to-run noise came from
    warnings: tuple[str, ...] = field(default=())

    @property
    def tokens_per_param(self) -> float | None:
        if self.params and self.tokens:
            return self.tokens / self.params
        return None

    def to_json(self) -> dict[str, Any]:
        """The ``predict --json`` contract: flops, params, tokens, loss, loss_ci (+ additions)."""
        out: dict[str, Any] = {}
        for key in _JSON_KEYS:
            value = getattr(self, key)
            if value is None:
                continue
            if isinstance(value, tuple):
                out[key] = [finite_or_none(v) for v in value]
            elif isinstance(value, str):
                out[key] = value
            else:
                out[key] = finite_or_none(value)
        if self.tokens_per_param is not None:
            out["tokens_per_param"] = self.tokens_per_param
        if self.level is not None and any(k.endswith(("_ci", "_pi")) for k in out):
            out["level"] = self.level
        out["warnings"] = list(self.warnings)
        return out


def gpu_hours_to_flops(hours: float, peak_flops: float, mfu: float) -> float:
    """Budget in FLOPs from accelerator time: ``hours * 3600 * peak_flops * mfu``."""
    for name, value in (("--gpu-hours", hours), ("--peak-flops", peak_flops)):
        if not (math.isfinite(value) and value > 0):
            raise UserError(f"{name} must be a positive number, got {value:g}")
    if not (0 < mfu <= 1):
        raise UserError(f"--mfu must be in (0, 1] (model FLOPs utilisation), got {mfu:g}")
    return hours * 3600.0 * peak_flops * mfu


def _quiet(method: Callable[..., T]) -> Callable[..., T]:
    """Evaluate without numpy's warnings: bootstrap replicates of a degenerate fit sit on bounds
    (an exponent of 0, an infinite allocation) and give inf or NaN, which the intervals handle;
    the fit's health verdict, not a RuntimeWarning, is what tells the user."""

    @wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        with np.errstate(all="ignore"):
            return method(*args, **kwargs)

    return wrapper


class Predictor:
    """Predictions from a fit (a :class:`FitResult`, e.g. from :func:`~.results.load_fit`)."""

    def __init__(self, result: FitResult) -> None:
        self.result = result
        self.law_name = result.law
        self.approach = result.approach
        self.law = get_law(self.law_name)
        self.params = dict(result.params)
        self.level = result.level
        self.samples: Mapping[str, Array] = result.bootstrap.samples if result.bootstrap else {}
        self.c_max = float(result.ranges["C"][1]) if "C" in result.ranges else math.nan
        self.noise = Noise.from_dict(result.noise) if result.noise else None

    def at_level(self, level: float) -> Predictor:
        """The same predictor with its intervals at ``level`` (the fit's samples unchanged)."""
        other = copy.copy(self)
        other.level = level
        return other

    @property
    def health(self) -> dict[str, Any]:
        """The fit's health verdict (recorded in fit.json, else assessed from what it holds)."""
        if self.result.health is not None:
            return dict(self.result.health)
        return assess(self.result)

    def _loss_pi(self, loss: float | None, samples: Array | None) -> tuple[float, float] | None:
        if self.noise is None or loss is None or not math.isfinite(loss):
            return None
        return prediction_interval(loss, self.noise, self.level, samples, self.result.options.seed)

    # -- helpers -------------------------------------------------------------------------------
    @property
    def has_allocation(self) -> bool:
        if self.approach != 3:
            return True
        return self.law.inputs == ("N", "D")

    def _interval(self, values: Array) -> tuple[float, float] | None:
        return percentile_interval(values, self.level, min_values=2)

    def _prediction(self, C: float, **values: Any) -> Prediction:
        """A prediction at compute ``C`` with this fit's level and extrapolation warning."""
        if values.get("loss_pi") is not None and self.noise is not None:
            values["noise"] = self.noise.describe()
        return Prediction(flops=C, level=self.level, warnings=self._budget_warning(C), **values)

    def _budget_warning(self, C: float) -> tuple[str, ...]:
        if math.isfinite(self.c_max) and C > EXTRAPOLATION_WARN * self.c_max:
            return (
                f"budget {C:.3g} FLOPs is {C / self.c_max:,.0f}x beyond the largest fitted "
                f"compute ({self.c_max:.3g}); the prediction is an extrapolation",
            )
        return ()

    def _sample_params(self) -> dict[str, Array] | None:
        if self.approach != 3 or not self.samples:
            return None
        if not all(k in self.samples for k in self.law.param_names):
            return None
        ok = np.all([np.isfinite(self.samples[k]) for k in self.law.param_names], axis=0)
        if ok.sum() < 2:
            return None
        return {k: self.samples[k][ok] for k in self.law.param_names}

    def optimal(self, C: float, params: Mapping[str, Any] | None = None) -> tuple[Any, Any, Any]:
        """``(N_opt, D_opt, L_opt)`` at compute ``C`` (point estimate or arrays for samples)."""
        if self.approach != 3:
            alloc = self.result.allocation if params is None else params
            N = alloc["N_coef"] * C ** alloc["a"]
            D = alloc["D_coef"] * C ** alloc["b"]
            if params is None:
                return float(N), float(D), self.frontier_loss(C)
            return N, D, None
        p = self.params if params is None else params
        N, D = optimal_allocation(self.law_name, p, C)
        loss = self.law.predict(p, N=N, D=D) if params is None else self._loss_samples(p, N, D)
        if params is None:
            return float(np.squeeze(N)), float(np.squeeze(D)), float(np.squeeze(loss))
        return N, D, loss

    def _loss_samples(self, p: Mapping[str, Array], N: Array, D: Array) -> Array:
        theta = self.law.from_params_array(p)
        out = np.empty(theta.shape[0])
        # one point per sample: evaluate each sample at its own (N, D), in blocks
        for s in range(0, theta.shape[0], 256):
            blk = slice(s, s + 256)
            X = self.law.design(N=np.asarray(N)[blk], D=np.asarray(D)[blk])
            f, _ = self.law.log_model(theta[blk], X)
            out[blk] = np.exp(np.diagonal(f))
        return out

    def frontier_loss(self, C: float) -> float | None:
        fr = self.result.frontier
        if not fr:
            return None
        return float(get_law(fr["law"]).predict(fr["params"], C=C))

    def frontier_loss_samples(self, C: float, aligned: bool = False) -> Array | None:
        """The loss frontier at ``C`` under each resample's refit (approaches 1 and 2; None
        without resampled frontiers, as in a fit.json written before they were recorded).
        ``aligned``: one value per resample, NaN where it failed, in the order of the
        allocation's samples (the same resamples), instead of the finite values only."""
        fr = self.result.frontier
        if not fr or not fr.get("samples"):
            return None
        law = get_law(fr["law"])
        cols = {k: np.array([np.nan if v is None else v for v in fr["samples"][k]], dtype=float)
                for k in law.param_names}  # fmt: skip
        ok = np.all([np.isfinite(v) for v in cols.values()], axis=0)
        if ok.sum() < 2:
            return None
        theta = law.from_params_array({k: v[ok] for k, v in cols.items()})
        with np.errstate(over="ignore", invalid="ignore"):
            f, _ = law.log_model(theta, law.design(C=np.array([float(C)])))
        if not aligned:
            return np.exp(f[:, 0])
        out = np.full(ok.size, np.nan)
        out[ok] = np.exp(f[:, 0])
        return out

    def _form_error(self, C: float, n: int) -> Array:
        """Factors ``exp(e)`` of the form's error at ``C`` (:mod:`..fitting.misfit`; approach 3:
        :mod:`..fitting.law_misfit`), ``(n, draws)`` for ``n`` resamples: all 1 inside the
        fitted budgets and without a recorded misfit."""
        if self.approach == 3:
            misfit = self.result.misfit or {}
            sd = model_error_sd(misfit, misfit.get("budgets", [C]), C)
        else:
            fr = self.result.frontier or {}
            sd = model_error_sd(fr.get("misfit"), fr.get("points", {}).get("flops", [C]), C)
        return np.exp(model_errors(n, sd, self.result.options.seed))

    def curvature(self, C: float) -> float | None:
        """Approach 2: ``c2`` of the IsoFLOP parabola at budget ``C`` (loss per ``(ln N)²``), a
        power law of C through the used budgets' curvatures (least squares in logs; the one
        budget's own with one). The loss of a size off the optimum is ``L_opt(C) + c2 (ln N −
        ln N_opt)²``. None without an approach-2 fit's convex parabolas."""
        pts = [
            (m.flops, m.coeffs[0])
            for m in self.result.isoflop
            if m.used and math.isfinite(m.coeffs[0]) and m.coeffs[0] > 0
        ]
        if self.approach != 2 or not pts:
            return None
        if len(pts) == 1:
            return float(pts[0][1])
        slope, icept = np.polyfit(np.log([c for c, _ in pts]), np.log([q for _, q in pts]), 1)
        return float(np.exp(icept + slope * math.log(C)))

    # -- public API ----------------------------------------------------------------------------
    @_quiet
    def at_budget(self, C: float) -> Prediction:
        """Compute-optimal params, tokens and loss at budget ``C`` FLOPs, with intervals."""
        _check_positive("--flops", C)
        if not self.has_allocation:
            if self.law.inputs == ("C",):
                loss = float(self.law.predict(self.params, C=C))
                return Prediction(flops=C, loss=loss, warnings=self._budget_warning(C))
            raise UserError(
                f"law {self.law_name!r} depends only on {self.law.inputs[0]}; it has no "
                "compute-optimal allocation (fit chinchilla or kaplan)"
            )
        N, D, loss = self.optimal(C)
        loss_ci = params_ci = tokens_ci = None
        Ls = None
        samples = self._sample_params()
        if samples is not None:
            Ns, Ds, Ls = self.optimal(C, samples)
            params_ci, tokens_ci = self._interval(Ns), self._interval(Ds)
            Ls = (Ls[:, None] * self._form_error(C, Ls.size)).ravel()
            loss_ci = self._interval(Ls)
        elif self.approach != 3:
            if {"a", "N_coef", "b", "D_coef"} <= set(self.samples):
                Ns, Ds, _ = self.optimal(C, self.samples)
                params_ci, tokens_ci = self._interval(Ns), self._interval(Ds)
            Ls = self.frontier_loss_samples(C)
            if Ls is not None:
                Ls = (Ls[:, None] * self._form_error(C, Ls.size)).ravel()
                loss_ci = self._interval(Ls)
        return self._prediction(
            C,
            params=N,
            tokens=D,
            loss=loss,
            loss_ci=loss_ci,
            loss_pi=self._loss_pi(loss, Ls),
            params_ci=params_ci,
            tokens_ci=tokens_ci,
        )

    @_quiet
    def at_size(self, N: float, D: float) -> Prediction:
        """Loss of a model with ``N`` parameters trained on ``D`` tokens, with its interval."""
        _check_positive("--params", N)
        _check_positive("--tokens", D)
        if self.approach == 2:
            return self._off_optimum(N, D)
        if self.approach != 3:
            raise UserError(
                f"an approach-{self.approach} fit has no law L(N, D); refit with --approach 2 "
                "or 3 to predict the loss of a given size"
            )
        C = compute_from(N, D)
        given = {"N": N, "D": D, "C": C}
        kwargs = {k: given[k] for k in self.law.inputs}
        loss = float(self.law.predict(self.params, **kwargs))
        loss_ci = Ls = None
        samples = self._sample_params()
        if samples is not None:
            theta = self.law.from_params_array(samples)
            f, _ = self.law.log_model(theta, self.law.design(**kwargs))
            Ls = (np.exp(f[:, 0])[:, None] * self._form_error(C, f.shape[0])).ravel()
            loss_ci = self._interval(Ls)
        return self._prediction(
            C, params=N, tokens=D, loss=loss, loss_ci=loss_ci, loss_pi=self._loss_pi(loss, Ls)
        )

    def _off_optimum(self, N: float, D: float) -> Prediction:
        """Approach 2 at a given size: the frontier at its budget plus the IsoFLOP parabola's
        penalty for being off the optimum, ``c2 (ln N − ln N_opt)²``. Each resample pairs its
        own frontier with its own N_opt, so the interval holds the allocation's uncertainty
        (the curvature is the point estimate's)."""
        C = compute_from(N, D)
        c2 = self.curvature(C)
        n_opt, _, l_opt = self.optimal(C)
        if c2 is None or l_opt is None:
            raise UserError(
                "this approach-2 fit has no IsoFLOP curvature or loss frontier to predict a "
                "given size from; refit it with this version, or with --approach 3"
            )
        loss = l_opt + c2 * math.log(N / n_opt) ** 2
        Ls = None
        frontier = self.frontier_loss_samples(C, aligned=True)
        if frontier is not None and {"a", "N_coef"} <= set(self.samples):
            n_opts = np.asarray(self.samples["N_coef"]) * C ** np.asarray(self.samples["a"])
            if n_opts.size == frontier.size:
                with np.errstate(invalid="ignore", divide="ignore"):
                    penalty = c2 * np.log(N / n_opts) ** 2
                    Ls = frontier[:, None] * self._form_error(C, frontier.size) + penalty[:, None]
                Ls = Ls[np.isfinite(Ls)]
        loss_ci = self._interval(Ls) if Ls is not None and Ls.size >= 2 else None
        return self._prediction(
            C, params=N, tokens=D, loss=loss, loss_ci=loss_ci, loss_pi=self._loss_pi(loss, Ls)
        )

    @_quiet
    def loss_at_budget(self, C: float, params: Mapping[str, float] | None = None) -> float:
        """Compute-optimal loss at ``C`` (NaN where the fit has no loss frontier)."""
        if self.approach != 3:
            value = self.frontier_loss(C)
            return math.nan if value is None else value
        if not self.has_allocation:
            if self.law.inputs != ("C",):
                return math.nan  # a law of N or of D alone has no compute-optimal frontier
            return float(self.law.predict(params or self.params, C=C))
        p = params or self.params
        N, D = optimal_allocation(self.law_name, p, C)
        return float(np.squeeze(self.law.predict(p, N=N, D=D)))

    def _min_compute(self, target: float, params: Mapping[str, float] | None = None) -> float:
        lo, hi = math.log(1e6), math.log(1e40)
        f_lo = self.loss_at_budget(math.exp(lo), params) - target
        f_hi = self.loss_at_budget(math.exp(hi), params) - target
        if not (math.isfinite(f_lo) and math.isfinite(f_hi)):
            return math.nan
        if f_hi > 0:
            return math.inf
        if f_lo <= 0:
            return math.exp(lo)
        root = brentq(
            lambda u: self.loss_at_budget(math.exp(u), params) - target, lo, hi, xtol=1e-10
        )
        return math.exp(root)

    @_quiet
    def compute_for_loss(self, target: float, params: Mapping[str, float] | None = None) -> float:
        """The least compute whose compute-optimal loss reaches ``target`` under ``params`` (the
        fit's own, or one bootstrap replicate's): ``inf`` when it never does, NaN if undefined."""
        return self._min_compute(target, params)

    def replicate_params(self) -> list[dict[str, float]]:
        """Each finite bootstrap replicate's law parameters (approach 3; empty otherwise)."""
        samples = self._sample_params()
        if samples is None:
            return []
        n = len(next(iter(samples.values())))
        return [{k: float(v[i]) for k, v in samples.items()} for i in range(n)]

    @_quiet
    def for_target_loss(self, target: float) -> Prediction:
        """The least compute whose compute-optimal loss reaches ``target`` (and its allocation)."""
        _check_positive("--target-loss", target)
        frontier = self.result.frontier
        if self.approach != 3 and not frontier:
            raise UserError("this fit has no loss frontier; refit with more budgets or approach 3")
        if self.approach == 3 and self.law.inputs not in (("N", "D"), ("C",)):
            raise UserError(f"law {self.law_name!r} does not give loss as a function of compute")
        C = self._min_compute(target)
        if not math.isfinite(C):
            floor = self.params.get("E") if self.approach == 3 else None
            if floor is None and frontier:
                floor = frontier["params"].get("E")
            hint = f" (the fitted irreducible loss is E = {floor:.4g})" if floor else ""
            raise UserError(f"target loss {target:g} is not reachable with up to 1e40 FLOPs{hint}")
        pred = self.at_budget(C) if self.has_allocation else Prediction(flops=C, loss=target)
        flops_ci = params_ci = tokens_ci = None
        unreachable = None
        warnings: list[str] = []
        samples = self._sample_params()
        if samples is not None and self.law.closed_form_allocation:
            n = len(next(iter(samples.values())))
            cs = np.array(
                [self._min_compute(target, {k: v[i] for k, v in samples.items()}) for i in range(n)]
            )
            known = ~np.isnan(cs)
            unreachable = float(np.mean(np.isinf(cs[known]))) if known.any() else None
            flops_ci = open_interval(cs, self.level)
            # N and D at each replicate's own least compute: the C uncertainty carries over
            with np.errstate(invalid="ignore", over="ignore"):
                ns, ds = optimal_allocation(self.law_name, samples, np.where(known, cs, np.nan))
            ns = np.where(np.isinf(cs), np.inf, ns)
            ds = np.where(np.isinf(cs), np.inf, ds)
            params_ci, tokens_ci = open_interval(ns, self.level), open_interval(ds, self.level)
            if unreachable and flops_ci is not None and math.isinf(flops_ci[1]):
                warnings.append(
                    f"{unreachable:.0%} of the bootstrap replicates never reach loss {target:g} "
                    "(their irreducible loss E is at or above it): the upper ends of the "
                    "intervals are unbounded"
                )
        else:
            params_ci, tokens_ci = pred.params_ci, pred.tokens_ci
        out = self._prediction(
            C,
            params=pred.params,
            tokens=pred.tokens,
            loss=target,
            params_ci=params_ci,
            tokens_ci=tokens_ci,
            flops_ci=flops_ci,
            unreachable_share=unreachable,
        )
        return replace(out, warnings=out.warnings + tuple(warnings))


def open_interval(values: Array, level: float) -> tuple[float, float] | None:
    """Percentile interval in which ``inf`` counts (an unreachable replicate is a huge value,
    not a missing one): the upper end is ``inf`` when more than the upper tail is unreachable."""
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if values.size < 2:
        return None
    tail = (1 - level) / 2
    lo, hi = np.quantile(values, [tail, 1 - tail], method="inverted_cdf")
    return (float(lo), float(hi))


def _check_positive(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise UserError(f"{name} must be a positive number, got {value!r}")
