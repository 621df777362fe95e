"""Corpora, tokenizers, the token cache and the LightningDataModule.

A run sees its data as one stream of token ids, split once into a training part and a fixed
validation part. Everything here is deterministic in the config: the same corpus and tokenizer
give byte-identical token files on every machine, and the validation tokens never depend on the
seed, the model or ``seq_len``, so final losses of a sweep are comparable.

Sources (``data.source``):

- ``stdlib``: every ``.py`` under ``sysconfig.get_paths()["stdlib"]`` minus ``site-packages``
  (about 1,800 files, 31 MB of real text that every Python has), sorted by path.
- ``text``: a file, a folder (files matching ``data.pattern``, hidden and binary files skipped)
  or a glob (``data.path="books/*.txt"``), sorted by path.
- ``hf``: ``datasets.load_dataset(data.name, data.config, data_files=..., split=...)``, one
  document per row of ``data.text_field``.
- ``markov``: a seeded first-order Markov chain whose exact entropy rate is known, the floor no
  model can beat.

Documents are joined into one stream, each ending in a newline (one is added where missing).
Tokenizers: ``byte`` (raw UTF-8 bytes, vocab 256) or ``bpe`` (byte-level BPE trained with HF
``tokenizers`` on the corpus, vocab ``data.vocab_size``, cached as JSON).

**The split.** The validation part holds ``val_tokens + 4096`` tokens, enough for
``val_windows`` to score at least ``val_tokens`` targets at any ``seq_len`` up to 4096. It is
taken as :data:`VAL_PIECES` equal contiguous pieces, the tail of each of that many equal segments
of the stream, so that it samples the whole corpus (the stdlib sorted by path would otherwise
validate on ``zoneinfo`` alone). The rest, in stream order, is the training part.

**The cache.** ``<cache_dir>/tokens/<label>-<tokenizer>-<key>/`` holds ``tokens.bin`` (training
tokens then validation tokens, ``uint16``/``uint32``) and ``meta.json``. The key hashes a cheap
fingerprint of the source (file paths, sizes and mtimes; or the dataset / chain parameters), the
tokenizer and the validation size, so a cached load reads no source text. Files are written to a
temporary name and ``os.replace``-d into place, ``meta.json`` last: two processes tokenizing the
same corpus at once both succeed and leave one valid cache.
"""

from __future__ import annotations

import bisect
import glob
import hashlib
import json
import logging
import os
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from scaling.config import MAX_EVAL_SEQ_LEN, DataConfig
from scaling.errors import ConfigError, DataError

log = logging.getLogger(__name__)

VAL_PIECES = 8  # the validation part is this many contiguous pieces spread over the stream
CACHE_FORMAT = 1  # bump when the token file layout or the tokenization changes
_BPE_CHUNK_CHARS = 1024  # encode_batch items: runs of whole lines (1 KB beat 64 KB 1.5-2x)
_BPE_BATCH_ITEMS = 4096


# ----------------------------------------------------------------------------------- config


# ----------------------------------------------------------------------------------- corpus


@dataclass(frozen=True, eq=False)
class Corpus:
    """A tokenized corpus with its fixed split."""

    train: np.ndarray  # 1-D token ids, a read-only np.memmap into the cache
    val: np.ndarray  # 1-D, val_tokens + 4096 ids, the same for every run on this corpus+tokenizer
    vocab_size: int
    corpus_id: str  # "<label>-<hash12 of the text>", e.g. "stdlib-3.11-0123456789ab"
    tokenizer_id: str  # "byte", "bpe4096-<hash12 of the tokenizer JSON>", "markov64"
    entropy_rate: float | None = None  # nats/token, exact; markov only

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
        return out


