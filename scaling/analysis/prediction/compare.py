"""Two fits side by side (``scaling compare``): what the difference between two ladders is worth.

Two fits of one law and approach -- typically the same IsoFLOP ladder trained on two versions of
a corpus, raw and deduplicated (``data.process``) -- are compared at a target budget ``C``:

- their fitted parameters and exponents, each with its fit's bootstrap interval;
- each fit's compute-optimal loss at ``C``: the CI of the *expected* loss (where the fitted mean
  curve lies) and the prediction interval of *one new run* (:mod:`..prediction.predict`);
- the **compute multiplier**. The better side is the one with the lower expected loss at ``C``;
  the worse side's law, solved for compute, needs ``C'`` to reach that loss
  (:meth:`~scaling.analysis.prediction.predict.Predictor.compute_for_loss`), and the multiplier is
  ``C' / C`` (``inf`` when the worse law never gets there: its irreducible loss is above it).
  Its interval pairs bootstrap replicates of the two fits: the fits come from independent runs,
  so each replicate of one is paired with a seeded random replicate of the other (the same
  resample indices drawn for both fits would correlate them). It covers the ratio of the two
  *mean curves*, not of two single runs. The share of pairs whose order flips (a multiplier
  below 1) says how sure the ranking itself is.

Approach-2 fits bootstrap their allocation, not their loss frontier: their losses and
multiplier come without intervals, and the comparison says so. A fit whose health verdict lists
problems is refused (exit status 3) unless allowed; then its problems head the report.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scaling.analysis.fitting.results import FitResult, load_fit
from scaling.analysis.prediction.health import problem_line
from scaling.analysis.prediction.predict import Prediction, Predictor, open_interval
from scaling.errors import DataError, UnhealthyFitError, UserError
from scaling.numbers import finite_or_none

Interval = tuple[float, float]
# run-table columns that say which corpus a side's runs trained on (runs.csv beside fit.json)
CORPUS_COLUMNS = ("corpus", "data.source", "data.process", "data.processed_id")


@dataclass(frozen=True)
class Side:
    """One fit of the comparison, under its label."""

    label: str
    path: str
    result: FitResult
    predictor: Predictor
    runs: pd.DataFrame | None  # the fit directory's runs.csv, when there

    @property
    def healthy(self) -> bool:
        return bool(self.predictor.health["ok"])

    def corpus(self) -> dict[str, list[str]]:
        """The distinct values of :data:`CORPUS_COLUMNS` among the side's runs."""
        if self.runs is None:
            return {}
        return {
            col: sorted({str(v) for v in self.runs[col].dropna()})
            for col in CORPUS_COLUMNS
            if col in self.runs
        }


@dataclass(frozen=True)
class Multiplier:
    """What the worse side needs to match the better side's expected loss at the target."""

    better: int  # index of the side with the lower expected loss at the target
    target_loss: float  # the better side's expected loss at the target
    flops_needed: float  # the worse side's least compute reaching it (inf: never)
    value: float  # flops_needed / target compute
    ci: Interval | None  # paired bootstrap interval of the value (the mean curves' ratio)
    delta_loss: float  # worse minus better expected loss at the target
    delta_loss_ci: Interval | None
    flip_share: float | None  # share of replicate pairs in which the worse side is better
    unreachable_share: float | None  # share of pairs in which the worse law never reaches it
    n_pairs: int


@dataclass(frozen=True)
class Comparison:
    """Two fits compared at compute ``flops``."""

    sides: tuple[Side, Side]
    flops: float
    level: float
    predictions: tuple[Prediction, Prediction]
    multiplier: Multiplier | None
    warnings: tuple[str, ...]

    def quantities(self) -> list[tuple[str, list[tuple[float | None, Interval | None]]]]:
        """Each fitted quantity (law parameters, exponents, loss frontier) of either side:
        ``(name, [(value, interval) per side])``, names in the order the fits give them."""
        names: list[str] = []
        for side in self.sides:
            for name in _values(side.result):
                if name not in names:
                    names.append(name)
        out = []
        for name in names:
            cells = []
            for side in self.sides:
                value = _values(side.result).get(name)
                cells.append((value, _finite_ci(side.result.ci.get(name))))
            out.append((name, cells))
        return out

    def to_json(self) -> dict[str, Any]:
        """The ``compare.json`` document (``scaling compare --json``)."""
        sides = []
        for side, pred in zip(self.sides, self.predictions, strict=True):
            r = side.result
            sides.append(
                {
                    "label": side.label,
                    "fit": side.path,
                    "law": r.law,
                    "approach": r.approach,
                    "n_points": r.n_points,
                    "values": {k: finite_or_none(v) for k, v in _values(r).items()},
                    "ci": {k: _json_pair(v) for k, v in r.ci.items()},
                    "noise": dict(r.noise) if r.noise else None,
                    "health": side.predictor.health,
                    "prediction": pred.to_json(),
                    "corpus": side.corpus(),
                }
            )
        doc: dict[str, Any] = {
            "flops": self.flops,
            "level": self.level,
            "sides": sides,
            "multiplier": None,
            "warnings": list(self.warnings),
        }
        m = self.multiplier
        if m is not None:
            doc["multiplier"] = {
                "better": self.sides[m.better].label,
                "worse": self.sides[1 - m.better].label,
                "target_loss": m.target_loss,
                "flops_needed": finite_or_none(m.flops_needed),
                "value": finite_or_none(m.value),
                "ci": _json_pair(m.ci),
                "covers": "the ratio of the two fitted mean curves (not of two single runs)",
                "delta_loss": m.delta_loss,
                "delta_loss_ci": _json_pair(m.delta_loss_ci),
                "flip_share": m.flip_share,
                "unreachable_share": m.unreachable_share,
                "n_pairs": m.n_pairs,
            }
        return doc


