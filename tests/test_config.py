"""The run configuration (scaling/config.py, run_config.py): validation, the aspect rule, the
horizon, identity, and every YAML file shipped in conf/ and sweeps/ composing into a valid run."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from scaling.config import (
    DataConfig,
    GPTConfig,
    SweepConfig,
    TrainConfig,
    build_run_config,
    register_configs,
    structured,
)
from scaling.errors import ConfigError, UserError
from scaling.identity import run_key, run_name
from tests.conftest import CONF, SWEEPS

# ---- unknown keys, wrong types, integral floats -----------------------------------------------


@pytest.mark.parametrize(
    ("cls", "group", "raw", "pattern"),
    [
        (DataConfig, "data", {"sorce": "text"}, r"^data\.sorce is not a known key; known: source"),
        (GPTConfig, "model", {"n_layers": 2}, r"^model\.n_layers is not a known key"),
        (TrainConfig, "train", {"token": 5}, r"^train\.token is not a known key"),
        (DataConfig, "data", {"val_tokens": "many"}, r"^data\.val_tokens: .*'many'"),
        (DataConfig, "data", {"allow_repeat": "maybe"}, r"^data\.allow_repeat: .*not a valid bool"),
        (GPTConfig, "model", {"seq_len": 2.5}, r"^model\.seq_len: .*'2\.5'"),
        (TrainConfig, "train", {"tokens": 2.5}, r"^train\.tokens: .*'2\.5'"),
        (TrainConfig, "train", {"lr": "fast"}, r"^train\.lr: .*'fast'"),
        (DataConfig, "data", {"source": "web"}, r"data\.source='web' is unknown: .*stdlib, text"),
        (DataConfig, "data", {"tokenizer": "wordpiece"}, r"data\.tokenizer='wordpiece'.*byte, bpe"),
        (DataConfig, "data", {"tokenizer": "bpe", "vocab_size": 100}, r"data\.vocab_size=100"),
        (DataConfig, "data", {"source": "markov", "concentration": 0}, r"data\.concentration=0"),
        (SweepConfig, "sweep", {"bootstrap": "abc"}, r"^sweep\.bootstrap: .*'abc'"),
        (SweepConfig, "sweep", {"bootstrap": -1}, r"^sweep\.bootstrap=-1 must be 0"),
        (SweepConfig, "sweep", {"dryrun": True}, r"^sweep\.dryrun is not a known key"),
    ],
)
def test_a_bad_key_or_value_is_one_line_naming_it(cls, group, raw, pattern) -> None:
    with pytest.raises(ConfigError, match=pattern) as err:
        structured(cls, group, raw)
    assert "\n" not in str(err.value)


def test_yaml_floats_that_spell_whole_numbers_are_ints() -> None:
    data = structured(DataConfig, "data", {"source": "markov", "corpus_tokens": 4e6})
    assert data.corpus_tokens == 4_000_000 and isinstance(data.corpus_tokens, int)
    train = structured(TrainConfig, "train", {"tokens": 2.5e5, "batch_size": 16.0})
    assert (train.tokens, train.batch_size) == (250_000, 16)
    assert isinstance(train.tokens, int) and isinstance(train.batch_size, int)
    assert structured(DataConfig, "data", {"concentration": 1}).concentration == 1.0


def test_cache_dir_default_follows_env(monkeypatch) -> None:
    monkeypatch.setenv("SCALING_CACHE", "/somewhere")
    assert DataConfig().cache_dir == "/somewhere"
    monkeypatch.delenv("SCALING_CACHE")
    assert DataConfig().cache_dir == ".cache/scaling"


@pytest.mark.parametrize(
    "overrides,key",
    [
        (dict(d_model=100, n_head=3), "model.d_model"),
        (dict(n_layer=0), "model.n_layer"),
        (dict(vocab_size=-5), "model.vocab_size"),
        (dict(seq_len=2.5), "model.seq_len"),
        (dict(d_ff=0), "model.d_ff"),
        (dict(pos="alibi"), "model.pos"),
        (dict(norm="batchnorm"), "model.norm"),
        (dict(mlp="relu"), "model.mlp"),
        (dict(dropout=1.0), "model.dropout"),
        (dict(bias="yes"), "model.bias"),
        (dict(d_model=12, n_head=4, pos="rope"), "model.pos"),  # head size 3 cannot rotate
    ],
)
def test_invalid_model_names_the_key_in_one_line(overrides: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        GPTConfig(**overrides)
    assert key in str(err.value) and "\n" not in str(err.value)


def test_indivisible_heads_says_how_to_fix() -> None:
    with pytest.raises(ConfigError, match=r"model\.n_head=3.*d_model=102"):
        GPTConfig(d_model=100, n_head=3)


def test_structured_round_trips_a_model() -> None:
    cfg = GPTConfig(vocab_size=64, seq_len=16, n_layer=2, pos="rope", mlp="swiglu")
    assert structured(GPTConfig, "model", asdict(cfg)) == cfg


def test_micro_batch_must_divide_the_batch() -> None:
    with pytest.raises(ConfigError, match=r"train\.micro_batch_size=5 must divide"):
        TrainConfig(batch_size=32, micro_batch_size=5)


# ---- the aspect rule --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "d_model", "n_head"),
    [
        # model/gpt.yaml's promise: n_layer 2, 4, 8 -> (32, 2), (64, 4), (128, 8)
        (dict(n_layer=2), 32, 2),
        (dict(n_layer=4), 64, 4),
        (dict(n_layer=8), 128, 8),
        (dict(n_layer=1), 16, 1),
        (dict(n_layer=1, head_dim=64), 16, 1),  # never fewer than one head
        (dict(n_layer=3, aspect=64), 192, 12),
        (dict(n_layer=8, d_model=96), 96, 6),  # a set d_model wins; heads follow it
        (dict(n_layer=8, n_head=2), 128, 2),  # a set n_head wins
    ],
)
def test_aspect_rule_sizes_width_and_heads_from_depth(given, d_model, n_head) -> None:
    cfg = GPTConfig(**given)
    assert (cfg.d_model, cfg.n_head) == (d_model, n_head)
    assert "aspect" not in cfg.architecture() and "head_dim" not in cfg.architecture()


# ---- the horizon ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tokens", "flops", "which"),
    [(None, None, "neither is set"), (1_000_000, 1e12, "both are set")],
)
def test_horizon_is_exactly_one_of_tokens_or_flops(tokens, flops, which) -> None:
    with pytest.raises(
        ConfigError, match=f"set exactly one of train.tokens or train.flops .{which}"
    ):
        TrainConfig(tokens=tokens, flops=flops)


def test_flops_horizon_derives_whole_steps_of_tokens_under_the_convention(compose) -> None:
    # TINY: 1 layer, d_model 32, seq_len 32, vocab 256: N = 21,984 (12,768 non-embedding),
    # 256 tokens per step. 6N: 131,904 FLOPs/token -> 758,127 tokens -> 2,961 steps.
    six_n = build_run_config(compose("train.tokens=null", "train.flops=1e11"))
    assert (six_n.planned_tokens, six_n.steps, six_n.tokens) == (758_127, 2_961, 758_016)
    assert six_n.flops() == 131_904 * 758_016
    # 6N+attn: 6 x 12,768 + 6 x 1 x 32 x 32 = 82,752 FLOPs/token -> 1,208,430 tokens.
    kaplan = build_run_config(
        compose("train.tokens=null", "train.flops=1e11", "train.flops_convention=6N+attn")
    )
    assert (kaplan.planned_tokens, kaplan.steps, kaplan.tokens) == (1_208_430, 4_720, 1_208_320)
    assert kaplan.flops() == 82_752 * 1_208_320
    assert kaplan.flops("6N") == 131_904 * 1_208_320


BAD_INPUTS = [
    (["model.d_model=30", "model.n_head=4"], "model.d_model"),
    (["train.flops=1e12"], "exactly one of train.tokens or train.flops"),
    (["train.tokens=null"], "exactly one of train.tokens or train.flops"),
    (["train.tokens=100"], "less than one optimizer step"),
    (["data=text"], "data.path"),
    (["data.tokenizer=wordpiece"], "data.tokenizer"),
    (["tracking.uri=http://127.0.0.1:9"], "unreachable"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_INPUTS)
def test_bad_input_is_one_line_before_any_run(compose, overrides, message) -> None:
    from scaling.training.prepare import prepare

    with pytest.raises(UserError, match=message.replace(".", r"\.")) as err:
        prepare(compose(*overrides))
    assert "\n" not in str(err.value)


# ---- identity ---------------------------------------------------------------------------------


def test_run_key_depends_on_training_only(compose, tmp_path) -> None:
    base = build_run_config(compose())
    same_training = build_run_config(
        compose(
            "tracking.experiment=other",
            f"tracking.uri=sqlite:///{tmp_path / 'elsewhere.db'}",
            f"results_dir={tmp_path / 'elsewhere'}",
            f"data.cache_dir={tmp_path / 'other-cache'}",
            "threads=2",
            "progress=true",
            "model.aspect=8",  # the aspect rule's input, when d_model and n_head are set
        )
    )
    assert run_key(same_training) == run_key(base)
    assert run_name(same_training) == run_name(base)
    keys = {run_key(base)}
    for change in ("seed=1", "train.lr=1e-3", "model.n_layer=2", "data.val_tokens=8192",
                   "train.tokens=30000", "train.schedule=wsd"):  # fmt: skip
        keys.add(run_key(build_run_config(compose(change))))
    assert len(keys) == 7
    assert len(run_key(base)) == 16 and run_name(base).endswith(run_key(base)[:6])


def test_tokens_that_round_to_the_same_steps_are_the_same_run(compose) -> None:
    # 20,000 and 20,100 tokens both train 78 steps of 256 tokens: the same run.
    a = build_run_config(compose("train.tokens=20000"))
    b = build_run_config(compose("train.tokens=20100"))
    assert a.tokens == b.tokens == 19_968 and run_key(a) == run_key(b)


# ---- every shipped YAML composes --------------------------------------------------------------

# What an option needs besides its defaults to be a valid run.
NEEDS = {"data/text": ["data.path=corpus.txt"], "data/hf": ["data.name=text"]}


def _compose(config_name: str, overrides: list[str], hydra: bool = False):  # type: ignore[no-untyped-def]
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name, overrides=overrides, return_hydra_config=hydra)


def _shipped(group: str) -> list[str]:
    folder = SWEEPS if group == "sweeps" else CONF / group
    return sorted(p.stem for p in folder.glob("*.yaml"))


def test_every_yaml_file_is_covered_below() -> None:
    found = {str(p.relative_to(CONF)) for p in CONF.rglob("*.yaml")}
    found |= {f"sweeps/{p.relative_to(SWEEPS)}" for p in SWEEPS.rglob("*.yaml")}
    covered = {"config.yaml", "sweep.yaml", "hydra/launcher/slurm.yaml"}
    covered |= {
        f"{g}/{o}.yaml" for g in ("model", "data", "train", "tracking") for o in _shipped(g)
    }
    covered |= {f"sweeps/{o}.yaml" for o in _shipped("sweeps")}
    assert found == covered


@pytest.mark.parametrize(
    "option",
    [f"{g}/{o}" for g in ("model", "data", "train", "tracking") for o in _shipped(g)],
)
def test_each_group_option_composes_into_a_valid_run(option: str) -> None:
    group, name = option.split("/")
    cfg = build_run_config(_compose("config", [f"{group}={name}", *NEEDS.get(option, [])]))
    if group == "data":
        assert cfg.data.source == name and cfg.data.val_tokens == 32768
    if option == "tracking/sqlite":
        assert cfg.tracking.uri == "sqlite:///results/mlflow.db"


def test_the_default_run_is_the_documented_one() -> None:
    cfg = build_run_config(_compose("config", []))
    assert (cfg.model.n_layer, cfg.model.d_model, cfg.model.n_head) == (4, 64, 4)
    assert (cfg.data.source, cfg.data.tokenizer, cfg.train.tokens) == ("stdlib", "byte", 1_000_000)
    assert cfg.tracking.experiment == "scaling" and cfg.trainer.accelerator == "cpu"


@pytest.mark.parametrize("preset", _shipped("sweeps"))
def test_each_sweep_preset_expands_to_valid_runs(preset: str) -> None:
    from scaling.analysis.design.plan import run_problem
    from scaling.training.sweep_grid import expand_grid

    master = _compose("sweep", [f"sweeps={preset}"], hydra=True)
    jobs = expand_grid(master)
    assert len({tuple(j) for j in jobs}) == len(jobs)
    runs = [build_run_config(_compose("sweep", job)) for job in jobs]
    points = sum(len(r.train.horizons or [None]) for r in runs)  # a WSD group: one per horizon
    assert points >= 6
    # the planner's guards hold: >= 200 optimizer steps and 1..1000 tokens per parameter (the
    # issue: a 5-step run at 1e11 FLOPs decided a whole budget)
    assert not {" ".join(job): p for job, r in zip(jobs, runs) if (p := run_problem(r))}
    assert {r.tracking.experiment for r in runs} == {preset}
    assert len({run_key(r) for r in runs}) == len(runs)


def test_the_slurm_launcher_config_composes() -> None:
    cfg = _compose("sweep", ["hydra/launcher=slurm"], hydra=True)
    assert "Slurm" in cfg.hydra.launcher._target_
    assert Path(CONF / "hydra" / "launcher" / "slurm.yaml").is_file()


def test_a_run_name_rounds_before_it_picks_the_unit(compose) -> None:
    # 999,936 tokens (7,812 steps of 128) read "1M" in the name, not "1e+03K"
    cfg = build_run_config(
        compose("train.tokens=999999", "train.batch_size=1", "model.seq_len=128")
    )
    assert cfg.tokens == 999_936
    assert "-D1M-" in run_name(cfg) and "e+" not in run_name(cfg)


PRESET_KEYS = Path(__file__).parent / "data" / "preset_run_keys.json"


def test_every_shipped_preset_point_keeps_its_run_key() -> None:
    """A refactor must not retrain a user's finished ladder: the keys of every point of every
    shipped preset (each WSD horizon too), provisional and with a fixed corpus identity, are the
    ones recorded in tests/data/preset_run_keys.json (written on 2026-12-06, before the house
    issue's split; a deliberate identity change rewrites it and says so in the README)."""
    from dataclasses import replace

    from scaling.identity import DataIdentity
    from scaling.training.sweep_grid import expand_grid

    fixed = DataIdentity(corpus="c0ffee", tokenizer="byte", split="8x4096")
    recorded = json.loads(PRESET_KEYS.read_text())
    assert sorted(recorded) == _shipped("sweeps")
    for preset, expected in recorded.items():
        found = {}
        for job in expand_grid(_compose("sweep", [f"sweeps={preset}"], hydra=True)):
            run = build_run_config(_compose("sweep", job))
            members = [("", run)] + [
                (f" #horizon {b.tokens}", b) for b in (run.branches() if run.train.horizons else [])
            ]
            for tag, m in members:
                found[" ".join(job) + tag] = [run_key(m), run_key(replace(m, data_identity=fixed))]
        assert found == expected, preset
