"""The schema of a run's config groups: one dataclass per Hydra group, its defaults and checks.

Defaults live only in these dataclasses; ``__post_init__`` checks values and raises one
:class:`~scaling.errors.ConfigError` line that names the key. This module holds the groups
``model`` (:class:`GPTConfig`), ``train`` (:class:`TrainConfig`), ``tracking``
(:class:`TrackingConfig`) and the sweep driver's ``sweep`` (:class:`SweepConfig`); the ``data``
group is :mod:`scaling.data_config`, the ``trainer`` group :mod:`scaling.devices`. Every group is
re-exported by :mod:`scaling.config`, which turns mappings (Hydra's composed config) into these
classes and a whole run; import them from there.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from scaling.counting import FLOPS_CONVENTIONS, default_d_ff
from scaling.errors import ConfigError

DEFAULT_TRACKING_URI = "sqlite:///results/mlflow.db"
DEFAULT_EXPERIMENT = "scaling"

POS_CHOICES = ("learned", "rope")
NORM_CHOICES = ("layernorm", "rmsnorm")
MLP_CHOICES = ("gelu", "swiglu")
SCHEDULES = ("cosine", "wsd", "constant")
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "64-true")
# torch.compile's modes (torch 2.13's torch._inductor.list_mode_options())
COMPILE_MODES = ("default", "lite", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
MAX_TOKENS = 10**18  # a horizon above this is a typo (and overflows the data loader's indices)
MAX_SEED = 2**32 - 1  # Lightning's seed_everything silently replaces a seed outside [0, 2^32)
TRACKING_SCHEMES = (  # MLflow tracking stores (MLflow 3 dropped the file store)
    "sqlite",
    "http",
    "https",
    "postgresql",
    "mysql",
    "mssql",
    "databricks",
    "databricks-uc",
    "uc",
)


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


# ---- optimisation and horizon -----------------------------------------------------------------

SPIKE_ACTIONS = ("off", "warn", "skip", "rollback", "stop")


@dataclass
class SpikeConfig:
    """Loss-spike detection (``train.spike.*``; :mod:`scaling.training.spikes`): a step whose
    training loss or gradient norm lies more than ``threshold`` standard deviations above the
    mean of the last ``window`` steps is a spike (tested once half a window is seen; before
    that, a loss above ``ratio`` x the least loss so far is), and so is a non-finite one. The
    gradient norm's test decides only when ``train.grad_clip`` is 0 (clipping bounds the update).

    ``action``: ``warn`` (record it, train on), ``skip`` (the spiking batch's update is not
    applied), ``rollback`` (the weights, optimizer moments and detector window go back to a
    snapshot one to two windows old, :mod:`scaling.training.rollback`; at most
    ``max_rollbacks`` times, the next spike ends the run as ``stop`` does), ``stop`` (the run
    ends FAILED as diverged), ``off`` (no detection, no gradient norm). Not frozen: OmegaConf
    makes a frozen nested dataclass read-only.
    """

    action: str = "warn"
    window: int = 128  # steps of the rolling mean and standard deviation
    threshold: float = 6.0  # standard deviations above the window's mean
    ratio: float = 2.0  # before the window is half full: loss above ratio x the least so far
    max_rollbacks: int = 3  # rollback only: rollbacks per run; the next spike ends it diverged

    def __post_init__(self) -> None:
        if self.action not in SPIKE_ACTIONS:
            raise ConfigError(
                f"train.spike.action={self.action!r} is unknown: choose one of "
                f"{', '.join(SPIKE_ACTIONS)}"
            )
        window = self.window
        if isinstance(window, bool) or not isinstance(window, int) or not 4 <= window <= 100_000:
            raise ConfigError(
                f"train.spike.window={window!r} must be a whole number of steps in [4, 100000], "
                "e.g. train.spike.window=128"
            )
        rollbacks = self.max_rollbacks
        if isinstance(rollbacks, bool) or not isinstance(rollbacks, int) or not 0 <= rollbacks:
            raise ConfigError(
                f"train.spike.max_rollbacks={rollbacks!r} must be a whole number >= 0, e.g. "
                "train.spike.max_rollbacks=3"
            )
        for key, lo, example in (("threshold", 0.0, "6"), ("ratio", 1.0, "2")):
            value = getattr(self, key)
            ok = not isinstance(value, bool) and isinstance(value, (int, float))
            if not (ok and math.isfinite(value) and value > lo):
                raise ConfigError(
                    f"train.spike.{key}={value!r} must be a finite number above {lo:g}, e.g. "
                    f"train.spike.{key}={example}"
                )

    def identity(self) -> dict[str, Any] | None:
        """What of it is in the run key: only ``skip`` and ``rollback`` change what a run trains
        (``warn`` and ``off`` never do; ``stop`` either trains as they do or ends the run
        FAILED). ``max_rollbacks`` only under ``rollback``, so that ``skip`` keys are as they
        were before the key existed."""
        if self.action == "skip":
            out = asdict(self)
            del out["max_rollbacks"]
            return out
        return asdict(self) if self.action == "rollback" else None


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
    # linear warmup in optimizer steps (overrides warmup); auto: N tokens, at most warmup
    warmup_steps: int | None = None
    schedule: str = "cosine"  # cosine | wsd (warmup-stable-decay) | constant (after warmup)
    cooldown: float = 0.2  # wsd only: fraction of steps in the final linear cooldown
    # wsd only: several horizons (values of whichever of tokens / flops is set, whose own value
    # is then unused) from ONE stable run, each a cooldown branch recorded as its own run
    horizons: list[float] | None = None
    weight_decay: float = 0.1  # decoupled (AdamW); not applied to norms, biases, embeddings
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    precision: str = "32-true"  # Lightning names: 32-true | bf16-mixed
    eval_points: int = 8  # validation at this many log-spaced token counts; the last is the result
    log_every: int = 10  # optimizer steps between train/loss points
    checkpoint_every: int = 50  # optimizer steps between checkpoints (0 = never)
    # and at least this many seconds since the run's start or last checkpoint (0: every
    # checkpoint_every steps): a run of a few seconds writes none, a kill retrains at most this
    checkpoint_min_s: float = 10.0
    # the rule that train.lr=auto / train.batch_size=auto read (a hparams.json written by
    # `scaling fit --law hparams`); null: ./hparams.json if it exists, else the shipped default.
    # Out of the run key: the numbers it resolves to are in (scaling.config.resolve_auto)
    hparams_rule: str | None = None
    spike: SpikeConfig = field(default_factory=SpikeConfig)  # loss-spike detection and action
    # torch.compile the model's training forward (evaluation stays eager); out of the run key
    compile: bool = False
    compile_mode: str = "default"  # torch.compile's mode: COMPILE_MODES

    def __post_init__(self) -> None:
        if isinstance(self.spike, dict):  # built from a mapping without OmegaConf
            known = [f.name for f in fields(SpikeConfig)]
            for key in self.spike:
                if key not in known:
                    raise ConfigError(
                        f"train.spike.{key} is not a known key; known: {', '.join(known)}"
                    )
            object.__setattr__(self, "spike", SpikeConfig(**self.spike))
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
            ("compile_mode", COMPILE_MODES),
        ):
            if getattr(self, key) not in choices:
                raise ConfigError(
                    f"train.{key}={getattr(self, key)!r} is unknown: choose one of "
                    f"{', '.join(choices)}"
                )
        if not isinstance(self.compile, bool):
            raise ConfigError(f"train.compile={self.compile!r} must be true or false")
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
        if self.checkpoint_every < 0:
            raise ConfigError(
                f"train.checkpoint_every={self.checkpoint_every} must be 0 (never) or a positive "
                "number of optimizer steps"
            )
        if not (self.checkpoint_min_s >= 0 and math.isfinite(self.checkpoint_min_s)):
            raise ConfigError(
                f"train.checkpoint_min_s={self.checkpoint_min_s} must be 0 (every "
                "train.checkpoint_every steps) or a positive number of seconds"
            )
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(
                f"train.lr={self.lr} must be a positive, finite learning rate (e.g. train.lr=3e-3)"
            )
        for key in ("warmup", "cooldown", "min_lr_ratio"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"train.{key}={getattr(self, key)} must be in [0, 1]")
        if self.warmup_steps is not None and not (
            isinstance(self.warmup_steps, int) and self.warmup_steps >= 0
        ):
            raise ConfigError(
                f"train.warmup_steps={self.warmup_steps} must be a whole number of optimizer "
                "steps >= 0, null (then train.warmup, a fraction of the steps, applies) or auto"
            )
        self._check_horizons()
        if self.hparams_rule is not None and not str(self.hparams_rule).strip():
            raise ConfigError(
                "train.hparams_rule is empty: pass a rule file written by `scaling fit --law "
                "hparams` (DIR/hparams.json), or null"
            )
        for key, default in (("beta1", 0.9), ("beta2", 0.95)):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ConfigError(
                    f"train.{key}={getattr(self, key)} must be in [0, 1) (AdamW's moment decay): "
                    f"e.g. train.{key}={default}"
                )
        for key, zero in (("weight_decay", "none"), ("grad_clip", "no clipping")):
            value = getattr(self, key)
            if not (value >= 0 and math.isfinite(value)):
                raise ConfigError(f"train.{key}={value} must be a finite number >= 0 (0 = {zero})")

    def _check_horizons(self) -> None:
        if self.horizons is None:
            return
        unit = "tokens" if self.tokens is not None else "FLOPs"
        values = list(self.horizons)
        if not values or not all(
            isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in values
        ):
            raise ConfigError(
                f"train.horizons={values} must list positive {unit}, e.g. "
                "'train.horizons=[3e5,1e6,3e6]'"
            )
        if len(set(values)) != len(values):
            raise ConfigError(f"train.horizons={values} lists a horizon twice")
        if self.schedule != "wsd":
            raise ConfigError(
                f"train.horizons needs train.schedule=wsd (not {self.schedule}): only a "
                "warmup-stable-decay run can branch its cooldowns from one stable phase"
            )


# ---- tracking and the sweep driver ------------------------------------------------------------


# Experiment names become file and folder names (results/<experiment>.csv, analysis/<experiment>/).
_EXPERIMENT_FORBIDDEN = ("/", "\\", "..", "\x00")


def tracking_uri_problem(uri: str) -> str | None:
    """What is wrong with an MLflow tracking URI on its face (no I/O), or None."""
    if not uri.strip():
        return f"is empty: pass an MLflow store, e.g. tracking.uri={DEFAULT_TRACKING_URI}"
    scheme = uri.split(":", 1)[0].lower() if ":" in uri else ""
    if "://" not in uri or scheme in ("", "file"):
        folder = uri.removeprefix("file://").rstrip("/") or "results"
        return (
            f"is not a store URI (MLflow 3 no longer supports the file store): use "
            f"tracking.uri=sqlite:///{folder}/mlflow.db or a server, tracking.uri=http://HOST:5000"
        )
    if scheme.split("+")[0] not in TRACKING_SCHEMES:
        return (
            f"has the unknown scheme {scheme}://: use sqlite:///FILE, http(s)://HOST:PORT or a "
            f"database ({', '.join(TRACKING_SCHEMES)})"
        )
    if scheme == "sqlite" and uri.rstrip("/") in ("sqlite:", "sqlite:/"):
        return f"names no database file: e.g. tracking.uri={DEFAULT_TRACKING_URI}"
    return None


@dataclass(frozen=True)
class TrackingConfig:
    """Where runs are recorded (Hydra group ``tracking``): an MLflow URI and experiment."""

    uri: str = DEFAULT_TRACKING_URI
    experiment: str = DEFAULT_EXPERIMENT

    def __post_init__(self) -> None:
        problem = tracking_uri_problem(self.uri)
        if problem:
            raise ConfigError(f"tracking.uri={self.uri} {problem}")
        name = self.experiment
        if (
            not name.strip()
            or name != name.strip()
            or any(bad in name for bad in _EXPERIMENT_FORBIDDEN)
            or not name.isprintable()
        ):
            raise ConfigError(
                f"tracking.experiment={name!r} is not a usable name: it names files "
                "(results/<experiment>.csv, analysis/<experiment>/), so it must be non-empty, "
                "printable, without surrounding spaces, '/', '\\' or '..' "
                "(e.g. tracking.experiment=my-sweep)"
            )


@dataclass(frozen=True)
class SweepConfig:
    """The sweep driver's own keys (group ``sweep``; ``python -m scaling.sweep`` only)."""

    collect: bool = True  # at the end, write results/<experiment>.csv from MLflow
    fit: bool = True  # ...and fit it into analysis/<experiment>/ (when enough runs finished)
    bootstrap: int = 200  # bootstrap resamples for the end-of-sweep fit (0 = none)
    dry_run: bool = False  # validate the grid and print the plan (params, tokens, FLOPs) only
    # the end-of-sweep fit: 3 (a law of N and D), 2 (IsoFLOP parabolas) or 1 (the envelope of
    # the runs' loss curves, collected with --curves)
    approach: int = 3
    law: str = "chinchilla"  # the law of an approach-3 end-of-sweep fit
    # one run of a planned ladder (`scaling plan` presets): {n_layer, d_model, flops, seed}
    point: Any = None
    # after the end-of-sweep fit: train its predicted compute-optimal run at this many FLOPs
    # and score the prediction (`scaling verify`); null = no verification
    verify_flops: float | None = None

    def __post_init__(self) -> None:
        if self.bootstrap < 0:
            raise ConfigError(f"sweep.bootstrap={self.bootstrap} must be 0 (none) or positive")
        if self.verify_flops is not None and not (
            self.verify_flops > 0 and math.isfinite(self.verify_flops)
        ):
            raise ConfigError(
                f"sweep.verify_flops={self.verify_flops} must be a positive FLOP budget, e.g. "
                "sweep.verify_flops=3e13 (or null: no verification)"
            )
        if self.verify_flops is not None and not (self.collect and self.fit):
            raise ConfigError(
                "sweep.verify_flops verifies the end-of-sweep fit: it needs sweep.collect=true "
                "and sweep.fit=true"
            )
        if self.approach not in (1, 2, 3):
            raise ConfigError(
                f"sweep.approach={self.approach} must be 1 (loss-curve envelope), 2 (IsoFLOP) "
                "or 3 (a law of N and D)"
            )
