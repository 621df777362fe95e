"""Corpora, tokenizers, the token cache, the split and the batches (scaling/training/data/)."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from scaling.config import MAX_EVAL_SEQ_LEN, DataConfig
from scaling.errors import ConfigError, DataError
from scaling.sources import files as source_files
from scaling.sources.markov import (
    entropy_rate,
    markov_chain,
    sample_markov,
    stationary_distribution,
)
from scaling.sources.stdlib import stdlib_files
from scaling.training import data as D
from scaling.training.data import Corpus, cache, load_corpus, tokenizer, train_epochs
from scaling.training.data.batches import TokenBatches, TokenDataModule, val_windows

VAL = 1000  # small validation sets keep the test corpora small: reserve = VAL + 4096


def _text(n_bytes: int, seed: int = 0) -> str:
    """Varied English-like text with some non-ASCII, about ``n_bytes`` long."""
    rng = np.random.default_rng(seed)
    words = "the of and to in a is that for it as was with be by on not he this are or".split()
    words += ["naïve", "café", "über", "λx", "→", "data", "token", "scaling", "law", "loss"]
    lines, size = [], 0
    while size < n_bytes:
        line = " ".join(rng.choice(words, size=rng.integers(3, 14))) + ".\n"
        lines.append(line)
        size += len(line.encode())
    return "".join(lines)


def _cfg(tmp_path: Path, **kw) -> DataConfig:
    kw.setdefault("val_tokens", VAL)
    return DataConfig(cache_dir=str(tmp_path / "cache"), **kw)


def _stream(corpus: Corpus) -> np.ndarray:
    """Undo the split: the token stream in source order."""
    n = len(corpus.train) + len(corpus.val)
    out = np.empty(n, dtype=np.int64)
    bounds = [n * j // D.VAL_PIECES for j in range(D.VAL_PIECES + 1)]
    k = len(corpus.val)
    sizes = [k // D.VAL_PIECES + (j < k % D.VAL_PIECES) for j in range(D.VAL_PIECES)]
    t = v = 0
    for j in range(D.VAL_PIECES):
        cut = bounds[j + 1] - sizes[j]
        out[bounds[j] : cut] = corpus.train[t : t + cut - bounds[j]]
        out[cut : bounds[j + 1]] = corpus.val[v : v + sizes[j]]
        t, v = t + cut - bounds[j], v + sizes[j]
    return out


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(_text(40_000), encoding="utf-8")
    return path


# ------------------------------------------------------------------------ text and the split


def test_text_file_bytes_round_trip_and_split(text_file: Path, tmp_path: Path) -> None:
    corpus = load_corpus(_cfg(tmp_path, source="text", path=str(text_file)))
    raw = text_file.read_bytes()
    assert corpus.vocab_size == 256 and corpus.tokenizer_id == "byte"
    assert corpus.train.dtype == np.uint16 and isinstance(corpus.train, np.memmap)
    assert len(corpus.val) == VAL + MAX_EVAL_SEQ_LEN
    assert len(corpus.train) + len(corpus.val) == len(raw)
    assert bytes(_stream(corpus).astype(np.uint8)) == raw
    assert corpus.corpus_id.startswith("text-corpus-")
    info = corpus.describe()
    assert info["data.train_tokens_available"] == len(corpus.train)
    assert info["data.val_tokens_available"] == len(corpus.val)
    assert "data.entropy_rate" not in info


def test_val_is_spread_over_the_corpus() -> None:
    ids = np.arange(80_000)
    train, val = D.split_tokens(ids, 800)
    assert len(val) == 800 and len(train) == 79_200
    assert np.array_equal(np.sort(np.concatenate([train, val])), ids)  # a partition
    pieces = np.split(val, D.VAL_PIECES)
    ends = [p[-1] + 1 for p in pieces]
    assert ends == [80_000 * (j + 1) // D.VAL_PIECES for j in range(D.VAL_PIECES)]


def test_split_is_deterministic_across_loads_caches_and_seq_lens(
    text_file: Path, tmp_path: Path
) -> None:
    a = load_corpus(DataConfig(source="text", path=str(text_file), val_tokens=VAL,
                               cache_dir=str(tmp_path / "a")))  # fmt: skip
    b = load_corpus(DataConfig(source="text", path=str(text_file), val_tokens=VAL,
                               cache_dir=str(tmp_path / "b")))  # fmt: skip
    assert a.corpus_id == b.corpus_id
    assert np.array_equal(a.val, b.val) and np.array_equal(a.train, b.train)
    for seq_len in (1, 7, 128, 1000, 4096):
        w = val_windows(a, seq_len)
        assert w.shape[1] == seq_len + 1 and w.dtype == torch.int64
        assert w.shape[0] * seq_len >= VAL  # at least val_tokens targets at any seq_len <= 4096
        # stride seq_len: consecutive windows share one token; targets are the val tokens, once
        assert torch.equal(w[1:, 0], w[:-1, -1])
        targets = w[:, 1:].reshape(-1).numpy()
        assert np.array_equal(targets, a.val[1 : 1 + len(targets)])


def test_folder_with_pattern_skips_hidden_and_binary(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "a.txt").write_text(_text(8000, 1))
    (root / "sub" / "b.md").write_text(_text(8000, 2))
    (root / "c.py").write_text(_text(8000, 3))
    (root / ".git" / "HEAD.txt").write_text("hidden " * 1000)
    (root / "blob.txt").write_bytes(b"\x00\x01" * 5000)
    corpus = load_corpus(_cfg(tmp_path, source="text", path=str(root)))
    expected = "".join((root / p).read_text() for p in ("a.txt", "c.py", "sub/b.md"))
    assert bytes(_stream(corpus).astype(np.uint8)).decode() == expected
    only_md = load_corpus(
        _cfg(tmp_path, source="text", path=str(root), pattern="**/*.md,**/*.py", val_tokens=100)
    )
    expected = "".join((root / p).read_text() for p in ("c.py", "sub/b.md"))
    assert bytes(_stream(only_md).astype(np.uint8)).decode() == expected


def test_glob_source(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"part{i}.txt").write_text(_text(3000, i))  # no trailing newline issue
    (tmp_path / "other.md").write_text("not matched\n" * 1000)
    corpus = load_corpus(_cfg(tmp_path, source="text", path=str(tmp_path / "part*.txt")))
    expected = "".join((tmp_path / f"part{i}.txt").read_text() for i in range(3))
    assert bytes(_stream(corpus).astype(np.uint8)).decode() == expected


def test_documents_are_newline_terminated(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x" * 3000)
    (tmp_path / "b.txt").write_text("y" * 3000)
    corpus = load_corpus(_cfg(tmp_path, source="text", path=str(tmp_path / "*.txt"), val_tokens=1))
    assert bytes(_stream(corpus).astype(np.uint8)) == b"x" * 3000 + b"\n" + b"y" * 3000 + b"\n"


@pytest.mark.parametrize("path", ["nowhere.txt", "nowhere/*.txt"])
def test_missing_path_names_data_path(path: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.path=.*nowhere"):
        load_corpus(_cfg(tmp_path, source="text", path=str(tmp_path / path)))


def test_folder_without_matching_files_names_pattern(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.bin").write_text("x")
    with pytest.raises(ConfigError, match=r"data\.path=.* data\.pattern='\*\*/\*\.txt'"):
        load_corpus(_cfg(tmp_path, source="text", path=str(tmp_path / "d"), pattern="**/*.txt"))


def test_empty_corpus_is_a_data_error_naming_the_path(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(DataError, match=r"data\.path=.*empty\.txt holds no text \(0 tokens\)"):
        load_corpus(_cfg(tmp_path, source="text", path=str(empty)))


def test_too_small_corpus_says_how_big_it_must_be(tmp_path: Path) -> None:
    small = tmp_path / "small.txt"
    small.write_text(_text(4500))  # fits 10 + 4096 validation tokens, not 1000 + 4096
    with pytest.raises(DataError, match=r"small\.txt holds [\d,]+ tokens: it must hold at least"):
        load_corpus(_cfg(tmp_path, source="text", path=str(small)))
    fits = load_corpus(_cfg(tmp_path, source="text", path=str(small), val_tokens=10))
    with pytest.raises(DataError, match=r"model\.seq_len=4096"):
        load_corpus(_cfg(tmp_path, source="text", path=str(small), val_tokens=10), seq_len=4096)
    assert len(fits.train) > 0


# ------------------------------------------------------------------------------------ cache


def test_cached_load_does_not_retokenize(text_file: Path, tmp_path: Path, monkeypatch) -> None:
    cfg = _cfg(tmp_path, source="text", path=str(text_file))
    first = load_corpus(cfg)
    (entry,) = (tmp_path / "cache" / "tokens").iterdir()
    mtime = (entry / "tokens.bin").stat().st_mtime_ns

    def boom(*args, **kwargs):
        raise AssertionError("re-tokenized a cached corpus")

    monkeypatch.setattr(cache, "byte_tokens", boom)
    monkeypatch.setattr(source_files, "read_text", boom)
    again = load_corpus(cfg)
    assert (entry / "tokens.bin").stat().st_mtime_ns == mtime
    assert again.corpus_id == first.corpus_id and np.array_equal(again.val, first.val)
    assert not [p for p in entry.iterdir() if p.name.startswith(".")]  # no temp files left


def test_changed_source_is_retokenized(text_file: Path, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, source="text", path=str(text_file))
    before = load_corpus(cfg)
    text_file.write_text(_text(40_000, seed=7))
    after = load_corpus(cfg)
    assert after.corpus_id != before.corpus_id
    assert bytes(_stream(after).astype(np.uint8)) == text_file.read_bytes()


def test_truncated_cache_is_rebuilt(text_file: Path, tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, source="text", path=str(text_file))
    expected = np.array(load_corpus(cfg).train)  # a copy: the memmap dies with the file
    (entry,) = (tmp_path / "cache" / "tokens").iterdir()
    with open(entry / "tokens.bin", "r+b") as f:  # as if a writer had died half-way
        f.truncate(100)
    assert np.array_equal(load_corpus(cfg).train, expected)


def _load_in_child(args: tuple[str, str]) -> tuple[str, list[int]]:
    path, cache_dir = args
    corpus = load_corpus(DataConfig(source="text", path=path, val_tokens=VAL, cache_dir=cache_dir))
    return corpus.corpus_id, corpus.val[:50].tolist()


def test_parallel_first_use_is_safe(text_file: Path, tmp_path: Path) -> None:
    args = (str(text_file), str(tmp_path / "cache"))
    with mp.get_context("fork").Pool(2) as pool:
        a, b = pool.map(_load_in_child, [args, args])
    assert a == b
    serial = load_corpus(_cfg(tmp_path, source="text", path=str(text_file)))
    assert a[0] == serial.corpus_id and a[1] == serial.val[:50].tolist()


# -------------------------------------------------------------------------------------- bpe


def test_bpe_trains_round_trips_and_is_cached(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "corpus.txt"
    text = _text(60_000) + "def f(x):\n    return {'ü': x ** 2}  # ⚡\n" * 50
    path.write_text(text, encoding="utf-8")
    cfg = _cfg(tmp_path, source="text", path=str(path), tokenizer="bpe", vocab_size=300)
    corpus = load_corpus(cfg)
    assert corpus.vocab_size == 300 and corpus.tokenizer_id.startswith("bpe300-")
    meta = json.loads(next((tmp_path / "cache" / "tokens").glob("*/meta.json")).read_text())
    tok = D.load_tokenizer(meta["tokenizer_path"])
    assert tok.get_vocab_size() == 300
    stream = _stream(corpus)
    assert stream.max() < 300
    assert len(stream) < 0.7 * len(text.encode())  # merges compress the text
    assert tok.decode(stream.tolist()) == text  # lossless

    # Another validation size re-tokenizes but reuses the trained tokenizer.
    monkeypatch.setattr(
        tokenizer, "train_bpe", lambda *a, **k: pytest.fail("retrained the tokenizer")
    )
    other = load_corpus(_cfg(tmp_path, source="text", path=str(path), tokenizer="bpe",
                             vocab_size=300, val_tokens=2 * VAL))  # fmt: skip
    assert other.tokenizer_id == corpus.tokenizer_id
    assert np.array_equal(_stream(other), stream)


# --------------------------------------------------------------------------------------- hf


def test_hf_local_text_keeps_line_breaks(text_file: Path, tmp_path: Path) -> None:
    corpus = load_corpus(_cfg(tmp_path, source="hf", name="text", data_files=str(text_file)))
    assert bytes(_stream(corpus).astype(np.uint8)) == text_file.read_bytes()
    assert corpus.corpus_id.startswith("hf-text-")
    assert (tmp_path / "cache" / "hf").is_dir()  # the HF cache lives under cache_dir


def test_hf_local_json_with_text_field(tmp_path: Path) -> None:
    docs = [_text(300, i) for i in range(40)]
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"id": i, "body": d.rstrip("\n")}) + "\n"
                            for i, d in enumerate(docs)))  # fmt: skip
    cfg = _cfg(tmp_path, source="hf", name="json", data_files=[str(path)], text_field="body")
    corpus = load_corpus(DataConfig(**{**cfg.__dict__, "val_tokens": 500}))
    assert bytes(_stream(corpus).astype(np.uint8)).decode() == "".join(docs)
    with pytest.raises(ConfigError, match=r"data\.text_field='text' is not a column.*body"):
        load_corpus(_cfg(tmp_path, source="hf", name="json", data_files=[str(path)]))


def test_hf_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.data_files=.*nope.*matches no file"):
        load_corpus(_cfg(tmp_path, source="hf", name="text", data_files=str(tmp_path / "nope")))
    bad = tmp_path / "bad.json"
    bad.write_text("this is not json\n")
    with pytest.raises(DataError, match=r"data\.name=json .*could not be loaded"):
        load_corpus(_cfg(tmp_path, source="hf", name="json", data_files=str(bad)))


# ----------------------------------------------------------------------------------- markov


def test_markov_entropy_rate_matches_generated_tokens(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, source="markov", states=16, concentration=0.3, corpus_tokens=400_000)
    corpus = load_corpus(cfg)
    assert corpus.vocab_size == 16 and corpus.tokenizer_id == "markov16"
    P = markov_chain(16, 0.3, 0)
    pi = stationary_distribution(P)
    assert np.allclose(pi @ P, pi) and np.isclose(pi.sum(), 1)
    h = corpus.entropy_rate
    assert h == pytest.approx(entropy_rate(P)) and 0 < h < np.log(16)
    assert corpus.describe()["data.entropy_rate"] == h

    s = _stream(corpus)
    counts = np.zeros((16, 16))
    np.add.at(counts, (s[:-1], s[1:]), 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cond = np.where(counts > 0, counts * np.log(counts / counts.sum(1, keepdims=True)), 0)
    h_empirical = -cond.sum() / counts.sum()
    assert h_empirical == pytest.approx(h, abs=0.01)
    assert np.abs(counts.sum(1) / counts.sum() - pi).max() < 0.01  # stationary visits


def test_markov_is_seeded_and_the_knob_controls_entropy(tmp_path: Path) -> None:
    a = sample_markov(markov_chain(8, 0.5, 1), 5000, 1)
    b = sample_markov(markov_chain(8, 0.5, 1), 5000, 1)
    c = sample_markov(markov_chain(8, 0.5, 2), 5000, 2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    low = entropy_rate(markov_chain(64, 0.05, 0))
    high = entropy_rate(markov_chain(64, 5.0, 0))
    assert low < high < np.log(64)


# ---------------------------------------------------------------------------------- epochs


def test_train_epochs_and_allow_repeat(text_file: Path, tmp_path: Path) -> None:
    corpus = load_corpus(_cfg(tmp_path, source="text", path=str(text_file)))
    n = len(corpus.train)
    assert train_epochs(corpus, n // 2, allow_repeat=False) == pytest.approx(0.5)
    assert train_epochs(corpus, int(3.2 * n), allow_repeat=True) == pytest.approx(3.2, rel=1e-3)
    with pytest.raises(ConfigError, match=r"train\.tokens=\d+ needs 3\.2 epochs .*allow_repeat"):
        train_epochs(corpus, int(3.2 * n), allow_repeat=False)


# --------------------------------------------------------------------------------- batches


def test_token_batches_are_shifted_windows() -> None:
    tokens = np.arange(1001, dtype=np.uint16)
    ds = TokenBatches(tokens, seq_len=10, n_sequences=100, seed=0)
    starts = sorted(ds.window_start(i) for i in range(100))
    assert starts == list(range(0, 1000, 10))  # epoch 0: every window once, no overlap
    x, y = ds[3]
    assert x.dtype == torch.int64 and x.shape == (10,) and torch.equal(y, x + 1)


def test_token_batches_seeded_and_resumable() -> None:
    tokens = np.random.default_rng(0).integers(0, 256, size=5000).astype(np.uint16)
    full = TokenBatches(tokens, seq_len=16, n_sequences=1000, seed=3)  # ~3.2 epochs
    items = [full[i] for i in range(len(full))]
    again = TokenBatches(tokens, seq_len=16, n_sequences=1000, seed=3)
    assert all(torch.equal(items[i][0], again[i][0]) for i in (0, 500, 999))
    other = TokenBatches(tokens, seq_len=16, n_sequences=1000, seed=4)
    assert not torch.equal(torch.stack([other[i][0] for i in range(8)]),
                           torch.stack([items[i][0] for i in range(8)]))  # fmt: skip
    for k in (1, 312, 313, 700):
        resumed = TokenBatches(tokens, seq_len=16, n_sequences=1000, seed=3, start=k)
        assert len(resumed) == 1000  # Lightning's restored batch counter needs the full length
        for j in (0, 1, 1000 - k - 1):
            assert torch.equal(resumed[j][0], items[k + j][0])
            assert torch.equal(resumed[j][1], items[k + j][1])
    # later epochs reshuffle and shift the window grid
    per_epoch = (len(tokens) - 1) // 16
    e0 = {full.window_start(i) for i in range(per_epoch)}
    e1 = [full.window_start(i) for i in range(per_epoch, 2 * per_epoch - 1)]
    assert e0 != set(e1) and len(set(e1)) == len(e1)
    assert all(s + 17 <= len(tokens) for s in map(full.window_start, range(1000)))


def test_token_batches_too_short() -> None:
    with pytest.raises(DataError, match=r"model\.seq_len\+1=65"):
        TokenBatches(np.zeros(64, dtype=np.uint16), seq_len=64, n_sequences=1, seed=0)


def test_datamodule_batches(text_file: Path, tmp_path: Path) -> None:
    corpus = load_corpus(_cfg(tmp_path, source="text", path=str(text_file)))
    dm = TokenDataModule(corpus, seq_len=32, micro_batch_size=4, n_sequences=10, seed=0)
    batches = list(dm.train_dataloader())
    assert len(batches) == 2  # drop_last
    x, y = batches[0]
    assert x.shape == (4, 32) and y.shape == (4, 32) and torch.equal(x[:, 1:], y[:, :-1])
    resumed = TokenDataModule(corpus, 32, 4, 10, seed=0, start_sequence=4)
    assert torch.equal(next(iter(resumed.train_dataloader()))[0], batches[1][0])


# ----------------------------------------------------------------------------------- stdlib


def test_stdlib_corpus_with_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import scaling.training.data.cache as cache

    files = stdlib_files()
    assert len(files) > 500 and not any("site-packages" in str(p) for p in files)
    cfg = _cfg(tmp_path, val_tokens=32768)
    corpus = load_corpus(cfg)

    def no_second_tokenization(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the corpus was tokenized again instead of read from the cache")

    monkeypatch.setattr(cache, "build_entry", no_second_tokenization)
    again = load_corpus(cfg)  # the cache, not a second pass over ~31 MB (was a timed assert)
    assert corpus.corpus_id.startswith(f"stdlib-{os.sys.version_info[0]}.")
    assert len(corpus.train) > 10_000_000  # ~31 MB of source
    assert len(corpus.val) == 32768 + MAX_EVAL_SEQ_LEN
    assert np.array_equal(again.val, corpus.val) and again.corpus_id == corpus.corpus_id
    head = bytes(np.asarray(corpus.train[:10_000], dtype=np.uint8)).decode(errors="replace")
    assert "import" in head or "def " in head
