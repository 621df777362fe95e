"""Processing between source and tokenizer (``data.process``): the stages run in order, their
report, and the cache of the result.

``data.process`` lists stages (:mod:`.stages`: ``dedup_exact``, ``dedup_near``,
``filter_length``, ``filter_quality``), run in that order over the source's documents (a file
each for stdlib, sitepackages and text folders; a row each for HF datasets); each stage's
parameters are ``data.<stage>.*`` (:class:`~scaling.data_config.DataConfig`).

**The cache.** ``<cache_dir>/processed/<label>-<key>/`` holds ``kept.npy`` (indices of the kept
documents in the source's order), ``signatures.npy`` (their MinHash values, when ``dedup_near``
ran: the held-out check reuses them), ``report.json`` and ``meta.json`` (written last). The key
hashes the source's fingerprint and the processing config, like the token cache's, so a second
call reads no text and runs no stage. ``report.json`` has, per stage, documents and UTF-8 bytes
in, out and removed, and a few removed documents (name, reason, first 200 characters).

**Identity.** ``processed_id`` hashes the processed text (the documents as the tokenizer joins
them) together with the processing config (:meth:`DataConfig.processing`): it replaces the raw
content hash in the corpus id and so in the run key. Two processings are two corpora.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scaling.config import DataConfig
from scaling.files import atomic_write_bytes, atomic_write_text
from scaling.sources.base import Source
from scaling.training.data.files import has_typed_keys, hash_json
from scaling.training.data.stages import (
    StageOutcome,
    dedup_exact,
    dedup_near,
    filter_length,
    filter_quality,
)

log = logging.getLogger(__name__)

PROCESS_FORMAT = 1  # bump when a stage's result for the same config changes
EXAMPLES = 5  # removed documents shown per stage in the report
EXAMPLE_CHARS = 200


# ---- running the stages -----------------------------------------------------------------------


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
