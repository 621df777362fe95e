"""The designs of ``scaling study``: its pilot, the pilot's edge extensions, the LR check and the
prior the ladder is centred on.

A study predicts the compute-optimal run at a target ``C`` on the user's own corpus, in stages
(:mod:`scaling.cli.study` runs them):

1. **Pilot**: :data:`PILOT_BUDGETS` budgets below the ladder's lowest (each ``--ratio`` apart),
   :data:`PILOT_SIZES` sizes over ``N_opt(C) · 10^±PILOT_SPAN`` of the starting prior (the
   published law, or ``--prior``), so that the minimum is bracketed even when that prior is off
   by 10×. :func:`edge_runs` adds sizes beyond a budget whose lowest loss lies at its smallest or
   largest size, up to :data:`PILOT_ROUNDS` times.
2. **LR check**: at the pilot's top budget, the size nearest its measured optimum trained at the
   hparams rule's LR times :data:`LR_FACTORS`; :func:`lr_check` reads the best LR off a parabola
   in ``ln lr`` and shifts the rule when it lies more than :data:`LR_TOLERANCE` away.
3. **Ladder**: ``scaling plan``'s ladder centred on :func:`pilot_prior` (the pilot's vertices);
   when its fit's only problem is a backtest that missed, :func:`midpoint_budgets` between its
   top budgets, once (:data:`DENSER_ROUNDS`).

Pure: numpy and the design stack, no torch, Lightning or MLflow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from scaling.analysis.design.options import PlanOptions
from scaling.analysis.design.plan import PlannedRun, passing_shapes, planned_run
from scaling.analysis.design.prior import Prior
from scaling.analysis.design.shapes import Shape, shapes
from scaling.analysis.design.throughput import Throughput
from scaling.analysis.fitting.isoflop import fit_parabola
from scaling.errors import UserError

PILOT_BUDGETS = 2  # budgets of the pilot, just below the ladder's lowest
PILOT_SIZES = 7  # sizes per pilot budget
PILOT_SPAN = 1.0  # decades either side of the starting prior's N_opt
PILOT_MIN_SIZES = 4  # a pilot budget with fewer passing sizes in its window cannot place a minimum
PILOT_ROUNDS = 2  # edge extensions at most
EDGE_SIZES = 2  # sizes added beyond an edge per round
DENSER_ROUNDS = 1  # rounds of midpoint budgets when a ladder's backtest missed
LR_FACTORS = (0.5, 2**-0.5, 2**0.5, 2.0)  # the LR check's runs, times the rule's LR (and x1)
LR_TOLERANCE = 2**0.5  # the rule stands when the best LR is within this factor of it
LR_SHIFT_LIMIT = 4.0  # a shift is never larger than this factor (the probe spans 0.5..2)
EXPONENT_RANGE = (0.3, 0.7)  # N_opt ∝ C^a between the pilot's budgets, clamped into this
DEFAULT_EXPONENT = 0.5  # when the pilot has one usable budget (Hoffmann et al. 2022: a ≈ 0.5)


def pilot_budget_values(opts: PlanOptions, offset: int = 0) -> list[float]:
    """The pilot's budgets, top down: the :data:`PILOT_BUDGETS` just below the ladder's smallest
    (``min_budgets`` budgets of ``ratio`` from ``C / extrapolation``), ``offset`` steps of
    ``ratio`` higher."""
    top = opts.top_budget
    first = opts.min_budgets - offset
    return [float(f"{top / opts.ratio ** (first + j):.3g}") for j in range(PILOT_BUDGETS)]


def _window_sizes(passing: Sequence[Shape], n_opt: float, span: float, count: int) -> list[Shape]:
    """Up to ``count`` distinct passing shapes nearest sizes spaced evenly in log N over
    ``n_opt · 10^±span`` (two shapes less than a third of the spacing apart count as one)."""
    wanted = math.log10(n_opt) + np.linspace(-span, span, count)
    apart = 2 * span / (count - 1) / 3
    chosen: list[Shape] = []
    for target in wanted:
        free = [
            s
            for s in passing
            if abs(math.log10(s.params) - target) <= apart * 1.5
            and all(abs(math.log10(s.params / c.params)) >= apart for c in chosen)
        ]
        if free:
            chosen.append(min(free, key=lambda s: abs(math.log10(s.params) - target)))
    return sorted(chosen, key=lambda s: s.params)


def candidate_shapes(opts: PlanOptions, budget: float) -> tuple[Shape, ...]:
    """The shapes a run at ``budget`` may have: up to the size at the fewest tokens per
    parameter the guards allow."""
    return shapes(opts, max(1.0, math.sqrt(budget / (6.0 * opts.tpp_range[0]))))


def _window(passing: Sequence[Shape], n_opt: float) -> tuple[float, float]:
    """The pilot's window of log10 N, ``n_opt · 10^±PILOT_SPAN`` moved inside the sizes that pass
    the guards when it reaches beyond them (kept as wide as they allow): its centre and
    half-width."""
    pmin, pmax = math.log10(passing[0].params), math.log10(passing[-1].params)
    lo, hi = math.log10(n_opt) - PILOT_SPAN, math.log10(n_opt) + PILOT_SPAN
    if lo < pmin:
        lo, hi = pmin, min(hi + (pmin - lo), pmax)
    if hi > pmax:
        lo, hi = max(lo - (hi - pmax), pmin), pmax
    return (lo + hi) / 2, max((hi - lo) / 2, 1e-3)


def _pilot_budget(
    budget: float, opts: PlanOptions, prior: Prior, throughput: Throughput
) -> list[PlannedRun] | str:
    passing = passing_shapes(budget, candidate_shapes(opts, budget), opts)
    if not passing:
        return f"no model size passes the guards at {budget:.3g} FLOPs"
    centre, span = _window(passing, prior.n_opt(budget))
    chosen = _window_sizes(passing, 10**centre, span, PILOT_SIZES)
    if len(chosen) < PILOT_MIN_SIZES:
        return (
            f"the pilot's budget {budget:.3g} FLOPs holds {len(chosen)} model sizes that pass "
            f"the guards (>= {opts.min_steps} steps, {opts.tpp_range[0]:g}.."
            f"{opts.tpp_range[1]:g} tokens/param) within {PILOT_SPAN:g} decade of N_opt = "
            f"{prior.n_opt(budget):.3g}; it needs {PILOT_MIN_SIZES}"
        )
    return [planned_run(s, budget, 0, opts, throughput) for s in chosen]


def design_pilot(
    opts: PlanOptions, prior: Prior, throughput: Throughput
) -> tuple[list[float], list[PlannedRun]]:
    """The pilot's budgets and runs (seed 0), top budget first: below the ladder's lowest
    budgets when they hold :data:`PILOT_MIN_SIZES` sizes passing the guards, else as low in the
    ladder's own budgets as they do (its runs are then the ladder's where the sizes agree);
    :class:`UserError` when no budget up to the ladder's top does."""
    why = ""
    for offset in range(opts.min_budgets + 1):
        budgets = pilot_budget_values(opts, offset)
        designs = [_pilot_budget(b, opts, prior, throughput) for b in budgets]
        problems = [d for d in designs if isinstance(d, str)]
        if not problems:
            return budgets, [r for d in designs if not isinstance(d, str) for r in d]
        why = problems[0]
    raise UserError(why)


