"""``scaling plan``: design a healthy IsoFLOP ladder for a target compute, before training it.

A ladder is a few compute budgets, spaced geometrically (``--ratio``, ×3 by default) up to
``C*/k`` (``k = 10``: the target is a tenfold extrapolation of the largest budget), and at each
budget several model sizes centred in log N on the current best guess of the compute-optimal size
``N_opt(C)``: from a prior fit (``--prior fit.json``, through :class:`~.predict.Predictor`) or
else from a published law, :data:`HOFFMANN_EQ10`.  The sizes span ``±span`` decades (0.6) so the
IsoFLOP vertex is interior even when the guess is off by a factor of two.

Model shapes follow the model's own aspect rule (``d_model = aspect · n_layer``, ``n_head =
d_model // head_dim``; ``shapes="free"`` lets ``d_model`` vary within 2x of it), so the
achievable sizes are discrete: each wanted size snaps to the nearest distinct shape, whose
parameters come from :func:`scaling.counting.count_params` and whose tokens, optimizer steps and
FLOPs from the run's own horizon (:class:`scaling.config.RunConfig`: ``train.flops`` -> whole
optimizer steps of ``batch_size × seq_len`` tokens), exactly as the sweep will train it.

Guards (all checked before anything is written): a run with fewer than ``min_steps`` optimizer
steps or tokens per parameter outside ``tpp_range`` is not planned; a budget without ``sizes``
such runs that bracket ``N_opt`` by :func:`bracket_margin` decades on both sides is not healthy;
a ladder needs at least ``min_budgets`` (3) healthy budgets from the top down, within the
experiment budget (FLOPs, or hours of this machine through a throughput model). Otherwise
:func:`plan_ladder` raises :class:`~scaling.errors.UserError` with one line saying what is
affordable (the smallest target or budget that works, a batch size or shape family that would).

The written preset (:func:`preset_yaml`) lists explicit runs, not a grid: each run is one value
of ``sweep.point`` (``{n_layer, d_model, flops, seed}``) and ``model.n_layer``, ``model.d_model``,
``train.flops`` and ``seed`` interpolate it, because a per-budget set of sizes is no Cartesian
product. (The sweep driver must accept the ``sweep.point`` key and find ``sweeps/`` in the
working directory.)

Pure: numpy and the core (counting, config), no torch, Lightning or MLflow.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from scaling.analysis.fitting.allocation import TOKENS_PER_PARAM_RANGE, chinchilla_optimal
from scaling.config import (
    AUTO,
    SWEEPS_DIR,
    DataConfig,
    GPTConfig,
    RunConfig,
    TrainConfig,
    TrainerConfig,
    build_run_config,
    resolve_auto,
)
from scaling.counting import count_params
from scaling.errors import UserError

# Hoffmann et al. 2022, eq. 10 (approach 3 on their runs): L = E + A/N^alpha + B/D^beta. Its
# allocation N_opt = G (C/6)^a, a = beta/(alpha+beta) = 0.45, puts N_opt(3e13) at 7.3e5 params
# (9 tokens/param). Nothing calibrated on this project's corpus is shipped: the one measurement
# at hand (issue 10: at 3e13 FLOPs the 225K model beat the 37.8K one by 26%) says only that the
# optimum there is >= ~2e5, which eq. 10 respects. A fit of your own runs (--prior) is better.
HOFFMANN_EQ10 = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
HOFFMANN_EQ10_NAME = "Hoffmann et al. 2022 eq. 10 (E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)"

# The README's harness throughput on this project's 2-core CPU (benchmarks/bench_train.py,
# 2026-11-29, fp32, byte vocabulary): (params, tokens/s). Shapes (n_layer, d_model, seq_len,
# batch): (2, 64, 128, 32), (4, 128, 128, 32), (4, 256, 256, 16).
README_THROUGHPUT = ((124_672, 63_607.0), (842_496, 12_665.0), (3_290_624, 4_135.0))

# The fixed costs at the smallest sizes (IsoFLOP ladders on the 2-core CPU, 2026-11-29, threads=1,
# 5-12 x 32 tokens per step): 7.4 ms a step at 7.9K parameters, 8.8 ms at 22K, of which the power
# law's FLOPs time is under 1 ms; about 3 s a run of start-up, evaluation and tracking.
README_STEP_S = 0.0075
README_RUN_S = 3.0

PLAN_MIN_STEPS = 200  # a run with fewer optimizer steps is decided by its step count, not its size
# a planned preset may not shadow a shipped one (sweeps/*.yaml)
SHIPPED_PRESETS = tuple(sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml")))
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_MAX_LAYERS = 512  # the shape search stops here (about 1e10 parameters at aspect 16)
_DATA = DataConfig()  # the horizon does not depend on the data group


# ---- throughput ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Throughput:
    """Wall-clock of a run: ``tokens / tps(N) + steps · step_s + run_s``, with tokens per second
    a power law of parameters, ``tps = t0 (N / n0)^slope``.

    ``step_s`` is the fixed cost of an optimizer step (Python, kernel launches, the optimizer):
    for the smallest models it, not the FLOPs, decides the wall-clock (measured on the 2-core CPU:
    about 5-7 ms a step at 256 tokens per step for 8K-35K parameters, where the power law alone
    predicts under 1 ms). A throughput fitted to a run table's ``tokens_per_s`` already holds the
    step cost at those runs' batch, so it has ``step_s = 0``. ``run_s``: start-up, evaluations
    and tracking of one run.
    """

    n0: float
    t0: float
    slope: float
    source: str
    step_s: float = 0.0
    run_s: float = 0.0

    def tokens_per_s(self, params: float) -> float:
        return self.t0 * (params / self.n0) ** self.slope

    def seconds(self, params: float, tokens: float, steps: int = 0) -> float:
        """Wall-clock of one run of ``tokens`` tokens in ``steps`` optimizer steps."""
        return tokens / self.tokens_per_s(params) + steps * self.step_s + self.run_s

    def describe(self) -> str:
        text = f"{self.source}: tokens/s = {self.t0:,.0f} x (N / {self.n0:.3g})^{self.slope:.3f}"
        if self.step_s or self.run_s:
            text += f", + {1000 * self.step_s:.3g} ms a step + {self.run_s:.3g} s a run"
        return text

    @classmethod
    def fit(cls, params: Sequence[float], tps: Sequence[float], source: str) -> Throughput:
        """Least squares of ``log tps`` on ``log N``; one size keeps the default slope."""
        logn, logt = np.log(np.asarray(params, float)), np.log(np.asarray(tps, float))
        n0 = float(np.exp(logn.mean()))
        if np.ptp(logn) < 1e-9:
            slope = cls.default().slope
        else:
            slope = float(np.polyfit(logn, logt, 1)[0])
        # the line passes through the centroid (mean log N, mean log tps)
        return cls(n0=n0, t0=float(np.exp(logt.mean())), slope=slope, source=source)

    @classmethod
    def default(cls) -> Throughput:
        return _readme_throughput()


@lru_cache(maxsize=1)
def _readme_throughput() -> Throughput:
    """:meth:`Throughput.default`, fitted once (the sweep asks for it at every grid point)."""
    params, tps = zip(*README_THROUGHPUT, strict=True)
    source = (
        "default (README's measured 63,607 tok/s at 125K params, 12,665 at 842K, 4,135 at 3.3M "
        "on the 2-core CPU; pass --runs for your machine)"
    )
    fitted = Throughput.fit(params, tps, source)
    return replace(fitted, step_s=README_STEP_S, run_s=README_RUN_S)


def throughput_from_runs(path: str | Path) -> Throughput:
    """Fit throughput to a collected run table's ``tokens_per_s`` and ``params`` columns."""
    from scaling.analysis.table import read_run_table

    df = read_run_table(path)
    if "tokens_per_s" not in df.columns:
        raise UserError(
            f"--runs {path}: no tokens_per_s column; use a table written by `scaling collect`"
        )
    tps = np.asarray(df["tokens_per_s"], dtype=float)
    params = np.asarray(df["params"], dtype=float)
    ok = np.isfinite(tps) & (tps > 0) & np.isfinite(params) & (params > 0)
    if not ok.any():
        raise UserError(f"--runs {path}: no row has a positive tokens_per_s and params")
    n = int(ok.sum())
    return Throughput.fit(params[ok], tps[ok], f"fitted to {n} run{'s' if n > 1 else ''} of {path}")


