"""The run configuration: schema, defaults, validation, horizon and identity.

This module is the pure core's view of a run and imports neither torch, lightning nor mlflow, so
the sweep driver, the CLI and the analysis side can size and name runs without the training stack.

- **Schema and defaults** live only in the dataclasses below (:class:`GPTConfig`,
  :class:`DataConfig`, :class:`TrainConfig`, :class:`TrackingConfig`, :class:`TrainerConfig`).
  :func:`register_configs` stores their defaults in Hydra's ``ConfigStore`` as ``<group>/base``;
  the YAML files in ``scaling/conf/`` pick a base and set only what differs from it.
- **Validation**: :func:`structured` merges a group's mapping onto its dataclass with OmegaConf
  (types, unknown keys) and ``__post_init__`` checks values; every failure is one
  :class:`~scaling.errors.ConfigError` line that names the key.
- **Horizon**: exactly one of ``train.tokens`` / ``train.flops``; tokens, steps and FLOPs derive
  from it (:class:`RunConfig`), with the FLOPs of :mod:`scaling.counting`.
- **Identity**: :func:`run_key` and :func:`run_name`, derived from the training-relevant config,
  never from a timestamp.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from scaling.counting import (
    FLOPS_CONVENTIONS,
    count_params,
    default_d_ff,
    flops_for_tokens,
    tokens_for_flops,
)
from scaling.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parent / "conf"  # Hydra configs, shipped as package data
DEFAULT_TRACKING_URI = "sqlite:///results/mlflow.db"
DEFAULT_EXPERIMENT = "scaling"

POS_CHOICES = ("learned", "rope")
NORM_CHOICES = ("layernorm", "rmsnorm")
MLP_CHOICES = ("gelu", "swiglu")
SOURCES = ("stdlib", "text", "hf", "markov")
TOKENIZERS = ("byte", "bpe")
SCHEDULES = ("cosine", "wsd")
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "64-true")
MAX_EVAL_SEQ_LEN = 4096  # the validation set scores >= val_tokens targets at any seq_len <= this

C = TypeVar("C")


# ---- model ------------------------------------------------------------------------------------


@dataclass
class GPTConfig:
    """Architecture of one model (Hydra group ``model``).

    One knob moves the size: ``d_model = aspect * n_layer`` and ``n_head = d_model / head_dim``
    unless ``d_model`` / ``n_head`` are set (Kaplan et al. 2020: loss is flat over a wide range of
    shapes, so one aspect ratio serves). Invalid values raise :class:`ConfigError` naming the key.
    """

    vocab_size: int = 256  # set from the corpus's tokenizer by build_run_config
    seq_len: int = 128  # context length, tokens
    n_layer: int = 4
    aspect: int = 16  # d_model per layer, when d_model is not set
    head_dim: int = 16  # d_model per head, when n_head is not set
    d_model: int | None = None  # None: aspect * n_layer
    n_head: int | None = None  # None: d_model // head_dim (at least 1)
    d_ff: int | None = None  # MLP hidden width; None: counting.default_d_ff (4d or ~8/3 d)
    pos: str = "learned"  # learned | rope (Su et al. 2021)
    norm: str = "layernorm"  # layernorm | rmsnorm (Zhang & Sennrich 2019)
    mlp: str = "gelu"  # gelu | swiglu (Shazeer 2020)
    bias: bool = True  # biases in linear layers and LayerNorm (nanoGPT/GPT-2 default)
    dropout: float = 0.0
    tie_embeddings: bool = True  # lm_head shares wte's weight (GPT-2)

    def __post_init__(self) -> None:
        for key in ("aspect", "head_dim", "n_layer"):
            _check_positive_int(key, getattr(self, key))
        if self.d_model is None:
            self.d_model = self.aspect * self.n_layer
        if self.n_head is None:
            self.n_head = max(1, self.d_model // self.head_dim)
        for key in ("vocab_size", "seq_len", "n_head", "d_model"):
            _check_positive_int(key, getattr(self, key))
        if self.d_ff is not None:
            _check_positive_int("d_ff", self.d_ff)
        for key, choices in (("pos", POS_CHOICES), ("norm", NORM_CHOICES), ("mlp", MLP_CHOICES)):
            if getattr(self, key) not in choices:
                raise ConfigError(
                    f"model.{key}={getattr(self, key)!r} is not one of {', '.join(choices)}"
                )
        for key in ("bias", "tie_embeddings"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"model.{key}={getattr(self, key)!r} must be true or false")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)):
            raise ConfigError(f"model.dropout={self.dropout!r} must be a number in [0, 1)")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout={self.dropout} must be in [0, 1), e.g. 0.0 or 0.1")
        if self.d_model % self.n_head:
            suggestion = self.n_head * math.ceil(self.d_model / self.n_head)
            raise ConfigError(
                f"model.d_model={self.d_model} is not divisible by model.n_head={self.n_head}: "
                f"choose d_model a multiple of n_head (e.g. model.d_model={suggestion})"
            )
        if self.pos == "rope" and self.d_model // self.n_head % 2:
            raise ConfigError(
                f"model.pos=rope needs an even head size, but model.d_model/model.n_head = "
                f"{self.d_model}/{self.n_head} = {self.d_model // self.n_head}: "
                "change model.n_head or model.d_model"
            )

    @property
    def attn_head_dim(self) -> int:
        """Width of one attention head as built (``d_model // n_head``)."""
        return self.d_model // self.n_head

    @property
    def mlp_dim(self) -> int:
        """The MLP hidden width actually used (``d_ff`` or its default for ``mlp``)."""
        return self.d_ff if self.d_ff is not None else default_d_ff(self.d_model, self.mlp)

    def architecture(self) -> dict[str, Any]:
        """The fields that decide the network (the aspect rule's inputs are not among them)."""
        out = asdict(self)
        out.pop("aspect")
        out.pop("head_dim")
        return out


def _check_positive_int(key: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"model.{key}={value!r} must be a positive integer")


# ---- data -------------------------------------------------------------------------------------


def _default_cache_dir() -> str:
    return os.environ.get("SCALING_CACHE", ".cache/scaling")


@dataclass(frozen=True)
class DataConfig:
    """The ``data`` group. Keys of every source are accepted; each source reads its own."""

    source: str = "stdlib"  # stdlib | text | hf | markov
    tokenizer: str = "byte"  # byte (raw UTF-8, vocab 256) | bpe (trained on the corpus)
    vocab_size: int = 4096  # bpe target vocabulary; ignored by byte and markov
    val_tokens: int = 32768  # validation targets scored at any seq_len <= MAX_EVAL_SEQ_LEN
    allow_repeat: bool = True  # more train.tokens than the corpus holds: epochs (else an error)
    cache_dir: str = field(default_factory=_default_cache_dir)  # $SCALING_CACHE or .cache/scaling
    # text
    path: str | None = None  # a file, a folder or a glob
    pattern: str = "**/*"  # comma-separated globs inside a folder given as data.path
    # hf
    name: str | None = None  # hub dataset, or a loader: text | json | csv | parquet
    config: str | None = None
    data_files: Any = None  # str, list of str, or {split: files}
    split: str = "train"
    text_field: str = "text"
    # markov
    states: int = 64
    concentration: float = 0.1  # Dirichlet concentration of transition rows: lower = less entropy
    markov_seed: int = 0
    corpus_tokens: int = 4_000_000

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ConfigError(
                f"data.source={self.source!r} is unknown: choose one of {', '.join(SOURCES)}"
            )
        if self.tokenizer not in TOKENIZERS:
            raise ConfigError(
                f"data.tokenizer={self.tokenizer!r} is unknown: choose one of "
                f"{', '.join(TOKENIZERS)}"
            )
        if self.tokenizer == "bpe" and self.source != "markov":
            if not 257 <= self.vocab_size < 2**32:
                raise ConfigError(
                    f"data.vocab_size={self.vocab_size} is too small for bpe: it needs more "
                    "than the 256 byte tokens (e.g. data.vocab_size=4096)"
                )
        if self.val_tokens < 1:
            raise ConfigError(f"data.val_tokens={self.val_tokens} must be positive")
        if self.source == "text" and not self.path:
            raise ConfigError("data.path is not set: pass data.path=FILE|DIR|GLOB")
        if self.source == "hf" and not self.name:
            raise ConfigError(
                "data.name is not set: pass data.name=HUB_DATASET, or a loader "
                "(text, json, csv, parquet) with data.data_files=FILES"
            )
        if self.source == "markov":
            if not 2 <= self.states <= 65535:
                raise ConfigError(f"data.states={self.states} must be between 2 and 65535")
            if not self.concentration > 0:
                raise ConfigError(f"data.concentration={self.concentration} must be positive")
            if self.corpus_tokens < 1:
                raise ConfigError(f"data.corpus_tokens={self.corpus_tokens} must be positive")

    @property
    def val_reserve(self) -> int:
        """Tokens held out for validation: val_tokens plus room for one longest window."""
        return self.val_tokens + MAX_EVAL_SEQ_LEN

    @property
    def nominal_vocab_size(self) -> int:
        """Vocabulary implied by the config, before any corpus is loaded."""
        if self.source == "markov":
            return self.states
        return self.vocab_size if self.tokenizer == "bpe" else 256


# ---- optimisation and horizon -----------------------------------------------------------------


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and horizon settings (Hydra group ``train``)."""

    tokens: int | None = 1_000_000  # exactly one of tokens / flops sets the horizon
    flops: float | None = None
    flops_convention: str = "6N"  # 6N (C = 6ND) | 6N+attn (Kaplan) | chinchilla (App. F)
    batch_size: int = 32  # sequences per optimizer step (global, across devices)
    micro_batch_size: int | None = None  # sequences per forward pass; None = no accumulation
    lr: float = 3e-3  # peak learning rate
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio at the end of this horizon
    warmup: float = 0.05  # fraction of steps with linear warmup
    schedule: str = "cosine"  # cosine | wsd (warmup-stable-decay)
    cooldown: float = 0.2  # wsd only: fraction of steps in the final linear cooldown
    weight_decay: float = 0.1  # decoupled (AdamW); not applied to norms, biases, embeddings
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    precision: str = "32-true"  # Lightning names: 32-true | bf16-mixed
    eval_points: int = 8  # validation at this many log-spaced token counts; the last is the result
    log_every: int = 10  # optimizer steps between train/loss points
    checkpoint_every: int = 50  # optimizer steps between checkpoints (0 = never)

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
        if has_flops and not (self.flops > 0 and math.isfinite(self.flops)):
            raise ConfigError(f"train.flops={self.flops} must be a positive, finite budget")
        for key, choices in (
            ("flops_convention", FLOPS_CONVENTIONS),
            ("schedule", SCHEDULES),
            ("precision", PRECISIONS),
        ):
            if getattr(self, key) not in choices:
                raise ConfigError(
                    f"train.{key}={getattr(self, key)!r} is unknown: choose one of "
                    f"{', '.join(choices)}"
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


@dataclass(frozen=True)
class TrainerConfig:
    """Passed through to ``lightning.Trainer`` (multi-device runs: DDP)."""

    accelerator: str = "cpu"
    devices: Any = 1  # int, or what Lightning accepts ("auto", a list of ids)
    num_nodes: int = 1
    strategy: str = "auto"

    @property
    def world_size(self) -> int:
        devices = self.devices if isinstance(self.devices, int) else 1
        return max(1, devices) * max(1, self.num_nodes)


@dataclass(frozen=True)
class TrackingConfig:
    """Where runs are recorded (Hydra group ``tracking``): an MLflow URI and experiment."""

    uri: str = DEFAULT_TRACKING_URI
    experiment: str = DEFAULT_EXPERIMENT


# ---- from mappings to dataclasses -------------------------------------------------------------


def _integral_floats(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """YAML and Hydra read ``4e6`` as a float: give int fields the whole number it spells."""
    ints = {f.name for f in fields(cls) if str(f.type).startswith("int")}
    return {
        k: int(v) if k in ints and isinstance(v, float) and v.is_integer() else v
        for k, v in values.items()
    }


def structured(cls: type[C], group: str, values: Mapping[str, Any]) -> C:
    """``cls`` built from ``values`` (a config group), typed by OmegaConf and validated.

    Raises :class:`ConfigError` with one line naming ``group.key`` for an unknown key, a value of
    the wrong type, or a value ``cls.__post_init__`` rejects.
    """
    try:
        merged = OmegaConf.merge(OmegaConf.structured(cls), _integral_floats(cls, values))
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", "") or getattr(err, "key", "")
        key = f"{group}.{key}" if group else str(key)
        known = ", ".join(f.name for f in fields(cls))
        if type(err).__name__ == "ConfigKeyError":
            raise ConfigError(f"{key} is not a known key; known: {known}") from None
        first = str(err).splitlines()[0]
        raise ConfigError(f"{key}: {first}") from None


def register_configs() -> None:
    """Store each group's defaults in Hydra's ConfigStore as ``<group>/base`` (and the top-level
    keys as ``run_base``).

    The YAML options (``model/gpt.yaml``, ``data/text.yaml``, ...) extend their group's base and
    set only what differs. Nodes are plain mappings, not typed schemas, so a wrong type reaches
    :func:`structured` and gets the project's one-line error instead of Hydra's.
    """
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for group, cls in GROUPS.items():
        store.store(group=group, name="base", node=_field_defaults(cls))
    store.store(name="run_base", node=_field_defaults(_TopLevel))  # seed, threads, ...


def _field_defaults(cls: type) -> dict[str, Any]:
    out = {}
    for f in fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        else:
            out[f.name] = f.default_factory()  # type: ignore[misc]
    return out


# ---- one run ----------------------------------------------------------------------------------


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

    # ---- horizon -------------------------------------------------------------------------
    @property
    def tokens_per_step(self) -> int:
        return self.train.batch_size * self.model.seq_len

    @property
    def planned_tokens(self) -> int:
        """Tokens asked for: train.tokens, or derived from train.flops under the convention."""
        if self.train.tokens is not None:
            return int(self.train.tokens)
        return tokens_for_flops(self.model, self.train.flops, self.train.flops_convention)

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
        """The training-relevant settings: what decides the final loss (no paths, no launcher,
        no tracking, no threads, no progress bars)."""
        data = asdict(self.data)
        data.pop("cache_dir", None)
        return {
            "model": self.model.architecture(),
            "data": data,
            "train": {**asdict(self.train), "tokens": self.tokens},
            "seed": self.seed,
            "world_size": self.trainer.world_size,
        }

    def flat_params(self) -> dict[str, Any]:
        """The resolved config flattened as ``group.key`` for MLflow params."""
        out: dict[str, Any] = {}
        for group in GROUPS:
            for key, value in asdict(getattr(self, group)).items():
                out[f"{group}.{key}"] = value
        out.update(seed=self.seed, threads=self.threads)
        return out


GROUPS: dict[str, type] = {
    "model": GPTConfig,
    "data": DataConfig,
    "train": TrainConfig,
    "tracking": TrackingConfig,
    "trainer": TrainerConfig,
}


def run_key(cfg: RunConfig) -> str:
    """Stable 16-hex-digit key of a run's training-relevant config."""
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
    return (
        f"L{m.n_layer}-d{m.d_model}-h{m.n_head}-N{_short(count_params(m).total)}"
        f"-D{_short(cfg.tokens)}-lr{cfg.train.lr:g}-s{cfg.seed}-{run_key(cfg)[:6]}"
    )


# ---- building from Hydra ----------------------------------------------------------------------


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
    raw = plain_config(cfg)
    for group in ("model", "data", "train"):
        if not isinstance(raw.get(group), Mapping):
            raise ConfigError(f"config group {group!r} is missing: pass {group}=<name>")
    data = structured(DataConfig, "data", raw["data"])
    model_raw = {**raw["model"], "vocab_size": vocab_size or data.nominal_vocab_size}
    top = structured(_TopLevel, "", {k: raw[k] for k in _TOP_LEVEL if k in raw})
    run = RunConfig(
        model=structured(GPTConfig, "model", model_raw),
        data=data,
        train=structured(TrainConfig, "train", raw["train"]),
        tracking=structured(TrackingConfig, "tracking", raw.get("tracking", {})),
        trainer=structured(TrainerConfig, "trainer", raw.get("trainer", {})),
        **asdict(top),
    )
    run.validate_horizon()
    return run


@dataclass(frozen=True)
class _TopLevel:
    """The top-level keys of a run, with RunConfig's defaults."""

    seed: int = RunConfig.seed
    threads: int = RunConfig.threads
    progress: str = RunConfig.progress
    results_dir: str = RunConfig.results_dir

    def __post_init__(self) -> None:
        if self.progress.lower() not in ("auto", "true", "false"):
            raise ConfigError(f"progress={self.progress!r} must be auto, true or false")
        object.__setattr__(self, "progress", self.progress.lower())
        if self.threads < 0:
            raise ConfigError(f"threads={self.threads} must be 0 (all cores) or positive")


_TOP_LEVEL = tuple(f.name for f in fields(_TopLevel))
