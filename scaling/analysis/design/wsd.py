"""``scaling plan --schedule wsd``: an IsoFLOP ladder made of warmup-stable-decay cooldown branches.

Each model size trains ONE stable run (warmup, then its peak LR) and from its checkpoints one
short cooldown per budget the size takes part in (Hägele et al. 2024;
:mod:`scaling.training.branches`): a branch is the plain ``wsd`` run of its budget, recorded as
its own MLflow run with ``train.flops`` = the budget, so the IsoFLOP fit groups branches by
budget as it groups separate runs.

For the branches to share a stable run the budgets must share sizes: :func:`plan_wsd` builds one
grid of shapes from the top budget's ``N_opt``, spaced by how far ``N_opt`` moves from one budget
to the next (:func:`grid_step`), takes the span of a budget's sizes as ``(sizes − 1) / 2`` such
steps, and gives each budget the grid's shapes nearest its own window (the rule of a
separate-runs ladder, :func:`~.plan.design_budget`, on the grid): the next budget's sizes are
this one's moved one grid point down, so a size's budgets become its horizons ×3 apart.

A group (a size and a seed) resolves its batch and LR once, at its longest horizon's compute (as
the sweep resolves ``auto`` for a group), and every branch trains at them; a branch that then
fails the guards (fewer than ``min_steps`` steps, tokens per parameter out of range) is dropped,
and a budget left with fewer than three sizes ends the ladder there (as
:func:`~.plan.healthy_budgets` does). The plan's FLOPs are those trained: each group's stable
phase up to its last cooldown start plus every cooldown.

Pure: numpy and the design stack.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from scaling.analysis.design.options import PlanOptions
from scaling.analysis.design.plan import (
    BudgetPlan,
    Plan,
    PlannedRun,
    design_budget,
    guard_problem,
    healthy_budgets,
    plan_ladder,
    run_of,
)
from scaling.analysis.design.prior import Prior, default_prior
from scaling.analysis.design.shapes import Shape, shapes, snap
from scaling.analysis.design.throughput import Throughput
from scaling.auto import AUTO
from scaling.config import DataConfig, TrainConfig, TrainerConfig, resolve_auto
from scaling.errors import ConfigError, UserError
from scaling.run_config import RunConfig

MIN_SIZES = 3  # a budget with fewer sizes left cannot place a parabola's vertex
_DATA = DataConfig()


@dataclass(frozen=True)
class BranchGroup:
    """One stable run of a size and seed, and its cooldown branches (one per budget)."""

    shape: Shape
    seed: int
    branches: tuple[PlannedRun, ...]  # shortest first, at the group's batch and LR
    tokens: int  # trained: the stable phase up to the last cooldown start, plus every cooldown
    seconds: float
    replicate: bool = False

    @property
    def flops(self) -> float:
        return 6.0 * self.shape.params * self.tokens

    @property
    def horizons(self) -> list[float]:
        """The budgets (``train.flops`` of each branch), shortest first."""
        return [b.budget for b in self.branches]


@dataclass(frozen=True)
class WsdPlan:
    """The branched ladder: its points by budget (as a :class:`~.plan.Plan`), its groups, and
    the separate-runs ladder of the same options for comparison."""

    points: Plan
    groups: tuple[BranchGroup, ...]
    separate: Plan

    @property
    def total_flops(self) -> float:
        return sum(g.flops for g in self.groups)

    @property
    def total_hours(self) -> float:
        return sum(g.seconds for g in self.groups) / 3600.0


def group_config(opts: PlanOptions, shape: Shape, budgets: Sequence[float]) -> RunConfig:
    """The group the sweep builds for ``shape`` with one branch per budget: ``train.flops`` the
    largest, ``train.horizons`` all of them, ``auto`` keys resolved at the largest."""
    given = {k: v for k, v in opts.train_keys().items() if v != AUTO}
    train = TrainConfig(
        tokens=None, flops=max(budgets), horizons=sorted(budgets), schedule="wsd", **given
    )
    if opts.auto_keys:
        train, _ = resolve_auto(shape.model, _DATA, train, TrainerConfig(), opts.auto_keys, False)
    return RunConfig(model=shape.model, data=_DATA, train=train)


def _group(
    shape: Shape,
    seed: int,
    budgets: Sequence[float],
    opts: PlanOptions,
    throughput: Throughput,
    replicate: bool = False,
) -> BranchGroup | None:
    """The group of ``shape`` at ``budgets``, its branches that pass the guards; None if none."""
    kept = list(budgets)
    while kept:
        cfg = group_config(opts, shape, kept)
        runs = [run_of(shape, seed, b, throughput, replicate) for b in cfg.branches()]
        bad = [r.budget for r in runs if guard_problem(r, opts) is not None]
        if not bad:
            try:
                cfg.validate_horizon()
            except ConfigError:  # the shortest branch cannot hold the shared warmup
                bad = [min(kept)]
        if not bad:
            tokens = cfg.spent_tokens()
            steps = tokens // cfg.tokens_per_step
            seconds = throughput.seconds(shape.params, tokens, steps)
            return BranchGroup(shape, seed, tuple(runs), tokens, seconds, replicate)
        kept = [b for b in kept if b not in bad]  # the batch changes with the longest: again
    return None


def grid_step(budgets: Sequence[BudgetPlan], opts: PlanOptions) -> float:
    """Decades between the grid's sizes: how far ``N_opt`` moves from one budget to the next
    (the median over the ladder), so that the next budget's sizes are this one's moved down one
    grid point; ``2 · span / (sizes − 1)`` with a single budget."""
    logs = np.log10([b.n_opt for b in budgets])
    moves = np.abs(np.diff(logs))
    return float(np.median(moves)) if len(moves) else 2 * opts.span / (opts.sizes - 1)


def size_grid(budgets: Sequence[BudgetPlan], opts: PlanOptions) -> list[Shape]:
    """The shapes every budget draws from: sizes ``2 · span / (sizes − 1)`` decades apart from
    the top budget's ``N_opt``, over every budget's window and a step beyond, snapped."""
    step = 2 * opts.span / (opts.sizes - 1)
    logs = [math.log10(b.n_opt) for b in budgets]
    anchor = logs[0]
    lo, hi = min(logs) - opts.span - step, max(logs) + opts.span + step
    catalogue = shapes(opts, 10**hi * 1.5)
    grid = {
        snap(catalogue, anchor + k * step)
        for k in range(math.floor((lo - anchor) / step), math.ceil((hi - anchor) / step) + 1)
    }
    return sorted(grid, key=lambda s: s.params)


def _points(
    budgets: Sequence[BudgetPlan], opts: PlanOptions, throughput: Throughput
) -> list[BudgetPlan]:
    """Each budget's sizes from the shared grid, top down, while a budget can have them."""
    grid = size_grid(budgets, opts)
    out: list[BudgetPlan] = []
    for b in budgets:
        design = design_budget(b.flops, b.n_opt, grid, opts, throughput)
        if isinstance(design, str):
            break
        out.append(design)
    return out


