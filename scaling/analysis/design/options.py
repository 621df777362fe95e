"""What ``scaling plan`` takes (:class:`PlanOptions`) and what its runs resolve to.

The options hold the ladder's shape (budgets, sizes, span), its guards (``min_steps``,
``tpp_range``), the experiment budget and the ``train.*`` / ``model.*`` keys every planned run
sets.  From them :meth:`PlanOptions.run_config` builds the run the sweep will train at a budget,
with ``train.lr=auto`` / ``train.batch_size=auto`` resolved by the hyperparameter rule exactly
as :func:`scaling.config.resolve_auto` resolves them for the sweep.

Pure: the core only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from scaling.analysis.design.shapes import SHAPE_FAMILIES
from scaling.analysis.fitting.allocation import TOKENS_PER_PARAM_RANGE
from scaling.auto import AUTO
from scaling.config import DataConfig, GPTConfig, TrainConfig, TrainerConfig, resolve_auto
from scaling.counting import count_params
from scaling.errors import UserError
from scaling.run_config import RunConfig

# The recipe measured best on this machine (README, "Your own corpus"): the hparams rule's LR and
# batch at each budget, free shapes, a 32-token context and 8-wide heads (sizes down to 3.2K).
RECIPE_SEQ_LEN = 32
RECIPE_HEAD_DIM = 8
PLAN_MIN_STEPS = 200  # a run with fewer optimizer steps is decided by its step count, not its size
# cosine: every point a separate run with its own schedule; wsd: each size one stable run and a
# cooldown branch per budget (scaling.analysis.design.wsd)
SCHEDULES = ("cosine", "wsd")
_DATA = DataConfig()  # the horizon does not depend on the data group


@dataclass(frozen=True)
class PlanOptions:
    """What ``scaling plan`` takes; the defaults make a ladder that can place the optimum: five
    sizes over +-0.6 decades at three budgets or more, a tenfold extrapolation to the target."""

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
    replicates: int = 1  # the centre size of each budget again with seeds 1..replicates
    batch_size: int | str = AUTO  # sequences per step, or "auto" (the rule)
    lr: float | str = AUTO  # peak LR, or "auto" (the hparams rule of each budget)
    hparams_rule: str | None = None  # train.hparams_rule for auto (None: ./hparams.json|shipped)
    verify: bool = False  # the preset ends with sweep.verify_flops = target_flops
    seq_len: int = RECIPE_SEQ_LEN
    head_dim: int = RECIPE_HEAD_DIM  # d_model per head: free widths are its multiples
    vocab_size: int = DataConfig().nominal_vocab_size  # the byte tokenizer's 256
    shapes: str = "free"  # aspect (only n_layer varies) | free (d_model too): SHAPE_FAMILIES
    schedule: str = "cosine"  # SCHEDULES

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
        if self.schedule not in SCHEDULES:
            raise UserError(f"--schedule must be one of {', '.join(SCHEDULES)}")
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

    def run_config(self, model: GPTConfig, budget: float) -> RunConfig:
        """The run the sweep builds for ``model`` at ``budget`` (its tokens and steps)."""
        return RunConfig(model=model, data=_DATA, train=self.train_config(model, budget))

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
