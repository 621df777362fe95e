"""MinHash of word shingles: the document signatures ``dedup_near`` and the held-out check
compare (:mod:`.stages`).

A document's words are its whitespace-separated runs of bytes; each word is hashed (64 bits, a
polynomial hash of its UTF-8 bytes, the same on every machine), each run of ``ngram`` words is
folded into one 32-bit shingle hash, and a ``datasketch.MinHash`` of the distinct shingle
hashes is the document's signature.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from scaling.sources.files import progress

_SPACE = np.zeros(256, dtype=bool)
_SPACE[[9, 10, 11, 12, 13, 32]] = True
_MUL = 0x9E3779B97F4A7C15  # odd: invertible mod 2^64
_SHINGLE_MUL = np.uint64(0xC2B2AE3D27D4EB4F)
_FOLD_MUL = np.uint64(0xFF51AFD7ED558CCD)
_powers = np.ones(1, dtype=np.uint64)
_inverse_powers = np.ones(1, dtype=np.uint64)


def _grow_powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``_MUL**i`` and its inverse ``mod 2**64`` for ``i < n`` (cached, grown geometrically)."""
    global _powers, _inverse_powers
    if len(_powers) < n:
        size = max(n, 2 * len(_powers))
        one = np.ones(1, dtype=np.uint64)
        up = np.cumprod(np.full(size - 1, _MUL, dtype=np.uint64))
        down = np.cumprod(np.full(size - 1, pow(_MUL, -1, 2**64), dtype=np.uint64))
        _powers, _inverse_powers = np.concatenate((one, up)), np.concatenate((one, down))
    return _powers, _inverse_powers


def word_hashes(text: str) -> np.ndarray:
    """A 64-bit hash of each whitespace-separated word of ``text``, in order (deterministic on
    every machine: a polynomial hash of the word's UTF-8 bytes, from prefix sums)."""
    b = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    if not len(b):
        return np.zeros(0, dtype=np.uint64)
    space = _SPACE[b]
    word = ~space
    starts = np.flatnonzero(word & np.concatenate(([True], space[:-1])))
    ends = np.flatnonzero(word & np.concatenate((space[1:], [True]))) + 1
    pw, inv = _grow_powers(len(b))
    prefix = np.zeros(len(b) + 1, dtype=np.uint64)
    np.cumsum((b.astype(np.uint64) + np.uint64(1)) * pw[: len(b)], out=prefix[1:])
    return (prefix[ends] - prefix[starts]) * inv[starts]


def shingle_hashes(text: str, ngram: int) -> np.ndarray:
    """The distinct 32-bit hashes of ``text``'s word ``ngram``-shingles (a document shorter than
    ``ngram`` words is one shingle; one without words has none)."""
    words = word_hashes(text)
    if not len(words):
        return np.zeros(0, dtype=np.uint32)
    n = max(1, len(words) - ngram + 1)
    width = min(ngram, len(words))
    h = np.zeros(n, dtype=np.uint64)
    for k in range(width):
        h = h * _SHINGLE_MUL + words[k : k + n]
    folded = ((h * _FOLD_MUL) >> np.uint64(32)).astype(np.uint32)
    return np.unique(folded)


def _identity(x: Any) -> Any:
    return x


def minhash_template(num_perm: int):  # -> datasketch.MinHash
    """An empty MinHash whose inputs are already 32-bit shingle hashes (copied per document)."""
    from datasketch import MinHash

    return MinHash(num_perm=num_perm, seed=1, hashfunc=_identity)


def signatures_of(docs: Sequence[str], params: Any, desc: str = "minhash") -> Iterator[Any]:
    """A MinHash (``datasketch``) of each document's shingle set, or None for one without words."""
    template = minhash_template(params.num_perm)
    for text in progress(docs, desc=desc, unit="doc"):
        shingles = shingle_hashes(text, params.ngram)
        if not len(shingles):
            yield None
            continue
        m = template.copy()
        m.update_batch(shingles.tolist())
        yield m
