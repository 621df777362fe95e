"""The bad-input table: every input a user can get wrong stops before anything is written, with
one ``error:`` line that names the key, and exit status 2 (docs/ARCHITECTURE.md, "Contracts").

The table runs in-process through the entry point's own layers: Hydra composes the config (its
errors go through :func:`scaling.training.hydra_errors.hydra_config_errors`, as ``python -m
scaling.train`` does) and :func:`scaling.training.prepare.prepare` validates it (its UserError goes
through ``exit_on_user_error``). A handful of rows also run as real commands (marked slow), and
sweeps list every invalid grid point at once and train nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scaling.errors import EXIT_USER_ERROR, exit_on_user_error
from tests.conftest import CONF, SMALL_TEXT_DIR, TINY, run_module

TEXT = ["data=text", f"data.path={SMALL_TEXT_DIR}"]

# (id, overrides, the key the line must name). "{inputs}" is a folder of prepared bad files.
BAD_INPUTS: list[tuple[str, list[str], str]] = [
    # ---- the horizon -------------------------------------------------------------------------
    ("tokens-text", ["train.tokens=abc"], "train.tokens"),
    ("tokens-nan", ["train.tokens=nan"], "train.tokens"),
    ("tokens-inf", ["train.tokens=inf"], "train.tokens"),
    ("tokens-negative", ["train.tokens=-5"], "train.tokens"),
    ("tokens-absurd", ["train.tokens=1e30"], "train.tokens"),
    ("tokens-under-one-step", ["train.tokens=100"], "train.tokens"),
    ("flops-inf", ["train.tokens=null", "train.flops=inf"], "train.flops"),
    ("flops-nan", ["train.tokens=null", "train.flops=nan"], "train.flops"),
    ("flops-negative", ["train.tokens=null", "train.flops=-1"], "train.flops"),
    ("flops-absurd", ["train.tokens=null", "train.flops=1e40"], "train.flops"),
    ("tokens-and-flops", ["train.flops=1e12"], "train.tokens"),
    # ---- the optimiser -----------------------------------------------------------------------
    ("lr-text", ["train.lr=abc"], "train.lr"),
    ("lr-zero", ["train.lr=0"], "train.lr"),
    ("lr-negative", ["train.lr=-1"], "train.lr"),
    ("lr-nan", ["train.lr=nan"], "train.lr"),
    ("lr-inf", ["train.lr=inf"], "train.lr"),
    ("lr-word", ["train.lr=fast"], "train.lr"),  # a number or auto
    ("batch-size-word", ["train.batch_size=many"], "train.batch_size"),
    (
        "hparams-rule-missing",
        ["train.lr=auto", "train.hparams_rule={inputs}/nope.json"],
        "train.hparams_rule",
    ),  # fmt: skip
    (
        "hparams-rule-not-json",
        ["train.lr=auto", "train.hparams_rule={inputs}/a-file"],
        "train.hparams_rule",
    ),  # fmt: skip
    ("beta1-above-one", ["train.beta1=2"], "train.beta1"),
    ("beta1-negative", ["train.beta1=-0.1"], "train.beta1"),
    ("beta2-one", ["train.beta2=1"], "train.beta2"),
    ("weight-decay-negative", ["train.weight_decay=-1"], "train.weight_decay"),
    ("weight-decay-nan", ["train.weight_decay=nan"], "train.weight_decay"),
    ("grad-clip-negative", ["train.grad_clip=-1"], "train.grad_clip"),
    ("checkpoint-every-negative", ["train.checkpoint_every=-1"], "train.checkpoint_every"),
    ("checkpoint-min-s-negative", ["train.checkpoint_min_s=-1"], "train.checkpoint_min_s"),
    ("batch-size-zero", ["train.batch_size=0"], "train.batch_size"),
    ("micro-batch-not-dividing", ["train.micro_batch_size=3"], "train.micro_batch_size"),
    ("warmup-above-one", ["train.warmup=2"], "train.warmup"),
    ("schedule-unknown", ["train.schedule=linear"], "train.schedule"),
    ("precision-unknown", ["train.precision=fp8"], "train.precision"),
    (
        "compile-mode-unknown",
        ["train.compile=true", "train.compile_mode=fast"],
        "train.compile_mode",
    ),
    ("compile-not-bool", ["train.compile=maybe"], "train.compile"),
    ("precision-fp16-clipping", ["train.precision=16-mixed"], "train.precision"),
    ("eval-points-zero", ["train.eval_points=0"], "train.eval_points"),
    ("spike-action-unknown", ["train.spike.action=rollbak"], "train.spike.action"),
    ("spike-window-tiny", ["train.spike.window=1"], "train.spike.window"),
    ("spike-window-text", ["train.spike.window=long"], "train.spike.window"),
    ("spike-threshold-zero", ["train.spike.threshold=0"], "train.spike.threshold"),
    ("spike-threshold-nan", ["train.spike.threshold=nan"], "train.spike.threshold"),
    ("spike-ratio-below-one", ["train.spike.ratio=0.5"], "train.spike.ratio"),
    ("spike-unknown-key", ["train.spike.sigma=6"], "train.spike.sigma"),
    ("spike-max-rollbacks-negative", ["train.spike.max_rollbacks=-1"], "train.spike.max_rollbacks"),
    ("spike-max-rollbacks-text", ["train.spike.max_rollbacks=many"], "train.spike.max_rollbacks"),
    # ---- top-level keys ----------------------------------------------------------------------
    ("seed-text", ["seed=abc"], "seed"),
    ("seed-negative", ["seed=-1"], "seed"),
    ("seed-list-without-multirun", ["seed=0,abc"], "seed=0,abc"),
    ("threads-text", ["threads=abc"], "threads"),
    ("threads-negative", ["threads=-1"], "threads"),
    ("progress-unknown", ["progress=maybe"], "progress"),
    ("top-level-unknown", ["foo=1"], "foo"),
    ("top-level-unknown-appended", ["+foo=1"], "foo"),
    ("results-dir-a-file", ["results_dir={inputs}/a-file"], "results_dir"),
    # ---- the model ---------------------------------------------------------------------------
    ("model-unknown-key", ["model.foo=1"], "model.foo"),
    ("model-unknown-key-appended", ["+model.foo=1"], "model.foo"),
    ("model-option-missing", ["model=nope"], "model/nope"),
    ("n-layer-zero", ["model.n_layer=0"], "model.n_layer"),
    ("n-layer-text", ["model.n_layer=abc"], "model.n_layer"),
    ("heads-not-dividing", ["model.d_model=30", "model.n_head=4"], "model.d_model"),
    ("seq-len-beyond-validation", ["model.seq_len=8192"], "model.seq_len"),
    ("seq-len-zero", ["model.seq_len=0"], "model.seq_len"),
    ("dropout-one", ["model.dropout=1"], "model.dropout"),
    ("pos-unknown", ["model.pos=alibi"], "model.pos"),
    # ---- the data ----------------------------------------------------------------------------
    ("data-option-missing", ["data=nope"], "data/nope"),
    ("data-unknown-key", ["data.sorce=text"], "data.sorce"),
    ("tokenizer-unknown", ["data.tokenizer=wordpiece"], "data.tokenizer"),
    ("bpe-vocab-too-small", ["data.tokenizer=bpe", "data.vocab_size=100"], "data.vocab_size"),
    ("bpe-vocab-beyond-corpus", ["data.tokenizer=bpe", "data.vocab_size=60000"], "data.vocab_size"),
    ("bpe-vocab-absurd", ["data.tokenizer=bpe", "data.vocab_size=1e8"], "data.vocab_size"),
    ("path-missing", ["data.path={inputs}/nope.txt"], "data.path"),
    ("corpus-empty", ["data.path={inputs}/empty.txt"], "data.path"),
    ("corpus-shorter-than-validation", ["data.path={inputs}/short.txt"], "data.path"),
    (
        "corpus-shorter-than-one-window",
        [
            "data.path={inputs}/short.txt",
            "data.val_tokens=1",
            "model.seq_len=4096",
            "train.batch_size=1",
            "train.tokens=1e5",
        ],
        "model.seq_len",
    ),  # fmt: skip
    ("val-tokens-zero", ["data.val_tokens=0"], "data.val_tokens"),
    ("no-repeat-beyond-corpus", ["data.allow_repeat=false", "train.tokens=1e7"], "train.tokens"),
    ("markov-corpus-absurd", ["data=markov", "data.corpus_tokens=1e12"], "data.corpus_tokens"),
    ("markov-one-state", ["data=markov", "data.states=1"], "data.states"),
    (
        "dedup-threshold-above-one",
        ["data.process=[dedup_near]", "data.dedup_near.threshold=2"],
        "data.dedup_near.threshold",
    ),  # fmt: skip
    ("process-stage-unknown", ["data.process=[dedup_exact,dedup_fuzzy]"], "data.process"),
    ("process-stage-key-typo", ["data.dedup_near.thresh=0.9"], "data.dedup_near.thresh"),
    # ---- tracking ----------------------------------------------------------------------------
    ("tracking-unknown-key", ["+tracking.x=1"], "tracking.x"),
    ("sqlite-a-folder", ["tracking.uri=sqlite:///{inputs}/folder.db"], "tracking.uri"),
    ("sqlite-not-a-database", ["tracking.uri=sqlite:///{inputs}/notdb.db"], "tracking.uri"),
    ("sqlite-under-a-file", ["tracking.uri=sqlite:///{inputs}/a-file/x.db"], "tracking.uri"),
    ("uri-unknown-scheme", ["tracking.uri=foo://bar"], "tracking.uri"),
    ("uri-file-store", ["tracking.uri=results/mlruns"], "tracking.uri"),
    ("uri-empty", ["tracking.uri="], "tracking.uri"),
    ("experiment-with-slash", ["tracking.experiment=a/b"], "tracking.experiment"),
    ("experiment-climbing", ["tracking.experiment=../x"], "tracking.experiment"),
    ("experiment-dot-dot", ["tracking.experiment=.."], "tracking.experiment"),
    ("experiment-empty", ["tracking.experiment="], "tracking.experiment"),
    # ---- the trainer -------------------------------------------------------------------------
    ("devices-text", ["trainer.devices=abc"], "trainer.devices"),
    ("devices-zero", ["trainer.devices=0"], "trainer.devices"),
    ("devices-all-on-cpu", ["trainer.devices=-1"], "trainer.devices"),
    ("devices-not-dividing-batch", ["trainer.devices=3"], "train.batch_size"),
    ("accelerator-unknown", ["trainer.accelerator=abacus"], "trainer.accelerator"),
    ("strategy-unknown", ["trainer.strategy=foo"], "trainer.strategy"),
    ("num-nodes-zero", ["trainer.num_nodes=0"], "trainer.num_nodes"),
]

# Rows that write a valid token cache before they are refused (the corpus itself is fine).
WRITES_CACHE = {"no-repeat-beyond-corpus"}

# Rows also run as real `python -m scaling.train` commands (slow).
AS_COMMANDS = ["beta1-above-one", "model-unknown-key", "sqlite-a-folder", "bpe-vocab-beyond-corpus"]


def _inputs(root: Path) -> Path:
    """Bad files for the table: a folder and a text file posing as databases, corpora too short."""
    inputs = root / "inputs"
    (inputs / "folder.db").mkdir(parents=True)
    (inputs / "notdb.db").write_text("not a database\n")
    (inputs / "a-file").write_text("a file, not a folder\n")
    (inputs / "empty.txt").write_text("")
    (inputs / "short.txt").write_text("x" * 5000 + "\n")  # 5,001 tokens: < 4,096 + 4,096
    return inputs


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def _overrides(tmp_path: Path, inputs: Path, row: list[str]) -> list[str]:
    return [
        *TINY,
        *TEXT,
        f"results_dir={tmp_path / 'results'}",
        f"data.cache_dir={tmp_path / 'cache'}",
        *(o.format(inputs=inputs) for o in row),
    ]


def _entry_point(overrides: list[str]) -> None:
    """What ``python -m scaling.train`` does up to training: compose, then prepare."""
    from hydra import compose, initialize_config_dir

    from scaling.training.hydra_errors import hydra_config_errors
    from scaling.training.prepare import prepare

    with hydra_config_errors():
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(config_name="config", overrides=overrides)
        exit_on_user_error(prepare)(cfg)


CASES = [pytest.param(overrides, key, id=row_id) for row_id, overrides, key in BAD_INPUTS]


@pytest.mark.parametrize(("overrides", "key"), CASES)
def test_bad_input_is_one_line_naming_the_key_exit_2_and_writes_nothing(
    tmp_path, capsys, overrides, key, request
) -> None:
    from scaling.config import register_configs

    register_configs()
    inputs = _inputs(tmp_path)
    before = _files(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        _entry_point(_overrides(tmp_path, inputs, overrides))
    assert exit_.value.code == EXIT_USER_ERROR
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert key in lines[0], lines[0]
    written = _files(tmp_path) - before
    if request.node.callspec.id in WRITES_CACHE:
        written = {p for p in written if (tmp_path / "cache") not in (p, *p.parents)}
    assert not written, sorted(map(str, written))


def test_the_table_is_at_least_forty_distinct_inputs() -> None:
    ids = [r[0] for r in BAD_INPUTS]
    assert len(set(ids)) == len(ids) >= 40
    assert set(AS_COMMANDS) <= set(ids) and WRITES_CACHE <= set(ids)


@pytest.mark.parametrize("missing", ["dtype", "corpus_id", "n_train", "vocab_size"])
def test_a_token_cache_meta_with_a_missing_key_is_stale_and_rebuilt(tmp_path, missing) -> None:
    from scaling.config import DataConfig
    from scaling.training.data import load_corpus

    cfg = DataConfig(
        source="text", path=str(SMALL_TEXT_DIR), cache_dir=str(tmp_path), val_tokens=1000
    )
    first = load_corpus(cfg)
    (meta_path,) = (tmp_path / "tokens").glob("*/meta.json")
    meta = json.loads(meta_path.read_text())
    del meta[missing]
    meta_path.write_text(json.dumps(meta))
    again = load_corpus(cfg)  # rebuilt, not KeyError
    assert (again.corpus_id, len(again.train)) == (first.corpus_id, len(first.train))
    assert missing in json.loads(meta_path.read_text())


def test_the_single_run_callback_validates_before_hydra_writes_its_folder(tmp_path, capsys) -> None:
    """``ValidateCallback.on_run_start`` runs before Hydra creates ``results_dir/hydra/runs/``."""
    from hydra import compose, initialize_config_dir

    from scaling.config import register_configs
    from scaling.training.run import ValidateCallback

    register_configs()
    inputs = _inputs(tmp_path)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=_overrides(tmp_path, inputs, ["train.beta1=2"]))
    with pytest.raises(SystemExit) as exit_:
        ValidateCallback().on_run_start(config=cfg)
    assert exit_.value.code == EXIT_USER_ERROR
    assert capsys.readouterr().err.startswith("error: train.beta1=2.0")


# ---- real commands (slow) ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("row_id", AS_COMMANDS)
def test_a_bad_command_exits_2_with_one_line_and_creates_nothing(tmp_path, row_id) -> None:
    (overrides, key) = next(r[1:] for r in BAD_INPUTS if r[0] == row_id)
    inputs = _inputs(tmp_path)
    proc = run_module(
        tmp_path, "scaling.train", *_overrides(tmp_path, inputs, overrides), timeout=120
    )
    assert proc.returncode == EXIT_USER_ERROR, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and key in lines[0], lines
    results = tmp_path / "results"
    assert not (results / "mlflow.db").exists() and not (results / "checkpoints").exists()
    assert not (tmp_path / "cache" / "tokens").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("grid", "listed"),
    [
        (["seed=0,abc"], ["1 of 2 grid points", "seed=abc: seed"]),
        (
            ["train.beta1=0.9,2", "model.n_layer=1,2"],
            # model.n_layer keeps its place from TINY: points are named in launch order
            [
                "2 of 4 grid points",
                "model.n_layer=1 train.beta1=2: train.beta1",
                "model.n_layer=2 train.beta1=2: train.beta1",
            ],
        ),  # fmt: skip
        (["data=text,nope"], ["1 of 2 grid points", "data=nope: ", "data/nope"]),
        # one mistake every point shares is said once, not once per point
        (["train.lr=fast", "seed=0,1"], ["2 of 2 grid points", "trained: every point: train.lr="]),
    ],
)
def test_a_sweep_lists_every_invalid_point_on_one_line_and_trains_nothing(
    tmp_path, grid, listed
) -> None:
    proc = run_module(
        tmp_path, "scaling.sweep", "-m", *_overrides(tmp_path, tmp_path, []), *grid,
        "sweep.fit=false", timeout=120,
    )  # fmt: skip
    assert proc.returncode == EXIT_USER_ERROR, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for text in listed:
        assert text in lines[0], lines[0]
    results = tmp_path / "results"
    assert not (results / "mlflow.db").exists() and not (results / "checkpoints").exists()
    assert not (results / "hydra" / "multirun").exists()


def test_world_size_counts_lists_and_refuses_a_trainer_that_disagrees(compose) -> None:
    """`trainer.devices=auto` on a 4-GPU node would train 4x the logged tokens with a 4x batch:
    the run refuses with the count to pass instead, before anything is recorded."""
    from scaling.config import build_run_config
    from scaling.devices import device_count
    from scaling.errors import ConfigError
    from scaling.training.trainer import check_world_size

    assert [device_count(d) for d in (2, [0, 1], "0,1", "[0,1,2]", "3", "auto", -1)] == [
        2, 2, 2, 3, 3, None, None,
    ]  # fmt: skip
    cfg = build_run_config(compose("trainer.devices=auto"))
    assert cfg.trainer.world_size == 1
    check_world_size(cfg, 1)  # one CPU process: fine
    with pytest.raises(ConfigError, match=r"gives 4 training processes here, not 1: pass "
                       r"trainer.devices=4"):  # fmt: skip
        check_world_size(cfg, 4)


def test_an_unknown_key_of_a_nested_setting_lists_that_settings_keys(capsys) -> None:
    """`data.dedup_near.thresh` is a typo of `threshold`: the line names the stage's own keys."""
    from scaling.config import structured
    from scaling.data_config import DataConfig
    from scaling.errors import ConfigError

    with pytest.raises(ConfigError) as exc:
        structured(DataConfig, "data", {"dedup_near": {"thresh": 0.9}})
    assert str(exc.value) == (
        "data.dedup_near.thresh is not a known key; known: threshold, num_perm, ngram; "
        "did you mean data.dedup_near.threshold?"
    )
    # and a whole number written as a float is one, there too
    data = structured(DataConfig, "data", {"dedup_near": {"num_perm": 1e2}})
    assert data.dedup_near.num_perm == 100
