"""Tokenization of a source's documents: ``byte`` (raw UTF-8, vocab 256) or ``bpe``.

Documents are joined into one stream, each ending in a newline (one is added where missing). BPE
is byte-level (HF ``tokenizers``), trained on the corpus with vocabulary ``data.vocab_size`` and
cached as JSON under ``<cache_dir>/tokenizers/``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from scaling.config import DataConfig
from scaling.errors import ConfigError
from scaling.files import atomic_write_text
from scaling.sources.base import Source
from scaling.sources.files import progress
from scaling.training.data.files import hash_bytes

log = logging.getLogger(__name__)

_BPE_CHUNK_CHARS = 1024  # encode_batch items: runs of whole lines (1 KB beat 64 KB 1.5-2x)
_BPE_BATCH_ITEMS = 4096


def byte_tokens(source: Source) -> tuple[np.ndarray, str]:
    """UTF-8 bytes of the joined documents as uint16 ids, and the content hash."""
    blob = joined_text(source).encode("utf-8")
    return np.frombuffer(blob, dtype=np.uint8).astype(np.uint16), hash_bytes(blob)


def joined_text(source: Source) -> str:
    parts = []
    for doc in source.documents():
        if doc:
            parts.append(doc if doc.endswith("\n") else doc + "\n")
    return "".join(parts)


def bpe_tokens(cfg: DataConfig, source: Source) -> tuple[np.ndarray, str, str, str]:
    """BPE ids of the joined documents, the content hash, the tokenizer id and its path."""
    text = joined_text(source)
    content_hash = hash_bytes(text.encode("utf-8"))
    if not text:
        return np.zeros(0, dtype=np.uint16), content_hash, f"bpe{cfg.vocab_size}", ""
    pieces, tokenizer_id, tok_path = _bpe_encode(
        cfg, source, line_chunks(text, _BPE_CHUNK_CHARS), content_hash
    )
    dtype = token_dtype(cfg.vocab_size)
    ids = np.concatenate(pieces) if pieces else np.zeros(0, dtype=dtype)
    return ids, content_hash, tokenizer_id, tok_path


def document_texts(docs: Sequence[str]) -> list[str]:
    """Each document as the joined stream holds it: ending in a newline, an empty one empty."""
    return [d if not d or d.endswith("\n") else d + "\n" for d in docs]


def byte_doc_tokens(docs: Sequence[str]) -> tuple[np.ndarray, np.ndarray, str]:
    """:func:`byte_tokens` of a list of documents, with each document's token offsets
    (``len(docs) + 1`` of them: document ``i`` is ``ids[offsets[i]:offsets[i + 1]]``)."""
    blobs = [t.encode("utf-8") for t in document_texts(docs)]
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in blobs], out=offsets[1:])
    blob = b"".join(blobs)
    del blobs
    return np.frombuffer(blob, dtype=np.uint8).astype(np.uint16), offsets, hash_bytes(blob)


def bpe_doc_tokens(
    cfg: DataConfig, source: Source, docs: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, str, str, str]:
    """:func:`bpe_tokens` of a list of documents, each encoded on its own so that no token spans
    two documents: ids, each document's token offsets (as :func:`byte_doc_tokens`), the content
    hash, the tokenizer id and its path."""
    texts = document_texts(docs)
    hasher = hashlib.sha256()
    chunks: list[str] = []
    owner: list[int] = []
    for i, text in enumerate(texts):
        hasher.update(text.encode("utf-8"))
        pieces = line_chunks(text, _BPE_CHUNK_CHARS)
        chunks.extend(pieces)
        owner.extend([i] * len(pieces))
    content_hash = hasher.hexdigest()
    dtype = token_dtype(cfg.vocab_size)
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    if not chunks:
        return np.zeros(0, dtype=dtype), offsets, content_hash, f"bpe{cfg.vocab_size}", ""
    pieces, tokenizer_id, tok_path = _bpe_encode(cfg, source, chunks, content_hash)
    counts = np.bincount(owner, weights=[len(p) for p in pieces], minlength=len(texts))
    np.cumsum(counts.astype(np.int64), out=offsets[1:])
    return np.concatenate(pieces), offsets, content_hash, tokenizer_id, tok_path


def _bpe_encode(
    cfg: DataConfig, source: Source, chunks: list[str], content_hash: str
) -> tuple[list[np.ndarray], str, str]:
    """The ids of each chunk under the corpus's BPE (trained on ``chunks`` and cached under the
    content hash, or reused), the tokenizer id and its path."""
    tok_path = (
        Path(cfg.cache_dir).expanduser()
        / "tokenizers"
        / f"{source.label}-{content_hash[:12]}-bpe{cfg.vocab_size}.json"
    )
    tok = _cached_tokenizer(tok_path, cfg.vocab_size)
    if tok is None:
        t0 = time.perf_counter()
        tok = train_bpe(chunks, cfg.vocab_size)
        check_bpe_vocab(tok.get_vocab_size(), cfg.vocab_size, source)
        atomic_write_text(tok_path, tok.to_str())
        log.info(
            "trained bpe%d in %.1f s -> %s", cfg.vocab_size, time.perf_counter() - t0, tok_path
        )
    tokenizer_id = f"bpe{cfg.vocab_size}-{hash_bytes(tok_path.read_bytes())[:12]}"
    dtype = token_dtype(cfg.vocab_size)
    pieces = []
    batches = range(0, len(chunks), _BPE_BATCH_ITEMS)
    for i in progress(batches, desc=f"bpe{cfg.vocab_size} {source.label}", unit="batch"):
        for enc in tok.encode_batch(chunks[i : i + _BPE_BATCH_ITEMS], add_special_tokens=False):
            pieces.append(np.asarray(enc.ids, dtype=dtype))
    return pieces, tokenizer_id, str(tok_path)


def _cached_tokenizer(path: Path, vocab_size: int):  # -> tokenizers.Tokenizer | None
    """The tokenizer cached at ``path`` if it loads and has the requested vocabulary, else None
    (a torn file or one from an older version: train it again)."""
    if not path.exists():
        return None
    try:
        tok = load_tokenizer(path)
    except Exception as err:  # noqa: BLE001 -- tokenizers raises a bare Exception
        log.warning("unreadable tokenizer %s (%s): training it again", path, err)
        return None
    return tok if tok.get_vocab_size() == vocab_size else None


def check_bpe_vocab(learned: int, requested: int, source: Source) -> None:
    """Refuse a BPE vocabulary the corpus cannot fill: the requested size would be logged as
    the run's vocabulary and its unused embedding rows counted in N."""
    if learned < requested:
        raise ConfigError(
            f"data.vocab_size={requested:,} is more than {source.where} supports: BPE learns "
            f"only {learned:,} tokens from it; use data.vocab_size={learned} or less, or a "
            "bigger corpus"
        )


def train_bpe(texts: Sequence[str], vocab_size: int):  # -> tokenizers.Tokenizer
    """A byte-level BPE (GPT-2 style, no prefix space, no special tokens) trained on ``texts``.

    Byte-level means every string encodes (no unknown token) and ``decode(encode(s)) == s``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tok


def load_tokenizer(path: str | os.PathLike[str]):  # -> tokenizers.Tokenizer
    """A tokenizer saved by :func:`load_corpus` (its path is in the cache entry's meta.json)."""
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path))


def line_chunks(text: str, size: int) -> list[str]:
    """``text`` cut after newlines into pieces of about ``size`` characters (lossless)."""
    out, start, n = [], 0, len(text)
    while start < n:
        end = text.find("\n", min(start + size, n))
        end = n if end < 0 else end + 1
        out.append(text[start:end])
        start = end
    return out


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 65535 else np.dtype(np.uint32)