def load_corpus(cfg: DataConfig, seq_len: int | None = None) -> Corpus:
    """Tokenize ``cfg``'s corpus once into the cache (or reuse it) and split it.

    With ``seq_len`` it also checks that the training part holds one window of ``seq_len + 1``.
    """
    source = _make_source(cfg)
    if cfg.source == "markov":
        tok_spec = f"markov{cfg.states}"  # the tokens are the chain's states
    elif cfg.tokenizer == "bpe":
        tok_spec = f"bpe{cfg.vocab_size}"
    else:
        tok_spec = "byte"
    key = _hash([CACHE_FORMAT, source.fingerprint(), tok_spec, cfg.val_reserve])[:12]
    entry = Path(cfg.cache_dir).expanduser() / "tokens" / f"{source.label}-{tok_spec}-{key}"

    meta = _read_meta(entry)
    if meta is None:
        t0 = time.perf_counter()
        meta = _build_entry(cfg, source, entry)
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
    )
    if seq_len is not None and n_train < seq_len + 1:
        raise DataError(
            f"{source.where} holds {n_train + n_val:,} tokens: with {n_val:,} held out for "
            f"validation it must hold at least {n_val + seq_len + 1:,} to train on one window "
            f"of model.seq_len={seq_len}; use a bigger corpus or lower data.val_tokens"
        )
    return corpus


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


# ---------------------------------------------------------------------------------- sources


class _Source:
    label: str  # file-name-safe prefix of corpus_id, e.g. "stdlib-3.11"
    where: str  # how errors name it, e.g. "data.path=notes/"

    def fingerprint(self) -> Any:
        """Cheap, JSON-able identity of the content (no reading of the text)."""
        raise NotImplementedError

    def documents(self) -> Iterator[str]:
        raise NotImplementedError


def _file_stats(paths: Iterable[Path]) -> list[tuple[str, int, int]]:
    out = []
    for p in paths:
        st = p.stat()
        out.append((str(p), st.st_size, st.st_mtime_ns))
    return out


def _read_text(path: Path) -> str | None:
    """File text (UTF-8, bad bytes replaced, CRLF -> LF), or None for a binary file."""
    raw = path.read_bytes()
    if b"\x00" in raw[:8192]:
        return None
    return raw.decode("utf-8", errors="replace").replace("\r\n", "\n")


class _FilesSource(_Source):
    def __init__(self, label: str, where: str, files: list[Path], extra: Any) -> None:
        self.label, self.where, self.files, self.extra = label, where, files, extra

    def fingerprint(self) -> Any:
        return [self.label, self.extra, _file_stats(self.files)]

    def documents(self) -> Iterator[str]:
        skipped = 0
        for path in _progress(self.files, desc=f"reading {self.label}", unit="file"):
            text = _read_text(path)
            if text is None:
                skipped += 1
                continue
            yield text
        if skipped:
            log.warning("%s: skipped %d binary files", self.where, skipped)


