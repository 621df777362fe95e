"""Compute-optimal allocation and loss prediction from a fitted law (``fit.json``).

Compute is ``C = 6 N D`` (Kaplan et al. 2020, §2.1).  For the Chinchilla law the optimum is closed
form (Hoffmann et al. 2022, eq. 4 / App. D.3):

    ``N_opt(C) = G (C/6)^a``,  ``D_opt(C) = G^-1 (C/6)^b``,
    ``G = (alpha A / (beta B))^(1/(alpha+beta))``,
    ``a = beta/(alpha+beta)``,  ``b = alpha/(alpha+beta)``.

For the Kaplan joint law without ``E`` it is closed form too (``N^(p+1) = p N_c^p C / (6 D_c)``,
``p = alpha_N/alpha_D``); other laws of (N, D) use a numeric argmin of ``L(N, C/6N)`` over
``log N`` (a dense grid refined by a parabola through the three best points).  Fits from
approaches 1 and 2 carry power laws ``N_opt = k_N C^a`` and a frontier ``L_opt(C)``.

Intervals for every prediction come from pushing each bootstrap replicate of the parameters
through the same computation and taking percentiles.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import brentq, minimize_scalar

from scaling.errors import DataError, UserError
from scaling.analysis.laws import LAWS, get_law

Array = np.ndarray

EXTRAPOLATION_WARN = 10.0  # warn when a budget exceeds the largest fitted compute by this factor


def chinchilla_exponents(params: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """``(a, b, G)`` of Hoffmann et al. 2022 eq. 4 (works elementwise on arrays of samples)."""
    A, B = np.asarray(params["A"]), np.asarray(params["B"])
    alpha, beta = np.asarray(params["alpha"]), np.asarray(params["beta"])
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        s = alpha + beta
        G = (alpha * A / (beta * B)) ** (1.0 / s)
        a, b = beta / s, alpha / s
    if np.ndim(a) == 0:
        return float(a), float(b), float(G)
    return a, b, G


def chinchilla_optimal(params: Mapping[str, Any], C: Array | float) -> tuple[Array, Array]:
    """``(N_opt, D_opt)`` at compute ``C`` for the Chinchilla law (closed form, eq. 4)."""
    a, b, G = chinchilla_exponents(params)
    C = np.asarray(C, dtype=float)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(G * (C / 6.0) ** a), np.asarray((C / 6.0) ** b / G)


def kaplan_optimal(params: Mapping[str, Any], C: Array | float) -> tuple[Array, Array]:
    """``(N_opt, D_opt)`` for the Kaplan joint law without E: ``N^(p+1) = p N_c^p C/(6 D_c)``."""
    p = np.asarray(params["alpha_N"]) / np.asarray(params["alpha_D"])
    log_n = (
        np.log(p)
        + p * np.log(np.asarray(params["N_c"]))
        + np.log(np.asarray(C) / 6.0)
        - np.log(np.asarray(params["D_c"]))
    ) / (p + 1.0)
    N = np.exp(log_n)
    return N, np.asarray(C) / (6.0 * N)


def numeric_optimal(
    law_name: str, theta: Array, C: float, n_grid: int = 4001
) -> tuple[Array, Array]:
    """Brute-force ``argmin_N L(N, C/(6N))`` for each row of ``theta`` (S, P): grid + parabola."""
    law = get_law(law_name)
    theta = np.atleast_2d(theta)
    total = math.log(C / 6.0)  # log N + log D
    u = np.linspace(0.0, total, n_grid)  # N from 1 to C/6
    X = np.stack([u, total - u])
    f, _ = law.log_model(theta, X)
    f = np.where(np.isfinite(f), f, np.inf)
    i = np.clip(np.argmin(f, axis=1), 1, n_grid - 2)
    rows = np.arange(theta.shape[0])
    f0, f1, f2 = f[rows, i - 1], f[rows, i], f[rows, i + 1]
    h = u[1] - u[0]
    denom = f0 - 2 * f1 + f2
    with np.errstate(invalid="ignore", divide="ignore"):
        shift = np.where(denom > 0, 0.5 * h * (f0 - f2) / denom, 0.0)
    log_n = u[i] + np.clip(shift, -h, h)
    N = np.exp(log_n)
    return N, C / (6.0 * N)


def optimal_allocation(
    law_name: str, params: Mapping[str, Any], C: Array | float
) -> tuple[Array, Array]:
    """``(N_opt, D_opt)`` for a law of (N, D) with natural-scale ``params`` (floats or arrays)."""
    if law_name == "chinchilla":
        return chinchilla_optimal(params, C)
    if law_name == "kaplan":
        return kaplan_optimal(params, C)
    law = get_law(law_name)
    if law.inputs != ("N", "D"):
        raise UserError(f"law {law_name!r} is not a law of (N, D); it has no allocation")
    scalar = all(np.ndim(params[k]) == 0 for k in law.param_names)
    theta = np.stack(
        [np.atleast_1d(np.asarray(params[k], dtype=float)) for k in law.param_names], 1
    )
    theta = np.where(np.array(law.log_theta)[None, :], np.log(theta), theta)
    Cs = np.atleast_1d(np.asarray(C, dtype=float))
    if scalar:
        Ns = np.array([_refined_optimum(law_name, theta[0], c) for c in Cs])
        return Ns.reshape(np.shape(C)), (Cs / (6 * Ns)).reshape(np.shape(C))
    if Cs.size != 1:
        raise ValueError("vectorise over either parameter samples or budgets, not both")
    N, D = numeric_optimal(law_name, theta, float(Cs[0]))
    return N, D


def _refined_optimum(law_name: str, theta: Array, C: float) -> float:
    law = get_law(law_name)
    N0, _ = numeric_optimal(law_name, theta[None, :], C)
    total = math.log(C / 6.0)
    u0 = math.log(float(N0[0]))
    h = total / 4000

    def g(u: float) -> float:
        f, _ = law.log_model(theta[None, :], np.array([[u], [total - u]]))
        return float(f[0, 0])

    res = minimize_scalar(
        g,
        bounds=(max(0.0, u0 - 2 * h), min(total, u0 + 2 * h)),
        method="bounded",
        options={"xatol": 1e-10},
    )
    return float(math.exp(res.x if res.fun <= g(u0) else u0))


# --------------------------------------------------------------------------------------------
# fit.json -> predictions
# --------------------------------------------------------------------------------------------


def load_fit(path: str | Path) -> dict[str, Any]:
    """Read and check a ``fit.json``; raises :class:`DataError` with one line if unusable."""
    path = Path(path)
    if path.is_dir():
        path = path / "fit.json"
    if not path.exists():
        raise DataError(f"{path}: no such fit file; run `scaling fit RUNS --out DIR` first")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err}); re-run `scaling fit`") from None
    if not isinstance(doc, dict):
        raise DataError(f"{path}: expected a JSON object with a 'law' key")
    for key in ("law", "params", "exponents", "ranges"):
        if key not in doc:
            raise DataError(
                f"{path}: malformed fit.json, missing key {key!r}; re-run `scaling fit`"
            )
    law = doc["law"]
    if law not in LAWS:
        raise DataError(f"{path}: unknown law {law!r} (known: {', '.join(LAWS)})")
    approach = doc.get("approach", 3)
    if approach == 3:
        missing = [k for k in get_law(law).param_names if k not in (doc["params"] or {})]
        if missing:
            raise DataError(f"{path}: malformed fit.json, params lack {', '.join(missing)}")
        bad = [k for k, v in doc["params"].items() if not isinstance(v, int | float)]
        if bad:
            raise DataError(f"{path}: malformed fit.json, non-numeric params {', '.join(bad)}")
    else:
        alloc = doc.get("allocation") or {}
        if not all(isinstance(alloc.get(k), int | float) for k in ("a", "N_coef", "b", "D_coef")):
            raise DataError(
                f"{path}: malformed fit.json, approach {approach} needs allocation "
                "a, b, N_coef, D_coef"
            )
    return doc


@dataclass(frozen=True)
class Prediction:
    """A prediction with intervals (``None`` where a quantity does not apply)."""

    flops: float | None = None
    params: float | None = None
    tokens: float | None = None
    loss: float | None = None
    loss_ci: tuple[float, float] | None = None
    params_ci: tuple[float, float] | None = None
    tokens_ci: tuple[float, float] | None = None
    flops_ci: tuple[float, float] | None = None
    level: float | None = None
    warnings: tuple[str, ...] = field(default=())

    @property
    def tokens_per_param(self) -> float | None:
        if self.params and self.tokens:
            return self.tokens / self.params
        return None

    def to_json(self) -> dict[str, Any]:
        """The ``predict --json`` contract: flops, params, tokens, loss, loss_ci (+ additions)."""
        out: dict[str, Any] = {}
        for key in (
            "flops",
            "params",
            "tokens",
            "loss",
            "loss_ci",
            "params_ci",
            "tokens_ci",
            "flops_ci",
        ):
            value = getattr(self, key)
            if value is None:
                continue
            out[key] = [_f(v) for v in value] if isinstance(value, tuple) else _f(value)
        if self.tokens_per_param is not None:
            out["tokens_per_param"] = self.tokens_per_param
        if self.level is not None and any(k.endswith("_ci") for k in out):
            out["level"] = self.level
        out["warnings"] = list(self.warnings)
        return out


def _f(x: float) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _interval(values: Array, level: float) -> tuple[float, float] | None:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size < 2:
        return None
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return (float(lo), float(hi))


def gpu_hours_to_flops(hours: float, peak_flops: float, mfu: float) -> float:
    """Budget in FLOPs from accelerator time: ``hours * 3600 * peak_flops * mfu``."""
    for name, value in (("--gpu-hours", hours), ("--peak-flops", peak_flops)):
        if not (math.isfinite(value) and value > 0):
            raise UserError(f"{name} must be a positive number, got {value:g}")
    if not (0 < mfu <= 1):
        raise UserError(f"--mfu must be in (0, 1] (model FLOPs utilisation), got {mfu:g}")
    return hours * 3600.0 * peak_flops * mfu


class Predictor:
    """Predictions from a loaded ``fit.json`` (see :func:`load_fit`)."""

    def __init__(self, fit: Mapping[str, Any]) -> None:
        self.fit = fit
        self.law_name: str = fit["law"]
        self.approach: int = int(fit.get("approach", 3))
        self.law = get_law(self.law_name)
        self.params = dict(fit.get("params") or {})
        boot = fit.get("bootstrap") or {}
        self.level = float(boot.get("level", (fit.get("options") or {}).get("level", 0.95)))
        raw = boot.get("samples") or {}
        self.samples = {
            k: np.array([np.nan if v is None else v for v in vals], dtype=float)
            for k, vals in raw.items()
        }
        self.c_max = float(fit["ranges"]["C"][1]) if "C" in fit["ranges"] else math.nan

    # -- helpers -------------------------------------------------------------------------------
    @property
    def has_allocation(self) -> bool:
        if self.approach != 3:
            return True
        return self.law.inputs == ("N", "D")

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
            alloc = self.fit["allocation"]
            if params is None:
                N = alloc["N_coef"] * C ** alloc["a"]
                D = alloc["D_coef"] * C ** alloc["b"]
                return float(N), float(D), self.frontier_loss(C)
            N = params["N_coef"] * C ** params["a"]
            D = params["D_coef"] * C ** params["b"]
            return N, D, None
        p = self.params if params is None else params
        N, D = optimal_allocation(self.law_name, p, C)
        loss = self.law.predict(p, N=N, D=D) if params is None else self._loss_samples(p, N, D)
        if params is None:
            return float(np.squeeze(N)), float(np.squeeze(D)), float(np.squeeze(loss))
        return N, D, loss

    def _loss_samples(self, p: Mapping[str, Array], N: Array, D: Array) -> Array:
        theta = np.stack([np.asarray(p[k], dtype=float) for k in self.law.param_names], 1)
        theta = np.where(np.array(self.law.log_theta)[None, :], np.log(theta), theta)
        out = np.empty(theta.shape[0])
        # one point per sample: evaluate each sample at its own (N, D), in blocks
        for s in range(0, theta.shape[0], 256):
            blk = slice(s, s + 256)
            X = self.law.design(N=np.asarray(N)[blk], D=np.asarray(D)[blk])
            f, _ = self.law.log_model(theta[blk], X)
            out[blk] = np.exp(np.diagonal(f))
        return out

    def frontier_loss(self, C: float) -> float | None:
        fr = self.fit.get("frontier")
        if not fr:
            return None
        return float(get_law(fr["law"]).predict(fr["params"], C=C))

    # -- public API ----------------------------------------------------------------------------
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
        samples = self._sample_params()
        if samples is not None:
            Ns, Ds, Ls = self.optimal(C, samples)
            params_ci, tokens_ci = _interval(Ns, self.level), _interval(Ds, self.level)
            loss_ci = _interval(Ls, self.level)
        elif self.approach != 3 and {"a", "N_coef", "b", "D_coef"} <= set(self.samples):
            Ns, Ds, _ = self.optimal(C, self.samples)
            params_ci, tokens_ci = _interval(Ns, self.level), _interval(Ds, self.level)
        return Prediction(
            flops=C,
            params=N,
            tokens=D,
            loss=loss,
            loss_ci=loss_ci,
            params_ci=params_ci,
            tokens_ci=tokens_ci,
            level=self.level,
            warnings=self._budget_warning(C),
        )

    def at_size(self, N: float, D: float) -> Prediction:
        """Loss of a model with ``N`` parameters trained on ``D`` tokens, with its interval."""
        _check_positive("--params", N)
        _check_positive("--tokens", D)
        if self.approach != 3:
            raise UserError(
                f"an approach-{self.approach} fit has no law L(N, D); refit with --approach 3 "
                "to predict the loss of a given size"
            )
        given = {"N": N, "D": D, "C": 6.0 * N * D}
        kwargs = {k: given[k] for k in self.law.inputs}
        loss = float(self.law.predict(self.params, **kwargs))
        loss_ci = None
        samples = self._sample_params()
        if samples is not None:
            theta = np.stack([samples[k] for k in self.law.param_names], 1)
            theta = np.where(np.array(self.law.log_theta)[None, :], np.log(theta), theta)
            f, _ = self.law.log_model(theta, self.law.design(**kwargs))
            loss_ci = _interval(np.exp(f[:, 0]), self.level)
        C = 6.0 * N * D
        return Prediction(
            flops=C,
            params=N,
            tokens=D,
            loss=loss,
            loss_ci=loss_ci,
            level=self.level,
            warnings=self._budget_warning(C),
        )

    def _loss_at_budget(self, C: float, params: Mapping[str, float] | None = None) -> float:
        if self.approach != 3:
            value = self.frontier_loss(C)
            return math.nan if value is None else value
        if not self.has_allocation:
            return float(self.law.predict(params or self.params, C=C))
        p = params or self.params
        N, D = optimal_allocation(self.law_name, p, C)
        return float(np.squeeze(self.law.predict(p, N=N, D=D)))

    def _min_compute(self, target: float, params: Mapping[str, float] | None = None) -> float:
        lo, hi = math.log(1e6), math.log(1e40)
        f_lo = self._loss_at_budget(math.exp(lo), params) - target
        f_hi = self._loss_at_budget(math.exp(hi), params) - target
        if not (math.isfinite(f_lo) and math.isfinite(f_hi)):
            return math.nan
        if f_hi > 0:
            return math.inf
        if f_lo <= 0:
            return math.exp(lo)
        root = brentq(
            lambda u: self._loss_at_budget(math.exp(u), params) - target, lo, hi, xtol=1e-10
        )
        return math.exp(root)

    def for_target_loss(self, target: float) -> Prediction:
        """The least compute whose compute-optimal loss reaches ``target`` (and its allocation)."""
        _check_positive("--target-loss", target)
        if self.approach != 3 and not self.fit.get("frontier"):
            raise UserError("this fit has no loss frontier; refit with more budgets or approach 3")
        if self.approach == 3 and self.law.inputs not in (("N", "D"), ("C",)):
            raise UserError(f"law {self.law_name!r} does not give loss as a function of compute")
        C = self._min_compute(target)
        if not math.isfinite(C):
            floor = self.params.get("E") if self.approach == 3 else None
            if floor is None and self.fit.get("frontier"):
                floor = self.fit["frontier"]["params"].get("E")
            hint = f" (the fitted irreducible loss is E = {floor:.4g})" if floor else ""
            raise UserError(f"target loss {target:g} is not reachable with up to 1e40 FLOPs{hint}")
        pred = self.at_budget(C) if self.has_allocation else Prediction(flops=C, loss=target)
        flops_ci = None
        samples = self._sample_params()
        if samples is not None and self.law_name in ("chinchilla", "kaplan"):
            n = len(next(iter(samples.values())))
            cs = np.array(
                [self._min_compute(target, {k: v[i] for k, v in samples.items()}) for i in range(n)]
            )
            flops_ci = _interval(cs, self.level)
        return Prediction(
            flops=C,
            params=pred.params,
            tokens=pred.tokens,
            loss=target,
            params_ci=pred.params_ci,
            tokens_ci=pred.tokens_ci,
            flops_ci=flops_ci,
            level=self.level,
            warnings=self._budget_warning(C),
        )


def _check_positive(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise UserError(f"{name} must be a positive number, got {value!r}")
