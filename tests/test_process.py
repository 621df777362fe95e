"""Processing between source and tokenizer (scaling/training/data/process.py, ``data.process``):
dedup and filters, their cache and report, the processed corpus's identity, a clean split."""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from scaling.config import DataConfig, build_run_config
from scaling.errors import ConfigError
from scaling.identity import run_key
from scaling.sources import make_source
from scaling.sources.sitepackages import sitepackages_files
from scaling.training.data import load_corpus, process
from scaling.training.data.minhash import shingle_hashes, signatures_of
from scaling.training.data.process import load_processed, process_documents
from scaling.training.data.stages import holdout_duplicates

VAL = 1000  # data.val_tokens: the validation part holds VAL + 4096 tokens

# ---- a corpus with planted duplicates ---------------------------------------------------------

_LETTERS = "abcdefghijklmnopqrstuvwxyz"


class Planted:
    """``n`` distinct documents, then exact copies and near copies (a few words substituted,
    one deleted) of some of them, in a shuffled order after the originals."""

    def __init__(self, n: int = 300, exact: int = 60, near: int = 60, seed: int = 0) -> None:
        rng = random.Random(seed)
        vocab = ["".join(rng.choices(_LETTERS, k=rng.randint(2, 9))) for _ in range(5000)]

        def doc() -> str:
            lines = [" ".join(rng.choices(vocab, k=rng.randint(8, 14))) for _ in range(30)]
            return "\n".join(lines) + "\n"

        def edit(text: str) -> str:
            words = text.split(" ")
            for _ in range(3):
                words[rng.randrange(len(words))] = rng.choice(vocab)
            del words[rng.randrange(len(words))]
            return " ".join(words)

        self.originals = [doc() for _ in range(n)]
        picks = rng.sample(range(n), exact + near)
        copies = [(self.originals[i], "exact") for i in picks[:exact]]
        copies += [(edit(self.originals[i]), "near") for i in picks[exact:]]
        rng.shuffle(copies)
        self.docs = self.originals + [text for text, _ in copies]
        self.kind = ["original"] * n + [kind for _, kind in copies]

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for i, text in enumerate(self.docs):  # originals sort first: dedup keeps first copies
            (folder / f"doc{i:05d}.txt").write_text(text)
        return folder

    def removed_share(self, kept: list[int], kind: str) -> float:
        ids = [i for i, k in enumerate(self.kind) if k == kind]
        kept_set = set(kept)
        return sum(i not in kept_set for i in ids) / len(ids)


@pytest.fixture(scope="module")
def planted() -> Planted:
    return Planted()


@pytest.fixture
def planted_dir(planted: Planted, tmp_path: Path) -> Path:
    return planted.write(tmp_path / "planted")


def _cfg(tmp_path: Path, **kw) -> DataConfig:  # type: ignore[no-untyped-def]
    kw.setdefault("val_tokens", VAL)
    return DataConfig(cache_dir=str(tmp_path / "cache"), **kw)


DEDUP = ["dedup_exact", "dedup_near"]


# ---- dedup ------------------------------------------------------------------------------------


def test_dedup_removes_planted_duplicates_and_nothing_else(planted: Planted) -> None:
    result = process_documents(planted.docs, DataConfig(process=DEDUP))
    exact = planted.removed_share(result.kept, "exact")
    near = planted.removed_share(result.kept, "near")
    false = planted.removed_share(result.kept, "original")
    assert exact >= 0.95, exact
    assert near >= 0.90, near
    assert false < 0.01, false
    by_stage = {s["stage"]: s for s in result.stages}
    assert by_stage["dedup_exact"]["docs_removed"] == 60  # every exact copy, by hash
    assert by_stage["dedup_near"]["docs_in"] == len(planted.docs) - 60
    # The report: documents and bytes in, out and removed, and examples of what went.
    for s in result.stages:
        assert s["docs_in"] - s["docs_out"] == s["docs_removed"]
        assert s["bytes_in"] - s["bytes_out"] == s["bytes_removed"] > 0
        assert 0 < len(s["examples"]) <= process.EXAMPLES
        assert all(len(e["text"]) <= process.EXAMPLE_CHARS for e in s["examples"])
    assert by_stage["dedup_near"]["examples"][0]["why"].startswith("near-duplicate of #")
    assert result.docs_out == len(result.kept) and result.signatures.shape == (
        result.docs_out,
        128,
    )


