"""``scaling plan``: design a healthy IsoFLOP ladder for a target compute, before training it.

A ladder is a few compute budgets, spaced geometrically (``--ratio``, ×3 by default) up to
``C*/k`` (``k = 10``: the target is a tenfold extrapolation of the largest budget), and at each
budget several model sizes centred in log N on the current best guess of the compute-optimal size
``N_opt(C)`` (:mod:`.prior`).  The sizes span ``±span`` decades (0.6) so the IsoFLOP vertex is
interior even when the guess is off by a factor of two.

The achievable sizes are discrete (:mod:`.shapes`): each wanted size snaps to the nearest distinct
shape, whose tokens, optimizer steps and FLOPs come from the run's own horizon
(:meth:`.options.PlanOptions.run_config`: ``train.flops`` -> whole optimizer steps of
``batch_size × seq_len`` tokens), exactly as the sweep will train it, and whose wall-clock from a
throughput model (:mod:`.throughput`).

Guards (all checked before anything is written): a run with fewer than ``min_steps`` optimizer
steps or tokens per parameter outside ``tpp_range`` is not planned; a budget without ``sizes``
such runs that bracket ``N_opt`` by :func:`bracket_margin` decades on both sides is not healthy;
a ladder needs at least ``min_budgets`` (3) healthy budgets from the top down, within the
experiment budget (FLOPs, or hours of this machine through the throughput model). Otherwise
:func:`plan_ladder` raises :class:`~scaling.errors.UserError` with one line saying what is
affordable (the smallest target or budget that works, a batch size or shape family that would).

The plan is printed and written as a sweep preset by :mod:`.preset`.

Pure: numpy and the core (counting, config), no torch, Lightning or MLflow.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from scaling.analysis.design.options import PLAN_MIN_STEPS, PlanOptions
from scaling.analysis.design.prior import Prior, default_prior
from scaling.analysis.design.shapes import SNAP_TOLERANCE, Shape, shapes, snap
from scaling.analysis.design.throughput import Throughput
from scaling.counting import count_params
from scaling.errors import UserError
from scaling.numbers import short
from scaling.run_config import RunConfig

# ---- the runs of a plan --------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedRun:
    """One run of the ladder, with its horizon as the sweep will train it."""

    budget: float  # train.flops
    shape: Shape
    seed: int
    tokens: int  # whole optimizer steps of batch_size x seq_len
    steps: int
    flops: float  # 6N x tokens (train.flops_convention's FLOPs)
    batch_size: int
    lr: float
    seconds: float
    replicate: bool = False

    @property
    def params(self) -> int:
        return self.shape.params

    @property
    def tokens_per_param(self) -> float:
        return self.tokens / self.shape.params

    @property
    def name(self) -> str:
        return (
            f"C{self.budget:.3g}-L{self.shape.n_layer}-d{self.shape.d_model}-"
            f"N{short(self.params)}-s{self.seed}"
        ).replace("+", "")


@dataclass(frozen=True)
class BudgetPlan:
    """The sizes of one compute budget, centred on the prior's ``N_opt``."""

    flops: float
    n_opt: float
    runs: tuple[PlannedRun, ...]  # seed 0, by size
    centre: PlannedRun  # the size nearest N_opt (log), replicated with other seeds


@dataclass(frozen=True)
class Plan:
    options: PlanOptions
    budgets: tuple[BudgetPlan, ...]  # from the top down
    replicates: tuple[PlannedRun, ...]
    prior: str
    throughput: str
    target_n_opt: float

    @property
    def runs(self) -> tuple[PlannedRun, ...]:
        """Every run: the ladder by budget (top down) and size, then the seed replicates."""
        return tuple(r for b in self.budgets for r in b.runs) + self.replicates

    @property
    def total_flops(self) -> float:
        return sum(r.flops for r in self.runs)

    @property
    def total_hours(self) -> float:
        return sum(r.seconds for r in self.runs) / 3600.0


# ---- runs and guards -----------------------------------------------------------------------


def planned_run(
    shape: Shape, budget: float, seed: int, opts: PlanOptions, throughput: Throughput
) -> PlannedRun:
    """The run ``model.n_layer, model.d_model, train.flops=budget, seed`` trains (its horizon
    from :class:`~scaling.run_config.RunConfig`, as the sweep computes it)."""
    run = _horizon(shape, budget, opts)  # the seed changes neither tokens nor steps
    return run_of(shape, seed, run, throughput)