def stdlib_files() -> list[Path]:
    """Every ``.py`` of this Python's standard library (site-packages excluded), sorted."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [
            d for d in dirnames if d not in ("site-packages", "dist-packages", "__pycache__")
        ]
        out.extend(Path(dirpath) / f for f in filenames if f.endswith(".py"))
    return sorted(out)


def _stdlib_source() -> _Source:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    files = stdlib_files()
    if not files:
        raise DataError(f"no .py files under {sysconfig.get_paths()['stdlib']} (the stdlib corpus)")
    return _FilesSource(f"stdlib-{version}", "the stdlib corpus", files, version)


def _text_source(cfg: DataConfig) -> _Source:
    raw = str(cfg.path)
    where = f"data.path={raw}"
    path = Path(raw).expanduser()
    if any(c in raw for c in "*?["):
        files = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        if not files:
            raise ConfigError(f"{where} matches no file: check the glob")
        stem = Path(raw.split("*")[0].split("?")[0].split("[")[0] or "glob").name or "glob"
    elif path.is_dir():
        patterns = [p.strip() for p in cfg.pattern.split(",") if p.strip()]
        found: set[Path] = set()
        for pat in patterns:
            for p in path.glob(pat):
                rel = p.relative_to(path).parts
                if p.is_file() and not any(part.startswith(".") for part in rel):
                    found.add(p)
        files = sorted(found)
        if not files:
            raise ConfigError(
                f"{where} is a folder with no file matching data.pattern={cfg.pattern!r}"
            )
        stem = path.resolve().name
    elif path.is_file():
        files, stem = [path], path.stem
    else:
        raise ConfigError(f"{where} does not exist: pass an existing FILE, DIR or GLOB")
    files = [f.resolve() for f in files]
    return _FilesSource(f"text-{_safe(stem)}", where, files, None)


class _HFSource(_Source):
    def __init__(self, cfg: DataConfig) -> None:
        self.cfg = cfg
        self.label = f"hf-{_safe(Path(str(cfg.name)).name)}"
        files = cfg.data_files
        self.where = f"data.name={cfg.name}" + (f" data.data_files={files}" if files else "")

    def _local_paths(self) -> list[str]:
        files = self.cfg.data_files
        if files is None:
            items: list[str] = []
        elif isinstance(files, str):
            items = [files]
        elif isinstance(files, Mapping):
            items = [f for v in files.values() for f in ([v] if isinstance(v, str) else v)]
        else:
            items = list(files)
        out = []
        for item in [str(self.cfg.name), *items]:
            out.extend(sorted(glob.glob(os.path.expanduser(item), recursive=True)))
        return out

    def fingerprint(self) -> Any:
        c = self.cfg
        local = [Path(p) for p in self._local_paths()]
        stats = _file_stats(p for p in local if p.is_file())
        return [c.name, c.config, c.data_files, c.split, c.text_field, stats]

    def documents(self) -> Iterator[str]:
        import datasets  # heavy: only for this source

        c = self.cfg
        if c.data_files is not None and not self._local_paths() and c.name in _HF_LOADERS:
            raise ConfigError(f"data.data_files={c.data_files} matches no file")
        kwargs: dict[str, Any] = {}
        if c.name == "text":
            kwargs["keep_linebreaks"] = True  # else the loader strips every newline
        try:
            ds = datasets.load_dataset(
                c.name,
                c.config,
                data_files=c.data_files,
                split=c.split,
                cache_dir=str(Path(c.cache_dir).expanduser() / "hf"),
                **kwargs,
            )
        except (OSError, ValueError, datasets.exceptions.DatasetsError) as err:
            cause = f" ({err.__cause__})" if err.__cause__ else ""
            msg = " ".join(f"{err}{cause}".split())
            raise DataError(f"{self.where} could not be loaded: {msg}") from None
        if c.text_field not in ds.column_names:
            raise ConfigError(
                f"data.text_field={c.text_field!r} is not a column of {self.where}: "
                f"columns are {', '.join(ds.column_names)}"
            )
        for batch in _progress(
            ds.iter(batch_size=1024), desc=f"reading {self.label}", unit="batch"
        ):
            for text in batch[c.text_field]:
                if text:
                    yield str(text)


_HF_LOADERS = ("text", "json", "csv", "parquet", "arrow")


def _make_source(cfg: DataConfig) -> _Source:
    if cfg.source == "stdlib":
        return _stdlib_source()
    if cfg.source == "text":
        return _text_source(cfg)
    if cfg.source == "hf":
        return _HFSource(cfg)
    return _MarkovSource(cfg)


# ------------------------------------------------------------------------------------ markov


class _MarkovSource(_Source):
    def __init__(self, cfg: DataConfig) -> None:
        self.cfg = cfg
        self.label = f"markov-s{cfg.states}-c{cfg.concentration:g}-seed{cfg.markov_seed}"
        self.where = f"the markov source ({self.label})"

    def fingerprint(self) -> Any:
        c = self.cfg
        return [self.label, c.states, c.concentration, c.markov_seed, c.corpus_tokens]


def markov_chain(states: int, concentration: float, seed: int) -> np.ndarray:
    """Transition matrix ``P[i, j] = p(next=j | current=i)``, rows ~ Dirichlet(concentration)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x6D61726B]))
    return rng.dirichlet(np.full(states, concentration), size=states)


