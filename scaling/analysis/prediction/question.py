"""Whether a fit supports the question asked: judged at the point, not on the parameters.

A fit's health (:mod:`.health`) says whether it can be trusted at all. A parameter the runs do
not pin (a health *warning*) may not matter for the question asked: the irreducible loss hardly
moves a prediction inside the data's range, and an allocation exponent that trades off against
its coefficient leaves the size at the data's centre determined. So ``scaling predict`` and
``scaling verify`` judge the prediction itself, with its intervals read at
:data:`~.health.GATE_LEVEL` whatever ``--level`` the fit reports:

* **distance**: the budget (and, for a law of N and D, the size and the token count) at most
  :data:`MAX_BEYOND` times beyond the largest fitted one (give or take the fit's
  ``isoflop_tolerance``). It is the distance to which the
  interval's coverage was measured (``benchmarks/bench_coverage.py``: 10x beyond synthetic
  ladders; Porian et al.'s sweeps: up to 16x); beyond it an interval says nothing measured.
* **the loss's prediction interval** of a new run no wider than :data:`MAX_PI_HALF_WIDTH` of the
  predicted loss (half-width): wider, the prediction cannot tell a good run from a poor one.
* **the allocation** (a budget's compute-optimal size): its interval no wider than
  :data:`MAX_SIZE_SPREAD` (``hi / lo``), the 0.5x to 2x bracket that ``verify --bracket`` trains:
  wider, the fit cannot say which of those sizes wins.

Each unmet condition is one line saying what is too far or too wide and what to add.
"""

from __future__ import annotations

import math
from pathlib import Path

from scaling.analysis.prediction.health import GATE_LEVEL
from scaling.analysis.prediction.predict import Prediction, Predictor
from scaling.errors import UnhealthyFitError

MAX_BEYOND = 10.0
MAX_PI_HALF_WIDTH = 0.10
MAX_SIZE_SPREAD = 4.0


def _ratio(value: float | None, largest: float) -> float:
    if value is None or not (math.isfinite(value) and math.isfinite(largest) and largest > 0):
        return 0.0
    return value / largest


def _distance(predictor: Predictor, pred: Prediction) -> list[str]:
    ranges = predictor.result.ranges
    # counted compute falls a little short of a planned budget: within the tolerance that makes
    # runs one budget, a question at 10x the planned top budget is at 10x
    slack = 10**predictor.result.options.isoflop_tolerance
    out = []
    asked = {"C": pred.flops}
    if predictor.approach == 3:  # a law of N and D is asked at a size and a token count
        asked |= {"N": pred.params, "D": pred.tokens}
    names = {"C": ("budget", "FLOPs", "budgets"), "N": ("size", "params", "sizes"),
             "D": ("token count", "tokens", "token counts")}  # fmt: skip
    for key, value in asked.items():
        if key not in ranges:
            continue
        largest = float(ranges[key][1])
        r = _ratio(value, largest)
        if r > MAX_BEYOND * slack:
            what, unit, plural = names[key]
            out.append(
                f"the {what} asked ({value:.3g} {unit}) is {r:,.0f}x beyond the largest fitted "
                f"({largest:.3g}); the interval is measured to {MAX_BEYOND:g}x: add {plural} "
                f"up to {value / MAX_BEYOND:.3g}"
            )
    return out


def _widths(pred: Prediction, allocation: bool) -> list[str]:
    out = []
    if pred.loss_pi is not None and pred.loss:
        lo, hi = pred.loss_pi
        half = (hi - lo) / 2 / pred.loss if math.isfinite(hi - lo) else math.inf
        if half > MAX_PI_HALF_WIDTH:
            out.append(
                f"the loss's {GATE_LEVEL:.0%} prediction interval [{lo:.4g}, {hi:.4g}] is "
                f"±{100 * half:.0f}% of the predicted {pred.loss:.4g} (limit "
                f"±{100 * MAX_PI_HALF_WIDTH:g}%): add budgets nearer the question, or seed "
                "replicates"
            )
    if allocation and pred.params_ci is not None:
        lo, hi = pred.params_ci
        spread = hi / lo if lo > 0 else math.inf
        if spread > MAX_SIZE_SPREAD:
            out.append(
                f"the compute-optimal size's {GATE_LEVEL:.0%} interval [{lo:.3g}, {hi:.3g}] "
                f"spans {spread:.3g}x (limit {MAX_SIZE_SPREAD:g}x, the 0.5x-2x bracket): add "
                "budgets, and sizes around each budget's minimum"
            )
    return out


def unsupported(predictor: Predictor, pred: Prediction, allocation: bool = False) -> list[str]:
    """Why the fit does not support ``pred`` (made by ``predictor``), one line each; empty when
    it does. ``pred`` is judged as it is for distance; its intervals are recomputed at
    :data:`GATE_LEVEL` (the same question to a fit of the same runs at any ``--level``).
    ``allocation``: the question was a budget's compute-optimal size (``--flops``)."""
    gate = predictor.at_level(GATE_LEVEL)
    if allocation and pred.flops is not None:
        at_gate = gate.at_budget(pred.flops)
    elif pred.params is not None and pred.tokens is not None:
        at_gate = gate.at_size(pred.params, pred.tokens)
    else:
        at_gate = pred
    return _distance(predictor, pred) + _widths(at_gate, allocation)


def judge(
    predictor: Predictor, pred: Prediction, fit: Path, allow: bool, allocation: bool = False
) -> tuple[str, ...]:
    """Refuse ``pred`` (:class:`UnhealthyFitError`, exit status 3) when the fit does not support
    it, unless ``allow``; else the warnings to print beside it: the fit's (``fit: ...``) and,
    with ``allow``, what was unsupported (``unsupported: ...``)."""
    problems = unsupported(predictor, pred, allocation=allocation)
    if problems and not allow:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UnhealthyFitError(
            f"{fit}: the fit does not support this question: {problems[0]}{more}; or pass "
            "--allow-unhealthy"
        )
    notes = [f"fit: {w}" for w in predictor.health.get("warnings") or []]
    return (*notes, *(f"unsupported: {p}" for p in problems))
