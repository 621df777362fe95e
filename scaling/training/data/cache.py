"""The token cache and the fixed split: a config's corpus tokenized once, as a :class:`Corpus`.

**The split.** The validation part holds ``val_tokens + 4096`` tokens, enough for
``val_windows`` to score at least ``val_tokens`` targets at any ``seq_len`` up to 4096. It is
taken as :data:`VAL_PIECES` equal contiguous pieces, the tail of each of that many equal segments
of the stream, so that it samples the whole corpus (the stdlib sorted by path would otherwise
validate on ``zoneinfo`` alone). The rest, in stream order, is the training part.

**The cache.** ``<cache_dir>/tokens/<label>-<tokenizer>-<key>/`` holds ``tokens.bin`` (training
tokens then validation tokens, ``uint16``/``uint32``) and ``meta.json``. The key hashes the
source's fingerprint, the tokenizer and the validation size, so a cached load reads no source
text. ``meta.json`` is written last (atomically): an entry without it is rebuilt.

**Processed corpora** (``data.process``, :mod:`.process`): the source is read through its cached
processing (the key adds the processing config), each document is tokenized on its own so that
its token span is known, and when a dedup stage is listed the split is made *clean*: training
documents that duplicate (exactly, or near by MinHash) a document the validation pieces touch
are cut out of the training part, which the entry's ``processing.json`` reports with the
processing's own report.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scaling.config import MAX_EVAL_SEQ_LEN, DataConfig
from scaling.errors import ConfigError, DataError
from scaling.files import atomic_write_bytes, atomic_write_text
from scaling.identity import DataIdentity
from scaling.sources import make_source
from scaling.sources.base import Source
from scaling.training.data.files import has_typed_keys, hash_bytes, hash_json
from scaling.training.data.process import EXAMPLE_CHARS, EXAMPLES, ProcessedSource
from scaling.training.data.stages import DEDUP_STAGES, holdout_duplicates
from scaling.training.data.tokenizer import (
    bpe_doc_tokens,
    bpe_tokens,
    byte_doc_tokens,
    byte_tokens,
    token_dtype,
)

log = logging.getLogger(__name__)

VAL_PIECES = 8  # the validation part is this many contiguous pieces spread over the stream
CACHE_FORMAT = 1  # bump when the token file layout or the tokenization changes


@dataclass(frozen=True, eq=False)
class Corpus:
    """A tokenized corpus with its fixed split."""

    train: np.ndarray  # 1-D token ids, a read-only np.memmap into the cache
    val: np.ndarray  # 1-D, val_tokens + 4096 ids, the same for every run on this corpus+tokenizer
    vocab_size: int
    corpus_id: str  # "<label>-<hash12 of the text>", e.g. "stdlib-3.11-0123456789ab"
    tokenizer_id: str  # "byte", "bpe4096-<hash12 of the tokenizer JSON>", "markov64"
    entropy_rate: float | None = None  # nats/token, exact; markov only
    processing: dict[str, Any] | None = None  # data.process: counts per stage, held-out check
    report_path: str | None = None  # data.process: the entry's processing.json

    @property
    def content_id(self) -> str:
        """The content hash in :attr:`corpus_id` (its last part), without the label: the same
        text under another file name, folder or source has the same content id."""
        return self.corpus_id.rsplit("-", 1)[-1]

    def identity(self) -> DataIdentity:
        """The corpus's part of a run key: content, tokenizer and split, never a path.

        Read from the cache entry's ``meta.json``, found by the source's fingerprint (paths,
        sizes, mtimes): no text is read or hashed again, so a finished run is skipped cheaply.
        """
        return DataIdentity(
            corpus=self.content_id,
            tokenizer=self.tokenizer_id,
            split=f"{VAL_PIECES}x{len(self.val)}",
        )

    def describe(self) -> dict[str, str | int | float]:
        """Params to log with a run."""
        out: dict[str, str | int | float] = {
            "data.corpus_id": self.corpus_id,
            "data.tokenizer_id": self.tokenizer_id,
            "data.vocab_size_effective": self.vocab_size,
            "data.train_tokens_available": len(self.train),
            # Not "data.val_tokens": that is the config key (a lower bound), logged by the
            # flattened config, and MLflow refuses one param with two values.
            "data.val_tokens_available": len(self.val),
        }
        if self.entropy_rate is not None:
            out["data.entropy_rate"] = self.entropy_rate
        if self.processing is not None:
            p = self.processing
            out["data.processed_id"] = p["processed_id"]
            out["data.docs_in"] = p["docs_in"]
            out["data.docs_out"] = p["docs_out"]
            for stage, removed in p["stages"].items():
                out[f"data.process.{stage}.docs_removed"] = removed["docs_removed"]
                out[f"data.process.{stage}.bytes_removed"] = removed["bytes_removed"]
            if p.get("holdout") is not None:
                out["data.holdout.docs_removed"] = p["holdout"]["docs_removed"]
                out["data.holdout.bytes_removed"] = p["holdout"]["bytes_removed"]
        return out


def load_corpus(cfg: DataConfig, seq_len: int | None = None) -> Corpus:
    """Tokenize ``cfg``'s corpus once into the cache (or reuse it) and split it.

    With ``seq_len`` it also checks that the training part holds one window of ``seq_len + 1``.
    """
    source = make_source(cfg)
    if cfg.process:
        source = ProcessedSource(cfg, source)
    tok_spec = cfg.tokenizer_spec
    key = hash_json([CACHE_FORMAT, source.fingerprint(), tok_spec, cfg.val_reserve])[:12]
    entry = Path(cfg.cache_dir).expanduser() / "tokens" / f"{source.label}-{tok_spec}-{key}"

    meta = read_meta(entry)
    if meta is not None and cfg.trains_bpe:
        if meta.get("vocab_learned") != cfg.vocab_size:  # cached before BPE's size was checked
            meta = None
    if meta is None:
        t0 = time.perf_counter()
        meta = build_entry(cfg, source, entry, seq_len)
        log.info(
            "tokenized %s with %s: %s tokens in %.1f s -> %s",
            meta["corpus_id"],
            meta["tokenizer_id"],
            f"{meta['n_train'] + meta['n_val']:,}",
            time.perf_counter() - t0,
            entry,
        )
    dtype = np.dtype(meta["dtype"])
    n_train, n_val = int(meta["n_train"]), int(meta["n_val"])
    tokens = np.memmap(entry / "tokens.bin", dtype=dtype, mode="r", shape=(n_train + n_val,))
    corpus = Corpus(
        train=tokens[:n_train],
        val=np.array(tokens[n_train:]),
        vocab_size=int(meta["vocab_size"]),
        corpus_id=meta["corpus_id"],
        tokenizer_id=meta["tokenizer_id"],
        entropy_rate=meta.get("entropy_rate"),
        processing=meta.get("processing"),
        report_path=str(entry / "processing.json") if "processing" in meta else None,
    )
    check_window(source, n_train, n_val, seq_len)
    return corpus


def check_window(source: Source, n_train: int, n_val: int, seq_len: int | None) -> None:
    """The training part must hold one window of ``seq_len + 1`` tokens (the validation part
    always does, for any ``seq_len`` up to MAX_EVAL_SEQ_LEN)."""
    if seq_len is not None and n_train < seq_len + 1:
        raise DataError(
            f"{source.where} holds {n_train + n_val:,} tokens: with {n_val:,} held out for "
            f"validation it must hold at least {n_val + seq_len + 1:,} to train on one window "
            f"of model.seq_len={seq_len}; use a bigger corpus or lower data.val_tokens"
        )


def train_epochs(corpus: Corpus, tokens: int, allow_repeat: bool) -> float:
    """How many passes over the training part ``tokens`` training tokens make."""
    epochs = tokens / len(corpus.train)
    if epochs > 1 and not allow_repeat:
        raise ConfigError(
            f"train.tokens={tokens} needs {epochs:.3g} epochs of the corpus {corpus.corpus_id} "
            f"(holds {len(corpus.train):,} training tokens); set data.allow_repeat=true or "
            "lower train.tokens"
        )
    return epochs


def build_entry(
    cfg: DataConfig, source: Source, entry: Path, seq_len: int | None = None
) -> dict[str, Any]:
    """Read, tokenize, split and write one cache entry; return its meta. A corpus too short
    for the validation set (or for one training window of ``seq_len``) is refused unwritten."""
    if isinstance(source, ProcessedSource):
        return build_processed_entry(cfg, source, entry, seq_len)
    extra: dict[str, Any] = {}
    own_vocab = cfg.source_vocab
    if own_vocab is not None:  # the source makes its token ids itself (markov: it samples them)
        own_ids, facts = source.tokens()
        ids = own_ids.astype(token_dtype(own_vocab))
        corpus_id = f"{source.label}-{hash_bytes(ids.tobytes())[:12]}"
        tokenizer_id, vocab_size = cfg.tokenizer_spec, own_vocab
        extra.update(facts)
    elif cfg.tokenizer == "byte":
        ids, content_hash = byte_tokens(source)
        corpus_id, tokenizer_id, vocab_size = f"{source.label}-{content_hash[:12]}", "byte", 256
    else:
        ids, content_hash, tokenizer_id, tok_path = bpe_tokens(cfg, source)
        corpus_id, vocab_size = f"{source.label}-{content_hash[:12]}", cfg.vocab_size
        extra["tokenizer_path"] = tok_path
        extra["vocab_learned"] = vocab_size  # bpe_tokens refused a vocabulary the corpus can't fill

    check_size(cfg, source, len(ids))
    train, val = split_tokens(ids, cfg.val_reserve)
    return write_entry(
        entry, source, train, val, corpus_id, tokenizer_id, vocab_size, extra, seq_len
    )


def check_size(cfg: DataConfig, source: Source, n: int) -> None:
    """The corpus must hold the validation set and at least one training token."""
    if n == 0:
        raise DataError(f"{source.where} holds no text (0 tokens): point it at a non-empty corpus")
    need = cfg.val_reserve + VAL_PIECES + 1
    if n < need:
        raise DataError(
            f"{source.where} holds {n:,} tokens: it must hold at least {need:,} (the "
            f"validation set of data.val_tokens={cfg.val_tokens} + {MAX_EVAL_SEQ_LEN} tokens, "
            "plus training tokens); use a bigger corpus or lower data.val_tokens"
        )


def write_entry(
    entry: Path,
    source: Source,
    train: np.ndarray,
    val: np.ndarray,
    corpus_id: str,
    tokenizer_id: str,
    vocab_size: int,
    extra: dict[str, Any],
    seq_len: int | None,
) -> dict[str, Any]:
    """Write ``tokens.bin`` and (last) ``meta.json``; return the meta."""
    check_window(source, len(train), len(val), seq_len)
    dtype = token_dtype(vocab_size)
    entry.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(
        entry / "tokens.bin",
        [_buffer(train, dtype), _buffer(val, dtype)],
    )
    meta = {
        "format": CACHE_FORMAT,
        "corpus_id": corpus_id,
        "tokenizer_id": tokenizer_id,
        "vocab_size": vocab_size,
        "dtype": dtype.name,
        "n_train": len(train),
        "n_val": len(val),
        "val_pieces": VAL_PIECES,
        "source": source.where,
        **extra,
    }
    atomic_write_text(entry / "meta.json", json.dumps(meta, indent=1))
    return meta


def split_tokens(ids: np.ndarray, n_val: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic split: (train, val) with ``len(val) == n_val``.

    The stream is cut into :data:`VAL_PIECES` equal segments; the last ``n_val / VAL_PIECES``
    tokens of each go to validation, the rest (in order) to training.
    """
    return split_without(ids, val_ranges(len(ids), n_val), [])