@dataclass(frozen=True)
class Measured:
    """One finished run of a budget: its size and final validation loss."""

    params: int
    loss: float


def _best_index(points: Sequence[Measured]) -> int:
    return int(np.argmin([p.loss for p in points]))


def midpoint_budgets(budgets: Sequence[float], held_out: int) -> list[float]:
    """The geometric midpoints between the top ``held_out + 1`` budgets (3 significant digits):
    where a ladder whose backtest missed is made denser, so that its backtest refits more
    budgets and holds out budgets nearer them, as the prediction at C does."""
    top = sorted(set(budgets), reverse=True)[: held_out + 1]
    return [float(f"{math.sqrt(a * b):.3g}") for a, b in zip(top, top[1:], strict=False)]


def edge_runs(
    budget: float,
    points: Sequence[Measured],
    opts: PlanOptions,
    throughput: Throughput,
) -> list[PlannedRun]:
    """Sizes to add beyond the edge where a budget's lowest loss sits (its smallest or largest
    size), spaced as its sizes are; none when the minimum is interior or no shape beyond passes
    the guards."""
    points = sorted(points, key=lambda p: p.params)
    if len(points) < 2:
        return []
    best = _best_index(points)
    if 0 < best < len(points) - 1:
        return []
    logs = np.log10([p.params for p in points])
    step = float(np.median(np.diff(logs)))
    below = best == 0
    edge = logs[0] if below else logs[-1]
    passing = passing_shapes(budget, candidate_shapes(opts, budget), opts)
    have = {p.params for p in points}
    out: list[Shape] = []
    for k in range(1, EDGE_SIZES + 1):
        target = edge - k * step if below else edge + k * step
        taken = [*logs, *(math.log10(s.params) for s in out)]
        beyond = [
            s
            for s in passing
            if s.params not in have
            and all(abs(math.log10(s.params) - t) >= step / 3 for t in taken)
            and (
                math.log10(s.params) < edge - step / 3
                if below
                else math.log10(s.params) > edge + step / 3
            )
        ]
        if beyond:
            out.append(min(beyond, key=lambda s: abs(math.log10(s.params) - target)))
    return [
        planned_run(s, budget, 0, opts, throughput) for s in sorted(out, key=lambda s: s.params)
    ]


