"""Run identity: a run key names the training -- nothing more, nothing less.

Keys of prepared runs (``training.prepare.prepare``): the canonical training config plus the
corpus's content identity and the tokenizer's. Every config key is classified below as in the key,
out of it, or reaching it through the corpus's content; a new key fails the first test until it
is.
"""

from __future__ import annotations

import random
import shutil
from dataclasses import fields
from pathlib import Path

import pytest

from scaling.config import GROUPS, TOP_LEVEL_KEYS, build_run_config
from scaling.identity import DataIdentity, canonical, run_key, run_name
from tests.conftest import CONF, TINY, run_module

# ---- a small corpus of our own ----------------------------------------------------------------

_SYLLABLES = "ka lo mi ne ru ta shi po ve da gu ze fi ho ja".split()


def corpus_text(seed: int = 0, size: int = 48_000) -> str:
    """Word-like text, deterministic in ``seed``: 48 KB hold the 8,192 validation tokens of
    TINY's ``data.val_tokens=4096`` and 20,000 training tokens (no repeat) as bytes, and enough
    for a small BPE."""
    rng = random.Random(seed)
    words = ["".join(rng.choices(_SYLLABLES, k=rng.randint(1, 3))) for _ in range(300)]
    lines, n = [], 0
    while n < size:
        line = " ".join(rng.choices(words, k=rng.randint(4, 12))) + ".\n"
        lines.append(line)
        n += len(line)
    return "".join(lines)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "a" / "corpus.txt"
    path.parent.mkdir()
    path.write_text(corpus_text())
    return path


@pytest.fixture
def key(compose, corpus):  # type: ignore[no-untyped-def]
    """key(*overrides) -> the run key of the prepared TINY run on ``corpus`` with overrides."""
    from scaling.training.prepare import prepare

    def _key(*overrides: str, path: str | Path = corpus) -> str:
        prep = prepare(compose("data=text", f"data.path={path}", *overrides), check_tracking=False)
        assert prep.key == run_key(prep.cfg) and prep.name == run_name(prep.cfg)
        assert prep.cfg.data_identity is not None
        return prep.key

    return _key


# ---- every config key: in the key, out of it, or through the corpus's content ----------------

# A change of each of these trains something else: a new key.
KEY_IN = {
    "model.seq_len": "model.seq_len=16",
    "model.n_layer": "model.n_layer=2",
    "model.d_model": "model.d_model=64",
    "model.n_head": "model.n_head=4",
    "model.d_ff": "model.d_ff=64",
    "model.pos": "model.pos=rope",
    "model.norm": "model.norm=rmsnorm",
    "model.mlp": "model.mlp=swiglu",
    "model.bias": "model.bias=false",
    "model.dropout": "model.dropout=0.1",
    "model.tie_embeddings": "model.tie_embeddings=false",
    "data.val_tokens": "data.val_tokens=2048",
    "data.tokenizer": "data.tokenizer=bpe data.vocab_size=300",
    "train.tokens": "train.tokens=40000",
    "train.batch_size": "train.batch_size=16",
    "train.micro_batch_size": "train.micro_batch_size=4",
    "train.lr": "train.lr=1e-3",
    "train.min_lr_ratio": "train.min_lr_ratio=0.2",
    "train.warmup": "train.warmup=0.1",
    "train.schedule": "train.schedule=wsd",
    "train.warmup_steps": "train.warmup_steps=3",
    "train.horizons": "train.schedule=wsd train.horizons=[10000,20000]",  # a group of branches
    "train.weight_decay": "train.weight_decay=0",
    "train.beta1": "train.beta1=0.8",
    "train.beta2": "train.beta2=0.99",
    "train.grad_clip": "train.grad_clip=0.5",
    "train.precision": "train.precision=bf16-mixed",
    "trainer.devices": "trainer.devices=2",  # as the world size: how the global batch is split
    "trainer.num_nodes": "trainer.num_nodes=4",  # devices=2 and num_nodes=2: one world size
    "seed": "seed=1",
}