def run_of(
    shape: Shape, seed: int, run: RunConfig, throughput: Throughput, replicate: bool = False
) -> PlannedRun:
    """The planned run of ``shape`` that ``run`` (a resolved run config at ``train.flops``)
    trains: its tokens, steps, batch, LR and estimated time."""
    return PlannedRun(
        budget=float(run.train.flops),  # type: ignore[arg-type]
        shape=shape,
        seed=seed,
        tokens=run.tokens,
        steps=run.steps,
        flops=run.flops("6N"),
        batch_size=run.train.batch_size,
        lr=float(run.train.lr),
        seconds=throughput.seconds(shape.params, run.tokens, run.steps),
        replicate=replicate,
    )


def guard_problem(run: PlannedRun, opts: PlanOptions) -> str | None:
    """Why ``run`` cannot mean anything (too few steps, tokens per parameter out of range)."""
    return _guard(run.steps, run.tokens_per_param, opts)


def run_problem(cfg: RunConfig, min_steps: int = PLAN_MIN_STEPS) -> str | None:
    """Why a configured run cannot mean anything under the planner's guards (too few optimizer
    steps, tokens per parameter outside the sane range), or None; a WSD branch group is judged
    by its shortest horizon."""
    runs = cfg.branches()[:1] if cfg.train.horizons is not None else [cfg]
    run = runs[0]
    opts = PlanOptions(target_flops=1.0, min_steps=min_steps)
    return _guard(run.steps, run.tokens / count_params(run.model).total, opts)


def _guard(steps: int, tokens_per_param: float, opts: PlanOptions) -> str | None:
    if steps < opts.min_steps:
        return f"{steps} optimizer steps < {opts.min_steps}"
    lo, hi = opts.tpp_range
    if not lo <= tokens_per_param <= hi:
        return f"{tokens_per_param:.3g} tokens/param outside {lo:g}..{hi:g}"
    return None


def passing_shapes(budget: float, candidates: Sequence[Shape], opts: PlanOptions) -> list[Shape]:
    """The shapes whose run at ``budget`` passes the guards (exact steps, as the run counts)."""
    per_step = opts.step_tokens(budget)
    lo, hi = opts.tpp_range
    # C = 6ND bounds the window; 2% slack, then the exact check of each shape in it
    n_max = min(budget / (6.0 * opts.min_steps * per_step), math.sqrt(budget / (6.0 * lo)))
    n_min = math.sqrt(budget / (6.0 * hi))
    params = [s.params for s in candidates]
    first = bisect.bisect_left(params, n_min / 1.02)
    last = bisect.bisect_right(params, n_max * 1.02)
    out = []
    for shape in candidates[first:last]:
        run = _horizon(shape, budget, opts)
        if _guard(run.steps, run.tokens / shape.params, opts) is None:
            out.append(shape)
    return out


@lru_cache(maxsize=4096)
def _horizon(shape: Shape, budget: float, opts: PlanOptions) -> RunConfig:
    """The run the sweep builds for ``shape`` at ``budget`` (its tokens and steps)."""
    return opts.run_config(shape.model, budget)


def bracket_margin(opts: PlanOptions) -> float:
    """Decades each budget's smallest and largest sizes reach beyond ``N_opt``: half the span,
    less the snapping tolerance (so the vertex stays interior with a prior off by ~1.8x)."""
    return opts.span / 2 - SNAP_TOLERANCE


