"""From a Hydra config to a validated, typed run description.

This is the one place for a run's *identity* (:func:`run_key`, :func:`run_name`) and for its
*horizon* (tokens, steps and FLOPs derived from exactly one of ``train.tokens``/``train.flops``).
Everything else (training, sweeps, tracking, collect) imports these.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from scaling.counting import FLOPS_CONVENTIONS, count_params, flops_per_token
from scaling.data import DataConfig
from scaling.errors import ConfigError
from scaling.model import GPTConfig

SCHEDULES = ("cosine", "wsd")
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "64-true")
_MODEL_RULE_KEYS = ("aspect", "head_dim")  # inputs of the aspect rule, not model fields


def _register_resolvers() -> None:
    """Integer helpers the model config uses for its aspect rule."""
    if not OmegaConf.has_resolver("scaling_mul"):
        OmegaConf.register_new_resolver("scaling_mul", lambda a, b: int(a) * int(b))
    if not OmegaConf.has_resolver("scaling_div"):
        OmegaConf.register_new_resolver("scaling_div", lambda a, b: max(1, int(a) // int(b)))


_register_resolvers()


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and horizon settings (Hydra group ``train``)."""

    tokens: int | None = 1_000_000
    flops: float | None = None
    flops_convention: str = "6N"
    batch_size: int = 32
    micro_batch_size: int | None = None
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup: float = 0.05
    schedule: str = "cosine"
    cooldown: float = 0.2
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    precision: str = "32-true"
    eval_points: int = 8
    log_every: int = 10
    checkpoint_every: int = 50

    def __post_init__(self) -> None:
        has_tokens, has_flops = self.tokens is not None, self.flops is not None
        if has_tokens == has_flops:
            which = "both are set" if has_tokens else "neither is set"
            raise ConfigError(
                f"set exactly one of train.tokens or train.flops ({which}): e.g. "
                "train.tokens=2e6 train.flops=null, or train.flops=1e13 train.tokens=null"
            )
        if has_tokens and not self.tokens > 0:
            raise ConfigError(f"train.tokens={self.tokens} must be positive")
        if has_flops and not self.flops > 0:
            raise ConfigError(f"train.flops={self.flops} must be positive")
        if self.flops_convention not in FLOPS_CONVENTIONS:
            raise ConfigError(
                f"train.flops_convention={self.flops_convention!r} is unknown: "
                f"choose one of {', '.join(FLOPS_CONVENTIONS)}"
            )
        if self.schedule not in SCHEDULES:
            raise ConfigError(
                f"train.schedule={self.schedule!r} is unknown: choose one of {', '.join(SCHEDULES)}"
            )
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"train.precision={self.precision!r} is unknown: choose one of "
                f"{', '.join(PRECISIONS)}"
            )
        for key in ("batch_size", "eval_points", "log_every"):
            if getattr(self, key) < 1:
                raise ConfigError(f"train.{key}={getattr(self, key)} must be at least 1")
        if self.micro_batch_size is not None and (
            self.micro_batch_size < 1 or self.batch_size % self.micro_batch_size
        ):
            raise ConfigError(
                f"train.micro_batch_size={self.micro_batch_size} must divide "
                f"train.batch_size={self.batch_size}"
            )
        if not self.lr > 0:
            raise ConfigError(f"train.lr={self.lr} must be positive")
        for key in ("warmup", "cooldown", "min_lr_ratio"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"train.{key}={getattr(self, key)} must be in [0, 1]")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(
                f"train.{unknown[0]} is not a known key; known: {', '.join(sorted(known))}"
            )
        values = dict(d)
        if values.get("tokens") is not None:
            values["tokens"] = int(float(values["tokens"]))
        if values.get("flops") is not None:
            values["flops"] = float(values["flops"])
        return cls(**values)


@dataclass(frozen=True)
class TrainerConfig:
    """Passed through to ``lightning.Trainer`` (multi-device runs)."""

    accelerator: str = "cpu"
    devices: int | str = 1
    num_nodes: int = 1
    strategy: str = "auto"

    @property
    def world_size(self) -> int:
        devices = self.devices if isinstance(self.devices, int) else 1
        return max(1, devices) * max(1, self.num_nodes)


@dataclass(frozen=True)
class TrackingConfig:
    uri: str = "sqlite:///results/mlflow.db"
    experiment: str = "scaling"


