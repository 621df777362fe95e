"""The output of ``scaling plan``: the printed table and the sweep preset ``sweeps/NAME.yaml``.

The table (:func:`plan_table`) shows every planned run (shape, parameters, tokens, steps, batch,
LR, FLOPs, estimated wall-clock) by budget, and the total against the experiment budget.

The preset (:func:`preset_yaml`) lists explicit runs, not a grid: each run is one value of
``sweep.point`` (``{n_layer, d_model, flops, seed}``) and ``model.n_layer``, ``model.d_model``,
``train.flops`` and ``seed`` interpolate it, because a per-budget set of sizes is no Cartesian
product; the sweep finds it in ``sweeps/`` of the working directory.  Before it is written,
:func:`validate_points` builds every run as the sweep will (:func:`scaling.config.build_run_config`)
and :func:`check_name` refuses a name that would hide a shipped preset.

Pure: the core only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scaling.analysis.design.options import PlanOptions
from scaling.analysis.design.plan import Plan, PlannedRun
from scaling.analysis.design.shapes import Shape
from scaling.config import SWEEPS_DIR, GPTConfig, build_run_config
from scaling.counting import count_params
from scaling.errors import UserError
from scaling.numbers import short
from scaling.run_config import RunConfig

WRITTEN_BY = "# Written by: "  # the header line of a preset that `scaling plan` wrote


def _planned(path: Path) -> bool:
    """Whether ``path`` is a preset that `scaling plan` wrote (its header names the command)."""
    with open(path, encoding="utf-8") as f:
        return any(line.startswith(WRITTEN_BY) for _, line in zip(range(8), f))


def shipped_presets() -> tuple[str, ...]:
    """The shipped presets' names (sweeps/*.yaml), which a planned preset may not shadow or
    overwrite. In a checkout the shipped folder is also the repository's ./sweeps/, where `scaling
    plan` writes: the presets it wrote there are the user's, not shipped."""
    return tuple(sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml") if not _planned(p)))


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def plan_table(plan: Plan) -> str:
    """The plan as printed: header, one row per run, the total."""
    o = plan.options
    head = [
        f"IsoFLOP ladder for C* = {o.target_flops:.3g} FLOPs: {len(plan.budgets)} budgets x "
        f"{o.sizes} sizes ({', '.join(f'{b.flops:.3g}' for b in plan.budgets)}; x{o.ratio:g} "
        f"apart, top = C*/{o.extrapolation:g}) + {len(plan.replicates)} seed replicates",
        f"prior N_opt(C): {plan.prior}; N_opt(C*) = {short(plan.target_n_opt)}",
        f"throughput: {plan.throughput}",
        f"guards: >= {o.min_steps} optimizer steps, {o.tpp_range[0]:g}..{o.tpp_range[1]:g} "
        f"tokens/param; sizes span about +-{o.span:g} decades around N_opt; "
        f"{_hparams_text(o)}, vocabulary {o.vocab_size}",
        "",
    ]
    cols = (
        f"{'run':<30} {'n_layer':>7} {'d_model':>7} {'params':>9} {'tokens':>11} "
        f"{'steps':>6} {'tok/N':>6} {'batch':>5} {'lr':>7} {'FLOPs':>9} {'est. time':>9}"
    )
    rows = [cols]
    for b in plan.budgets:
        rows.append(f"-- budget {b.flops:.3g} FLOPs, prior N_opt = {short(b.n_opt)}")
        rows.extend(_row(r) for r in b.runs)
    if plan.replicates:
        rows.append("-- seed replicates (the centre size of each budget), for the noise estimate")
        rows.extend(_row(r) for r in plan.replicates)
    total = (
        f"total: {len(plan.runs)} runs, {plan.total_flops:.3g} FLOPs, about "
        f"{duration(plan.total_hours * 3600)} of training"
    )
    if o.budget_hours is not None:
        total += f" (budget {o.budget_hours:g} h, {plan.total_hours / o.budget_hours:.0%} used)"
    elif o.budget_flops is not None:
        total += (
            f" (budget {o.budget_flops:.3g} FLOPs, {plan.total_flops / o.budget_flops:.0%} used)"
        )
    return "\n".join(head + rows + [total])


def _hparams_text(o: PlanOptions) -> str:
    if not o.auto_keys:
        return f"{o.batch_size} x {o.seq_len} tokens per step, lr {o.lr:g}"
    rule = f"train.hparams_rule={o.hparams_rule}" if o.hparams_rule else "./hparams.json or shipped"
    fixed = [f"{k} {getattr(o, k)}" for k in ("batch_size", "lr") if k not in o.auto_keys]
    return (
        f"{' and '.join(o.auto_keys)} auto (the hparams rule of each budget: {rule})"
        + (f", {', '.join(fixed)}" if fixed else "")
        + f", seq_len {o.seq_len}"
    )


def _row(r: PlannedRun) -> str:
    return (
        f"{r.name:<30} {r.shape.n_layer:>7} {r.shape.d_model:>7} {r.params:>9,} {r.tokens:>11,} "
        f"{r.steps:>6,} {r.tokens_per_param:>6.3g} {r.batch_size:>5} {r.lr:>7.3g} "
        f"{r.flops:>9.3g} {duration(r.seconds):>9}"
    )


def check_name(name: str) -> None:
    if not _NAME.match(name) or ".." in name:
        raise UserError(
            f"--name {name!r} must be letters, digits, '_', '-' or '.' (it names "
            "sweeps/NAME.yaml, the experiment and results/NAME.csv), e.g. --name ladder"
        )
    if name in shipped_presets():
        raise UserError(
            f"--name {name} is a shipped preset (sweeps={name}) that would hide this one: "
            "choose another name"
        )


def _yaml_float(x: float) -> str:
    """``x`` as YAML 1.1 and Hydra both read a float: ``3.0e+12``, never ``3e+12`` (a string to
    YAML 1.1, which wants a dot in the mantissa)."""
    text = f"{x:.6g}"
    mantissa, e, exponent = text.partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    return mantissa + e + exponent


def _yaml_value(v: Any) -> str:
    return _yaml_float(v) if isinstance(v, float) else str(v)


def _point(r: PlannedRun) -> str:
    return (
        f"{{n_layer: {r.shape.n_layer}, d_model: {r.shape.d_model}, "
        f"flops: {_yaml_float(r.budget)}, seed: {r.seed}}}"
    )


def point_run_keys(
    experiment: str, train_keys: dict[str, Any], seq_len: int, head_dim: int
) -> list[str]:
    """The YAML lines of a preset that make each ``sweep.point`` a run: its experiment, its
    ``train.*`` keys, ``train.flops``, the model's shape and the seed from the point."""
    return [
        "tracking:",
        f"  experiment: {experiment}",
        "train:",
        "  tokens: null",
        "  flops: ${sweep.point.flops}",
        *(f"  {k}: {_yaml_value(v)}" for k, v in train_keys.items()),
        "model:",
        "  n_layer: ${sweep.point.n_layer}",
        "  d_model: ${sweep.point.d_model}",
        f"  seq_len: {seq_len}",
        *([f"  head_dim: {head_dim}"] if head_dim != GPTConfig.head_dim else []),
        "seed: ${sweep.point.seed}",
    ]


def preset_yaml(plan: Plan, name: str, command: str) -> str:
    """The sweep preset ``sweeps/NAME.yaml``: one ``sweep.point`` per planned run."""
    o = plan.options
    runs = plan.runs
    ladder = [r for r in runs if not r.replicate]
    header = [
        "# @package _global_",
        f"# python -m scaling.sweep -m sweeps={name}",
        "#",
        f"{WRITTEN_BY}{command}",
        f"# A planned IsoFLOP ladder for C* = {o.target_flops:.3g} FLOPs (scaling plan): budgets "
        f"{', '.join(f'{b.flops:.3g}' for b in plan.budgets)}",
        f"# (x{o.ratio:g} apart, up to C*/{o.extrapolation:g}), {o.sizes} sizes each centred on "
        "N_opt(C) of",
        f"#   {plan.prior},",
        f"# then the centre size of each budget with seeds 1..{o.replicates} (seed replicates: "
        "the fit's run-to-run noise)."
        if o.replicates
        else "# no seed replicates.",
        f"# {len(ladder)} ladder runs + {len(runs) - len(ladder)} replicates, "
        f"{plan.total_flops:.3g} FLOPs, about {plan.total_hours:.2g} h of training at "
        "the planned throughput.",
        "# Every run passed the guards: >= "
        f"{o.min_steps} optimizer steps, {o.tpp_range[0]:g}..{o.tpp_range[1]:g} tokens/param",
        f"# (counted with vocabulary {o.vocab_size}; plan again with --vocab-size for a BPE "
        "corpus).",
        "# Each run is one value of sweep.point; model.n_layer, model.d_model (n_head = d_model /",
        "# head_dim), train.flops and seed follow it.",
        fit_note(name, o.verify),
        "",
    ]
    body = [
        *point_run_keys(name, o.train_keys(), o.seq_len, o.head_dim),
        *fit_sweep(o, _point(runs[0])),
        *grid_lines([_point(r) for r in runs]),
    ]
    return "\n".join(header + body)


def fit_note(name: str, verify: bool) -> str:
    """A planned preset's comment on how its sweep ends."""
    return f"# The sweep ends with an IsoFLOP fit (sweep.approach=2) in analysis/{name}/" + (
        ", then trains\n# the fit's predicted optimum at C* (sweep.verify_flops) and scores its "
        "prediction."
        if verify
        else "."
    )


def fit_sweep(o: PlanOptions, first: str) -> list[str]:
    """A planned preset's ``sweep:`` keys: the IsoFLOP fit, the verification, the first point."""
    return [
        "sweep:",
        "  approach: 2",
        *([f"  verify_flops: {_yaml_float(o.target_flops)}"] if o.verify else []),
        f"  point: {first}",
    ]


def grid_lines(points: Sequence[str]) -> list[str]:
    """A preset's grid: one ``sweep.point`` value per run (or branch group)."""
    return [
        "hydra:",
        "  sweeper:",
        "    params:",
        "      sweep.point: >-",
        ",\n".join(f"        {p}" for p in points),
        "",
    ]


def point_config(o: PlanOptions, shape: Shape, seed: int, train: dict[str, Any]) -> RunConfig:
    """The run config a planned preset's point composes to (``build_run_config``, as the sweep
    validates it): the shape, the seed, ``train`` and the options' train keys."""
    return build_run_config(
        {
            "model": {
                "n_layer": shape.n_layer,
                "d_model": shape.d_model,
                "seq_len": o.seq_len,
                "head_dim": o.head_dim,
            },
            "data": {},
            "train": {**train, **o.train_keys()},
            "seed": seed,
        },
        vocab_size=o.vocab_size,
    )


def validate_points(plan: Plan) -> None:
    """Every run through :func:`scaling.config.build_run_config`, as the sweep validates it."""
    o = plan.options
    for r in plan.runs:
        cfg = point_config(o, r.shape, r.seed, {"tokens": None, "flops": r.budget})
        if (
            cfg.tokens != r.tokens
            or count_params(cfg.model).total != r.params
            or (cfg.train.batch_size, cfg.train.lr) != (r.batch_size, r.lr)
        ):
            raise AssertionError(f"{r.name}: the sweep would train another run")