def stationary_distribution(P: np.ndarray) -> np.ndarray:
    """pi with pi P = pi, sum(pi) = 1 (least squares; the chain is irreducible a.s.)."""
    n = P.shape[0]
    A = np.vstack([P.T - np.eye(n), np.ones((1, n))])
    b = np.zeros(n + 1)
    b[-1] = 1.0
    pi = np.linalg.lstsq(A, b, rcond=None)[0]
    pi = np.clip(pi, 0.0, None)
    return pi / pi.sum()


def entropy_rate(P: np.ndarray) -> float:
    """Entropy rate of a stationary first-order chain, nats/token: H = sum_i pi_i H(P_i)."""
    pi = stationary_distribution(P)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(P > 0, P * np.log(P), 0.0)
    return float(-(pi * plogp.sum(axis=1)).sum())


def sample_markov(P: np.ndarray, n_tokens: int, seed: int, n_chains: int = 256) -> np.ndarray:
    """``n_tokens`` states from ``n_chains`` stationary chains run side by side, concatenated.

    Each chain starts from the stationary distribution, so the stream is stationary except at
    the ``n_chains - 1`` joins (under 0.01% of transitions at the default 4M tokens). One
    vectorised inverse-CDF step moves every chain: the rows' CDFs, shifted by their row index,
    form one sorted array, so ``searchsorted(cdf, state + u)`` samples each chain's next state.
    """
    S = P.shape[0]
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x73616D70]))
    n_chains = max(1, min(n_chains, n_tokens))
    steps = -(-n_tokens // n_chains)
    cdf = np.cumsum(P, axis=1)
    cdf[:, -1] = 1.0
    flat = (cdf + np.arange(S)[:, None]).ravel()
    out = np.empty((steps, n_chains), dtype=np.int64)
    pi = stationary_distribution(P)
    state = rng.choice(S, size=n_chains, p=pi)
    for t in range(steps):
        out[t] = state
        u = rng.random(n_chains)
        state = np.searchsorted(flat, state + u, side="right") - state * S
        np.minimum(state, S - 1, out=state)  # guard the float edge state + u == state + 1
    return out.T.ravel()[:n_tokens]


# ----------------------------------------------------------------------------- tokenization


def _byte_tokens(source: _Source) -> tuple[np.ndarray, str]:
    """UTF-8 bytes of the joined documents as uint16 ids, and the content hash."""
    blob = _joined_text(source).encode("utf-8")
    return np.frombuffer(blob, dtype=np.uint8).astype(np.uint16), _hash_bytes(blob)


def _joined_text(source: _Source) -> str:
    parts = []
    for doc in source.documents():
        if doc:
            parts.append(doc if doc.endswith("\n") else doc + "\n")
    return "".join(parts)


def _bpe_tokens(cfg: DataConfig, source: _Source) -> tuple[np.ndarray, str, str, str]:
    """BPE ids of the joined documents, the content hash, the tokenizer id and its path."""
    text = _joined_text(source)
    content_hash = _hash_bytes(text.encode("utf-8"))
    if not text:
        return np.zeros(0, dtype=np.uint16), content_hash, f"bpe{cfg.vocab_size}", ""
    tok_path = (
        Path(cfg.cache_dir).expanduser()
        / "tokenizers"
        / f"{source.label}-{content_hash[:12]}-bpe{cfg.vocab_size}.json"
    )
    chunks = _line_chunks(text, _BPE_CHUNK_CHARS)
    if tok_path.exists():
        tok = load_tokenizer(tok_path)
    else:
        t0 = time.perf_counter()
        tok = train_bpe(chunks, cfg.vocab_size)
        _atomic_write_text(tok_path, tok.to_str())
        log.info(
            "trained bpe%d in %.1f s -> %s", cfg.vocab_size, time.perf_counter() - t0, tok_path
        )
    tokenizer_id = f"bpe{cfg.vocab_size}-{_hash_bytes(tok_path.read_bytes())[:12]}"
    dtype = _dtype_for(cfg.vocab_size)
    pieces = []
    batches = range(0, len(chunks), _BPE_BATCH_ITEMS)
    for i in _progress(batches, desc=f"bpe{cfg.vocab_size} {source.label}", unit="batch"):
        for enc in tok.encode_batch(chunks[i : i + _BPE_BATCH_ITEMS], add_special_tokens=False):
            pieces.append(np.asarray(enc.ids, dtype=dtype))
    ids = np.concatenate(pieces) if pieces else np.zeros(0, dtype=dtype)
    return ids, content_hash, tokenizer_id, str(tok_path)


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


def _line_chunks(text: str, size: int) -> list[str]:
    """``text`` cut after newlines into pieces of about ``size`` characters (lossless)."""
    out, start, n = [], 0, len(text)
    while start < n:
        end = text.find("\n", min(start + size, n))
        end = n if end < 0 else end + 1
        out.append(text[start:end])
        start = end
    return out


def _dtype_for(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 65535 else np.dtype(np.uint32)


# ------------------------------------------------------------------------------------ cache


def _build_entry(cfg: DataConfig, source: _Source, entry: Path) -> dict[str, Any]:
    """Read, tokenize, split and write one cache entry; return its meta."""
    extra: dict[str, Any] = {}
    if cfg.source == "markov":
        P = markov_chain(cfg.states, cfg.concentration, cfg.markov_seed)
        ids = sample_markov(P, cfg.corpus_tokens, cfg.markov_seed).astype(_dtype_for(cfg.states))
        corpus_id = f"{source.label}-{_hash_bytes(ids.tobytes())[:12]}"
        tokenizer_id, vocab_size = f"markov{cfg.states}", cfg.states
        extra["entropy_rate"] = entropy_rate(P)
    elif cfg.tokenizer == "byte":
        ids, content_hash = _byte_tokens(source)
        corpus_id, tokenizer_id, vocab_size = f"{source.label}-{content_hash[:12]}", "byte", 256
    else:
        ids, content_hash, tokenizer_id, tok_path = _bpe_tokens(cfg, source)
        corpus_id, vocab_size = f"{source.label}-{content_hash[:12]}", cfg.vocab_size
        extra["tokenizer_path"] = tok_path

    n, reserve = len(ids), cfg.val_reserve
    if n == 0:
        raise DataError(f"{source.where} holds no text (0 tokens): point it at a non-empty corpus")
    need = reserve + VAL_PIECES + 1
    if n < need:
        raise DataError(
            f"{source.where} holds {n:,} tokens: it must hold at least {need:,} (the "
            f"validation set of data.val_tokens={cfg.val_tokens} + {MAX_EVAL_SEQ_LEN} tokens, "
            "plus training tokens); use a bigger corpus or lower data.val_tokens"
        )
    train, val = split_tokens(ids, reserve)
    dtype = _dtype_for(vocab_size)
    entry.mkdir(parents=True, exist_ok=True)
    _atomic_write_bytes(
        entry / "tokens.bin",
        [train.astype(dtype, copy=False).tobytes(), val.astype(dtype, copy=False).tobytes()],
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
    _atomic_write_text(entry / "meta.json", json.dumps(meta, indent=1))
    return meta


def split_tokens(ids: np.ndarray, n_val: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic split: (train, val) with ``len(val) == n_val``.

    The stream is cut into :data:`VAL_PIECES` equal segments; the last ``n_val / VAL_PIECES``
    tokens of each go to validation, the rest (in order) to training.
    """
    n = len(ids)
    bounds = [n * j // VAL_PIECES for j in range(VAL_PIECES + 1)]
    sizes = [n_val // VAL_PIECES + (j < n_val % VAL_PIECES) for j in range(VAL_PIECES)]
    train_parts, val_parts = [], []
    for j in range(VAL_PIECES):
        cut = bounds[j + 1] - sizes[j]
        train_parts.append(ids[bounds[j] : cut])
        val_parts.append(ids[cut : bounds[j + 1]])
    return np.concatenate(train_parts), np.concatenate(val_parts)


def _read_meta(entry: Path) -> dict[str, Any] | None:
    """The entry's meta if the entry is complete and valid, else None (rebuild)."""
    try:
        meta = json.loads((entry / "meta.json").read_text())
        size = (entry / "tokens.bin").stat().st_size
    except (OSError, ValueError):
        return None
    expected = (meta.get("n_train", 0) + meta.get("n_val", 0)) * np.dtype(meta["dtype"]).itemsize
    if meta.get("format") != CACHE_FORMAT or size != expected:
        return None
    return meta


def _atomic_write_bytes(path: Path, parts: Sequence[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            for part in parts:
                f.write(part)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_write_text(path: Path, text: str) -> None:
    _atomic_write_bytes(path, [text.encode("utf-8")])


def _hash(obj: Any) -> str:
    return _hash_bytes(json.dumps(obj, sort_keys=True, default=str).encode("utf-8"))


def _hash_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _safe(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "._-" else "_" for c in name).strip("._")
    return cleaned[:40] or "corpus"


def _progress(it: Iterable[Any], **kwargs: Any) -> Iterable[Any]:
    """A tqdm bar on an interactive terminal, the bare iterable otherwise."""
    if not sys.stderr.isatty():
        return it
    from tqdm.auto import tqdm

    return tqdm(it, leave=False, **kwargs)


# ----------------------------------------------------------------------------------- batches


class TokenBatches(Dataset):
    """Training windows of ``seq_len + 1`` tokens, in a seeded order; item i -> (x, y).

    Epoch ``e`` reads the non-overlapping windows ``tokens[o + k*seq_len : o + (k+1)*seq_len
    + 1]`` (consecutive windows share one boundary token, so every token is a target once) in a
    permutation drawn from ``SeedSequence([seed, e])``; epoch 0 starts at offset ``o = 0``, later
    epochs at a seeded offset in ``[0, seq_len)`` so that repeated data is cut differently.
    Item ``i`` depends only on ``(seed, i)``: a run resumed with ``start=k`` sees exactly items
    ``k, k+1, ...`` of the uninterrupted run (``resumed[j] == full[k + j]``).
    """

    def __init__(
        self, tokens: np.ndarray, seq_len: int, n_sequences: int, seed: int, start: int = 0
    ) -> None:
        if seq_len < 1:
            raise ConfigError(f"model.seq_len={seq_len} must be positive")
        if len(tokens) < seq_len + 1:
            raise DataError(
                f"the training split holds {len(tokens):,} tokens, fewer than one window of "
                f"model.seq_len+1={seq_len + 1}: use a bigger corpus or lower data.val_tokens"
            )
        if not 0 <= start <= n_sequences:
            raise ValueError(f"start={start} must be in [0, n_sequences={n_sequences}]")
        self.tokens, self.seq_len, self.seed = tokens, seq_len, seed % 2**63
        self.n_sequences, self.start = n_sequences, start
        self._epoch_starts = [0]  # first item of each epoch laid out so far
        self._epoch_layout: list[tuple[int, int]] = []  # (offset, n_windows) per epoch
        self._perm: tuple[int, np.ndarray] | None = None  # the current epoch's permutation

    def __len__(self) -> int:
        # The full run's length even when resuming: Lightning restores its batch counter from
        # the checkpoint and ends the epoch at len(loader) batches, so a shorter loader would
        # make it start a new epoch (re-reading early items) before max_steps. Items past the
        # horizon are well defined and only ever prefetched, never trained on.
        return self.n_sequences

    def _rng(self, epoch: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.seed, epoch]))

    def _layout(self, epoch: int) -> tuple[int, int]:
        while len(self._epoch_layout) <= epoch:
            e = len(self._epoch_layout)
            span = len(self.tokens) - 1
            offset = 0 if e == 0 else int(self._rng(e).integers(self.seq_len))
            if span - offset < self.seq_len:
                offset = 0
            n_windows = (span - offset) // self.seq_len
            self._epoch_layout.append((offset, n_windows))
            self._epoch_starts.append(self._epoch_starts[-1] + n_windows)
        return self._epoch_layout[epoch]

    def window_start(self, i: int) -> int:
        """Token position where item ``i`` (counted from the start of the run) begins."""
        while self._epoch_starts[-1] <= i:
            self._layout(len(self._epoch_layout))
        epoch = bisect.bisect_right(self._epoch_starts, i) - 1
        offset, n_windows = self._layout(epoch)
        if self._perm is None or self._perm[0] != epoch:
            rng = self._rng(epoch)
            if epoch > 0:
                rng.integers(self.seq_len)  # the offset draw, as in _layout
            self._perm = (epoch, rng.permutation(n_windows))
        return offset + int(self._perm[1][i - self._epoch_starts[epoch]]) * self.seq_len

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        pos = self.window_start(self.start + index)
        window = torch.from_numpy(
            np.asarray(self.tokens[pos : pos + self.seq_len + 1], dtype=np.int64)
        )
        return window[:-1], window[1:]  # (T,), (T,)


def val_windows(corpus: Corpus, seq_len: int) -> torch.Tensor:
    """(n, seq_len + 1) validation windows with stride ``seq_len``: every target scored once.

    ``n = (len(val) - 1) // seq_len``, at least ``val_tokens / seq_len`` for seq_len <= 4096.
    """
    val = corpus.val
    n = (len(val) - 1) // seq_len
    if n < 1:
        raise DataError(
            f"the validation split holds {len(val):,} tokens, fewer than one window of "
            f"model.seq_len+1={seq_len + 1}: raise data.val_tokens"
        )
    idx = np.arange(n)[:, None] * seq_len + np.arange(seq_len + 1)[None, :]
    return torch.from_numpy(np.asarray(val, dtype=np.int64)[idx])


class TokenDataModule(L.LightningDataModule):
    """Training batches from :class:`TokenBatches`.

    No ``val_dataloader``: the module scores :func:`val_windows` itself at chosen token counts
    (a Lightning val loop here would only warn when the module has no ``validation_step``).
    """

    def __init__(
        self,
        corpus: Corpus,
        seq_len: int,
        micro_batch_size: int,
        n_sequences: int,
        seed: int,
        start_sequence: int = 0,
    ) -> None:
        super().__init__()
        self.corpus, self.seq_len, self.micro_batch_size = corpus, seq_len, micro_batch_size
        self.n_sequences, self.seed, self.start_sequence = n_sequences, seed, start_sequence

    def train_dataloader(self) -> DataLoader:
        batches = TokenBatches(
            self.corpus.train, self.seq_len, self.n_sequences, self.seed, self.start_sequence
        )
        return DataLoader(
            batches, batch_size=self.micro_batch_size, shuffle=False, num_workers=0, drop_last=True
        )


__all__ = [
    "Corpus",
    "TokenBatches",
    "TokenDataModule",
    "entropy_rate",
    "load_corpus",
    "load_tokenizer",
    "markov_chain",
    "sample_markov",
    "split_tokens",
    "stationary_distribution",
    "stdlib_files",
    "train_bpe",
    "train_epochs",
    "val_windows",
]