# The same training under another spelling, cadence, monitoring or destination: the same key.
KEY_OUT = {
    "model.aspect": "model.aspect=8",  # d_model and n_head are set
    "model.head_dim": "model.head_dim=8",
    "data.allow_repeat": "data.allow_repeat=false",
    "data.cache_dir": "data.cache_dir={tmp}/other-cache",
    "data.vocab_size": "data.vocab_size=8192",  # the byte tokenizer ignores it
    "train.flops": "train.tokens=null train.flops=2633859072",  # 6 N D: the same 19,968 tokens
    "train.flops_convention": "train.flops_convention=chinchilla",  # train.tokens is set
    "train.cooldown": "train.cooldown=0.5",  # cosine ignores it
    "train.eval_points": "train.eval_points=2",
    "train.log_every": "train.log_every=1",
    "train.checkpoint_every": "train.checkpoint_every=7",
    "train.checkpoint_min_s": "train.checkpoint_min_s=0",
    # read only under train.lr=auto / batch_size=auto, whose resolved numbers are in the key
    "train.hparams_rule": "train.hparams_rule={tmp}/rule.json",
    # warn and stop never change what a run trains (only skip does: below)
    "train.spike": "train.spike.action=stop train.spike.window=64 train.spike.threshold=3",
    # without dropout a compiled run trains the eager run to rounding (README, train.compile)
    "train.compile": "train.compile=true",
    "train.compile_mode": "train.compile=true train.compile_mode=max-autotune",
    "tracking.uri": "tracking.uri=sqlite:///{tmp}/other.db",
    "tracking.experiment": "tracking.experiment=other",
    "trainer.accelerator": "trainer.accelerator=auto",
    "trainer.strategy": "trainer.strategy=ddp",
    "threads": "threads=2",
    "progress": "progress=true",
    "results_dir": "results_dir={tmp}/elsewhere",
}

# What the text is and how it is tokenized reaches the key as the corpus's content identity and
# the tokenizer's (tested below by content), never as these keys' text.
KEY_BY_CONTENT = {
    "model.vocab_size",  # set from the tokenizer
    "data.source",
    "data.path",
    "data.pattern",
    "data.name",
    "data.config",
    "data.data_files",
    "data.split",
    "data.text_field",
    "data.states",
    "data.concentration",
    "data.markov_seed",
    "data.corpus_tokens",
    # the processing reaches the key as the processed corpus's identity: a hash of the processed
    # text and of DataConfig.processing() (the listed stages and their parameters only)
    "data.process",
    "data.dedup_exact",
    "data.dedup_near",
    "data.filter_length",
    "data.filter_quality",
}


def test_every_config_key_is_classified() -> None:
    every = {f"{g}.{f.name}" for g, cls in GROUPS.items() for f in fields(cls)}
    every |= set(TOP_LEVEL_KEYS)
    classified = [*KEY_IN, *KEY_OUT, *KEY_BY_CONTENT]
    assert len(classified) == len(set(classified))  # each in one class
    assert set(classified) == every


def test_each_training_change_gives_a_new_key(key) -> None:  # type: ignore[no-untyped-def]
    base = key()
    keys = {name: key(*override.split()) for name, override in KEY_IN.items()}
    assert base not in keys.values()
    assert len(set(keys.values())) == len(keys)


def test_cadence_monitoring_and_destinations_keep_the_key(key, tmp_path) -> None:  # type: ignore[no-untyped-def]
    base = key()
    for name, override in KEY_OUT.items():
        assert key(*override.format(tmp=tmp_path).split()) == base, name


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("train.lr=1", "train.lr=1.0"),
        ("train.weight_decay=0", "train.weight_decay=0.0"),
        ("train.lr=1e-3", "train.lr=0.001"),
        ("train.tokens=2e4", "train.tokens=20000"),
        ("train.micro_batch_size=null", "train.micro_batch_size=8"),  # TINY's batch_size
        ("model.d_ff=null", "model.d_ff=128"),  # 4 x d_model, the gelu default
        ("model.dropout=0", "model.dropout=0.0"),
        ("train.grad_clip=1", "train.grad_clip=1.0"),
    ],
)
def test_spellings_of_one_value_give_one_key(key, a, b) -> None:  # type: ignore[no-untyped-def]
    assert key(a) == key(b)