def val_ranges(n: int, n_val: int) -> list[tuple[int, int]]:
    """The ``[start, end)`` token ranges of the validation pieces in a stream of ``n``."""
    bounds = [n * j // VAL_PIECES for j in range(VAL_PIECES + 1)]
    sizes = [n_val // VAL_PIECES + (j < n_val % VAL_PIECES) for j in range(VAL_PIECES)]
    return [(bounds[j + 1] - sizes[j], bounds[j + 1]) for j in range(VAL_PIECES)]


def split_without(
    ids: np.ndarray, val: list[tuple[int, int]], dropped: list[tuple[int, int]]
) -> tuple[np.ndarray, np.ndarray]:
    """(train, val): the ``val`` ranges, and the rest in order less the ``dropped`` ranges
    (which lie outside ``val``)."""
    cuts = sorted([*val, *dropped])
    train_parts, start = [], 0
    for a, b in cuts:
        train_parts.append(ids[start:a])
        start = max(start, b)
    train_parts.append(ids[start:])
    return np.concatenate(train_parts), np.concatenate([ids[a:b] for a, b in val])


def build_processed_entry(
    cfg: DataConfig, source: ProcessedSource, entry: Path, seq_len: int | None
) -> dict[str, Any]:
    """A processed corpus's entry: each document tokenized on its own, the split cleaned of
    training duplicates of validation documents when a dedup stage is listed."""
    names, docs = source.document_list()
    proc = source.processed()
    extra: dict[str, Any] = {}
    if cfg.tokenizer == "byte":
        ids, offsets, _ = byte_doc_tokens(docs)
        tokenizer_id, vocab_size = "byte", 256
    else:
        ids, offsets, _, tokenizer_id, tok_path = bpe_doc_tokens(cfg, source, docs)
        vocab_size = cfg.vocab_size
        extra["tokenizer_path"] = tok_path
        extra["vocab_learned"] = vocab_size
    corpus_id = f"{source.label}-{proc.processed_id}"
    check_size(cfg, source, len(ids))
    ranges = val_ranges(len(ids), cfg.val_reserve)
    dropped: list[tuple[int, int]] = []
    holdout = None
    if any(stage in cfg.process for stage in DEDUP_STAGES):
        holdout, dropped = clean_split(cfg, docs, names, offsets, ranges, proc.signatures)
    train, val = split_without(ids, ranges, dropped)
    meta_processing = {
        "processed_id": proc.processed_id,
        **{k: proc.meta[k] for k in ("docs_in", "docs_out", "bytes_in", "bytes_out")},
        "stages": proc.meta["stages"],
        "holdout": None
        if holdout is None
        else {k: v for k, v in holdout.items() if k != "examples"},
    }
    report = {
        **proc.report(),
        "corpus_id": corpus_id,
        "tokenizer_id": tokenizer_id,
        "holdout": holdout,
    }
    check_window(source, len(train), len(val), seq_len)  # before anything is written
    atomic_write_text(entry / "processing.json", json.dumps(report, indent=1, ensure_ascii=False))
    extra["processing"] = meta_processing
    return write_entry(
        entry, source, train, val, corpus_id, tokenizer_id, vocab_size, extra, seq_len
    )


def clean_split(
    cfg: DataConfig,
    docs: list[str],
    names: list[str],
    offsets: np.ndarray,
    ranges: list[tuple[int, int]],
    signatures: np.ndarray | None,
) -> tuple[dict[str, Any], list[tuple[int, int]]]:
    """Documents that duplicate a validation document (one the validation pieces touch), as a
    report and the token ranges to drop from training: all of a training document, the training
    part of a validation document that straddles a cut. A straddling document's own training
    part stays: it is not a duplicate of itself."""
    starts, ends = offsets[:-1], offsets[1:]
    in_val = np.zeros(len(docs), dtype=bool)
    for a, b in ranges:
        in_val |= (starts < b) & (ends > a)
    nonempty = np.flatnonzero(ends > starts)
    val_docs = nonempty[in_val[nonempty]]
    found = holdout_duplicates(docs, val_docs, nonempty, cfg, signatures)
    removed = sorted(found)
    dropped: list[tuple[int, int]] = []
    bytes_removed = 0
    for t in removed:
        parts = outside(int(starts[t]), int(ends[t]), ranges)
        dropped.extend(parts)
        share = sum(b - a for a, b in parts) / (ends[t] - starts[t])
        bytes_removed += round(len(docs[t].encode("utf-8")) * share)
    report = {
        "val_docs": len(val_docs),
        "train_docs": int(len(nonempty) - len(val_docs)),
        "docs_removed": len(removed),
        "bytes_removed": bytes_removed,
        "tokens_removed": sum(b - a for a, b in dropped),
        "examples": [
            {
                "doc": names[t],
                "why": f"{found[t][1]} duplicate of validation document {names[found[t][0]]}",
                "text": docs[t][:EXAMPLE_CHARS],
            }
            for t in removed[:EXAMPLES]
        ],
    }
    if removed:
        log.info(
            "held-out check: %d documents duplicate a validation document: their training "
            "tokens (%s) are cut out",
            len(removed),
            f"{report['tokens_removed']:,}",
        )
    return report, dropped


def outside(start: int, end: int, ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of ``[start, end)`` outside the sorted, disjoint ``ranges``."""
    out, pos = [], start
    for a, b in ranges:
        if b <= pos or a >= end:
            continue
        if a > pos:
            out.append((pos, a))
        pos = max(pos, b)
    if pos < end:
        out.append((pos, end))
    return out


META_KEYS = {  # what load_corpus reads from meta.json, and its type
    "format": int,
    "corpus_id": str,
    "tokenizer_id": str,
    "vocab_size": int,
    "dtype": str,
    "n_train": int,
    "n_val": int,
}


def read_meta(entry: Path) -> dict[str, Any] | None:
    """The entry's meta if the entry is complete and valid, else None (rebuild): a missing,
    torn or hand-edited ``meta.json`` (a key missing, a wrong type) is a stale entry."""
    try:
        meta = json.loads((entry / "meta.json").read_text())
        size = (entry / "tokens.bin").stat().st_size
    except (OSError, ValueError):
        return None
    if not has_typed_keys(meta, META_KEYS):
        return None
    try:
        itemsize = np.dtype(meta["dtype"]).itemsize
    except TypeError:
        return None
    if "processing" in meta and not _valid_processing(meta["processing"]):
        return None
    expected = (meta["n_train"] + meta["n_val"]) * itemsize
    empty = min(meta["n_train"], meta["n_val"]) < 1
    if meta["format"] != CACHE_FORMAT or size != expected or empty:
        return None
    return meta


def _valid_processing(p: Any) -> bool:
    """A processed entry's ``processing`` meta has what :meth:`Corpus.describe` reads."""
    if not isinstance(p, dict) or not isinstance(p.get("stages"), dict):
        return False
    counts = ("docs_in", "docs_out")
    if not isinstance(p.get("processed_id"), str) or not all(
        isinstance(p.get(k), int) for k in counts
    ):
        return False
    for removed in p["stages"].values():
        if not isinstance(removed, dict) or not all(
            isinstance(removed.get(k), int) for k in ("docs_removed", "bytes_removed")
        ):
            return False
    holdout = p.get("holdout")
    return holdout is None or (
        isinstance(holdout, dict)
        and all(isinstance(holdout.get(k), int) for k in ("docs_removed", "bytes_removed"))
    )


def _buffer(ids: np.ndarray, dtype: np.dtype) -> memoryview:
    """``ids`` as ``dtype`` bytes to write, without the copy ``tobytes`` makes."""
    return memoryview(np.ascontiguousarray(ids.astype(dtype, copy=False))).cast("B")