def test_near_dedup_alone_also_removes_exact_copies(planted: Planted) -> None:
    result = process_documents(planted.docs, DataConfig(process=["dedup_near"]))
    assert planted.removed_share(result.kept, "exact") >= 0.95
    assert planted.removed_share(result.kept, "original") < 0.01


def test_exact_dedup_can_ignore_whitespace() -> None:
    docs = ["a b  c\n", "a b c\n", "a\tb c  \n"]
    strict = process_documents(docs, DataConfig(process=["dedup_exact"]))
    loose = process_documents(
        docs, DataConfig(process=["dedup_exact"], dedup_exact={"normalize": True})
    )
    assert strict.kept == [0, 1, 2] and loose.kept == [0]


def test_shingles_are_deterministic_and_whitespace_blind() -> None:
    a = shingle_hashes("def f(x):\n    return x + 1\n", 3)
    b = shingle_hashes("def   f(x):\n\treturn x  +  1", 3)
    assert np.array_equal(a, b) and len(a) == 4  # 6 words: 4 three-word shingles
    assert len(shingle_hashes("", 5)) == 0 and len(shingle_hashes("two words", 5)) == 1
    # Known values, the same on every machine: a change of hashing is a new PROCESS_FORMAT.
    assert shingle_hashes("the quick brown fox jumps over the lazy dog", 3).tolist() == [
        771527872, 1153123187, 1272393345, 2199602742, 2330982191, 3197559869, 3263857155
    ]  # fmt: skip
    params = DataConfig().dedup_near
    sigs = list(signatures_of(["x y z " * 20, "x y z " * 20, ""], params))
    assert sigs[2] is None and np.array_equal(sigs[0].hashvalues, sigs[1].hashvalues)


# ---- filters ----------------------------------------------------------------------------------

PROSE = (
    "The committee met on Tuesday to discuss the budget for the coming year. After a long "
    "debate, the members agreed to fund the library and to repair the old bridge near the "
    "river, which had been closed since the spring floods damaged its supports.\n"
)
CODE = (
    "# ## configuration helpers ##\n"
    "def load_configuration_from_environment(environment_variables):\n"
    "    # read every SCALING_* variable\n"
    "    return {k: v for k, v in environment_variables.items() if k.startswith('SCALING_')}\n"
)


def _kept(docs: list[str], **kw) -> list[int]:  # type: ignore[no-untyped-def]
    stage = next(iter(kw))
    return process_documents(docs, DataConfig(process=[stage], **kw)).kept


def test_length_filter() -> None:
    docs = ["x" * 10, "y" * 150, "z" * 2000]
    assert _kept(docs, filter_length={"min_chars": 100, "max_chars": 1000}) == [1]
    assert _kept(docs, filter_length={"min_chars": 0, "max_chars": None}) == [0, 1, 2]
    result = process_documents(
        docs, DataConfig(process=["filter_length"], filter_length={"min_chars": 100})
    )
    assert "10 characters < min_chars=100" in result.stages[0]["examples"][0]["why"]


def test_quality_filter_rules_on_prose() -> None:
    docs = {
        "prose": PROSE,
        "short words": "a b c d e f g h i j k l m n o p q r s t u v w x y z " * 4,
        "long words": "incomprehensibilities counterrevolutionaries " * 10,
        "symbols": "# Important heading ... continues here ... # another section ... # final "
        "remarks ...\n",
        "numbers": "1234 5678 9012 3456 7890 2345 6789 " * 5,
        "repeated lines": "buy cheap watches today\n" * 10 + PROSE,
        "code": CODE,
    }
    names = list(docs)
    result = process_documents(list(docs.values()), DataConfig(process=["filter_quality"]))
    assert [names[i] for i in result.kept] == ["prose"]
    reasons = result.stages[0]["reasons"]
    assert reasons == {"mean_word": 2, "symbol_ratio": 2, "alpha_words": 1, "dup_lines": 1}


