"""Processing between source and tokenizer (``data.process``): dedup and filters, cached.

``data.process`` lists stages, run in that order over the source's documents (a file each for
stdlib, sitepackages and text folders; a row each for HF datasets); each stage's parameters are
``data.<stage>.*`` (:class:`~scaling.schema.DataConfig`):

- ``dedup_exact``: a document whose text (SHA-256; ``normalize``: with runs of whitespace
  collapsed) an earlier document has is dropped.
- ``dedup_near``: MinHash LSH (``datasketch.MinHashLSH``) over each document's set of word
  ``ngram``-shingles (words: whitespace-separated); a document whose estimated Jaccard similarity
  with an earlier *kept* document reaches ``threshold`` is dropped (the LSH bands favour recall,
  :data:`LSH_WEIGHTS`, and candidates are checked against the threshold, so a banding false
  positive removes nothing).
- ``filter_length``: documents outside ``[min_chars, max_chars]`` are dropped.
- ``filter_quality``: Gopher-style rules for prose (Rae et al. 2021, App. A): mean word length,
  symbol (``#``, ellipsis) to word ratio, share of words holding a letter, share of non-blank
  lines that repeat an earlier line; under ``code: true`` instead the rules of The Stack /
  StarCoder (Li et al. 2023): longest line, mean line length, alphanumeric share.

**The cache.** ``<cache_dir>/processed/<label>-<key>/`` holds ``kept.npy`` (indices of the kept
documents in the source's order), ``signatures.npy`` (their MinHash values, when ``dedup_near``
ran: the held-out check reuses them), ``report.json`` and ``meta.json`` (written last). The key
hashes the source's fingerprint and the processing config, like the token cache's, so a second
call reads no text and runs no stage. ``report.json`` has, per stage, documents and UTF-8 bytes
in, out and removed, and a few removed documents (name, reason, first 200 characters).

**Identity.** ``processed_id`` hashes the processed text (the documents as the tokenizer joins
them) together with the processing config (:meth:`DataConfig.processing`): it replaces the raw
content hash in the corpus id and so in the run key. Two processings are two corpora.

**Held-out hygiene** (:func:`holdout_duplicates`, applied by :mod:`.cache` where the split is
made when a dedup stage is listed): no exact or near duplicate of a document the validation
split holds trains. Each validation document is compared with every other document (exact hash;
MinHash estimate against the ``dedup_near`` threshold, exhaustively, not through LSH bands) and
the training tokens of each match are cut out -- all of a training document, the training part
of another validation document that straddles a cut.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scaling.config import DataConfig
from scaling.files import atomic_write_bytes, atomic_write_text
from scaling.training.data.files import has_typed_keys, hash_json, progress
from scaling.training.data.sources import Source

log = logging.getLogger(__name__)

PROCESS_FORMAT = 1  # bump when a stage's result for the same config changes
EXAMPLES = 5  # removed documents shown per stage in the report
EXAMPLE_CHARS = 200
DEDUP_STAGES = ("dedup_exact", "dedup_near")  # either one turns on the held-out check
# MinHashLSH's banding weighs false negatives 9:1 against false positives: every candidate is
# checked against the threshold, so a false positive costs a comparison, a false negative a
# duplicate. At threshold 0.8 and 128 permutations a pair of Jaccard 0.85 is a candidate with
# probability 0.975 (0.69 with the default even weights), one of 0.6 with 0.13.
LSH_WEIGHTS = (0.1, 0.9)


# ---- running the stages -----------------------------------------------------------------------


@dataclass
class StageOutcome:
    """What one stage removed: ``removed[i]`` is the reason document ``i`` went."""

    removed: dict[int, str] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)  # rule -> documents (filter_quality)


@dataclass
class ProcessResult:
    """The stages' result over a list of documents."""

    kept: list[int]  # indices of the kept documents, ascending
    signatures: np.ndarray | None  # (len(kept), num_perm) MinHash values, if dedup_near ran
    stages: list[dict[str, Any]]  # the per-stage report
    docs_in: int
    bytes_in: int
    bytes_out: int

    @property
    def docs_out(self) -> int:
        return len(self.kept)