@dataclass(frozen=True)
class Vertex:
    """A pilot budget's compute-optimal size: a parabola's interior vertex, or its best run."""

    budget: float
    params: float
    interior: bool


def pilot_vertex(budget: float, points: Sequence[Measured]) -> Vertex:
    """The vertex of ``loss ~ ln N`` when convex and inside the sizes, else the best run's size."""
    points = sorted(points, key=lambda p: p.params)
    u = np.log([p.params for p in points])
    parabola = fit_parabola(u, np.array([p.loss for p in points])) if len(points) >= 3 else None
    if parabola is not None and parabola.convex and u[0] < parabola.vertex < u[-1]:
        return Vertex(budget, float(math.exp(parabola.vertex)), True)
    return Vertex(budget, float(points[_best_index(points)].params), False)


def pilot_prior(vertices: Sequence[Vertex]) -> Prior:
    """``N_opt(C) = N_v (C / C_v)^a`` through the pilot's vertices (``a``: their slope in log-log,
    clamped into :data:`EXPONENT_RANGE`; :data:`DEFAULT_EXPONENT` with one budget)."""
    if not vertices:
        raise UserError("the pilot has no budget with a minimum: no ladder can be centred")
    logc = np.log([v.budget for v in vertices])
    logn = np.log([v.params for v in vertices])
    if len(vertices) >= 2 and np.ptp(logc) > 0:
        a = float(np.polyfit(logc, logn, 1)[0])
        a = min(max(a, EXPONENT_RANGE[0]), EXPONENT_RANGE[1])
    else:
        a = DEFAULT_EXPONENT
    c0, n0 = float(np.mean(logc)), float(np.mean(logn))

    def n_opt(C: float) -> float:
        return math.exp(n0 + a * (math.log(C) - c0))

    where = ", ".join(
        f"{v.params:.3g} at {v.budget:.3g}{'' if v.interior else ' (edge)'}" for v in vertices
    )
    return Prior(n_opt=n_opt, source=f"the pilot's minima ({where}), N_opt ∝ C^{a:.3g}")


