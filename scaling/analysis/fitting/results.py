"""What a fit produces, and ``fit.json``: the one writer (:func:`save_fit`) and reader
(:func:`load_fit`, :func:`fit_from_dict`) of that document.

Fitters never print: they return frozen :class:`FitResult` objects that carry convergence status
and warnings.  :meth:`FitResult.to_dict` is the ``fit.json`` contract (keys may be added, never
renamed); :func:`fit_from_dict` rebuilds the result from it for predictions and reports.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from scaling.analysis.fitting.bootstrap import percentile_interval
from scaling.analysis.fitting.laws import LAWS, get_law
from scaling.errors import DataError
from scaling.numbers import finite_or_none, jsonable, nan_if_none

Array = np.ndarray

HUBER_DELTA = 1e-3
CLI_BOOTSTRAP = 1000  # resamples `scaling fit` draws by default (a library fit draws none)


@dataclass(frozen=True)
class FitOptions:
    """Options of a fit; recorded in ``fit.json`` under ``options``."""

    huber_delta: float = HUBER_DELTA
    bootstrap: int = 0
    seed: int = 0
    level: float = 0.95
    workers: int | None = None
    grid_stride: int = 1  # use every k-th start of the law's grid (1 = the full published grid)
    polish: int = 8  # distinct optima polished with scipy L-BFGS-B
    isoflop_tolerance: float = 0.05  # decades of C within which runs share a budget
    # top budgets the backtest holds out (None: the rule of analysis.report.stats.holdout)
    backtest_holdout: int | None = None
    extra_starts: tuple[tuple[float, ...], ...] = ()
    use_grid: bool = True  # False: start only from extra_starts (warm refits)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _UNRECORDED}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> FitOptions:
        known = {f.name for f in fields(cls)} - set(_UNRECORDED)
        return cls(**{k: v for k, v in doc.items() if k in known})


# Settings of how a fit runs (processes, warm starts), not recorded in fit.json.
_UNRECORDED = ("workers", "extra_starts", "use_grid")


@dataclass(frozen=True)
class Convergence:
    """How the optimiser finished: ``converged`` is False when the best start did not."""

    converged: bool
    message: str
    n_starts: int
    n_iterations: int
    on_bounds: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "converged": self.converged,
            "message": self.message,
            "n_starts": self.n_starts,
            "n_iterations": self.n_iterations,
            "on_bounds": list(self.on_bounds),
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Convergence:
        return cls(
            converged=bool(doc.get("converged", True)),
            message=str(doc.get("message", "")),
            n_starts=int(doc.get("n_starts", 0)),
            n_iterations=int(doc.get("n_iterations", 0)),
            on_bounds=tuple(doc.get("on_bounds", ())),
        )


@dataclass(frozen=True)
class IsoflopMinimum:
    """One compute-optimal point: an IsoFLOP budget and the vertex of its parabola in log N
    (approach 2), or one point of the loss envelope (approach 1)."""

    flops: float
    params: float
    tokens: float
    loss: float
    n_runs: int
    params_range: tuple[float, float]
    coeffs: tuple[float, float, float]  # loss = c2 u^2 + c1 u + c0, u = ln N
    at_edge: bool
    used: bool
    # approach 2: standard error of ln N* (delta method), and the fraction of bootstrap
    # resamples whose vertex was not strictly inside the sampled sizes (NaN where not computed)
    log_params_se: float = math.nan
    outside_fraction: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        return {
            "flops": self.flops,
            "params": self.params,
            "tokens": self.tokens,
            "loss": self.loss,
            "n_runs": self.n_runs,
            "params_range": list(self.params_range),
            "coeffs": list(self.coeffs),
            "at_edge": self.at_edge,
            "used": self.used,
            "log_params_se": finite_or_none(self.log_params_se),
            "outside_fraction": finite_or_none(self.outside_fraction),
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> IsoflopMinimum:
        return cls(
            flops=doc["flops"],
            params=nan_if_none(doc["params"]),
            tokens=nan_if_none(doc["tokens"]),
            loss=nan_if_none(doc["loss"]),
            n_runs=doc["n_runs"],
            params_range=tuple(doc["params_range"]),
            coeffs=tuple(doc["coeffs"]),
            at_edge=doc["at_edge"],
            used=doc["used"],
            log_params_se=nan_if_none(doc.get("log_params_se")),
            outside_fraction=nan_if_none(doc.get("outside_fraction")),
        )


@dataclass(frozen=True)
class Bootstrap:
    """Bootstrap replicates (``samples[name][i]`` for resample ``i``; NaN where a refit failed)."""

    n_resamples: int
    seed: int
    level: float
    samples: Mapping[str, Array]
    n_failed: int = 0
    # "bootstrap" (resamples with replacement) or "subsample" (what was drawn, not how often)
    kind: str = "bootstrap"

    def interval(self, name: str) -> tuple[float, float]:
        """Percentile interval at :attr:`level` for ``name`` (NaN, NaN without finite samples)."""
        return percentile_interval(self.samples[name], self.level) or (math.nan, math.nan)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_resamples": self.n_resamples,
            "seed": self.seed,
            "level": self.level,
            "n_failed": self.n_failed,
            "kind": self.kind,
            "samples": {k: [finite_or_none(x) for x in v] for k, v in self.samples.items()},
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Bootstrap:
        return cls(
            n_resamples=int(doc["n_resamples"]),
            seed=int(doc["seed"]),
            level=float(doc["level"]),
            samples={
                k: np.array([nan_if_none(x) for x in v], dtype=float)
                for k, v in doc["samples"].items()
            },
            n_failed=int(doc.get("n_failed", 0)),
            kind=str(doc.get("kind", "bootstrap")),
        )


@dataclass(frozen=True)
class FitResult:
    """Everything a fit produced; :meth:`to_dict` is the ``fit.json`` contract."""

    law: str
    approach: int
    params: Mapping[str, float]
    exponents: Mapping[str, float]
    allocation: Mapping[str, float]
    objective: float | None
    n_points: int
    ranges: Mapping[str, tuple[float, float]]
    options: FitOptions
    convergence: Convergence
    warnings: tuple[str, ...] = ()
    bootstrap: Bootstrap | None = None
    isoflop: tuple[IsoflopMinimum, ...] = ()
    frontier: Mapping[str, Any] | None = None
    theta: tuple[float, ...] = ()
    local_optima: tuple[tuple[float, ...], ...] = field(default=(), repr=False)
    data: Mapping[str, Any] | None = None  # where the runs came from (``scaling fit``)
    # which N and which C the fit used: {"params": column, "flops": convention slug or "table"}
    conventions: Mapping[str, Any] | None = None
    # run-to-run noise of log loss: {"sigma_log", "dof", "source", ...} (analysis.fitting.noise)
    noise: Mapping[str, Any] | None = None
    # {"ok": bool, "problems": [one line each]} (scaling.analysis.prediction.health)
    health: Mapping[str, Any] | None = None
    # approach 3: the law's form error beyond its budgets (scaling.analysis.fitting.law_misfit)
    misfit: Mapping[str, Any] | None = None
    # the suspect-run test: {"k", "scale", ..., "suspects": [...]} (analysis.fitting.outliers)
    outliers: Mapping[str, Any] | None = None

    @property
    def ci(self) -> dict[str, tuple[float, float]]:
        """Intervals for every bootstrapped quantity (parameters, exponents a and b, ...)."""
        if self.bootstrap is None:
            return {}
        return {k: self.bootstrap.interval(k) for k in self.bootstrap.samples}

    @property
    def level(self) -> float:
        """Coverage of the intervals: the bootstrap's, else the options'."""
        return self.bootstrap.level if self.bootstrap is not None else self.options.level

    def to_dict(self) -> dict[str, Any]:
        """The ``fit.json`` document (docs/ARCHITECTURE.md; keys may be added, never renamed)."""
        law = get_law(self.law) if self.approach == 3 else None
        num = finite_or_none
        doc = {
            "law": self.law,
            "approach": self.approach,
            "equation": law.equation if law else None,
            "citation": law.citation if law else None,
            "params": {k: num(v) for k, v in self.params.items()},
            "ci": {k: [num(lo), num(hi)] for k, (lo, hi) in self.ci.items()},
            "exponents": {k: num(v) for k, v in self.exponents.items()},
            "allocation": {k: num(v) for k, v in self.allocation.items()},
            "objective": num(self.objective) if self.objective is not None else None,
            "n_points": self.n_points,
            "ranges": {k: [num(lo), num(hi)] for k, (lo, hi) in self.ranges.items()},
            "options": self.options.to_dict(),
            "convergence": self.convergence.to_dict(),
            "warnings": list(self.warnings),
            "isoflop": [m.to_dict() for m in self.isoflop],
            "frontier": jsonable(self.frontier),
            "bootstrap": self.bootstrap.to_dict() if self.bootstrap else None,
        }
        for key in ("data", "conventions", "noise", "health", "misfit", "outliers"):
            value = getattr(self, key)
            if value is not None:
                doc[key] = jsonable(value)
        return doc


def fit_from_dict(doc: Mapping[str, Any]) -> FitResult:
    """Rebuild a :class:`FitResult` from a ``fit.json`` document (``null`` numbers become NaN)."""
    law = get_law(doc["law"])
    approach = int(doc.get("approach", 3))
    params = {k: float(v) for k, v in (doc.get("params") or {}).items() if v is not None}
    theta = tuple(float(t) for t in law.from_params(params)) if approach == 3 else ()
    boot = doc.get("bootstrap")
    return FitResult(
        law=doc["law"],
        approach=approach,
        params=params,
        exponents={k: nan_if_none(v) for k, v in (doc.get("exponents") or {}).items()},
        allocation={k: nan_if_none(v) for k, v in (doc.get("allocation") or {}).items()},
        objective=doc.get("objective"),
        n_points=int(doc.get("n_points", 0)),
        ranges={
            k: (nan_if_none(v[0]), nan_if_none(v[1])) for k, v in (doc.get("ranges") or {}).items()
        },
        options=FitOptions.from_dict(doc.get("options") or {}),
        convergence=Convergence.from_dict(doc.get("convergence") or {}),
        warnings=tuple(doc.get("warnings") or ()),
        bootstrap=Bootstrap.from_dict(boot) if boot else None,
        isoflop=tuple(IsoflopMinimum.from_dict(m) for m in doc.get("isoflop") or []),
        frontier=doc.get("frontier"),
        theta=theta,
        local_optima=(theta,) if theta else (),
        data=doc.get("data"),
        conventions=doc.get("conventions"),
        noise=doc.get("noise"),
        health=doc.get("health"),
        misfit=doc.get("misfit"),
        outliers=doc.get("outliers"),
    )


def save_fit(result: FitResult, path: str | Path) -> dict[str, Any]:
    """Write ``result`` as ``fit.json`` at ``path``; returns the document written."""
    doc = result.to_dict()
    Path(path).write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def load_fit(path: str | Path) -> FitResult:
    """Read and check a ``fit.json`` (or the one in directory ``path``).

    Raises :class:`DataError` with one line when the file is missing or unusable.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "fit.json"
    if not path.exists():
        raise DataError(f"{path}: no such fit file; run `scaling fit RUNS --out DIR` first")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not valid JSON ({err}); re-run `scaling fit`") from None
    _check_document(doc, path)
    try:
        return fit_from_dict(doc)
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(f"{path}: malformed fit.json ({err!r}); re-run `scaling fit`") from None


def _check_document(doc: Any, path: Path) -> None:
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