# ---- the prior ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Prior:
    """The current best guess of the compute-optimal size ``N_opt(C)``."""

    n_opt: Callable[[float], float]
    source: str


def default_prior() -> Prior:
    @lru_cache(maxsize=1024)
    def n_opt(C: float) -> float:
        return float(chinchilla_optimal(HOFFMANN_EQ10, C)[0])

    return Prior(n_opt=n_opt, source=HOFFMANN_EQ10_NAME)


def prior_from_fit(path: str | Path) -> Prior:
    """``N_opt(C)`` from a ``fit.json`` through :meth:`Predictor.at_budget`."""
    from scaling.analysis.fitting.results import load_fit
    from scaling.analysis.prediction.predict import Predictor

    predictor = Predictor(load_fit(path))
    health = predictor.health
    verdict = "healthy" if health.get("ok", True) else "UNHEALTHY, a rough centre only"

    @lru_cache(maxsize=1024)
    def n_opt(C: float) -> float:
        params = predictor.at_budget(C).params
        if params is None or not (math.isfinite(params) and params > 0):
            raise UserError(
                f"--prior {path}: the fit gives no finite compute-optimal size at {C:.3g} FLOPs; "
                "refit with more runs or drop --prior"
            )
        return float(params)

    what = f"approach {predictor.approach} {predictor.law_name}"
    return Prior(n_opt=n_opt, source=f"{path} ({what} fit, {verdict})")


