"""The processing stages of ``data.process`` (dedup and filters) and the held-out check.

Each stage takes the documents still alive and returns what it removed, and why
(:class:`StageOutcome`); :mod:`.process` runs the listed stages in order, reports and caches
them. Each stage's parameters are ``data.<stage>.*`` (:class:`~scaling.data_config.DataConfig`):

- ``dedup_exact``: a document whose text (SHA-256; ``normalize``: with runs of whitespace
  collapsed) an earlier document has is dropped.
- ``dedup_near``: MinHash LSH (``datasketch.MinHashLSH``) over each document's set of word
  ``ngram``-shingles (:mod:`.minhash`); a document whose estimated Jaccard similarity with an
  earlier *kept* document reaches ``threshold`` is dropped (the LSH bands favour recall,
  :data:`LSH_WEIGHTS`, and candidates are checked against the threshold, so a banding false
  positive removes nothing).
- ``filter_length``: documents outside ``[min_chars, max_chars]`` are dropped.
- ``filter_quality``: Gopher-style rules for prose (Rae et al. 2021, App. A): mean word length,
  symbol (``#``, ellipsis) to word ratio, share of words holding a letter, share of non-blank
  lines that repeat an earlier line; under ``code: true`` instead the rules of The Stack /
  StarCoder (Li et al. 2023): longest line, mean line length, alphanumeric share.

**Held-out hygiene** (:func:`holdout_duplicates`, applied by :mod:`.cache` where the split is
made when a dedup stage is listed): no exact or near duplicate of a document the validation
split holds trains. Each validation document is compared with every other document (exact hash;
MinHash estimate against the ``dedup_near`` threshold, exhaustively, not through LSH bands) and
the training tokens of each match are cut out -- all of a training document, the training part
of another validation document that straddles a cut.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scaling.config import DataConfig
from scaling.sources.files import progress
from scaling.training.data.minhash import minhash_template, signatures_of

DEDUP_STAGES = ("dedup_exact", "dedup_near")  # either one turns on the held-out check
# MinHashLSH's banding weighs false negatives 9:1 against false positives: every candidate is
# checked against the threshold, so a false positive costs a comparison, a false negative a
# duplicate. At threshold 0.8 and 128 permutations a pair of Jaccard 0.85 is a candidate with
# probability 0.975 (0.69 with the default even weights), one of 0.6 with 0.13.
LSH_WEIGHTS = (0.1, 0.9)


@dataclass
class StageOutcome:
    """What one stage removed: ``removed[i]`` is the reason document ``i`` went."""

    removed: dict[int, str] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)  # rule -> documents (filter_quality)


def exact_key(text: str, normalize: bool) -> bytes:
    if normalize:
        text = " ".join(text.split())
    return hashlib.sha256(text.encode("utf-8")).digest()


def dedup_exact(
    docs: Sequence[str], names: Sequence[str], alive: list[int], normalize: bool, desc: str
) -> StageOutcome:
    out = StageOutcome()
    first: dict[bytes, int] = {}
    for i in progress(alive, desc=desc, unit="doc"):
        key = exact_key(docs[i], normalize)
        j = first.setdefault(key, i)
        if j != i:
            out.removed[i] = f"duplicate of {names[j]}"
    return out


def filter_length(
    docs: Sequence[str], alive: list[int], min_chars: int, max_chars: int | None
) -> StageOutcome:
    out = StageOutcome()
    for i in alive:
        n = len(docs[i])
        if n < min_chars:
            out.removed[i] = f"{n:,} characters < min_chars={min_chars:,}"
        elif max_chars is not None and n > max_chars:
            out.removed[i] = f"{n:,} characters > max_chars={max_chars:,}"
    return out


_LETTER = re.compile(r"[^\W\d_]")


def quality_problem(text: str, params: Any) -> tuple[str, str] | None:
    """The first rule ``text`` fails, as ``(rule, reason)``, or None (prose rules, or code
    rules under ``params.code``: :class:`~scaling.data_config.FilterQualityConfig`)."""
    return _code_problem(text, params) if params.code else _prose_problem(text, params)


def _prose_problem(text: str, params: Any) -> tuple[str, str] | None:
    words = text.split()
    if not words:
        return "mean_word", "no words"
    mean = sum(map(len, words)) / len(words)
    if not params.min_mean_word <= mean <= params.max_mean_word:
        return "mean_word", (
            f"mean word length {mean:.2f} outside "
            f"[{params.min_mean_word:g}, {params.max_mean_word:g}]"
        )
    symbols = text.count("#") + text.count("...") + text.count("\u2026")
    if symbols / len(words) > params.max_symbol_ratio:
        return "symbol_ratio", (
            f"{symbols / len(words):.3f} symbols per word > "
            f"max_symbol_ratio={params.max_symbol_ratio:g}"
        )
    alpha = sum(1 for w in words if _LETTER.search(w)) / len(words)
    if alpha < params.min_alpha_words:
        return "alpha_words", (
            f"{alpha:.2f} of words hold a letter < min_alpha_words={params.min_alpha_words:g}"
        )
    lines = [s for s in (line.strip() for line in text.split("\n")) if s]
    if lines:
        dup = 1 - len(set(lines)) / len(lines)
        if dup > params.max_dup_lines:
            return "dup_lines", (
                f"{dup:.2f} of non-blank lines repeat an earlier one > "
                f"max_dup_lines={params.max_dup_lines:g}"
            )
    return None


def _code_problem(text: str, params: Any) -> tuple[str, str] | None:
    if not text.strip():
        return "alnum_frac", "no text"
    lengths = [len(line) for line in text.split("\n")]
    if text.endswith("\n"):
        lengths.pop()
    longest = max(lengths)
    if longest > params.max_line_chars:
        return (
            "line_chars",
            f"a line of {longest:,} characters > max_line_chars={params.max_line_chars:,}",
        )
    mean = sum(lengths) / len(lengths)
    if mean > params.max_mean_line_chars:
        return "mean_line_chars", (
            f"lines average {mean:.1f} characters > "
            f"max_mean_line_chars={params.max_mean_line_chars:g}"
        )
    alnum = sum(map(str.isalnum, text)) / len(text)
    if alnum < params.min_alnum_frac:
        return "alnum_frac", (
            f"{alnum:.2f} of characters are letters or digits < "
            f"min_alnum_frac={params.min_alnum_frac:g}"
        )
    return None


def filter_quality(docs: Sequence[str], alive: list[int], params: Any, desc: str) -> StageOutcome:
    out = StageOutcome()
    for i in progress(alive, desc=desc, unit="doc"):
        problem = quality_problem(docs[i], params)
        if problem is not None:
            rule, reason = problem
            out.removed[i] = reason
            out.reasons[rule] = out.reasons.get(rule, 0) + 1
    return out


def dedup_near(
    docs: Sequence[str], names: Sequence[str], alive: list[int], params: Any, desc: str
) -> tuple[StageOutcome, dict[int, np.ndarray]]:
    """Near-duplicates by MinHash LSH; also each alive document's MinHash values (documents
    without words get the empty MinHash's, which match nothing: they are never removed here)."""
    from datasketch import MinHashLSH

    out = StageOutcome()
    lsh = MinHashLSH(threshold=params.threshold, num_perm=params.num_perm, weights=LSH_WEIGHTS)
    empty = minhash_template(params.num_perm).hashvalues
    sigs: dict[int, np.ndarray] = {}
    ms = signatures_of([docs[i] for i in alive], params, desc)
    for i, m in zip(alive, ms, strict=True):
        if m is None:
            sigs[i] = empty.copy()
            continue
        sigs[i] = m.hashvalues
        best, best_sim = -1, -1.0
        for j in lsh.query(m):
            sim = float(np.mean(sigs[j] == m.hashvalues))
            if sim >= params.threshold and (sim > best_sim or (sim == best_sim and j < best)):
                best, best_sim = j, sim
        if best >= 0:
            out.removed[i] = f"near-duplicate of {names[best]} (Jaccard ~{best_sim:.2f})"
        else:
            lsh.insert(i, m, check_duplication=False)
    return out, sigs