def test_skipping_spikes_changes_the_key_and_so_do_its_settings(key) -> None:  # type: ignore[no-untyped-def]
    skip = key("train.spike.action=skip")
    assert skip != key()  # skipped updates train something else than warn's run
    assert key("train.spike.action=skip", "train.spike.window=64") != skip
    assert key("train.spike.action=skip", "train.spike.threshold=4") != skip
    assert key("train.spike.action=off") == key() == key("train.spike.action=stop")
    assert key("train.spike.action=skip", "train.spike.max_rollbacks=5") == skip  # unread


def test_rolling_back_changes_the_key_and_so_does_its_limit(key) -> None:  # type: ignore[no-untyped-def]
    rollback = key("train.spike.action=rollback")
    assert rollback not in (key(), key("train.spike.action=skip"))  # restores, not only skips
    assert key("train.spike.action=rollback", "train.spike.max_rollbacks=0") != rollback
    assert key("train.spike.action=rollback", "train.spike.window=64") != rollback


def test_compiling_a_model_with_dropout_changes_the_key(key) -> None:  # type: ignore[no-untyped-def]
    dropout = key("model.dropout=0.1")
    compiled = key("model.dropout=0.1", "train.compile=true")
    assert compiled != dropout  # compiled code draws other dropout masks: another run
    assert key("model.dropout=0.1", "train.compile=true", "train.compile_mode=lite") == compiled


def test_the_cooldown_counts_under_wsd(key) -> None:  # type: ignore[no-untyped-def]
    assert key("train.schedule=wsd") != key("train.schedule=wsd", "train.cooldown=0.5")