# ---- options and results -----------------------------------------------------------------


@dataclass(frozen=True)
class PlanOptions:
    """What ``scaling plan`` takes; defaults are the issue's design rules."""

    target_flops: float
    budget_flops: float | None = None
    budget_hours: float | None = None
    extrapolation: float = 10.0  # k: the top budget is target / k
    ratio: float = 3.0  # between consecutive budgets
    sizes: int = 5  # model sizes per budget
    span: float = 0.6  # decades either side of N_opt the sizes aim for
    min_budgets: int = 3
    max_budgets: int | None = None
    min_steps: int = PLAN_MIN_STEPS
    tpp_range: tuple[float, float] = TOKENS_PER_PARAM_RANGE
    replicates: int = 2  # the centre size of each budget again with seeds 1..replicates
    batch_size: int | str = TrainConfig.batch_size  # sequences per step, or "auto" (the rule)
    lr: float | str = TrainConfig.lr  # peak LR, or "auto" (the hparams rule of each budget)
    hparams_rule: str | None = None  # train.hparams_rule for auto (None: ./hparams.json|shipped)
    verify: bool = False  # the preset ends with sweep.verify_flops = target_flops
    seq_len: int = GPTConfig.seq_len
    head_dim: int = GPTConfig.head_dim  # d_model per head: free widths are its multiples
    vocab_size: int = DataConfig().nominal_vocab_size  # the byte tokenizer's 256
    shapes: str = "aspect"  # aspect (only n_layer varies) | free (d_model too): SHAPE_FAMILIES

    def check(self) -> None:
        """One line for the first option that cannot work."""

        def positive(flag: str, value: float | None) -> None:
            if value is not None and not (math.isfinite(value) and value > 0):
                raise UserError(f"{flag} must be a positive number, got {value:g}")

        positive("--target-flops", self.target_flops)
        positive("--budget-flops", self.budget_flops)
        positive("--budget-hours", self.budget_hours)
        if self.budget_flops is not None and self.budget_hours is not None:
            raise UserError("give one of --budget-flops or --budget-hours, not both")
        if not (math.isfinite(self.extrapolation) and self.extrapolation >= 1):
            raise UserError(f"--extrapolation must be >= 1, got {self.extrapolation:g}")
        if not (math.isfinite(self.ratio) and self.ratio > 1):
            raise UserError(f"--ratio must be > 1 (e.g. 3 or 3.16), got {self.ratio:g}")
        if self.sizes < 3:
            raise UserError(f"--sizes must be >= 3 (a parabola needs 3 points), got {self.sizes}")
        if not (math.isfinite(self.span) and 0 < self.span <= 3):
            raise UserError(f"--span must be in (0, 3] decades, got {self.span:g}")
        if self.min_budgets < 2:
            raise UserError(f"--min-budgets must be >= 2, got {self.min_budgets}")
        if self.max_budgets is not None and self.max_budgets < self.min_budgets:
            raise UserError(
                f"--max-budgets {self.max_budgets} is below the {self.min_budgets} budgets a "
                "ladder needs"
            )
        if self.min_steps < 1:
            raise UserError(f"--min-steps must be >= 1, got {self.min_steps}")
        lo, hi = self.tpp_range
        if not (0 < lo < hi and math.isfinite(hi)):
            raise UserError(f"--tpp-range must be LO..HI with 0 < LO < HI, got {lo:g}..{hi:g}")
        if self.shapes not in SHAPE_FAMILIES:
            raise UserError(f"--shapes must be one of {', '.join(SHAPE_FAMILIES)}")
        if self.replicates < 0:
            raise UserError(f"--replicates must be >= 0, got {self.replicates}")
        if self.lr != AUTO and not (
            isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0
        ):
            raise UserError(f"--lr must be a positive number or auto, got {self.lr}")
        if self.batch_size != AUTO and not isinstance(self.batch_size, int):
            raise UserError(f"--batch-size must be a whole number or auto, got {self.batch_size}")
        for flag, value in (
            ("--batch-size", 1 if self.batch_size == AUTO else self.batch_size),
            ("--seq-len", self.seq_len),
            ("--head-dim", self.head_dim),
            ("--vocab-size", self.vocab_size),
        ):
            if value < 1:
                raise UserError(f"{flag} must be a positive whole number, got {value}")

    @property
    def top_budget(self) -> float:
        return self.target_flops / self.extrapolation

    @property
    def auto_keys(self) -> tuple[str, ...]:
        """The train keys the plan leaves to the hparams rule (``train.lr=auto`` ...)."""
        return tuple(k for k in ("lr", "batch_size") if getattr(self, k) == AUTO)

    def train_keys(self) -> dict[str, Any]:
        """The ``train.*`` values every run of the preset sets (besides its budget)."""
        keys: dict[str, Any] = {"batch_size": self.batch_size, "lr": self.lr}
        if self.hparams_rule is not None:
            keys["hparams_rule"] = self.hparams_rule
        return keys

    def train_config(self, model: GPTConfig, budget: float) -> TrainConfig:
        """The horizon, batch and LR the sweep resolves for ``model`` at ``budget`` (auto keys
        from the hparams rule at the run's compute, as :func:`scaling.config.resolve_auto`)."""
        given = {k: v for k, v in self.train_keys().items() if v != AUTO}
        train = TrainConfig(tokens=None, flops=budget, **given)
        if self.auto_keys:
            # quiet: the plan prints each run's LR; the sweep warns of an extrapolated rule
            train, _ = resolve_auto(model, _DATA, train, TrainerConfig(), self.auto_keys, False)
        return train

    def probe(self) -> GPTConfig:
        """A small model standing for every size where only the budget matters."""
        return GPTConfig(n_layer=1, d_model=16, seq_len=self.seq_len, vocab_size=self.vocab_size)

    def smallest_budget(self) -> float:
        """Below this no budget holds ``min_steps`` steps of one sequence for :meth:`probe`."""
        return 6.0 * count_params(self.probe()).total * self.min_steps * self.seq_len

    def step_tokens(self, budget: float) -> int:
        """Tokens per optimizer step at ``budget`` (the rule's batch is a function of the
        compute, nearly the same for every size of one budget)."""
        return self.train_config(self.probe(), budget).batch_size * self.seq_len