def _json_pair(ci: Interval | None) -> list[float | None] | None:
    return None if ci is None else [finite_or_none(ci[0]), finite_or_none(ci[1])]


def _finite_ci(ci: Interval | None) -> Interval | None:
    if ci is None or not all(math.isfinite(v) for v in ci):
        return None
    return (float(ci[0]), float(ci[1]))


def _values(result: FitResult) -> dict[str, float]:
    """The quantities a fit reports: law parameters, then exponents ``a``, ``b``, then (for
    approaches 1-2) the loss frontier's parameters, prefixed ``frontier.``."""
    out = {k: float(v) for k, v in result.params.items()}
    out.update({k: float(v) for k, v in result.exponents.items()})
    if result.approach != 3 and result.frontier:
        out.update({f"frontier.{k}": float(v) for k, v in result.frontier["params"].items()})
    return out


# ---- loading ----------------------------------------------------------------------------------


def load_side(path: str | Path, label: str, allow_unhealthy: bool = False) -> Side:
    """The fit at ``path`` (``fit.json`` or its directory) with the runs beside it, if any.

    An unhealthy fit raises :class:`UnhealthyFitError` unless ``allow_unhealthy``.
    """
    path = Path(path)
    result = load_fit(path)
    predictor = Predictor(result)
    health = predictor.health
    if not health["ok"] and not allow_unhealthy:
        raise UnhealthyFitError(
            f"{path} ({label}): the fit cannot support a comparison: {problem_line(health)}; "
            "add runs and refit, or pass --allow-unhealthy"
        )
    folder = path if path.is_dir() else path.parent
    runs = None
    if (folder / "runs.csv").exists():
        try:
            runs = pd.read_csv(folder / "runs.csv")
        except (OSError, ValueError, pd.errors.ParserError):
            runs = None
    return Side(label=label, path=str(path), result=result, predictor=predictor, runs=runs)


def check_labels(labels: Sequence[str]) -> tuple[str, str]:
    """Two distinct, non-empty labels."""
    labels = [s.strip() for s in labels]
    if len(labels) != 2 or not all(labels) or labels[0] == labels[1]:
        raise UserError(
            f"--labels needs two distinct names separated by a comma, e.g. --labels raw,dedup; "
            f"got {','.join(labels)!r}"
        )
    return labels[0], labels[1]


def check_comparable(a: Side, b: Side) -> list[str]:
    """Refuse two fits of different laws or approaches; warnings for lesser mismatches."""
    ra, rb = a.result, b.result
    if (ra.approach, ra.law) != (rb.approach, rb.law):
        raise UserError(
            f"compare two fits of one law and approach: {a.label} is approach {ra.approach} "
            f"law {ra.law}, {b.label} is approach {rb.approach} law {rb.law}; refit one of them"
        )
    warnings = []
    if ra.level != rb.level:
        warnings.append(
            f"the fits' interval levels differ ({a.label} {ra.level:.0%}, {b.label} "
            f"{rb.level:.0%}): the paired intervals use {ra.level:.0%}"
        )
    ca, cb = (ra.conventions or {}), (rb.conventions or {})
    for key in ("params", "flops"):
        if ca.get(key) != cb.get(key):
            warnings.append(
                f"the fits count {'N' if key == 'params' else 'C'} differently ({a.label}: "
                f"{ca.get(key)}, {b.label}: {cb.get(key)}): their laws are not on one scale"
            )
    return warnings


# ---- the multiplier ---------------------------------------------------------------------------


def compute_multiplier(better: Predictor, worse: Predictor, flops: float) -> tuple[float, float]:
    """``(C', C'/C)``: the least compute at which ``worse``'s compute-optimal loss reaches
    ``better``'s expected loss at ``flops``, and its ratio to ``flops``."""
    target = better.loss_at_budget(flops)
    needed = worse.compute_for_loss(target)
    return needed, needed / flops