def plan_wsd(
    opts: PlanOptions, prior: Prior | None = None, throughput: Throughput | None = None
) -> WsdPlan:
    """The branched ladder for ``opts`` (its experiment budget counts the FLOPs or hours the
    groups train), or :class:`UserError` with one line."""
    prior = prior or default_prior()
    throughput = throughput or Throughput.default()
    free = replace(opts, budget_flops=None, budget_hours=None)
    separate = plan_ladder(free, prior, throughput)  # the guards' verdict, and the comparison
    candidates, _ = healthy_budgets(free, prior, throughput)
    opts = replace(opts, span=grid_step(candidates, opts) * (opts.sizes - 1) / 2)
    budgets = _points(candidates, opts, throughput)
    why = f"only {len(budgets)} budgets get {opts.sizes} sizes from one grid of sizes"
    for n in range(len(budgets), opts.min_budgets - 1, -1):
        plan = _assemble(budgets[:n], opts, prior, throughput, separate)
        if plan is None:
            why = "a budget keeps fewer than 3 sizes once each size trains at its group's batch"
            continue
        cost = plan.total_hours if opts.budget_hours is not None else plan.total_flops
        limit = opts.budget_hours if opts.budget_hours is not None else opts.budget_flops
        if limit is None or cost <= limit:
            return plan
        why = f"the budget affords {n - 1} budgets or fewer"
    raise UserError(
        f"--schedule wsd cannot plan a healthy ladder for --target-flops "
        f"{opts.target_flops:.3g}: {why}; plan it with --schedule cosine"
    )


def _assemble(
    budgets: Sequence[BudgetPlan],
    opts: PlanOptions,
    prior: Prior,
    throughput: Throughput,
    separate: Plan,
) -> WsdPlan | None:
    """The groups of ``budgets``' sizes (seed 0) and the top budget's centre size's group again
    with seeds 1..``replicates`` (a replicate must be the same branches: the group's batch, LR
    and warmup come from its horizons), their branches at the group's batch; None when a budget
    keeps fewer than :data:`MIN_SIZES`."""
    by_shape: dict[Shape, list[float]] = {}
    for b in budgets:
        for r in b.runs:
            by_shape.setdefault(r.shape, []).append(b.flops)
    groups = [_group(s, 0, bs, opts, throughput) for s, bs in by_shape.items()]
    centre = next((g for g in groups if g and g.shape == budgets[0].centre.shape), None)
    if centre is not None:  # the same group with other seeds: seed pairs at each of its budgets
        groups += [
            _group(centre.shape, seed, centre.horizons, opts, throughput, replicate=True)
            for seed in range(1, opts.replicates + 1)
        ]
    kept = tuple(g for g in groups if g is not None)
    points: list[BudgetPlan] = []
    for b in budgets:
        runs = tuple(r for g in kept if not g.replicate for r in g.branches if r.budget == b.flops)
        if len(runs) < MIN_SIZES:
            return None
        runs = tuple(sorted(runs, key=lambda r: r.params))
        centre = min(runs, key=lambda r: abs(math.log10(r.params / b.n_opt)))
        points.append(BudgetPlan(flops=b.flops, n_opt=b.n_opt, runs=runs, centre=centre))
    replicates = tuple(r for g in kept if g.replicate for r in g.branches)
    plan = Plan(
        options=opts,
        budgets=tuple(points),
        replicates=replicates,
        prior=prior.source,
        throughput=throughput.describe(),
        target_n_opt=prior.n_opt(opts.target_flops),
    )
    return WsdPlan(points=plan, groups=kept, separate=separate)
