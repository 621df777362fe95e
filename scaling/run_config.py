"""One run's configuration: its groups, horizon, WSD branch group, checks and identity.

:class:`RunConfig` is everything one training run needs, built and validated from Hydra's
composed config by :func:`scaling.config.build_run_config`. It derives the horizon (exactly one
of ``train.tokens`` / ``train.flops``; tokens, steps and FLOPs, with the FLOPs of
:mod:`scaling.counting`), splits a ``train.horizons`` group into its stable run and cooldown
branches, checks what no single group can (:meth:`RunConfig.validate_horizon`,
:meth:`RunConfig.validate_combination`) and says what decides its result
(:meth:`RunConfig.identity`, which :func:`scaling.identity.run_key` hashes). Pure core: no torch,
lightning or mlflow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from scaling.counting import count_params, flops_for_tokens, tokens_for_flops
from scaling.data_config import MAX_EVAL_SEQ_LEN, DataConfig
from scaling.devices import TrainerConfig, has_fused_adamw
from scaling.errors import ConfigError
from scaling.hparams_rule import HparamsUse
from scaling.identity import DataIdentity, canonical, provisional_data_identity
from scaling.schedule import cooldown_start
from scaling.schema import MAX_TOKENS, GPTConfig, TrackingConfig, TrainConfig

# Tokens per validation forward when the training micro-batch holds fewer (evaluation keeps
# nothing for a backward), as long as their logits stay within EVAL_LOGITS elements (256 MiB).
EVAL_TOKENS = 2048
EVAL_LOGITS = 1 << 26


@dataclass(frozen=True)
class RunConfig:
    """Everything one training run needs; built from Hydra's composed config."""

    model: GPTConfig
    data: DataConfig
    train: TrainConfig
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    seed: int = 0  # model init and data order
    threads: int = 0  # torch threads; 0 = every core (parallel launchers set fewer)
    progress: str = "auto"  # progress bar: auto (on a terminal) | true | false
    results_dir: str = "results"  # checkpoints and run tables
    data_identity: DataIdentity | None = None  # the corpus by content; set by prepare()
    hparams: HparamsUse | None = None  # what train.lr=auto / batch_size=auto resolved from

    # ---- horizon -------------------------------------------------------------------------
    @property
    def tokens_per_step(self) -> int:
        return self.train.batch_size * self.model.seq_len

    @property
    def planned_tokens(self) -> int:
        """Tokens asked for: train.tokens, or derived from train.flops under the convention
        (with ``train.horizons``: the longest horizon's)."""
        if self.train.horizons is not None:
            return max(self._planned(v) for v in self.train.horizons)
        return self._planned(self.train.tokens)

    def _planned(self, value: float | None) -> int:
        """Tokens of a horizon given as a value of whichever of train.tokens / train.flops is
        set (``None``: train.flops' own)."""
        if self.train.tokens is not None:
            return int(value)  # type: ignore[arg-type]
        flops = self.train.flops if value is None else value
        return tokens_for_flops(self.model, flops, self.train.flops_convention)

    # ---- WSD cooldown branches (train.horizons) ------------------------------------------------
    def horizon_tokens(self) -> list[int]:
        """Tokens each of ``train.horizons`` trains (whole optimizer steps), in listed order."""
        assert self.train.horizons is not None
        tps = self.tokens_per_step
        return [self._planned(v) // tps * tps for v in self.train.horizons]

    @property
    def warmup_span(self) -> int:
        """The steps a warmup fraction is taken of: the run's, or with ``train.horizons`` the
        longest horizon's (the run whose start the stable phase is; one warmup every branch
        shares, at most :attr:`warmup_cap`)."""
        if self.train.horizons is None:
            return self.steps
        return max(self.horizon_tokens()) // self.tokens_per_step

    @property
    def warmup_cap(self) -> int | None:
        """With ``train.horizons``: the longest shared warmup a fraction (or ``auto``) gives,
        half of the shortest branch's steps before its cooldown, so that every branch keeps a
        phase at the peak LR; ``None`` for a single run."""
        if self.train.horizons is None:
            return None
        shortest = min(self.horizon_tokens()) // self.tokens_per_step
        return max(1, cooldown_start(shortest, self.train.cooldown) // 2)

    def branch_warmup(self) -> int:
        """Warmup steps every branch shares: ``warmup_steps``, else the ``warmup`` fraction of
        the longest horizon's steps, at most :attr:`warmup_cap`."""
        t = self.train
        if t.warmup_steps is not None:
            return t.warmup_steps
        w = max(1, round(t.warmup * self.warmup_span)) if t.warmup > 0 else 0
        return self.capped_warmup(w)

    def capped_warmup(self, steps: int) -> int:
        """``steps`` of warmup, at most :attr:`warmup_cap` (unchanged for a single run)."""
        cap = self.warmup_cap
        return steps if cap is None else min(steps, cap)

    def branches(self) -> list[RunConfig]:
        """One plain ``wsd`` run per horizon, shortest first, the warmup fixed in steps: what a
        branch trains is exactly this run (its key too); it only starts from the stable run's
        checkpoint at its cooldown start instead of from step 0."""
        assert self.train.horizons is not None
        w = self.branch_warmup()
        out = []
        for value in sorted(self.train.horizons, key=self._planned):
            by_tokens = self.train.tokens is not None
            train = replace(
                self.train,
                horizons=None,
                warmup_steps=w,
                tokens=int(value) if by_tokens else None,
                flops=None if by_tokens else float(value),
            )
            out.append(replace(self, train=train))
        return out

    def branch_starts(self) -> list[int]:
        """Each branch's cooldown start (optimizer steps), in :meth:`branches` order."""
        return [cooldown_start(b.steps, b.train.cooldown) for b in self.branches()]

    def stable(self) -> RunConfig:
        """The shared stable phase: warmup then constant LR up to the last cooldown start."""
        last = max(self.branch_starts())
        train = replace(
            self.train,
            horizons=None,
            schedule="constant",
            warmup_steps=self.branch_warmup(),
            tokens=last * self.tokens_per_step,
            flops=None,
        )
        return replace(self, train=train)

    def spent_tokens(self) -> int:
        """Tokens a branched group trains: the stable phase plus every cooldown (without
        ``train.horizons``: the run's tokens)."""
        if self.train.horizons is None:
            return self.tokens
        cooldowns = sum(b.steps - s for b, s in zip(self.branches(), self.branch_starts()))
        return (max(self.branch_starts()) + cooldowns) * self.tokens_per_step

    @property
    def steps(self) -> int:
        return self.planned_tokens // self.tokens_per_step

    @property
    def tokens(self) -> int:
        """Tokens actually trained: whole optimizer steps of batch_size x seq_len."""
        return self.steps * self.tokens_per_step

    def flops(self, convention: str | None = None) -> float:
        return flops_for_tokens(self.model, self.tokens, convention or self.train.flops_convention)

    @property
    def micro_batch_size(self) -> int:
        """Sequences per forward pass on one device."""
        per_device = self.train.batch_size // self.trainer.world_size
        micro = self.train.micro_batch_size or per_device
        return min(micro, per_device)

    @property
    def eval_batch_size(self) -> int:
        """Validation windows per forward: the training micro-batch, or more up to
        :data:`EVAL_TOKENS` tokens whose logits fit :data:`EVAL_LOGITS`."""
        tokens = min(EVAL_TOKENS, EVAL_LOGITS // self.model.vocab_size)
        return max(self.micro_batch_size, tokens // self.model.seq_len)

    @property
    def accumulate(self) -> int:
        return self.train.batch_size // (self.micro_batch_size * self.trainer.world_size)

    def validate_horizon(self) -> None:
        """A horizon must hold at least one optimizer step (checked before anything starts);
        with ``train.horizons``, every branch's, and the shared warmup must end before the
        shortest branch's cooldown starts."""
        if self.train.horizons is not None:
            for branch in self.branches():
                branch.validate_horizon()
            w, first = self.branch_warmup(), min(self.branch_starts())
            if w >= first:
                raise ConfigError(
                    f"the shared warmup ({w} steps) does not end before the shortest horizon's "
                    f"cooldown starts (step {first}): lower train.warmup / train.warmup_steps "
                    "or lengthen the shortest of train.horizons"
                )
            return
        world = self.trainer.world_size
        if self.train.batch_size % world:
            raise ConfigError(
                f"train.batch_size={self.train.batch_size} is not divisible by the "
                f"{world} devices: pick a multiple of {world}"
            )
        if self.train.batch_size % (self.micro_batch_size * world):
            raise ConfigError(
                f"train.batch_size={self.train.batch_size} is not a multiple of "
                f"train.micro_batch_size x devices = {self.micro_batch_size * world}"
            )
        key = "train.tokens" if self.train.tokens is not None else "train.flops"
        if self.planned_tokens > MAX_TOKENS:
            value = self.train.tokens if self.train.tokens is not None else self.train.flops
            raise ConfigError(
                f"{key}={value:.3g} gives {self.planned_tokens:.3g} tokens, more than any run "
                f"can train (at most {MAX_TOKENS:.0e}): lower {key}"
            )
        if self.steps < 1:
            raise ConfigError(
                f"{key} gives {self.planned_tokens:,} tokens, less than one optimizer step of "
                f"{self.tokens_per_step:,} tokens (train.batch_size x model.seq_len): "
                f"raise {key} or lower train.batch_size"
            )

    def validate_combination(self) -> None:
        """Checks across groups, before anything starts: the context length against the fixed
        validation set, fp16 against gradient clipping with the fused optimizer."""
        if self.model.seq_len > MAX_EVAL_SEQ_LEN:
            raise ConfigError(
                f"model.seq_len={self.model.seq_len} is longer than the {MAX_EVAL_SEQ_LEN} tokens "
                f"the fixed validation set is cut for: use model.seq_len<={MAX_EVAL_SEQ_LEN}"
            )
        fused_adamw = has_fused_adamw(self.trainer.accelerator)
        if self.train.precision == "16-mixed" and self.train.grad_clip > 0 and fused_adamw:
            raise ConfigError(
                f"train.precision=16-mixed cannot clip gradients (train.grad_clip="
                f"{self.train.grad_clip:g}) on trainer.accelerator={self.trainer.accelerator}: "
                "the fused AdamW unscales fp16 gradients itself, so Lightning refuses to clip "
                "them; use train.precision=bf16-mixed or 32-true, or train.grad_clip=0"
            )

    def describe_horizon(self) -> dict[str, Any]:
        """Planned horizon figures, logged as params."""
        return {
            "planned.tokens": self.tokens,
            "planned.steps": self.steps,
            "planned.flops": self.flops("6N"),
            "planned.flops_convention": self.train.flops_convention,
            "planned.flops_in_convention": self.flops(),
            "planned.tokens_per_step": self.tokens_per_step,
            "planned.accumulate_grad_batches": self.accumulate,
            "planned.micro_batch_size": self.micro_batch_size,
            "planned.tokens_per_param": self.tokens / max(1, count_params(self.model).total),
        }

    # ---- identity ------------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """What decides the run's result, canonical: the mapping that
        :func:`scaling.identity.run_key` hashes.

        **In** (a change trains something else):

        - ``model``: the network as built -- ``vocab_size`` (the corpus's effective one), the
          shape (``n_layer``, ``d_model``, ``n_head``, ``seq_len``, ``d_ff`` as built) and
          ``pos``, ``norm``, ``mlp``, ``bias``, ``dropout``, ``tie_embeddings``;
        - ``data``: the corpus's *content* identity (a hash of the text, or of a synthetic
          corpus's tokens; under ``data.process``, of the processed text and the processing
          config, ``DataConfig.processing``), the tokenizer's identity (``byte``,
          ``bpe<V>-<hash of the trained tokenizer>``, ``markov<S>``) and the fixed split
          (validation pieces and tokens) -- :class:`DataIdentity`, set by
          ``training.prepare.prepare`` once the corpus is loaded;
        - ``train``: the horizon as trained (``tokens``: whole optimizer steps), ``batch_size``
          (global), the effective micro-batch (accumulation), ``lr``, ``min_lr_ratio``,
          ``warmup`` (or ``warmup_steps`` when set), ``schedule``, ``cooldown`` (``wsd`` only),
          ``horizons`` (a branched group, as trained tokens), ``weight_decay``, ``beta1``,
          ``beta2``, ``grad_clip``, ``precision``, and ``spike`` under
          ``train.spike.action=skip`` (without ``max_rollbacks``, which it never reads) or
          ``rollback`` only (skipping updates or restoring a snapshot changes what trains;
          warning or stopping does not);
          ``compile`` only with ``model.dropout`` > 0 (compiled code draws its own dropout
          masks; without dropout a compiled run's loss is the eager run's to rounding);
        - ``seed`` and the world size (devices x nodes: how the global batch is split).

        **Out** (same training, same key): how the horizon was asked for (``train.flops``,
        ``train.flops_convention``: the tokens they give are in), cadence and monitoring
        (``train.log_every``, ``train.checkpoint_every``, ``train.eval_points``, ``progress``,
        ``threads``), ``train.compile_mode`` (and ``train.compile`` without dropout), where
        things go (``tracking.*``, ``results_dir``, ``data.cache_dir``), the aspect rule's inputs
        (``model.aspect``, ``model.head_dim``), trainer settings that do not change the math
        (``trainer.accelerator``, ``trainer.strategy``; ``devices`` and ``num_nodes`` only as
        the world size), ``data.allow_repeat`` (an error or not), and
        every data key the content identity replaces (``data.path``, ``data.pattern``,
        ``data.name``, ..., ``data.vocab_size``, which the byte tokenizer ignores).

        Values are canonical: numbers that are whole are integers (``lr=1`` and ``1.0``,
        ``weight_decay=0`` and ``0.0`` are one value; ``1e-3`` and ``0.001`` parse to one
        float), ``micro_batch_size=null`` is the batch it stands for, ``d_ff=null`` the width
        built. Without a :class:`DataIdentity` (a config not yet prepared) the data part is the
        data config itself, normalised, with paths made absolute: a provisional key that runs
        and sweeps never record.
        """
        model = self.model.architecture()
        model["d_ff"] = self.model.mlp_dim
        t = self.train
        train: dict[str, Any] = {
            "tokens": self.tokens,
            "batch_size": t.batch_size,
            "micro_batch_size": self.micro_batch_size,
            "lr": t.lr,
            "min_lr_ratio": t.min_lr_ratio,
            "warmup": t.warmup,
            "schedule": t.schedule,
            "weight_decay": t.weight_decay,
            "beta1": t.beta1,
            "beta2": t.beta2,
            "grad_clip": t.grad_clip,
            "precision": t.precision,
        }
        if t.schedule == "wsd":
            train["cooldown"] = t.cooldown
        if t.warmup_steps is not None:  # replaces the fraction (unset: keys as before)
            del train["warmup"]
            train["warmup_steps"] = t.warmup_steps
        if t.horizons is not None:  # a group of branches, not one run: its members' horizons
            train["horizons"] = sorted(self.horizon_tokens())
        if t.spike.identity() is not None:  # skip / rollback change what trains (unset: as before)
            train["spike"] = t.spike.identity()
        if t.compile and self.model.dropout > 0:  # compiled code draws other dropout masks
            train["compile"] = True
        if self.data_identity is not None:
            data: dict[str, Any] = asdict(self.data_identity)
        else:
            data = provisional_data_identity(self.data)
        return canonical(
            {
                "model": model,
                "data": data,
                "train": train,
                "seed": self.seed,
                "world_size": self.trainer.world_size,
            }
        )

    def flat_params(self) -> dict[str, Any]:
        """The resolved config flattened as ``group.key`` for MLflow params."""
        out: dict[str, Any] = {}
        for group in GROUPS:
            for key, value in asdict(getattr(self, group)).items():
                if group == "train" and key == "spike":  # train.spike.window, ...
                    out.update({f"train.spike.{k}": v for k, v in value.items()})
                else:
                    out[f"{group}.{key}"] = value
        out.update(seed=self.seed, threads=self.threads)
        if self.hparams is not None:  # train.lr / train.batch_size above are the resolved values
            out.update(self.hparams.params())
        return out


# The config groups of a run, by Hydra group name: RunConfig's fields of those names.
GROUPS: dict[str, type] = {
    "model": GPTConfig,
    "data": DataConfig,
    "train": TrainConfig,
    "tracking": TrackingConfig,
    "trainer": TrainerConfig,
}