# ---- the LR check ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LrCheck:
    """What the LR check measured: the rule's LR at the probe, the best LR found, the shift."""

    rule_lr: float
    best_lr: float
    shift: float  # 1.0: the rule stands; else the factor its LR is multiplied by
    at_edge: bool  # the best LR is at an end of the probe: the shift is a lower bound

    @property
    def ratio(self) -> float:
        return self.best_lr / self.rule_lr


def lr_check(rule_lr: float, lrs: Sequence[float], losses: Sequence[float]) -> LrCheck:
    """The best LR of the probe (a parabola's vertex in ``ln lr`` when convex and inside, else
    the best run's) and whether the rule's LR is within :data:`LR_TOLERANCE` of it."""
    order = np.argsort(lrs)
    x = np.log(np.asarray(lrs, dtype=float)[order])
    y = np.asarray(losses, dtype=float)[order]
    parabola = fit_parabola(x, y) if len(x) >= 3 else None
    if parabola is not None and parabola.convex and x[0] < parabola.vertex < x[-1]:
        best, edge = float(math.exp(parabola.vertex)), False
    else:
        i = int(np.argmin(y))
        best, edge = float(math.exp(x[i])), i in (0, len(x) - 1)
    ratio = best / rule_lr
    if abs(math.log(ratio)) <= math.log(LR_TOLERANCE) + 1e-12:
        return LrCheck(rule_lr, best, 1.0, edge)
    shift = min(max(ratio, 1 / LR_SHIFT_LIMIT), LR_SHIFT_LIMIT)
    return LrCheck(rule_lr, best, shift, edge)


def lr_probe_lrs(rule_lr: float) -> list[float]:
    """The LRs the check trains (the rule's own is the pilot's run, or trained with them)."""
    return sorted([rule_lr * f for f in LR_FACTORS] + [rule_lr])


def _designs(opts: PlanOptions, prior: Prior, throughput: Throughput) -> str | None:
    """Why no study can be designed for ``opts`` (its pilot or its ladder), or None."""
    from scaling.analysis.design.plan import _try

    try:
        design_pilot(opts, prior, throughput)
    except UserError as err:
        return str(err)
    plan, why = _try(replace(opts, budget_flops=None, budget_hours=None), prior, throughput)
    return None if plan is not None else f"its ladder cannot be healthy: {why}"


def check_study(opts: PlanOptions, prior: Prior, throughput: Throughput) -> None:
    """:class:`UserError` with one line naming the smallest ``--target-flops`` that works when
    no study can be designed for ``opts`` (checked before anything trains)."""
    from scaling.analysis.design.plan import _nice_values

    why = _designs(opts, prior, throughput)
    if why is None:
        return
    smallest = next(
        (
            t
            for t in _nice_values(opts.target_flops, up=True, decades=4)
            if _designs(replace(opts, target_flops=t), prior, throughput) is None
        ),
        None,
    )
    hint = (
        f"the smallest --target-flops that works is {smallest:.3g}"
        if smallest is not None
        else "no target within 4 decades works"
    )
    raise UserError(
        f"--target-flops {opts.target_flops:.3g} is too small for a study ({why}); {hint}"
    )


def within_guards(prior: Prior, opts: PlanOptions) -> Prior:
    """``prior`` with each budget's ``N_opt`` moved to at least ``span`` decades inside the sizes
    that pass the guards there (their middle when they span less than twice that): a ladder can
    then bracket it; a true optimum beyond the guards shows as an edge vertex in the fit."""

    def n_opt(C: float) -> float:
        passing = passing_shapes(C, candidate_shapes(opts, C), opts)
        if not passing:
            return prior.n_opt(C)
        lo = math.log10(passing[0].params) + opts.span
        hi = math.log10(passing[-1].params) - opts.span
        if lo > hi:
            return 10 ** ((lo + hi) / 2)
        return 10 ** min(max(math.log10(prior.n_opt(C)), lo), hi)

    return Prior(
        n_opt=n_opt, source=f"{prior.source}, kept {opts.span:g} decades inside the guards"
    )