# ---- held-out hygiene -------------------------------------------------------------------------


def holdout_duplicates(
    docs: Sequence[str],
    val_docs: np.ndarray,
    others: np.ndarray,
    cfg: DataConfig,
    signatures: np.ndarray | None,
) -> dict[int, tuple[int, str]]:
    """Documents among ``others`` that duplicate a validation document (one other than
    themselves): ``{document: (validation document, how)}``.

    Exact: the ``dedup_exact`` hash (``normalize`` as configured). Near (when ``dedup_near`` is
    listed and ``signatures`` has a row per document): the MinHash estimate of the Jaccard
    similarity reaches ``dedup_near.threshold``, checked against every one of ``others``.
    """
    normalize = cfg.dedup_exact.normalize if "dedup_exact" in cfg.process else False
    found: dict[int, tuple[int, str]] = {}
    val_keys: dict[bytes, list[int]] = {}
    for v in val_docs:
        if docs[v]:
            val_keys.setdefault(exact_key(docs[v], normalize), []).append(int(v))
    for t in others:
        t = int(t)
        if docs[t]:
            match = [v for v in val_keys.get(exact_key(docs[t], normalize), []) if v != t]
            if match:
                found[t] = (match[0], "exact")
    if signatures is not None and "dedup_near" in cfg.process and len(others):
        empty = minhash_template(cfg.dedup_near.num_perm).hashvalues
        other_sigs = signatures[others]
        has_words = ~np.all(other_sigs == empty, axis=1)
        for v in val_docs:
            if np.all(signatures[v] == empty):
                continue
            sim = np.mean(other_sigs == signatures[v], axis=1)
            for k in np.flatnonzero((sim >= cfg.dedup_near.threshold) & has_words):
                t = int(others[k])
                if t != v:
                    found.setdefault(t, (int(v), f"near (Jaccard ~{sim[k]:.2f})"))
    return found