def process_documents(
    docs: Sequence[str], cfg: DataConfig, names: Sequence[str] | None = None, label: str = ""
) -> ProcessResult:
    """Run ``cfg.process`` over ``docs`` (in order) and report each stage."""
    names = names if names is not None else [f"#{i}" for i in range(len(docs))]
    sizes = [len(d.encode("utf-8")) for d in docs]
    alive = list(range(len(docs)))
    signatures: dict[int, np.ndarray] = {}
    reports = []
    for stage in cfg.process:
        t0 = time.perf_counter()
        params = getattr(cfg, stage)
        desc = f"{stage} {label}".strip()
        if stage == "dedup_exact":
            outcome = dedup_exact(docs, names, alive, params.normalize, desc)
        elif stage == "dedup_near":
            outcome, sigs = dedup_near(docs, names, alive, params, desc)
            signatures = sigs
        elif stage == "filter_length":
            outcome = filter_length(docs, alive, params.min_chars, params.max_chars)
        else:
            outcome = filter_quality(docs, alive, params, desc)
        kept = [i for i in alive if i not in outcome.removed]
        reports.append(_stage_report(stage, params, docs, names, sizes, alive, kept, outcome, t0))
        log.info(
            "%s: %s of %s documents removed (%.1f MB)",
            desc,
            f"{len(alive) - len(kept):,}",
            f"{len(alive):,}",
            reports[-1]["bytes_removed"] / 1e6,
        )
        alive = kept
    sig = None
    if "dedup_near" in cfg.process:  # rows of the kept documents, for the held-out check
        rows = [signatures[i] for i in alive]
        sig = np.stack(rows) if rows else np.zeros((0, cfg.dedup_near.num_perm), np.uint32)
    return ProcessResult(
        kept=alive,
        signatures=sig,
        stages=reports,
        docs_in=len(docs),
        bytes_in=sum(sizes),
        bytes_out=sum(sizes[i] for i in alive),
    )


def _stage_report(
    stage: str,
    params: Any,
    docs: Sequence[str],
    names: Sequence[str],
    sizes: Sequence[int],
    alive: list[int],
    kept: list[int],
    outcome: StageOutcome,
    t0: float,
) -> dict[str, Any]:
    bytes_in = sum(sizes[i] for i in alive)
    bytes_out = sum(sizes[i] for i in kept)
    removed = sorted(outcome.removed)
    out: dict[str, Any] = {
        "stage": stage,
        "params": asdict(params),
        "docs_in": len(alive),
        "bytes_in": bytes_in,
        "docs_out": len(kept),
        "bytes_out": bytes_out,
        "docs_removed": len(alive) - len(kept),
        "bytes_removed": bytes_in - bytes_out,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if outcome.reasons:
        out["reasons"] = dict(sorted(outcome.reasons.items()))
    out["examples"] = [
        {
            "doc": names[i],
            "why": outcome.removed[i],
            "text": docs[i][:EXAMPLE_CHARS],
        }
        for i in removed[:EXAMPLES]
    ]
    return out


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
    rules under ``params.code``: :class:`~scaling.schema.FilterQualityConfig`)."""
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


# ---- MinHash of word shingles -----------------------------------------------------------------

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


# ---- the cache --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Processed:
    """A processed corpus in the cache: which of the source's documents it keeps."""

    entry: Path
    meta: dict[str, Any]
    kept: np.ndarray  # int64 indices into the source's documents, ascending
    signatures: np.ndarray | None  # (len(kept), num_perm) uint32, when dedup_near ran
    built: bool  # True when this call ran the stages, False when it read the cache

    @property
    def processed_id(self) -> str:
        return str(self.meta["processed_id"])

    @property
    def report_path(self) -> Path:
        return self.entry / "report.json"

    def report(self) -> dict[str, Any]:
        return json.loads(self.report_path.read_text())


META_KEYS = {"format": int, "processed_id": str, "content_hash": str, "docs_in": int,
             "docs_out": int, "bytes_in": int, "bytes_out": int}  # fmt: skip


def cache_entry(cfg: DataConfig, source: Source) -> Path:
    """Where ``source`` processed under ``cfg`` is cached (keyed without reading any text)."""
    folder = Path(cfg.cache_dir).expanduser() / "processed"
    return folder / f"{source.label}-{cache_key(cfg, source)}"


def cache_key(cfg: DataConfig, source: Source) -> str:
    return hash_json([PROCESS_FORMAT, source.fingerprint(), cfg.processing(), versions(cfg)])[:12]


def versions(cfg: DataConfig) -> dict[str, str]:
    """Library versions a processing's result depends on (its cache keys hold them)."""
    out = {}
    if "dedup_near" in cfg.process:  # the MinHash permutation scheme is datasketch's
        out["datasketch"] = _datasketch_major()
    return out


@functools.cache
def _datasketch_major() -> str:
    from importlib.metadata import version

    return version("datasketch").split(".")[0]


def load_processed(cfg: DataConfig, source: Source, rebuild: bool = False) -> Processed:
    """``source``'s documents processed by ``cfg.process``: from the cache, or run and cached."""
    if not rebuild:
        found = read_entry(cache_entry(cfg, source))
        if found is not None:
            return found
    return run_processing(cfg, source)[0]