def paired_replicates(
    better: Predictor, worse: Predictor, flops: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray] | None:
    """Per pair of bootstrap replicates (one of each fit, paired at random): the multiplier and
    the worse-minus-better loss at ``flops``. None unless both fits have law replicates."""
    rb, rw = better.replicate_params(), worse.replicate_params()
    if len(rb) < 2 or len(rw) < 2:
        return None
    n = min(len(rb), len(rw))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(rw))[:n]
    mult, delta = np.empty(n), np.empty(n)
    with np.errstate(all="ignore"):
        for i in range(n):
            pw = rw[order[i]]
            lb = better.loss_at_budget(flops, rb[i])
            lw = worse.loss_at_budget(flops, pw)
            mult[i] = worse.compute_for_loss(lb, pw) / flops if math.isfinite(lb) else math.nan
            delta[i] = lw - lb
    return mult, delta


def multiplier(
    sides: tuple[Side, Side], flops: float, level: float, seed: int
) -> Multiplier | None:
    """The compute multiplier of the worse side at ``flops`` (None without two losses)."""
    losses = [s.predictor.loss_at_budget(flops) for s in sides]
    if not all(math.isfinite(v) for v in losses):
        return None
    better = 0 if losses[0] <= losses[1] else 1
    pb, pw = sides[better].predictor, sides[1 - better].predictor
    needed, value = compute_multiplier(pb, pw, flops)
    pairs = paired_replicates(pb, pw, flops, seed)
    ci = delta_ci = flip = unreachable = None
    n_pairs = 0
    if pairs is not None:
        mult, delta = pairs
        known = mult[~np.isnan(mult)]
        n_pairs = int(known.size)
        if n_pairs:
            ci = open_interval(known, level)
            flip = float(np.mean(known < 1.0))
            unreachable = float(np.mean(np.isinf(known)))
        finite = delta[np.isfinite(delta)]
        delta_ci = open_interval(finite, level) if finite.size >= 2 else None
    return Multiplier(
        better=better,
        target_loss=losses[better],
        flops_needed=needed,
        value=value,
        ci=ci,
        delta_loss=losses[1 - better] - losses[better],
        delta_loss_ci=delta_ci,
        flip_share=flip,
        unreachable_share=unreachable,
        n_pairs=n_pairs,
    )


def compare(
    paths: Sequence[str | Path],
    labels: Sequence[str],
    flops: float,
    *,
    allow_unhealthy: bool = False,
    seed: int = 0,
) -> Comparison:
    """Load two fits and compare them at ``flops`` (raises UserError / UnhealthyFitError)."""
    if not (isinstance(flops, int | float) and math.isfinite(flops) and flops > 0):
        raise UserError(f"--flops must be a positive number, got {flops!r}")
    if len(paths) != 2:
        raise UserError(f"compare takes two fits, got {len(paths)}")
    la, lb = check_labels(labels)
    a, b = load_side(paths[0], la, allow_unhealthy), load_side(paths[1], lb, allow_unhealthy)
    warnings = check_comparable(a, b)
    for side in (a, b):
        if not side.result.ranges.get("C"):
            raise DataError(f"{side.path}: the fit records no compute range; re-run `scaling fit`")
        for problem in side.predictor.health["problems"]:
            warnings.append(f"unhealthy fit {side.label}: {problem}")
    predictions = (a.predictor.at_budget(flops), b.predictor.at_budget(flops))
    for side, pred in zip((a, b), predictions, strict=True):
        warnings += [f"{side.label}: {w}" for w in pred.warnings]
    level = a.result.level
    mult = multiplier((a, b), flops, level, seed)
    if mult is not None and mult.ci is None:
        warnings.append(
            "no interval for the multiplier: "
            + (
                "approach-2 fits bootstrap the allocation, not the loss frontier (fit the run "
                "tables with approach 3 for one)"
                if a.result.approach != 3
                else "a fit has no bootstrap replicates (refit with --bootstrap N)"
            )
        )
    return Comparison(
        sides=(a, b),
        flops=float(flops),
        level=level,
        predictions=predictions,
        multiplier=mult,
        warnings=tuple(warnings),
    )


def multiplier_line(cmp: Comparison) -> str:
    """One sentence: who needs how much more compute, with its interval."""
    m = cmp.multiplier
    if m is None:
        return "no compute multiplier: a fit gives no loss at this budget"
    better, worse = cmp.sides[m.better].label, cmp.sides[1 - m.better].label
    ci = ""
    if m.ci is not None:
        hi = "unbounded" if math.isinf(m.ci[1]) else f"{m.ci[1]:.3g}"
        ci = f" [{cmp.level:.0%} CI {m.ci[0]:.3g} .. {hi}]"
    if math.isinf(m.value):
        needs = "never gets there (its fitted irreducible loss is above it)"
    else:
        needs = f"needs {m.flops_needed:.3g} FLOPs to match it: x{m.value:.3g} the compute{ci}"
    return (
        f"at C = {cmp.flops:.3g} FLOPs {better} reaches expected loss {m.target_loss:.4g}; "
        f"{worse} {needs}"
    )


def quantity_label(name: str) -> str:
    """How the report names a quantity."""
    return {
        "a": "a (N_opt ∝ C^a)",
        "b": "b (D_opt ∝ C^b)",
    }.get(name, name)