def test_quality_filter_for_code_swaps_prose_rules_for_code_rules() -> None:
    docs = {
        "code": CODE,
        "repetitive code": "x = 1\n" * 10 + CODE,  # lines repeat in code: not a rule for it
        "minified": "var a=1;" * 200 + "\n",
        "wide": ("y = [" + "1, " * 50 + "]\n") * 20,
        "symbols": "{}[](),;: <>=+-*/ \n" * 50,
    }
    names = list(docs)
    cfg = DataConfig(process=["filter_quality"], filter_quality={"code": True})
    result = process_documents(list(docs.values()), cfg)
    assert [names[i] for i in result.kept] == ["code", "repetitive code"]
    reasons = result.stages[0]["reasons"]
    assert reasons == {"line_chars": 1, "mean_line_chars": 1, "alnum_frac": 1}


# ---- the cache --------------------------------------------------------------------------------


def test_processing_is_cached_and_reused(planted_dir, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cfg = _cfg(tmp_path, source="text", path=str(planted_dir), process=DEDUP)
    first = load_processed(cfg, make_source(cfg))
    assert first.built and first.report()["docs_in"] == 420
    meta = first.entry / "meta.json"
    mtime = meta.stat().st_mtime_ns

    def boom(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("processed again")

    monkeypatch.setattr(process, "process_documents", boom)
    again = load_processed(cfg, make_source(cfg))
    assert not again.built and np.array_equal(again.kept, first.kept)
    assert again.processed_id == first.processed_id and meta.stat().st_mtime_ns == mtime
    # Tokenizing it, twice, with two tokenizers: the processing is read, never run.
    byte = load_corpus(cfg)
    bpe = load_corpus(_cfg(tmp_path, **{**_kw(cfg), "tokenizer": "bpe", "vocab_size": 300}))
    assert byte.content_id == bpe.content_id == first.processed_id
    report = json.loads(Path(byte.report_path).read_text())
    assert report["processed_id"] == first.processed_id and report["holdout"]["val_docs"] > 0


def _kw(cfg: DataConfig) -> dict:  # type: ignore[type-arg]
    return {"source": cfg.source, "path": cfg.path, "process": list(cfg.process)}


def test_a_changed_stage_parameter_is_another_cache_entry(planted_dir, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = _cfg(tmp_path, source="text", path=str(planted_dir), process=DEDUP)
    a = load_processed(cfg, make_source(cfg))
    other = _cfg(tmp_path, **_kw(cfg), dedup_near={"threshold": 0.9})
    b = load_processed(other, make_source(other))
    assert b.built and a.entry != b.entry
    unused = _cfg(tmp_path, **_kw(cfg), filter_length={"min_chars": 5})  # a stage not listed
    assert not load_processed(unused, make_source(unused)).built


# ---- identity ---------------------------------------------------------------------------------


def test_the_processed_identity_differs_from_the_raw_and_follows_the_config(
    planted_dir, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    def ident(**kw):  # type: ignore[no-untyped-def]
        return load_corpus(_cfg(tmp_path, source="text", path=str(planted_dir), **kw)).identity()

    raw = ident()
    exact = ident(process=["dedup_exact"])
    both = ident(process=DEDUP)
    strict = ident(process=DEDUP, dedup_near={"threshold": 0.95})
    assert len({raw.corpus, exact.corpus, both.corpus, strict.corpus}) == 4
    # The same documents kept by another processing config are still another corpus.
    normalized = ident(process=["dedup_exact"], dedup_exact={"normalize": True})
    assert normalized.corpus != exact.corpus
    # ... and the same processing of the same text elsewhere is the same corpus.
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(planted_dir, copy)
    moved = load_corpus(_cfg(tmp_path, source="text", path=str(copy), process=DEDUP))
    assert moved.identity() == both


def test_the_provisional_key_holds_the_processing(compose) -> None:  # type: ignore[no-untyped-def]
    base = run_key(build_run_config(compose()))
    assert run_key(build_run_config(compose("data.process=[]"))) == base  # unchanged keys
    exact = run_key(build_run_config(compose("data.process=[dedup_exact]")))
    near = run_key(build_run_config(compose("data.process=[dedup_exact,dedup_near]")))
    tuned = run_key(
        build_run_config(
            compose("data.process=[dedup_exact,dedup_near]", "data.dedup_near.threshold=0.9")
        )
    )
    assert len({base, exact, near, tuned}) == 4
    # A stage's parameters count only when it is listed.
    assert run_key(build_run_config(compose("data.dedup_near.threshold=0.9"))) == base


def test_sitepackages_is_named_by_content_not_place(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import sysconfig

    files = {"pkg/__init__.py": "", "pkg/core.py": "x = 1\n" * 3000, "b/mod.py": "y = 2\n" * 3000}
    roots = []
    for name in ("env1/site-packages", "env2/lib/site-packages"):
        root = tmp_path / name
        for rel, text in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        (root / "pkg" / "__pycache__").mkdir()
        (root / "pkg" / "__pycache__" / "core.cpython-311.py").write_text("z")
        roots.append(root)
    listed = [str(p.relative_to(roots[0])) for p in sitepackages_files(roots[0])]
    assert listed == ["b/mod.py", "pkg/__init__.py", "pkg/core.py"]

    real = sysconfig.get_paths

    def ident(root: Path):  # type: ignore[no-untyped-def]
        monkeypatch.setattr(sysconfig, "get_paths", lambda: {**real(), "purelib": str(root)})
        cfg = _cfg(tmp_path, source="sitepackages", process=DEDUP, val_tokens=100)
        return load_corpus(cfg).identity()

    assert ident(roots[0]) == ident(roots[1])


def test_the_sitepackages_option_dedups_by_default(compose) -> None:  # type: ignore[no-untyped-def]
    cfg = build_run_config(compose("data=sitepackages"))
    assert cfg.data.source == "sitepackages" and cfg.data.process == DEDUP
    assert build_run_config(compose("data=sitepackages", "data.process=[]")).data.process == []
    assert sitepackages_files()  # this environment has packages


# ---- held-out hygiene -------------------------------------------------------------------------


def _full_lines(tokens: np.ndarray) -> list[str]:
    """Lines of a byte-token piece that it holds whole (its first and last may be cut)."""
    lines = bytes(tokens.astype(np.uint8)).decode("utf-8", errors="replace").split("\n")
    return [line for line in lines[1:-1] if line.strip()]


def _leaks(corpus) -> int:  # type: ignore[no-untyped-def]
    """Whole validation lines that also occur as lines of the training part. Each line of the
    planted corpus is unique to its document and its copies, so a leak is a copy that trains."""
    train = set(bytes(np.asarray(corpus.train, dtype=np.uint8)).decode().split("\n"))
    pieces = np.array_split(corpus.val, 8)
    return sum(line in train for piece in pieces for line in _full_lines(piece))


def test_no_validation_document_has_a_duplicate_in_training(planted_dir, tmp_path) -> None:  # type: ignore[no-untyped-def]
    raw = load_corpus(_cfg(tmp_path, source="text", path=str(planted_dir)))
    assert _leaks(raw) > 0  # the test can see a leak: the raw corpus has them
    clean = load_corpus(_cfg(tmp_path, source="text", path=str(planted_dir), process=DEDUP))
    assert _leaks(clean) == 0


def test_the_split_is_cleaned_of_what_dedup_missed(planted_dir, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """With LSH finding no candidate (as when banding misses a pair), near copies survive dedup;
    the held-out check compares each validation document with every training one and cuts the
    copies out of the training part."""
    import datasketch

    monkeypatch.setattr(datasketch.MinHashLSH, "query", lambda self, m: [])
    cfg = _cfg(tmp_path, source="text", path=str(planted_dir), process=DEDUP)
    corpus = load_corpus(cfg)
    assert corpus.processing["stages"]["dedup_near"]["docs_removed"] == 0
    holdout = corpus.processing["holdout"]
    assert holdout["docs_removed"] > 0 and holdout["bytes_removed"] > 0
    assert _leaks(corpus) == 0
    report = json.loads(Path(corpus.report_path).read_text())["holdout"]
    assert "duplicate of validation document" in report["examples"][0]["why"]
    described = corpus.describe()
    assert described["data.holdout.docs_removed"] == holdout["docs_removed"]


def test_holdout_duplicates_finds_exact_and_near_copies() -> None:
    rng = random.Random(1)
    words = ["".join(rng.choices(_LETTERS, k=6)) for _ in range(2000)]
    a = " ".join(rng.choices(words, k=400))
    b = " ".join(rng.choices(words, k=400))
    near = a.replace(a.split()[10], "changed", 1)
    docs = [a, b, a, near, "unrelated " + b[:200]]
    cfg = DataConfig(process=DEDUP)
    sigs = np.stack([m.hashvalues for m in signatures_of(docs, cfg.dedup_near)])
    found = holdout_duplicates(docs, np.array([0]), np.array([0, 1, 2, 3, 4]), cfg, sigs)
    assert found.keys() == {2, 3} and found[2] == (0, "exact") and found[3][1].startswith("near")
    exact_only = DataConfig(process=["dedup_exact"])
    assert holdout_duplicates(docs, np.array([0]), np.array([1, 2, 3]), exact_only, None) == {
        2: (0, "exact")
    }


# ---- bad parameters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        (["data.process=[dedup_fuzzy]"], r"^data\.process has an unknown stage 'dedup_fuzzy'"),
        (["data.process=[dedup_exact,dedup_exact]"], r"^data\.process names dedup_exact twice"),
        (["data.dedup_near.threshold=1.5"], r"^data\.dedup_near\.threshold=1\.5 must be"),
        (["data.dedup_near.num_perm=4"], r"^data\.dedup_near\.num_perm=4 must be"),
        (["data.dedup_near.ngram=0"], r"^data\.dedup_near\.ngram=0 must be"),
        (["data.dedup_near.threshold=high"], r"^data\.dedup_near\.threshold: .*'high'"),
        (
            ["data.filter_length.min_chars=500", "data.filter_length.max_chars=100"],
            r"^data\.filter_length\.max_chars=100 is less than",
        ),
        (["data.filter_length.min_chars=-1"], r"^data\.filter_length\.min_chars=-1 must be"),
        (["data.filter_quality.max_dup_lines=2"], r"^data\.filter_quality\.max_dup_lines=2"),
        (
            ["data.filter_quality.min_mean_word=8", "data.filter_quality.max_mean_word=4"],
            r"^data\.filter_quality\.max_mean_word=4 is less than",
        ),
        (["data=markov", "data.process=[dedup_exact]"], r"^data\.process works on documents"),
    ],
)
def test_bad_processing_parameters_are_one_line_before_anything_is_written(
    compose, tmp_path, overrides, pattern
) -> None:  # type: ignore[no-untyped-def]
    from scaling.training.prepare import prepare

    cache = tmp_path / "fresh-cache"
    with pytest.raises(ConfigError) as err:
        prepare(compose(*overrides, f"data.cache_dir={cache}"), check_tracking=False)
    message = str(err.value)
    assert re.search(pattern, message), message
    assert "\n" not in message
    assert not cache.exists()


# ---- a run records its processing -------------------------------------------------------------


@pytest.mark.slow
def test_a_run_logs_its_processing(compose, planted_dir, one_torch_thread) -> None:  # type: ignore[no-untyped-def]
    from mlflow import MlflowClient

    from scaling.training.prepare import prepare
    from scaling.training.run import train

    prep = prepare(compose("data=text", f"data.path={planted_dir}", "data.process=[dedup_exact]"))
    result = train(prep)
    assert result.status == "FINISHED"
    client = MlflowClient(tracking_uri=prep.cfg.tracking.uri)
    p = client.get_run(result.run_id).data.params
    assert p["data.processed_id"] == prep.corpus.content_id == prep.cfg.data_identity.corpus
    assert (p["data.docs_in"], p["data.docs_out"]) == ("420", "360")
    assert p["data.process.dedup_exact.docs_removed"] == "60"
    assert int(p["data.process.dedup_exact.bytes_removed"]) > 0
    assert "data.process.dedup_near.docs_removed" not in p
    assert p["data.holdout.docs_removed"] == "0"  # exact copies are gone before the split
    names = {a.path for a in client.list_artifacts(result.run_id)}
    assert "data_processing.json" in names
    report = json.loads(
        Path(client.download_artifacts(result.run_id, "data_processing.json")).read_text()
    )
    assert report["stages"][0]["stage"] == "dedup_exact" and report["docs_out"] == 360