@dataclass(frozen=True)
class Shape:
    """A valid model: ``d_model`` (a multiple of ``head_dim`` in the ``free`` family) decides
    ``n_head = d_model // head_dim``."""

    n_layer: int
    d_model: int
    n_head: int
    params: int
    model: GPTConfig = field(repr=False, compare=False)

    @property
    def aspect(self) -> float:
        return self.d_model / self.n_layer


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
            f"N{_short(self.params)}-s{self.seed}"
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


# ---- shapes and runs ---------------------------------------------------------------------


SHAPE_FAMILIES = ("aspect", "free")
_FREE_ASPECT = 2.0  # free shapes: d_model / n_layer within [aspect / 2, aspect * 2]
_SNAP_TOLERANCE = 0.04  # decades: free shapes this close to a wanted size count as equal


@lru_cache(maxsize=32)
def _family(
    family: str, seq_len: int, vocab_size: int, n_max: int, head_dim: int = GPTConfig.head_dim
) -> tuple[Shape, ...]:
    """Every shape of ``family`` with ``n_layer <= n_max``, by parameters.

    ``aspect``: the model's own rule, ``d_model = aspect · n_layer`` (one shape per depth).
    ``free``: ``d_model`` any multiple of ``head_dim`` with ``d_model / n_layer`` within a factor
    of two of the aspect (Kaplan et al. 2020, Fig. 5: loss is flat over such shapes), which makes
    the sizes nearly continuous.
    """
    base = GPTConfig(head_dim=head_dim)
    out = []
    for n_layer in range(1, n_max + 1):
        if family == "aspect":
            widths: Sequence[int | None] = [None]
        else:
            step = base.head_dim
            lo = max(step, step * math.ceil(base.aspect * n_layer / _FREE_ASPECT / step))
            hi = max(lo, step * math.floor(base.aspect * n_layer * _FREE_ASPECT / step))
            widths = range(lo, hi + 1, step)
        for width in widths:
            model = GPTConfig(
                n_layer=n_layer,
                d_model=width,
                head_dim=head_dim,
                seq_len=seq_len,
                vocab_size=vocab_size,
            )
            params = count_params(model).total
            out.append(Shape(n_layer, int(model.d_model), int(model.n_head), params, model))
    return tuple(sorted(out, key=lambda s: (s.params, s.n_layer)))


