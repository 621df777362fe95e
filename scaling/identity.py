"""Run identity: the key and the name of a run, derived from what it trains.

A run is keyed by :meth:`RunConfig.identity <scaling.run_config.RunConfig.identity>` (the
canonical training config; the rule of what is in and out is there), hashed by :func:`run_key`;
its data part is the corpus's content and tokenizer (:class:`DataIdentity`), or, for a config
not yet prepared, the data config itself (:func:`provisional_data_identity`). Never a timestamp,
a path or a cadence: sweeps skip and resume runs by key. :func:`run_name` is the readable name,
made unique by the key.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from scaling.counting import count_params
from scaling.data_config import DataConfig
from scaling.numbers import short
from scaling.schema import GPTConfig, TrainConfig


@dataclass(frozen=True)
class DataIdentity:
    """What a run trains and validates on, by content: the data part of its key.

    Built by ``training.data.Corpus.identity`` from the token cache's ``meta.json`` (a content
    hash computed once when the entry was built, found again by the files' paths, sizes and
    mtimes), so reading it costs no pass over the text.
    """

    corpus: str  # hash of the corpus text (a synthetic corpus: of its tokens); no path, no label.
    # A processed corpus (data.process): the hash of the processed text and the processing
    # config together, so two processings of one source are two corpora even where they happen
    # to keep the same documents.
    tokenizer: str  # byte | bpe<V>-<hash of the trained tokenizer JSON> | markov<S>
    split: str  # the fixed split: "<validation pieces>x<validation tokens>"


class KeyedRun(Protocol):
    """What a run's key and name read (:class:`scaling.run_config.RunConfig` has it)."""

    @property
    def model(self) -> GPTConfig: ...

    @property
    def train(self) -> TrainConfig: ...

    @property
    def seed(self) -> int: ...

    @property
    def tokens(self) -> int: ...

    def identity(self) -> dict[str, Any]: ...


def run_key(cfg: KeyedRun) -> str:
    """Stable 16-hex-digit key of what a run trains: its ``identity()``
    (:meth:`scaling.run_config.RunConfig.identity`), hashed.

    Runs and sweeps key a prepared config (``training.run.prepare``), whose data part is the
    corpus's content identity; the key of an unprepared config is provisional.
    """
    blob = json.dumps(cfg.identity(), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_name(cfg: KeyedRun) -> str:
    """Human-readable run name derived from the config (never a timestamp), unique via the key."""
    m = cfg.model
    return (
        f"L{m.n_layer}-d{m.d_model}-h{m.n_head}-N{short(count_params(m).total)}"
        f"-D{short(cfg.tokens)}-lr{cfg.train.lr:g}-s{cfg.seed}-{run_key(cfg)[:6]}"
    )


def canonical(value: Any) -> Any:
    """``value`` with one spelling per value, JSON-able: a whole float is an int (``1.0`` ->
    ``1``), mapping keys are text, tuples are lists, anything else unknown is its text."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value)
        return value
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    return str(value)


def provisional_data_identity(data: DataConfig) -> dict[str, Any]:
    """The data part of a provisional key: the tokenizer as the config names it
    (``data.vocab_size`` only for BPE, which is the only tokenizer that reads it), the processing,
    and the keys the source reads (:meth:`scaling.sources.base.Source.identity`, paths absolute)."""
    out: dict[str, Any] = {
        "source": data.source,
        "val_tokens": data.val_tokens,
        "tokenizer": data.tokenizer_spec,
    }
    if data.process:  # absent when empty: the keys of unprocessed corpora stay as they were
        out["process"] = data.processing()
    out.update(data.source_class.identity(data))
    return out