def design_budget(
    budget: float,
    n_opt: float,
    candidates: Sequence[Shape],
    opts: PlanOptions,
    throughput: Throughput,
) -> BudgetPlan | str:
    """``opts.sizes`` shapes passing the guards, nearest to sizes spaced evenly in log N over
    ``n_opt · 10^±span``, bracketing ``n_opt`` by :func:`bracket_margin`; else why not.

    Each wanted size (the centre first) takes the nearest passing shape at least a third of the
    wanted spacing away from those already taken (two near-equal sizes tell a parabola
    nothing); among free shapes within :data:`SNAP_TOLERANCE` of the nearest, the one closest
    to the default aspect.
    """
    passing = passing_shapes(budget, candidates, opts)
    if len(passing) < opts.sizes:
        return (
            f"only {len(passing)} size{'s' if len(passing) != 1 else ''} pass the guards "
            f"(>= {opts.min_steps} steps, {opts.tpp_range[0]:g}..{opts.tpp_range[1]:g} "
            f"tokens/param) at {budget:.3g} FLOPs"
        )
    log_opt = math.log10(n_opt)
    wanted = log_opt + np.linspace(-opts.span, opts.span, opts.sizes)
    apart = 2 * opts.span / (opts.sizes - 1) / 3  # a third of the wanted spacing, at least
    chosen: list[Shape] = []
    for target in sorted(wanted, key=lambda t: abs(t - log_opt)):  # the centre first
        free = [
            s
            for s in passing
            if all(abs(math.log10(s.params / c.params)) >= apart - 1e-9 for c in chosen)
        ]
        if not free:
            return (
                f"at {budget:.3g} FLOPs only {len(chosen)} sizes at least {apart:.2g} decades "
                f"apart pass the guards ({opts.min_steps} steps, {opts.tpp_range[0]:g}.."
                f"{opts.tpp_range[1]:g} tokens/param)"
            )
        chosen.append(snap(free, target))
    chosen.sort(key=lambda s: s.params)
    margin = bracket_margin(opts)
    low, high = math.log10(chosen[0].params), math.log10(chosen[-1].params)
    if low > log_opt - margin or high < log_opt + margin:
        side = "below" if low > log_opt - margin else "above"
        return (
            f"at {budget:.3g} FLOPs the sizes that pass the guards ({short(chosen[0].params)}.."
            f"{short(chosen[-1].params)}) do not reach {margin:.2g} decades {side} "
            f"N_opt = {short(n_opt)}"
        )
    runs = tuple(planned_run(s, budget, 0, opts, throughput) for s in chosen)
    centre = min(runs, key=lambda r: abs(math.log10(r.params) - log_opt))
    return BudgetPlan(flops=budget, n_opt=n_opt, runs=runs, centre=centre)


def _budget_values(opts: PlanOptions) -> list[float]:
    top = opts.top_budget
    count = opts.max_budgets or 64
    return [float(f"{top / opts.ratio**j:.3g}") for j in range(count)]


def healthy_budgets(
    opts: PlanOptions, prior: Prior, throughput: Throughput
) -> tuple[list[BudgetPlan], str | None]:
    """The healthy budgets from the top (``target / k``) down, and why the next one is not."""
    values = _budget_values(opts)
    top = values[0]  # no run above these sizes passes the guards (C = 6ND, 2% slack)
    if top < opts.smallest_budget():
        return [], f"a top budget of {top:.3g} FLOPs holds fewer than {opts.min_steps} steps"
    max_params = 1.02 * min(
        top / (6.0 * opts.min_steps * opts.step_tokens(top)),
        math.sqrt(top / (6.0 * opts.tpp_range[0])),
    )
    candidates = shapes(opts, max(max_params, 1.0))
    out: list[BudgetPlan] = []
    for budget in values:
        design = design_budget(budget, prior.n_opt(budget), candidates, opts, throughput)
        if isinstance(design, str):
            return out, design
        out.append(design)
    return out, None


def _replicates(budgets: Sequence[BudgetPlan], opts: PlanOptions, tp: Throughput) -> tuple:
    return tuple(
        replace(planned_run(b.centre.shape, b.flops, seed, opts, tp), replicate=True)
        for b in budgets
        for seed in range(1, opts.replicates + 1)
    )


def _cost(plan: Plan, opts: PlanOptions) -> float:
    """The plan's cost in the budget's unit (FLOPs or hours); 0 without a budget."""
    if opts.budget_hours is not None:
        return plan.total_hours
    if opts.budget_flops is not None:
        return plan.total_flops
    return 0.0


def _limit(opts: PlanOptions) -> float:
    if opts.budget_hours is not None:
        return opts.budget_hours
    return opts.budget_flops if opts.budget_flops is not None else math.inf


def _assemble(
    budgets: Sequence[BudgetPlan], opts: PlanOptions, prior: Prior, throughput: Throughput
) -> Plan:
    return Plan(
        options=opts,
        budgets=tuple(budgets),
        replicates=_replicates(budgets, opts, throughput),
        prior=prior.source,
        throughput=throughput.describe(),
        target_n_opt=prior.n_opt(opts.target_flops),
    )


def _try(opts: PlanOptions, prior: Prior, throughput: Throughput) -> tuple[Plan | None, str]:
    """The ladder with the most healthy budgets within the budget, or None and why not."""
    budgets, why = healthy_budgets(opts, prior, throughput)
    if len(budgets) < opts.min_budgets:
        return None, why or "too few budgets"
    for n in range(len(budgets), opts.min_budgets - 1, -1):  # as many as the budget affords
        plan = _assemble(budgets[:n], opts, prior, throughput)
        if _cost(plan, opts) <= _limit(opts):
            return plan, ""
    return None, "budget"