def run_processing(cfg: DataConfig, source: Source) -> tuple[Processed, list[str], list[str]]:
    """Read ``source``, run the stages, write the cache entry; the result and the kept
    documents' names and texts."""
    entry = cache_entry(cfg, source)
    t0 = time.perf_counter()
    names, docs = [], []
    for name, text in source.named_documents():
        names.append(name)
        docs.append(text)
    result = process_documents(docs, cfg, names, label=source.label)
    names = [names[i] for i in result.kept]
    docs = [docs[i] for i in result.kept]
    content_hash = processed_content_hash(docs)
    processed_id = hash_json([content_hash, cfg.processing()])[:12]
    stages = {
        r["stage"]: {"docs_removed": r["docs_removed"], "bytes_removed": r["bytes_removed"]}
        for r in result.stages
    }
    counts = {
        "docs_in": result.docs_in,
        "docs_out": result.docs_out,
        "bytes_in": result.bytes_in,
        "bytes_out": result.bytes_out,
    }
    meta = {
        "format": PROCESS_FORMAT,
        "processed_id": processed_id,
        "content_hash": content_hash,
        **counts,
        "source": source.where,
        "process": cfg.processing(),
        "stages": stages,
    }
    report = {
        "source": source.where,
        "label": source.label,
        "processed_id": processed_id,
        "process": cfg.processing(),
        **counts,
        "seconds": round(time.perf_counter() - t0, 3),
        "stages": result.stages,
    }
    kept = np.asarray(result.kept, dtype=np.int64)
    entry.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(entry / "kept.npy", [_npy(kept)])
    if result.signatures is not None:
        atomic_write_bytes(entry / "signatures.npy", [_npy(result.signatures)])
    atomic_write_text(entry / "report.json", json.dumps(report, indent=1, ensure_ascii=False))
    atomic_write_text(entry / "meta.json", json.dumps(meta, indent=1))
    log.info(
        "processed %s (%s): %s of %s documents kept, %.1f of %.1f MB, in %.1f s -> %s",
        source.where,
        " ".join(cfg.process),
        f"{result.docs_out:,}",
        f"{result.docs_in:,}",
        result.bytes_out / 1e6,
        result.bytes_in / 1e6,
        time.perf_counter() - t0,
        entry,
    )
    return Processed(entry, meta, kept, result.signatures, built=True), names, docs


def processed_content_hash(docs: Iterator[str] | Sequence[str]) -> str:
    """SHA-256 of the documents as the tokenizer joins them (each ending in a newline)."""
    h = hashlib.sha256()
    for d in docs:
        if d:
            h.update(d.encode("utf-8"))
            if not d.endswith("\n"):
                h.update(b"\n")
    return h.hexdigest()


def _npy(array: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def read_entry(entry: Path) -> Processed | None:
    """The cached processing in ``entry`` if complete and valid, else None (process again)."""
    try:
        meta = json.loads((entry / "meta.json").read_text())
        kept = np.load(entry / "kept.npy", allow_pickle=False)
        sig_path = entry / "signatures.npy"
        signatures = np.load(sig_path, allow_pickle=False) if sig_path.exists() else None
        (entry / "report.json").stat()
    except (OSError, ValueError):
        return None
    if not has_typed_keys(meta, META_KEYS):
        return None
    if meta["format"] != PROCESS_FORMAT or kept.ndim != 1 or len(kept) != meta["docs_out"]:
        return None
    if signatures is not None and len(signatures) != len(kept):
        return None
    return Processed(entry, meta, kept, signatures, built=False)


class ProcessedSource(Source):
    """A source seen through ``data.process``: its kept documents, in order.

    Its fingerprint (the token cache's key) adds the processing config to the source's, so a
    cached token entry is found without running or reading the processing.
    """

    def __init__(self, cfg: DataConfig, raw: Source) -> None:
        self.cfg, self.raw = cfg, raw
        self.label = f"{raw.label}-proc"
        self.where = raw.where
        self._processed: Processed | None = None
        self._kept: tuple[list[str], list[str]] | None = None  # just processed: still in memory

    def fingerprint(self) -> Any:
        return [PROCESS_FORMAT, self.raw.fingerprint(), self.cfg.processing(), versions(self.cfg)]

    def processed(self) -> Processed:
        if self._processed is None:
            found = read_entry(cache_entry(self.cfg, self.raw))
            if found is None:
                found, names, texts = run_processing(self.cfg, self.raw)
                self._kept = (names, texts)
            self._processed = found
        return self._processed

    def named_documents(self) -> Iterator[tuple[str, str]]:
        yield from zip(*self.document_list(), strict=True)

    def documents(self) -> Iterator[str]:
        yield from self.document_list()[1]

    def document_list(self) -> tuple[list[str], list[str]]:
        """``(names, texts)`` of the kept documents. Read from a cached processing, they are
        checked against its document count and content hash: a source whose text changed under
        the same fingerprint is processed again."""
        proc = self.processed()
        if self._kept is not None:
            return self._kept
        names, texts, total = [], [], 0
        kept = set(proc.kept.tolist())
        for i, (name, text) in enumerate(self.raw.named_documents()):
            total = i + 1
            if i in kept:
                names.append(name)
                texts.append(text)
        stale = total != proc.meta["docs_in"] or len(texts) != len(kept)
        if stale or processed_content_hash(texts) != proc.meta["content_hash"]:
            log.warning("%s changed since it was processed: processing it again", self.where)
            self._processed, names, texts = run_processing(self.cfg, self.raw)
        self._kept = (names, texts)
        return self._kept
