"""A branched ladder (:mod:`.wsd`) as printed and as the sweep preset ``scaling plan --schedule
wsd`` writes: one ``sweep.point`` per stable run, its budgets as ``train.horizons``.

Pure: the design stack and the core config.
"""

from __future__ import annotations

from scaling.analysis.design.plan import PlannedRun
from scaling.analysis.design.preset import (
    WRITTEN_BY,
    _hparams_text,
    _yaml_float,
    duration,
    fit_note,
    fit_sweep,
    grid_lines,
    point_config,
    point_run_keys,
)
from scaling.analysis.design.wsd import BranchGroup, WsdPlan, group_config
from scaling.counting import count_params
from scaling.numbers import short


def _horizons(g: BranchGroup) -> str:
    return "[" + ", ".join(_yaml_float(h) for h in g.horizons) + "]"


def _point(g: BranchGroup) -> str:
    return (
        f"{{n_layer: {g.shape.n_layer}, d_model: {g.shape.d_model}, "
        f"flops: {_yaml_float(max(g.horizons))}, horizons: {_horizons(g)}, seed: {g.seed}}}"
    )


def _branch(r: PlannedRun) -> str:
    return f"{r.budget:.3g}: {r.steps:,} steps, {r.tokens_per_param:.3g} tok/N"


def wsd_table(plan: WsdPlan) -> str:
    """The branched ladder as printed: its groups (size, seed, batch, LR, branches with their
    steps, tokens and FLOPs trained, estimated time), the points per budget, and both designs'
    totals (the ``total:`` line counts the FLOPs the groups train)."""
    o = plan.points.options
    budgets = plan.points.budgets
    lines = [
        f"IsoFLOP ladder of WSD cooldown branches for C* = {o.target_flops:.3g} FLOPs: "
        f"{len(budgets)} budgets ({', '.join(f'{b.flops:.3g}' for b in budgets)}; "
        f"up to C*/{o.extrapolation:g}) sharing one grid of sizes "
        f"(+-{o.span:.2g} decades, a budget's N_opt one grid step below the next's)",
        f"prior N_opt(C): {plan.points.prior}; N_opt(C*) = {short(plan.points.target_n_opt)}",
        f"throughput: {plan.points.throughput}",
        f"guards: >= {o.min_steps} optimizer steps per branch, {o.tpp_range[0]:g}.."
        f"{o.tpp_range[1]:g} tokens/param; {_hparams_text(o)}, vocabulary {o.vocab_size}; a "
        "group trains every branch at the batch and LR of its longest",
        "",
        f"{'group':<24} {'params':>9} {'batch':>5} {'lr':>8} {'tokens':>11} {'FLOPs':>9} "
        f"{'est. time':>9}  branches (budget: steps, tokens/param)",
    ]
    for g in plan.groups:
        name = f"L{g.shape.n_layer}-d{g.shape.d_model}-s{g.seed}" + (
            " (seed)" if g.replicate else ""
        )
        first = g.branches[0]
        lines.append(
            f"{name:<24} {g.shape.params:>9,} {first.batch_size:>5} {first.lr:>8.3g} "
            f"{g.tokens:>11,} {g.flops:>9.3g} {duration(g.seconds):>9}  "
            + "; ".join(_branch(r) for r in g.branches)
        )
    lines.append("")
    for b in budgets:
        sizes = ", ".join(short(r.params) for r in b.runs)
        lines.append(f"-- budget {b.flops:.3g} FLOPs, prior N_opt = {short(b.n_opt)}: {sizes}")
    sep = plan.separate
    points = len(plan.points.runs)
    lines += [
        "",
        f"separate runs for the same target (--schedule cosine): {len(sep.runs)} runs, "
        f"{sep.total_flops:.3g} FLOPs, about {duration(sep.total_hours * 3600)} of training",
        f"total: {len(plan.groups)} runs ({points} points as cooldown branches), "
        f"{plan.total_flops:.3g} FLOPs, about {duration(plan.total_hours * 3600)} of training "
        f"({plan.total_flops / sep.total_flops:.2f}x the separate runs' FLOPs)",
    ]
    return "\n".join(lines)


def wsd_preset(plan: WsdPlan, name: str, command: str) -> str:
    """The sweep preset ``sweeps/NAME.yaml``: one ``sweep.point`` per group (its size, seed,
    largest budget as ``train.flops`` and every budget as ``train.horizons``)."""
    o = plan.points.options
    keys = {**o.train_keys(), "schedule": "wsd", "horizons": "${sweep.point.horizons}"}
    lines = [
        "# @package _global_",
        f"# python -m scaling.sweep -m sweeps={name}",
        "#",
        f"{WRITTEN_BY}{command}",
        f"# A planned IsoFLOP ladder of WSD cooldown branches for C* = {o.target_flops:.3g} "
        "FLOPs (scaling plan --schedule wsd):",
        f"# budgets {', '.join(f'{b.flops:.3g}' for b in plan.points.budgets)} share one grid "
        "of sizes; each size trains one stable run",
        "# and a cooldown branch per budget (train.horizons, in FLOPs), each branch its own "
        "MLflow run with train.flops = its budget.",
        f"# {len(plan.groups)} stable runs, {len(plan.points.runs)} points, "
        f"{plan.total_flops:.3g} FLOPs trained (separate runs: {plan.separate.total_flops:.3g}).",
        fit_note(name, o.verify),
        "",
        *point_run_keys(name, keys, o.seq_len, o.head_dim),
        *fit_sweep(o, _point(plan.groups[0])),
        *grid_lines([_point(g) for g in plan.groups]),
    ]
    return "\n".join(lines)


def validate_groups(plan: WsdPlan) -> None:
    """Every group through :func:`scaling.config.build_run_config`, as the sweep validates it:
    the same branches, tokens, batch and LR as planned."""
    o = plan.points.options
    for g in plan.groups:
        train = {"tokens": None, "flops": max(g.horizons), "horizons": g.horizons}
        cfg = point_config(o, g.shape, g.seed, {**train, "schedule": "wsd"})
        planned = group_config(o, g.shape, g.horizons)
        if (
            count_params(cfg.model).total != g.shape.params
            or [b.tokens for b in cfg.branches()] != [r.tokens for r in g.branches]
            or (cfg.train.batch_size, cfg.train.lr) != (planned.train.batch_size, planned.train.lr)
            or cfg.spent_tokens() != g.tokens
        ):
            raise AssertionError(f"group {_point(g)}: the sweep would train another run")
