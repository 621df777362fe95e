"""The ``data`` config group: which corpus a run reads, its tokenizer, and its processing.

:class:`DataConfig` holds the keys every source shares (``source``, ``tokenizer``,
``vocab_size``, ...), the keys of each registered source (composed from the sources' own ``keys``
dataclasses, :mod:`scaling.sources`; each source reads its own) and the parameters of the
processing stages that run between source and tokenizer (``data.process``, each stage under
``data.<stage>.*``). ``__post_init__`` checks values (the selected source checks its own keys)
and raises one :class:`~scaling.errors.ConfigError` line that names the key. The training side
reads it in ``training/data/``.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from scaling.errors import ConfigError
from scaling.sources import SOURCES
from scaling.sources.base import Source

PROCESS_STAGES = ("dedup_exact", "dedup_near", "filter_length", "filter_quality")
TOKENIZERS = ("byte", "bpe")
MAX_EVAL_SEQ_LEN = 4096  # the validation set scores >= val_tokens targets at any seq_len <= this
MAX_BPE_VOCAB = 2**20  # data.vocab_size above this is a typo (real tokenizers: 50K-260K tokens)


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
    (source code has long identifiers, ``#`` comments and lines its syntax repeats) and checks
    instead that no line is longer than ``max_line_chars``, lines average at most
    ``max_mean_line_chars`` and at least ``min_alnum_frac`` of characters are letters or digits
    (minified, generated or data files).
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
class DataKeys:
    """The keys of the ``data`` group every source shares."""

    source: str = "stdlib"  # a name of scaling.sources.SOURCES (data=<name>)
    tokenizer: str = "byte"  # byte (raw UTF-8, vocab 256) | bpe (trained on the corpus)
    vocab_size: int = 4096  # bpe target vocabulary; ignored by byte and by a token source
    val_tokens: int = 32768  # validation targets scored at any seq_len <= MAX_EVAL_SEQ_LEN
    allow_repeat: bool = True  # more train.tokens than the corpus holds: epochs (else an error)
    cache_dir: str = field(default_factory=_default_cache_dir)  # $SCALING_CACHE or .cache/scaling


# Each registered source's keys, as bases of DataConfig: its fields come after DataKeys' in the
# order of SOURCES (a base listed later comes earlier in the fields).
_SOURCE_KEYS = tuple(cls.keys for cls in reversed(SOURCES.values()) if cls.keys is not None)


@dataclass(frozen=True)
class DataConfig(*_SOURCE_KEYS, DataKeys):  # type: ignore[misc]
    """The ``data`` group. Keys of every source are accepted; each source reads its own."""

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
        if self.trains_bpe:
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
        self.source_class.check(self)

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
        if stages and self.source in SOURCES and self.source_vocab is not None:
            raise ConfigError(
                f"data.process works on documents, which the {self.source} source has not (its "
                f"tokens are {self.source_class.tokens_are}): use data.process=[] with "
                f"data={self.source}"
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
    def source_class(self) -> type[Source]:
        """The registered class of ``data.source`` (:mod:`scaling.sources`)."""
        return SOURCES[self.source]

    @property
    def source_vocab(self) -> int | None:
        """The vocabulary of a source that makes its token ids itself (markov: its states), which
        has no documents and no tokenizer; None for a source of text."""
        return self.source_class.token_vocab(self)

    @property
    def trains_bpe(self) -> bool:
        """Whether a BPE tokenizer is trained on the corpus (``data.tokenizer=bpe`` on text)."""
        return self.tokenizer == "bpe" and self.source_vocab is None

    @property
    def tokenizer_spec(self) -> str:
        """The tokenizer the config names: ``byte``, ``bpe<vocab_size>``, or ``<source><vocab>``
        for a source's own tokens (``markov64``)."""
        if self.source_vocab is not None:
            return f"{self.source}{self.source_vocab}"
        return f"bpe{self.vocab_size}" if self.tokenizer == "bpe" else "byte"

    @property
    def nominal_vocab_size(self) -> int:
        """Vocabulary implied by the config, before any corpus is loaded."""
        if self.source_vocab is not None:
            return self.source_vocab
        return self.vocab_size if self.tokenizer == "bpe" else 256