@dataclass(frozen=True)
class RunConfig:
    """Everything one training run needs; built from Hydra's composed config."""

    model: GPTConfig
    data: DataConfig
    train: TrainConfig
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    seed: int = 0
    threads: int = 0
    progress: str = "auto"
    results_dir: str = "results"
    model_rule: dict[str, int] = field(default_factory=dict)

    # ---- horizon -------------------------------------------------------------------------
    @property
    def tokens_per_step(self) -> int:
        return self.train.batch_size * self.model.seq_len

    @property
    def planned_tokens(self) -> int:
        """Tokens asked for: train.tokens, or derived from train.flops under the convention."""
        if self.train.tokens is not None:
            return int(self.train.tokens)
        per_token = flops_per_token(self.model, self.train.flops_convention)
        return int(self.train.flops / per_token)

    @property
    def steps(self) -> int:
        return self.planned_tokens // self.tokens_per_step

    @property
    def tokens(self) -> int:
        """Tokens actually trained: whole optimizer steps of batch_size x seq_len."""
        return self.steps * self.tokens_per_step

    def flops(self, convention: str | None = None) -> float:
        return flops_per_token(self.model, convention or self.train.flops_convention) * self.tokens

    @property
    def micro_batch_size(self) -> int:
        """Sequences per forward pass on one device."""
        per_device = self.train.batch_size // self.trainer.world_size
        micro = self.train.micro_batch_size or per_device
        return min(micro, per_device)

    @property
    def accumulate(self) -> int:
        return self.train.batch_size // (self.micro_batch_size * self.trainer.world_size)

    def validate_horizon(self) -> None:
        """A horizon must hold at least one optimizer step (checked before anything starts)."""
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
        if self.steps < 1:
            key = "train.tokens" if self.train.tokens is not None else "train.flops"
            raise ConfigError(
                f"{key} gives {self.planned_tokens:,} tokens, less than one optimizer step of "
                f"{self.tokens_per_step:,} tokens (train.batch_size x model.seq_len): "
                f"raise {key} or lower train.batch_size"
            )

    # ---- identity ------------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """The training-relevant settings: what decides the final loss (no paths, no launcher,
        no tracking, no threads, no progress bars)."""
        data = asdict(self.data)
        data.pop("cache_dir", None)
        return {
            "model": asdict(self.model),
            "data": data,
            "train": {**asdict(self.train), "tokens": self.tokens},
            "seed": self.seed,
            "world_size": self.trainer.world_size,
        }

    def flat_params(self) -> dict[str, Any]:
        """The resolved config flattened as ``group.key`` for MLflow params."""
        out: dict[str, Any] = {}
        for group in ("model", "data", "train", "tracking", "trainer"):
            for key, value in asdict(getattr(self, group)).items():
                out[f"{group}.{key}"] = value
        for key, value in self.model_rule.items():
            out[f"model.{key}"] = value
        out.update(seed=self.seed, threads=self.threads)
        return out


def run_key(cfg: RunConfig) -> str:
    """Stable 16-hex-digit key of a run's training-relevant config (DESIGN: run identity)."""
    blob = json.dumps(cfg.identity(), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _short(x: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if x >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def run_name(cfg: RunConfig) -> str:
    """Human-readable run name derived from the config (never a timestamp), unique via the key."""
    m = cfg.model
    counts = count_params(m)
    return (
        f"L{m.n_layer}-d{m.d_model}-h{m.n_head}-N{_short(counts.total)}-D{_short(cfg.tokens)}"
        f"-lr{cfg.train.lr:g}-s{cfg.seed}-{run_key(cfg)[:6]}"
    )


# ---- building from Hydra ----------------------------------------------------------------------


def nominal_vocab_size(data: DataConfig) -> int:
    """Vocabulary implied by the data config, before any corpus is loaded."""
    if data.source == "markov":
        return int(data.states)
    if data.tokenizer == "bpe":
        return int(data.vocab_size)
    return 256


def plain_config(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The resolved config as plain containers, without Hydra's own ``hydra`` node."""
    if isinstance(cfg, DictConfig):
        keys = [k for k in cfg.keys() if k != "hydra"]
        try:
            return OmegaConf.to_container(  # type: ignore[return-value]
                OmegaConf.masked_copy(cfg, keys), resolve=True
            )
        except OmegaConfBaseException as err:
            raise ConfigError(f"cannot resolve the config: {str(err).splitlines()[0]}") from None
    return {k: v for k, v in cfg.items() if k != "hydra"}


def build_run_config(
    cfg: DictConfig | Mapping[str, Any], vocab_size: int | None = None
) -> RunConfig:
    """Validate a composed Hydra config into a :class:`RunConfig` (raises ConfigError).

    ``vocab_size`` is the corpus's real vocabulary once loaded; before that the nominal one from
    the data config is used, so every config error surfaces before any data is touched.
    """
    hydra_free = plain_config(cfg)
    for group in ("model", "data", "train"):
        if not isinstance(hydra_free.get(group), Mapping):
            raise ConfigError(f"config group {group!r} is missing: pass {group}=<name>")
    data = DataConfig.from_dict(hydra_free["data"])
    model_raw = dict(hydra_free["model"])
    rule = {k: model_raw.pop(k) for k in _MODEL_RULE_KEYS if k in model_raw}
    model_raw["vocab_size"] = vocab_size or nominal_vocab_size(data)
    model = GPTConfig.from_dict(model_raw)
    train = TrainConfig.from_dict(hydra_free["train"])
    tracking = TrackingConfig(**hydra_free.get("tracking", {}))
    trainer = TrainerConfig(**hydra_free.get("trainer", {}))
    progress = str(hydra_free.get("progress", "auto")).lower()
    if progress not in ("auto", "true", "false"):
        raise ConfigError(f"progress={progress!r} must be auto, true or false")
    threads = int(hydra_free.get("threads", 0))
    if threads < 0:
        raise ConfigError(f"threads={threads} must be 0 (all cores) or positive")
    run = RunConfig(
        model=model,
        data=data,
        train=train,
        tracking=tracking,
        trainer=trainer,
        seed=int(hydra_free.get("seed", 0)),
        threads=threads,
        progress=progress,
        results_dir=str(hydra_free.get("results_dir", "results")),
        model_rule=rule,
    )
    run.validate_horizon()
    return run


def describe_horizon(cfg: RunConfig) -> dict[str, Any]:
    """Planned horizon figures, logged as params."""
    return {
        "planned.tokens": cfg.tokens,
        "planned.steps": cfg.steps,
        "planned.flops": cfg.flops("6N"),
        "planned.flops_convention": cfg.train.flops_convention,
        "planned.flops_in_convention": cfg.flops(),
        "planned.tokens_per_step": cfg.tokens_per_step,
        "planned.accumulate_grad_batches": cfg.accumulate,
        "planned.micro_batch_size": cfg.micro_batch_size,
        "planned.tokens_per_param": cfg.tokens / max(1, count_params(cfg.model).total),
    }