# Values tried when looking for what is affordable: 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 x 10^k.
_NICE = (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)


def _nice_values(start: float, up: bool, decades: int = 8) -> list[float]:
    e = math.floor(math.log10(start))
    grid = [m * 10.0**k for k in range(e - decades - 1, e + decades + 2) for m in _NICE]
    grid = [float(f"{v:.3g}") for v in grid]
    return (
        sorted((v for v in grid if v > start), reverse=False)
        if up
        else sorted((v for v in grid if v < start), reverse=True)
    )


def _unconstrained(opts: PlanOptions) -> PlanOptions:
    return replace(opts, budget_flops=None, budget_hours=None)


def plan_ladder(
    opts: PlanOptions, prior: Prior | None = None, throughput: Throughput | None = None
) -> Plan:
    """The ladder for ``opts``, or :class:`UserError` with one line saying what is affordable."""
    opts.check()
    prior = prior or default_prior()
    throughput = throughput or Throughput.default()
    plan, why = _try(opts, prior, throughput)
    if plan is not None:
        return plan
    shape = (
        f"{opts.min_budgets} budgets x {opts.sizes} sizes bracketing N_opt, every run >= "
        f"{opts.min_steps} steps and {opts.tpp_range[0]:g}..{opts.tpp_range[1]:g} tokens/param"
    )
    if why != "budget":  # the guards, whatever the budget
        free = _unconstrained(opts)
        smallest = next(
            (
                t
                for t in _nice_values(opts.target_flops, up=True)
                if _try(replace(free, target_flops=t), prior, throughput)[0] is not None
            ),
            None,
        )
        fix = next(
            (
                flags
                for flags, changed in _alternatives(free)
                if _try(changed, prior, throughput)[0] is not None
            ),
            None,
        )
        options = []
        if smallest is not None:
            options.append(f"the smallest --target-flops that works is {smallest:.3g}")
        if fix is not None:
            options.append(f"{fix} makes this target work")
        hint = "; ".join(options) if options else "no target, batch size or shape family works"
        raise UserError(
            f"--target-flops {opts.target_flops:.3g} cannot get a healthy ladder ({shape}, "
            f"budgets <= C*/{opts.extrapolation:g} = {opts.top_budget:.3g}, "
            f"train.batch_size={opts.batch_size}, --shapes {opts.shapes}): {why}; {hint}"
        )
    # healthy, but over the experiment budget
    cheapest, _ = _try(
        replace(_unconstrained(opts), max_budgets=opts.min_budgets), prior, throughput
    )
    assert cheapest is not None
    flag = "--budget-hours" if opts.budget_hours is not None else "--budget-flops"
    given = opts.budget_hours if opts.budget_hours is not None else opts.budget_flops
    need = _cost(cheapest, opts)
    largest = next(
        (
            t
            for t in _nice_values(opts.target_flops, up=False)
            if _try(replace(opts, target_flops=t), prior, throughput)[0] is not None
        ),
        None,
    )
    other = f"; or --target-flops {largest:.3g}" if largest is not None else ""
    raise UserError(
        f"{flag} {given:.3g} cannot afford a healthy ladder for --target-flops "
        f"{opts.target_flops:.3g}: the smallest ({len(cheapest.runs)} runs, {shape}) needs "
        f"{cheapest.total_flops:.3g} FLOPs, about {cheapest.total_hours:.3g} h: pass "
        f"{flag} {_round_up(need):.3g} or more{other}"
    )


def _alternatives(opts: PlanOptions) -> list[tuple[str, PlanOptions]]:
    """Changes that may make a target work, fewest first: a smaller batch (more steps), then
    free shapes (denser sizes), then both."""
    batches: list[int] = []
    b = opts.batch_size // 2 if isinstance(opts.batch_size, int) else 0
    while b >= 1:
        batches.append(b)
        b //= 2
    out = [(f"--batch-size {b}", replace(opts, batch_size=b)) for b in batches]
    if opts.shapes != "free":
        out.append(("--shapes free", replace(opts, shapes="free")))
        out += [
            (f"--shapes free --batch-size {b}", replace(opts, shapes="free", batch_size=b))
            for b in batches
        ]
    return out


def _round_up(x: float) -> float:
    """``x`` rounded up to two significant digits (what to pass so that it is enough)."""
    if x <= 0:
        return x
    scale = 10.0 ** (math.floor(math.log10(x)) - 1)
    return math.ceil(x / scale - 1e-9) * scale