def test_a_path_is_replaced_by_the_content_it_names(key, corpus, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    base = key(path=corpus)  # absolute
    monkeypatch.chdir(tmp_path)
    assert key(path="a/corpus.txt") == base  # relative
    assert key(path="a") == base  # the folder holding it
    monkeypatch.chdir(corpus.parent)
    assert key(path="corpus.txt") == base  # the same file from another working directory
    copy = tmp_path / "b" / "renamed.txt"
    copy.parent.mkdir()
    shutil.copy(corpus, copy)
    assert key(path=copy) == base  # copied elsewhere under another name: the same text

    other = tmp_path / "c"  # the same relative path from another folder, other text
    (other / "a").mkdir(parents=True)
    (other / "a" / "corpus.txt").write_text(corpus_text(seed=1))
    monkeypatch.chdir(other)
    assert key(path="a/corpus.txt") != base
    (other / "a" / "corpus.txt").write_text(corpus_text())  # ... and with the same text
    assert key(path="a/corpus.txt") == base


def test_an_edited_corpus_is_another_run(key, corpus) -> None:  # type: ignore[no-untyped-def]
    base = key()
    text = corpus.read_text()
    corpus.write_text(text.replace("\n", " \n", 1))  # one byte more
    edited = key()
    assert edited != base
    corpus.write_text(text.replace("ka", "lo", 1))  # the same size, other text
    assert key() not in (base, edited)
    corpus.write_text(text)  # back: a new mtime, the old content
    assert key() == base


def test_tokenizers_are_identified_by_type_and_vocabulary(key) -> None:  # type: ignore[no-untyped-def]
    byte = key("data.tokenizer=byte")
    bpe300 = key("data.tokenizer=bpe", "data.vocab_size=300")
    bpe320 = key("data.tokenizer=bpe", "data.vocab_size=320")
    assert len({byte, bpe300, bpe320}) == 3
    assert key("data.tokenizer=bpe", "data.vocab_size=300.0") == bpe300


def test_a_synthetic_corpus_is_identified_by_its_tokens(compose) -> None:  # type: ignore[no-untyped-def]
    from scaling.training.prepare import prepare

    def markov(*overrides: str) -> str:
        small = ["data=markov", "data.states=16", "data.corpus_tokens=30000"]
        return prepare(compose(*small, *overrides), check_tracking=False).key

    base = markov()
    assert markov("data.markov_seed=1") != base
    assert markov("data.states=17") != base
    assert markov("data.vocab_size=99", "data.path=ignored.txt") == base  # keys it never reads


def test_the_prepared_identity_names_content_not_place(compose, corpus) -> None:  # type: ignore[no-untyped-def]
    from scaling.training.prepare import prepare

    prep = prepare(compose("data=text", f"data.path={corpus}"), check_tracking=False)
    ident = prep.cfg.data_identity
    assert ident == DataIdentity(
        corpus=prep.corpus.corpus_id.rsplit("-", 1)[-1], tokenizer="byte", split="8x8192"
    )
    identity = prep.cfg.identity()
    assert set(identity["data"]) == {"corpus", "tokenizer", "split"}
    assert str(corpus.parent) not in str(identity)  # no path anywhere in the key


def test_canonical_numbers() -> None:
    assert canonical({"a": 1.0, "b": [0.0, 2, 1e-3], "c": (True, None, "x")}) == {
        "a": 1,
        "b": [0, 2, 0.001],
        "c": [True, None, "x"],
    }
    assert canonical(10**18 * 1.0) == 10**18


def test_an_unprepared_config_has_a_provisional_key_with_absolute_paths(
    compose, tmp_path, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    relative = build_run_config(compose("data=text", "data.path=a/corpus.txt"))
    absolute = build_run_config(compose("data=text", f"data.path={tmp_path}/a/corpus.txt"))
    assert relative.data_identity is None and run_key(relative) == run_key(absolute)
    byte = build_run_config(compose("data.vocab_size=8192"))
    assert run_key(byte) == run_key(build_run_config(compose()))


# ---- the grid: one launch per key -------------------------------------------------------------


def _grid_points(tmp_path: Path, shared_cache: Path, varying: list[list[str]]):  # type: ignore[no-untyped-def]
    """validate_grid over ``varying`` (one list per job) in-process, as the driver runs it."""
    from hydra import compose, initialize_config_dir

    from scaling.config import register_configs
    from scaling.training.sweep_grid import validate_grid

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(corpus_text())
    base = [
        *TINY,
        "data=text",
        f"data.path={corpus}",
        f"data.cache_dir={shared_cache}",
        f"results_dir={tmp_path / 'results'}",
    ]
    jobs = [base + job for job in varying]
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        master = compose("sweep", overrides=[], return_hydra_config=True)
        return validate_grid(master, jobs)


def test_the_grid_drops_points_with_a_key_it_already_has(tmp_path, shared_cache) -> None:  # type: ignore[no-untyped-def]
    from scaling.training.sweep_grid import duplicates_line, plan_table
    from scaling.training.sweep_jobs import duplicate_of, duplicates_table

    varying = [
        ["train.lr=1", "train.log_every=5"],
        ["train.lr=1.0", "train.log_every=5"],
        ["train.lr=2", "train.log_every=5"],
        ["train.lr=1", "train.log_every=1"],
    ]
    points, errors = _grid_points(tmp_path, shared_cache, varying)
    assert errors == []
    assert [(p.job, p.duplicate_jobs) for p in points] == [(0, (1, 3)), (2, ())]
    assert points[0].duplicate_labels == (
        "train.lr=1.0 train.log_every=5",
        "train.lr=1 train.log_every=1",
    )
    line = duplicates_line(points)
    assert line is not None and line.startswith("2 duplicate grid points dropped")
    assert "\n" not in line
    plan = plan_table(points)
    assert "2 runs," in plan and plan.endswith(line)

    table = duplicates_table(points)
    assert duplicate_of(1, table) == duplicate_of(3, table) == (points[0].key, points[0].name, 0)
    assert duplicate_of(0, table) is None and duplicate_of(2, table) is None
    assert duplicates_table(points[1:]) == {}  # a later grid without duplicates has none
    assert duplicates_line(points[1:]) is None


@pytest.mark.slow
def test_a_grid_of_one_training_spelled_twice_trains_once(tmp_path) -> None:
    from mlflow import MlflowClient

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(corpus_text())
    common = [*TINY, "data=text", f"data.path={corpus}", f"results_dir={tmp_path / 'results'}",
              "sweep.fit=false"]  # fmt: skip

    plan = run_module(tmp_path, "scaling.sweep", "-m", *common, "train.lr=1,1.0",
                      "sweep.dry_run=true")  # fmt: skip
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert "1 runs," in plan.stdout and "1 duplicate grid point dropped" in plan.stdout
    assert "train.lr=1.0 = L1-" in plan.stdout

    out = run_module(tmp_path, "scaling.sweep", "-m", *common, "train.weight_decay=0,0.0")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "1 finished, 0 skipped" in out.stdout, out.stdout
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("scaling")
    found = client.search_runs([exp.experiment_id])
    assert [r.info.status for r in found] == ["FINISHED"]  # one run, trained once
