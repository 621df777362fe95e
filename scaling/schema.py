"""The schema of a run's config groups: one dataclass per Hydra group, its defaults and checks.

Defaults live only here (:class:`GPTConfig`, :class:`DataConfig`, :class:`TrainConfig`,
:class:`TrainerConfig`, :class:`TrackingConfig`); ``__post_init__`` checks values and raises one
:class:`~scaling.errors.ConfigError` line that names the key. Everything is re-exported by
:mod:`scaling.config`, which turns mappings (Hydra's composed config) into these classes and a
whole run; import them from there.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from scaling.counting import FLOPS_CONVENTIONS, default_d_ff
from scaling.errors import ConfigError

DEFAULT_TRACKING_URI = "sqlite:///results/mlflow.db"
DEFAULT_EXPERIMENT = "scaling"

POS_CHOICES = ("learned", "rope")
NORM_CHOICES = ("layernorm", "rmsnorm")
MLP_CHOICES = ("gelu", "swiglu")
SOURCES = ("stdlib", "text", "hf", "markov", "sitepackages")
PROCESS_STAGES = ("dedup_exact", "dedup_near", "filter_length", "filter_quality")
TOKENIZERS = ("byte", "bpe")
SCHEDULES = ("cosine", "wsd", "constant")
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "64-true")
MAX_EVAL_SEQ_LEN = 4096  # the validation set scores >= val_tokens targets at any seq_len <= this
MAX_BPE_VOCAB = 2**20  # data.vocab_size above this is a typo (real tokenizers: 50K-260K tokens)
MAX_MARKOV_TOKENS = 10**9  # sampling holds 16 bytes a token in memory
MAX_TOKENS = 10**18  # a horizon above this is a typo (and overflows the data loader's indices)
MAX_SEED = 2**32 - 1  # Lightning's seed_everything silently replaces a seed outside [0, 2^32)
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")  # what Lightning's registry knows
STRATEGIES = (  # Lightning's StrategyRegistry names and "auto"
    "auto",
    "ddp",
    "ddp_spawn",
    "ddp_fork",
    "ddp_notebook",
    "ddp_find_unused_parameters_false",
    "ddp_find_unused_parameters_true",
    "ddp_spawn_find_unused_parameters_false",
    "ddp_spawn_find_unused_parameters_true",
    "ddp_fork_find_unused_parameters_false",
    "ddp_fork_find_unused_parameters_true",
    "ddp_notebook_find_unused_parameters_false",
    "ddp_notebook_find_unused_parameters_true",
    "deepspeed",
    "deepspeed_stage_1",
    "deepspeed_stage_2",
    "deepspeed_stage_2_offload",
    "deepspeed_stage_3",
    "deepspeed_stage_3_offload",
    "deepspeed_stage_3_offload_nvme",
    "fsdp",
    "fsdp_cpu_offload",
    "single_device",
    "single_xla",
    "xla_debug",
    "xla",
    "single_tpu",
)
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


# ---- data -------------------------------------------------------------------------------------


def _default_cache_dir() -> str:
    return os.environ.get("SCALING_CACHE", ".cache/scaling")


# Parameters of the processing stages (``data.process``), each under ``data.<stage>.*``. Not
# frozen: OmegaConf makes a frozen nested dataclass read-only, and overrides could not merge.


def _number(key: str, value: object, lo: float, hi: float, example: str) -> None:
    ok = not isinstance(value, bool) and isinstance(value, (int, float))
    if not (ok and math.isfinite(value) and lo <= value <= hi):  # type: ignore[arg-type]
        shown = f"{value:g}" if ok else repr(value)
        raise ConfigError(f"{key}={shown} must be a number in [{lo:g}, {hi:g}], e.g. {example}")


def _whole(key: str, value: object, lo: int, hi: int, example: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(
            f"{key}={value!r} must be a whole number in [{lo:,}, {hi:,}], e.g. {example}"
        )


def _flag(key: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{key}={value!r} must be true or false")


@dataclass
class DedupExactConfig:
    """``dedup_exact``: drop a document whose text (SHA-256) an earlier document has."""

    normalize: bool = False  # compare after collapsing runs of whitespace (and trimming ends)

    def __post_init__(self) -> None:
        _flag("data.dedup_exact.normalize", self.normalize)


@dataclass
class DedupNearConfig:
    """``dedup_near``: drop a document whose word n-gram set has an estimated Jaccard similarity
    of at least ``threshold`` with an earlier kept one (MinHash LSH, ``datasketch``)."""

    threshold: float = 0.8  # Jaccard similarity of shingle sets at which a document is a copy
    num_perm: int = 128  # MinHash permutations: more = sharper estimates, slower
    ngram: int = 5  # words (whitespace-separated) per shingle

    def __post_init__(self) -> None:
        _number("data.dedup_near.threshold", self.threshold, 0.05, 0.99, "0.8")
        _whole("data.dedup_near.num_perm", self.num_perm, 16, 1024, "128")
        _whole("data.dedup_near.ngram", self.ngram, 1, 64, "5")


@dataclass
class FilterLengthConfig:
    """``filter_length``: keep documents of ``min_chars`` to ``max_chars`` characters."""

    min_chars: int = 100
    max_chars: int | None = 1_000_000  # null: no upper bound

    def __post_init__(self) -> None:
        _whole("data.filter_length.min_chars", self.min_chars, 0, 10**12, "100")
        if self.max_chars is not None:
            _whole("data.filter_length.max_chars", self.max_chars, 1, 10**12, "1000000")
            if self.max_chars < self.min_chars:
                raise ConfigError(
                    f"data.filter_length.max_chars={self.max_chars} is less than "
                    f"data.filter_length.min_chars={self.min_chars}: no document could pass"
                )


@dataclass
class FilterQualityConfig:
    """``filter_quality``: document rules in the manner of Gopher (Rae et al. 2021, App. A) and
    C4, or, under ``code: true``, of The Stack / StarCoder (Li et al. 2023).

    Words are whitespace-separated. Prose (the default): mean word length in [min_mean_word,
    max_mean_word] characters, at most ``max_symbol_ratio`` of ``#`` and ellipses per word, at
    least ``min_alpha_words`` of words holding a letter, at most ``max_dup_lines`` of non-blank
    lines repeating an earlier line of the document. ``code: true`` skips those prose rules
    (source code has long identifiers, ``#`` comments and lines its syntax repeats: the
    duplicate-line rule alone drops 11% of the stdlib's files) and checks instead that no line
    is longer than ``max_line_chars``, lines average at most ``max_mean_line_chars`` and at least
    ``min_alnum_frac`` of characters are letters or digits (minified, generated or data files).
    """

    code: bool = False
    min_mean_word: float = 3.0
    max_mean_word: float = 10.0
    max_symbol_ratio: float = 0.1
    min_alpha_words: float = 0.8
    max_dup_lines: float = 0.3
    max_line_chars: int = 1000
    max_mean_line_chars: float = 100.0
    min_alnum_frac: float = 0.25

    def __post_init__(self) -> None:
        k = "data.filter_quality"
        _flag(f"{k}.code", self.code)
        _number(f"{k}.min_mean_word", self.min_mean_word, 0, 1000, "3")
        _number(f"{k}.max_mean_word", self.max_mean_word, 0, 1000, "10")
        if self.max_mean_word < self.min_mean_word:
            raise ConfigError(
                f"{k}.max_mean_word={self.max_mean_word:g} is less than "
                f"{k}.min_mean_word={self.min_mean_word:g}: no document could pass"
            )
        _number(f"{k}.max_symbol_ratio", self.max_symbol_ratio, 0, 1000, "0.1")
        _number(f"{k}.min_alpha_words", self.min_alpha_words, 0, 1, "0.8")
        _number(f"{k}.max_dup_lines", self.max_dup_lines, 0, 1, "0.3")
        _whole(f"{k}.max_line_chars", self.max_line_chars, 1, 10**12, "1000")
        _number(f"{k}.max_mean_line_chars", self.max_mean_line_chars, 1, 10**12, "100")
        _number(f"{k}.min_alnum_frac", self.min_alnum_frac, 0, 1, "0.25")


STAGE_CONFIGS: dict[str, type] = {
    "dedup_exact": DedupExactConfig,
    "dedup_near": DedupNearConfig,
    "filter_length": FilterLengthConfig,
    "filter_quality": FilterQualityConfig,
}


@dataclass(frozen=True)
class DataConfig:
    """The ``data`` group. Keys of every source are accepted; each source reads its own."""

    source: str = "stdlib"  # stdlib | text | hf | markov | sitepackages
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
    # processing between source and tokenizer (training/data/process.py): stage names, in order
    process: Any = field(default_factory=list)  # [dedup_exact, dedup_near, filter_length, ...]
    dedup_exact: DedupExactConfig = field(default_factory=DedupExactConfig)
    dedup_near: DedupNearConfig = field(default_factory=DedupNearConfig)
    filter_length: FilterLengthConfig = field(default_factory=FilterLengthConfig)
    filter_quality: FilterQualityConfig = field(default_factory=FilterQualityConfig)

    def __post_init__(self) -> None:
        self._check_process()
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
            if self.vocab_size < 257:
                raise ConfigError(
                    f"data.vocab_size={self.vocab_size} is too small for bpe: it needs more "
                    "than the 256 byte tokens (e.g. data.vocab_size=4096)"
                )
            if self.vocab_size > MAX_BPE_VOCAB:
                raise ConfigError(
                    f"data.vocab_size={self.vocab_size:,} is too large for bpe: at most "
                    f"{MAX_BPE_VOCAB:,} (GPT-2 has 50,257 tokens), e.g. data.vocab_size=4096"
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
            if not (self.concentration > 0 and math.isfinite(self.concentration)):
                raise ConfigError(
                    f"data.concentration={self.concentration} must be a positive, finite number "
                    "(e.g. data.concentration=0.1)"
                )
            if not 1 <= self.corpus_tokens <= MAX_MARKOV_TOKENS:
                raise ConfigError(
                    f"data.corpus_tokens={self.corpus_tokens:,} must be between 1 and "
                    f"{MAX_MARKOV_TOKENS:,} (e.g. data.corpus_tokens=4000000)"
                )

    def _check_process(self) -> None:
        """``process`` as a list of known, distinct stage names (a string is a comma-separated
        list); each stage's parameters as its dataclass (a mapping is converted)."""
        stages = self.process
        if stages is None:
            stages = []
        elif isinstance(stages, str):
            stages = [p.strip() for p in stages.strip("[]").split(",") if p.strip()]
        elif not isinstance(stages, (list, tuple)):
            raise ConfigError(
                f"data.process={stages!r} must be a list of stages, e.g. "
                "data.process=[dedup_exact,dedup_near]"
            )
        stages = [str(x) for x in stages]
        for stage in stages:
            if stage not in PROCESS_STAGES:
                raise ConfigError(
                    f"data.process has an unknown stage {stage!r}: choose from "
                    f"{', '.join(PROCESS_STAGES)}, e.g. data.process=[dedup_exact,dedup_near]"
                )
        if len(set(stages)) != len(stages):
            twice = next(x for x in stages if stages.count(x) > 1)
            raise ConfigError(f"data.process names {twice} twice: list each stage once")
        object.__setattr__(self, "process", stages)
        for name, cls in STAGE_CONFIGS.items():
            value = getattr(self, name)
            if isinstance(value, dict):
                known = [f.name for f in fields(cls)]
                for key in value:
                    if key not in known:
                        raise ConfigError(
                            f"data.{name}.{key} is not a known key; known: {', '.join(known)}"
                        )
                object.__setattr__(self, name, cls(**value))
            elif not isinstance(value, cls):
                raise ConfigError(f"data.{name}={value!r} must be a mapping of its parameters")
        if stages and self.source == "markov":
            raise ConfigError(
                "data.process works on documents, which the markov source has not (its tokens "
                "are sampled): use data.process=[] with data=markov"
            )

    def processing(self) -> list[list[Any]]:
        """The processing config: ``[[stage, {parameter: value}], ...]`` in the order the stages
        run, with the parameters of the listed stages only (``[]``: no processing)."""
        return [[stage, asdict(getattr(self, stage))] for stage in self.process]

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
    # the rule that train.lr=auto / train.batch_size=auto read (a hparams.json written by
    # `scaling fit --law hparams`); null: ./hparams.json if it exists, else the shipped default.
    # Out of the run key: the numbers it resolves to are in (scaling.config.resolve_auto)
    hparams_rule: str | None = None

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
        if self.checkpoint_every < 0:
            raise ConfigError(
                f"train.checkpoint_every={self.checkpoint_every} must be 0 (never) or a positive "
                "number of optimizer steps"
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


@dataclass(frozen=True)
class TrainerConfig:
    """Passed through to ``lightning.Trainer`` (multi-device runs: DDP)."""

    accelerator: str = "cpu"
    devices: Any = 1  # int, or what Lightning accepts ("auto", a list of ids)
    num_nodes: int = 1
    strategy: str = "auto"

    def __post_init__(self) -> None:
        if self.accelerator not in ACCELERATORS:
            raise ConfigError(
                f"trainer.accelerator={self.accelerator!r} is unknown: choose one of "
                f"{', '.join(ACCELERATORS)}"
            )
        if self.strategy not in STRATEGIES:
            raise ConfigError(
                f"trainer.strategy={self.strategy!r} is not a Lightning strategy: e.g. auto, ddp, "
                "ddp_spawn, fsdp or deepspeed (the names in Lightning's StrategyRegistry)"
            )
        if self.num_nodes < 1:
            raise ConfigError(f"trainer.num_nodes={self.num_nodes} must be at least 1")
        problem = _devices_problem(self.devices, self.accelerator)
        if problem:
            raise ConfigError(f"trainer.devices={self.devices!r} {problem}")

    @property
    def world_size(self) -> int:
        """Training processes (devices per node x nodes) as far as the config says; ``auto`` and
        ``-1`` count 1 here, and a run checks this against its Trainer before it starts
        (``training.run.check_world_size``)."""
        return max(1, device_count(self.devices) or 1) * max(1, self.num_nodes)


def device_count(devices: Any) -> int | None:
    """Devices per node that ``trainer.devices`` asks for: a count, the length of a list of ids
    (``[0, 1]`` or ``"0,1"``), or None for ``auto`` / ``-1`` (what the machine has)."""
    if isinstance(devices, bool):
        return None
    if isinstance(devices, int):
        return devices if devices >= 1 else None
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if isinstance(devices, str):
        text = devices.strip().strip("[]")
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if not parts or not all(p.lstrip("-").isdigit() for p in parts):
            return None
        if len(parts) == 1 and "," not in text:
            return int(parts[0]) if int(parts[0]) >= 1 else None
        return len(parts)
    return None


def _devices_problem(devices: Any, accelerator: str) -> str | None:
    """What is wrong with a ``trainer.devices`` value as Lightning reads it, or None.

    Lightning takes a count (``2``; ``-1`` = every GPU), ``"auto"``, or GPU ids (``[0, 1]`` or
    ``"0,1"``); on the CPU only a count of processes.
    """
    how = (
        "must be a number of processes > 0 on trainer.accelerator=cpu (e.g. trainer.devices=2)"
        if accelerator == "cpu"
        else "must be a device count (2; -1 = all), auto, or a list of device ids ([0,1])"
    )
    if isinstance(devices, str):
        text = devices.strip()
        if text == "auto":
            return None
        parts = [p.strip() for p in text.strip("[]").split(",")]
        if not all(p.lstrip("-").isdigit() for p in parts):
            return how
        if len(parts) == 1:
            devices = int(parts[0])
        else:
            devices = [int(p) for p in parts]
    if isinstance(devices, bool):
        return how
    if isinstance(devices, int):
        if devices >= 1 or (devices == -1 and accelerator != "cpu"):
            return None
        return how
    if isinstance(devices, (list, tuple)) and accelerator != "cpu":
        ids = list(devices)
        if ids and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
            if len(set(ids)) == len(ids):
                return None
            return "lists a device twice: give each id once"
    return how


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