def shapes(opts: PlanOptions, max_params: float) -> tuple[Shape, ...]:
    """The shapes of ``opts.shapes`` up to (at least) ``max_params`` parameters."""
    n_max = 16
    while n_max < _MAX_LAYERS:
        # the narrowest shape of depth n_max is above max_params: deeper ones are too
        width = max(16, int(GPTConfig().aspect * n_max / _FREE_ASPECT))
        narrow = GPTConfig(
            n_layer=n_max,
            d_model=width,
            head_dim=opts.head_dim,
            seq_len=opts.seq_len,
            vocab_size=opts.vocab_size,
        )
        if count_params(narrow).total > max_params:
            break
        n_max *= 2
    n_max = min(n_max, _MAX_LAYERS)
    return _family(opts.shapes, opts.seq_len, opts.vocab_size, n_max, opts.head_dim)


def planned_run(
    shape: Shape, budget: float, seed: int, opts: PlanOptions, throughput: Throughput
) -> PlannedRun:
    """The run ``model.n_layer, model.d_model, train.flops=budget, seed`` trains (its horizon
    from :class:`~scaling.config.RunConfig`, as the sweep computes it)."""
    run = _horizon(shape, budget, opts)  # the seed changes neither tokens nor steps
    train = run.train
    tokens = run.tokens
    return PlannedRun(
        budget=budget,
        shape=shape,
        seed=seed,
        tokens=tokens,
        steps=run.steps,
        flops=run.flops("6N"),
        batch_size=train.batch_size,
        lr=train.lr,
        seconds=throughput.seconds(shape.params, tokens, run.steps),
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
    return RunConfig(model=shape.model, data=_DATA, train=opts.train_config(shape.model, budget))


def bracket_margin(opts: PlanOptions) -> float:
    """Decades each budget's smallest and largest sizes reach beyond ``N_opt``: half the span,
    less the snapping tolerance (so the vertex stays interior with a prior off by ~1.8x)."""
    return opts.span / 2 - _SNAP_TOLERANCE


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
    nothing); among free shapes within :data:`_SNAP_TOLERANCE` of the nearest, the one closest
    to the default aspect.
    """
    passing = passing_shapes(budget, candidates, opts)
    if len(passing) < opts.sizes:
        return (
            f"only {len(passing)} size{'s' if len(passing) != 1 else ''} pass the guards "
            f"(>= {opts.min_steps} steps, {opts.tpp_range[0]:g}..{opts.tpp_range[1]:g} "
            f"tokens/param) at {budget:.3g} FLOPs"
        )
    aspect = GPTConfig().aspect
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
        dist = {s: abs(math.log10(s.params) - target) for s in free}
        best = min(dist.values())
        near = [s for s in free if dist[s] <= best + _SNAP_TOLERANCE]
        chosen.append(min(near, key=lambda s: (abs(math.log2(s.aspect / aspect)), dist[s])))
    chosen.sort(key=lambda s: s.params)
    margin = bracket_margin(opts)
    low, high = math.log10(chosen[0].params), math.log10(chosen[-1].params)
    if low > log_opt - margin or high < log_opt + margin:
        side = "below" if low > log_opt - margin else "above"
        return (
            f"at {budget:.3g} FLOPs the sizes that pass the guards ({_short(chosen[0].params)}.."
            f"{_short(chosen[-1].params)}) do not reach {margin:.2g} decades {side} "
            f"N_opt = {_short(n_opt)}"
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


# ---- output ------------------------------------------------------------------------------


def _short(x: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if x >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def _duration(seconds: float) -> str:
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
        f"prior N_opt(C): {plan.prior}; N_opt(C*) = {_short(plan.target_n_opt)}",
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
        rows.append(f"-- budget {b.flops:.3g} FLOPs, prior N_opt = {_short(b.n_opt)}")
        rows.extend(_row(r) for r in b.runs)
    if plan.replicates:
        rows.append("-- seed replicates (the centre size of each budget), for the noise estimate")
        rows.extend(_row(r) for r in plan.replicates)
    total = (
        f"total: {len(plan.runs)} runs, {plan.total_flops:.3g} FLOPs, about "
        f"{_duration(plan.total_hours * 3600)} of training"
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
        f"{r.flops:>9.3g} {_duration(r.seconds):>9}"
    )


def check_name(name: str) -> None:
    if not _NAME.match(name) or ".." in name:
        raise UserError(
            f"--name {name!r} must be letters, digits, '_', '-' or '.' (it names "
            "sweeps/NAME.yaml, the experiment and results/NAME.csv), e.g. --name ladder"
        )
    if name in SHIPPED_PRESETS:
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


def preset_yaml(plan: Plan, name: str, command: str) -> str:
    """The sweep preset ``sweeps/NAME.yaml``: one ``sweep.point`` per planned run."""
    o = plan.options
    runs = plan.runs
    ladder = [r for r in runs if not r.replicate]
    header = [
        "# @package _global_",
        f"# python -m scaling.sweep -m sweeps={name}",
        "#",
        f"# Written by: {command}",
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
        f"# The sweep ends with an IsoFLOP fit (sweep.approach=2) in analysis/{name}/"
        + (
            ", then trains\n# the fit's predicted optimum at C* (sweep.verify_flops) and scores "
            "its prediction."
            if o.verify
            else "."
        ),
        "",
    ]
    points = ",\n".join(f"        {_point(r)}" for r in runs)
    body = [
        "tracking:",
        f"  experiment: {name}",
        "train:",
        "  tokens: null",
        "  flops: ${sweep.point.flops}",
        *(f"  {k}: {_yaml_value(v)}" for k, v in o.train_keys().items()),
        "model:",
        "  n_layer: ${sweep.point.n_layer}",
        "  d_model: ${sweep.point.d_model}",
        f"  seq_len: {o.seq_len}",
        *([f"  head_dim: {o.head_dim}"] if o.head_dim != GPTConfig.head_dim else []),
        "seed: ${sweep.point.seed}",
        "sweep:",
        "  approach: 2",
        *([f"  verify_flops: {_yaml_float(o.target_flops)}"] if o.verify else []),
        f"  point: {_point(runs[0])}",
        "hydra:",
        "  sweeper:",
        "    params:",
        "      sweep.point: >-",
        points,
        "",
    ]
    return "\n".join(header + body)


def validate_points(plan: Plan) -> None:
    """Every run through :func:`scaling.config.build_run_config`, as the sweep validates it."""
    o = plan.options
    for r in plan.runs:
        cfg = build_run_config(
            {
                "model": {
                    "n_layer": r.shape.n_layer,
                    "d_model": r.shape.d_model,
                    "seq_len": o.seq_len,
                    "head_dim": o.head_dim,
                },
                "data": {},
                "train": {"tokens": None, "flops": r.budget, **o.train_keys()},
                "seed": r.seed,
            },
            vocab_size=o.vocab_size,
        )
        if (
            cfg.tokens != r.tokens
            or count_params(cfg.model).total != r.params
            or (cfg.train.batch_size, cfg.train.lr) != (r.batch_size, r.lr)
        ):
            raise AssertionError(f"{r.name}: the sweep would train another run")
