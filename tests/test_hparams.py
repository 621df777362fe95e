"""Hyperparameters that scale (issue 10): `scaling fit --law hparams` and `train.lr=auto`.

A synthetic table from a known loss surface, quadratic in log LR and log batch around optima
``eta*(C) = a C^b`` and ``B*(C) = c C^d``, is fitted back; ``auto`` resolves to the rule's value
at the run's ``C = 6 N D``, from ``train.hparams_rule``, else ``./hparams.json``, else the shipped
rule; an auto run has the key of the same run with the numbers given. Fast except the one test
that trains (``slow``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaling.analysis.design.hparams import fit_hparams
from scaling.analysis.design.hparams_file import rule_document
from scaling.analysis.design.hparams_law import fit_power_law
from scaling.analysis.design.hparams_optima import profile_optimum
from scaling.cli import main
from scaling.config import DEFAULT_HPARAMS_RULE, build_run_config, find_hparams_rule
from scaling.errors import EXIT_USER_ERROR, ConfigError, DataError
from scaling.hparams_rule import HPARAMS_FORMAT
from scaling.identity import run_key
from tests.conftest import SMALL_TEXT_DIR

# the synthetic truth: lr*(C) = A C^B, batch*(C) = CB C^DB tokens
A, B = 0.3, -0.1
CB, DB = 0.5, 0.3
SEQ = 128
BUDGETS = (1e11, 3e11, 1e12, 3e12)
LRS = tuple(2.5e-3 * 2 ** (i / 2) for i in range(11))  # 2.5e-3 .. 8e-2, x sqrt(2)
BATCHES = (4, 8, 16, 32, 64)  # sequences of SEQ tokens: 512 .. 8192 tokens


def synthetic(
    seed: int = 0,
    sigma: float = 0.003,
    budgets=BUDGETS,
    lrs=LRS,
    batches=BATCHES,
) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    """A run table: every (lr, batch) at each budget, loss = L0(C) + 0.05 ln^2(lr / lr*) +
    0.02 ln^2(batch tokens / batch*) + noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for C in budgets:
        N = math.sqrt(C / 120.0)
        D = C / (6.0 * N)
        lr_opt, bt_opt = A * C**B, CB * C**DB
        for lr in lrs:
            for b in batches:
                loss = (
                    3.0 * C**-0.05
                    + 0.05 * math.log(lr / lr_opt) ** 2
                    + 0.02 * math.log(b * SEQ / bt_opt) ** 2
                    + sigma * rng.standard_normal()
                )
                rows.append(
                    {"params": N, "tokens": D, "loss": loss, "lr": lr, "batch_size": b,
                     "seq_len": SEQ, "planned_flops": C, "flops": C}
                )  # fmt: skip
    return pd.DataFrame(rows)


# ---- the fit ----------------------------------------------------------------------------------


def test_the_fit_recovers_a_known_rule_within_its_intervals() -> None:
    # one table (seed 0 is a 2-sigma miss of the LR exponent, as a 90% interval allows one time
    # in ten: the next test counts how often that happens)
    fit = fit_hparams(synthetic(seed=1), level=0.9)
    lo, hi = fit.lr.ci_exponent
    assert lo < B < hi and hi - lo < 0.1
    lo, hi = fit.lr.ci_coef
    assert lo < A < hi
    lo, hi = fit.batch_tokens.ci_exponent
    assert lo < DB < hi and hi - lo < 0.2
    lo, hi = fit.batch_tokens.ci_coef
    assert lo < CB < hi
    for b in fit.budgets:  # each budget's optimum near the truth (the grid is x1.41 apart)
        assert b.lr.value == pytest.approx(A * b.flops**B, rel=0.1)
        assert b.batch_tokens.value == pytest.approx(CB * b.flops**DB, rel=0.15)
    assert fit.compute_range == pytest.approx((1e11, 3e12)) and not fit.warnings


def test_without_noise_the_fit_is_exact() -> None:
    fit = fit_hparams(synthetic(sigma=0.0))
    assert fit.lr.coef == pytest.approx(A, rel=1e-6) and fit.lr.exponent == pytest.approx(B)
    assert fit.batch_tokens.coef == pytest.approx(CB, rel=1e-6)
    assert fit.batch_tokens.exponent == pytest.approx(DB)


def test_the_intervals_cover_the_truth_about_as_often_as_they_say() -> None:
    """40 tables, 90% intervals of the two exponents: covered in 75-100% of them."""
    covered = np.zeros(2)
    n = 40
    for seed in range(n):
        fit = fit_hparams(synthetic(seed=100 + seed), level=0.9)
        covered += [
            fit.lr.ci_exponent[0] <= B <= fit.lr.ci_exponent[1],
            fit.batch_tokens.ci_exponent[0] <= DB <= fit.batch_tokens.ci_exponent[1],
        ]
    assert np.all(covered / n >= 0.75), covered / n


def test_a_power_law_by_hand() -> None:
    """Two exact points: the line through them; a third point off the line widens the interval
    (ordinary least squares, t with 1 dof)."""
    law = fit_power_law([1e10, 1e12], [1e-2, 1e-2 * 100**-0.2])
    assert law.exponent == pytest.approx(-0.2) and law.coef == pytest.approx(1e-2 * 1e10**0.2)
    assert law.ci_exponent is None  # no dof, no vertex variances: no interval, and it says so
    assert law.interval.startswith("none")
    noisy = fit_power_law([1e10, 1e11, 1e12], [1e-2, 0.9e-2, 0.5e-2], level=0.9)
    assert noisy.dof == 1 and noisy.ci_exponent[0] < noisy.exponent < noisy.ci_exponent[1]


@pytest.mark.parametrize(
    ("lrs", "side"),
    [(LRS[:3], "largest tried"), (LRS[-3:], "smallest tried")],
    ids=["all-below", "all-above"],
)
def test_a_grid_that_does_not_bracket_the_optimum_says_which_side_to_widen(lrs, side) -> None:
    with pytest.raises(DataError) as err:
        fit_hparams(synthetic(lrs=lrs))
    msg = str(err.value)
    assert "\n" not in msg and "does not bracket the optimum" in msg and side in msg
    # the bracket check itself: the best grid point at an edge, a hint one step beyond it
    opt = profile_optimum(np.array([1e-3, 2e-3, 4e-3]), np.array([3.0, 2.9, 2.8]), "lr")
    assert opt.value is None and "add larger values (e.g. 0.008)" in opt.problem


def test_one_unbracketed_budget_is_left_out_with_a_warning() -> None:
    df = synthetic()
    df = df[~((df.planned_flops == 3e12) & (df.lr < 0.02))]  # the top budget: only large LRs
    fit = fit_hparams(df)
    assert [b.lr.value is None for b in fit.budgets] == [False, False, False, True]
    assert any("3e+12" in w and "does not bracket" in w for w in fit.warnings)
    assert fit.compute_range == pytest.approx((1e11, 1e12))


def test_one_batch_size_gives_an_lr_rule_without_a_batch_law() -> None:
    fit = fit_hparams(synthetic(batches=(16,)))
    assert fit.batch_tokens is None and fit.lr.exponent == pytest.approx(B, abs=0.05)
    assert any("batch_size does not vary" in w for w in fit.warnings)
    doc = rule_document(fit, table="t.csv", command="scaling fit t.csv --law hparams")
    assert doc["batch_tokens"] is None and doc["format"] == HPARAMS_FORMAT


# ---- the command ------------------------------------------------------------------------------


def test_scaling_fit_law_hparams_prints_and_writes_the_rule_auto_reads(
    tmp_path, capsys, monkeypatch
) -> None:
    table = tmp_path / "hp.csv"
    synthetic().to_csv(table, index=False)
    assert main(["fit", str(table), "--law", "hparams", "--out", str(tmp_path / "fit")]) == 0
    out, err = capsys.readouterr()
    assert "lr(C)" in out and "batch_tokens(C)" in out and "per budget" in out
    assert "hparams.json" in err
    doc = json.loads((tmp_path / "fit" / "hparams.json").read_text())
    assert doc["fitted_compute"] == pytest.approx([1e11, 3e12]) and doc["level"] == 0.95
    assert doc["source"]["command"] == f"scaling fit {table} --law hparams --out {tmp_path / 'fit'}"
    assert len(doc["budgets"]) == 4 and doc["budgets"][0]["batch_size"]["best"] > 0
    assert "Student t" in doc["lr"]["interval"] or "normal" in doc["lr"]["interval"]
    # and auto reads it: lr = coef C^exponent at the run's C, clipped, to 4 digits
    rule = find_hparams_rule(str(tmp_path / "fit" / "hparams.json"))
    assert rule.lr.coef == doc["lr"]["coef"] and rule.compute_range == pytest.approx((1e11, 3e12))


def _bad_table(tmp_path: Path, df: pd.DataFrame) -> list[str]:
    path = tmp_path / "bad.csv"
    df.to_csv(path, index=False)
    return ["fit", str(path), "--law", "hparams", "--out", str(tmp_path / "out")]


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda df: df[df.lr == LRS[4]], "every run has lr=0.01"),
        (lambda df: df[df.planned_flops == 1e11], "one compute budget"),
        (lambda df: df.drop(columns="lr"), "no lr column"),
        (lambda df: df.drop(columns="seq_len"), "no seq_len column"),
        (lambda df: df.assign(lr=-1.0), "column 'lr' needs a positive number"),
        (lambda df: df[df.lr.isin(LRS[:2])], "2 values of lr tried: a parabola needs at least 3"),
    ],
    ids=["no-lr-variation", "one-budget", "no-lr-column", "no-seq-len", "negative-lr", "two-lrs"],
)
def test_a_table_that_cannot_give_a_rule_is_one_line_exit_2(tmp_path, capsys, change, says) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(_bad_table(tmp_path, change(synthetic())))
    assert exit_.value.code == EXIT_USER_ERROR
    lines = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], lines
    assert not (tmp_path / "out").exists()


# ---- auto -------------------------------------------------------------------------------------

# TINY's model (tests/conftest.py): 1 layer, d_model 32, 2 heads, seq_len 32, byte vocabulary:
# 21,984 parameters (tests/test_train.py counts them); 20,000 tokens: C = 6 N D = 2.63808e9.
TINY_MODEL = {"n_layer": 1, "d_model": 32, "n_head": 2, "seq_len": 32}
TINY_C = 6 * 21_984 * 20_000
RULE = {
    "format": HPARAMS_FORMAT,
    "lr": {"coef": 0.5, "exponent": -0.1},
    "batch_tokens": {"coef": 1.13, "exponent": 0.25},
    "fitted_compute": [1e9, 1e10],
    "source": {"date": "2026-11-29", "command": "by hand"},
}


def _rule(path: Path, rule: dict | None = None) -> Path:
    path.write_text(json.dumps(rule or RULE))
    return path


def _cfg(tmp_path: Path, **train):  # type: ignore[no-untyped-def]
    return build_run_config(
        {"model": TINY_MODEL, "data": {}, "train": {"tokens": 20_000, **train}},
    )


def test_auto_resolves_to_the_rules_value_at_the_runs_compute(tmp_path) -> None:
    rule = _rule(tmp_path / "rule.json")
    cfg = _cfg(tmp_path, lr="auto", batch_size="auto", hparams_rule=str(rule))
    assert TINY_C == 2_638_080_000
    # by hand: ln C = 21.6933; 0.5 x e^(-2.16933) = 0.5 x 0.114254 = 0.05713;
    # 1.13 x e^5.42333 = 1.13 x 226.63 = 256.1 tokens = 8.00 sequences of 32
    assert cfg.train.lr == 0.05713
    assert cfg.train.batch_size == 8
    use = cfg.hparams
    assert use.compute == TINY_C and use.keys == ("lr", "batch_size")
    params = cfg.flat_params()
    assert params["train.lr"] == 0.05713 and params["train.batch_size"] == 8
    assert params["hparams.rule"] == str(rule.resolve())
    assert params["hparams.auto"] == "lr,batch_size"
    assert params["hparams.lr_rule"] == pytest.approx(0.057131, rel=1e-4)
    assert "2026-11-29" in params["hparams.rule_provenance"]
    assert "hparams.warning" not in params  # 2.6e9 is inside 1e9..1e10
    # one key only: the other stays as given
    only_lr = _cfg(tmp_path, lr="auto", batch_size=4, hparams_rule=str(rule))
    assert (only_lr.train.lr, only_lr.train.batch_size) == (0.05713, 4)


def test_the_lr_is_clipped_and_the_batch_rounded_to_the_world_size(tmp_path) -> None:
    big = _rule(tmp_path / "big.json", {**RULE, "lr": {"coef": 1e3, "exponent": 0.0}})
    assert _cfg(tmp_path, lr="auto", hparams_rule=str(big)).train.lr == 0.1  # LR_RANGE's top
    rule = _rule(tmp_path / "rule.json")
    cfg = build_run_config(
        {
            "model": TINY_MODEL,
            "data": {},
            "train": {"tokens": 20_000, "batch_size": "auto", "hparams_rule": str(rule)},
            "trainer": {"devices": 3},
        }
    )
    assert cfg.train.batch_size == 9  # 8.0 sequences -> the nearest multiple of 3 devices
    tiny = _rule(tmp_path / "tiny.json", {**RULE, "batch_tokens": {"coef": 1.0, "exponent": 0}})
    assert _cfg(tmp_path, batch_size="auto", hparams_rule=str(tiny)).train.batch_size == 1


def test_a_rule_in_the_working_directory_is_found_else_the_shipped_one(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    shipped = _cfg(tmp_path, lr="auto")
    assert shipped.hparams.rule.where == "shipped default"
    default = DEFAULT_HPARAMS_RULE["lr"]
    expected = min(max(default["coef"] * TINY_C ** default["exponent"], 1e-5), 0.1)
    assert shipped.train.lr == float(f"{expected:.4g}")
    _rule(tmp_path / "hparams.json")
    local = _cfg(tmp_path, lr="auto")
    assert local.hparams.rule.where == str((tmp_path / "hparams.json").resolve())
    assert local.train.lr == 0.05713
    # train.hparams_rule wins over ./hparams.json
    other = _rule(tmp_path / "other.json", {**RULE, "lr": {"coef": 0.25, "exponent": -0.1}})
    assert _cfg(tmp_path, lr="auto", hparams_rule=str(other)).train.lr == 0.02856


def test_extrapolating_far_beyond_the_fitted_range_warns_and_is_recorded(tmp_path, capsys) -> None:
    rule = _rule(tmp_path / "rule.json", {**RULE, "fitted_compute": [1e12, 1e13]})
    cfg = _cfg(tmp_path, lr="auto", hparams_rule=str(rule))
    warning = cfg.flat_params()["hparams.warning"]
    assert "more than 10x below" in warning and "1e+12..1e+13" in warning
    assert "warning: train.lr=auto: C = 2.64e+09 FLOPs" in capsys.readouterr().err


def test_an_auto_lr_at_a_batch_far_from_the_rules_warns(tmp_path, capsys) -> None:
    rule = _rule(tmp_path / "rule.json")  # its batch at TINY_C: 256 tokens (8 sequences of 32)
    _cfg(tmp_path, lr="auto", batch_size=8, hparams_rule=str(rule))
    assert "batch_size given" not in capsys.readouterr().err  # the rule's own batch
    _cfg(tmp_path, lr="auto", batch_size=64, hparams_rule=str(rule))
    err = capsys.readouterr().err
    assert (
        "train.lr=auto with train.batch_size given (2,048 tokens a step, 8x the rule's 256" in err
    )
    assert "set train.batch_size=auto too, or tune train.lr" in err


def test_an_auto_run_has_the_key_of_its_numbers_given_explicitly(
    compose, tmp_path, monkeypatch
) -> None:
    from scaling.training.prepare import prepare

    rule = _rule(tmp_path / "rule.json")
    text = ["data=text", f"data.path={SMALL_TEXT_DIR}"]
    auto = prepare(
        compose(*text, "train.lr=auto", "train.batch_size=auto", f"train.hparams_rule={rule}"),
        check_tracking=False,
    )
    lr, batch = auto.cfg.train.lr, auto.cfg.train.batch_size
    given = prepare(
        compose(*text, f"train.lr={lr}", f"train.batch_size={batch}"), check_tracking=False
    )
    assert (auto.cfg.train.lr, auto.cfg.train.batch_size) == (0.05713, 8)
    assert auto.key == given.key and auto.name == given.name
    # the same rule elsewhere: the same numbers, the same key; another rule: another run
    copy = _rule(tmp_path / "copy.json")
    assert (
        prepare(
            compose(*text, "train.lr=auto", f"train.hparams_rule={copy}"), check_tracking=False
        ).key
        == prepare(compose(*text, "train.lr=0.05713"), check_tracking=False).key
    )
    other = _rule(tmp_path / "other.json", {**RULE, "lr": {"coef": 0.25, "exponent": -0.1}})
    moved = prepare(
        compose(*text, "train.lr=auto", f"train.hparams_rule={other}"), check_tracking=False
    )
    assert moved.key != auto.key
    assert run_key(auto.cfg) == auto.key


def test_auto_warmup_is_n_tokens_in_whole_steps_capped_at_the_warmup_fraction(tmp_path) -> None:
    n = TINY_C // (6 * 20_000)  # 21,984 parameters
    # a long run: N tokens of 4 x 32-token steps, rounded up, far below 5% of the steps
    long = _cfg(tmp_path, tokens=4_000_000, batch_size=4, warmup_steps="auto")
    assert long.steps == 31_250 and long.train.warmup_steps == -(-n // 128)
    assert long.train.warmup_steps < 0.05 * long.steps
    # a short run: N tokens would be most of it; train.warmup (5%) caps it
    short = _cfg(tmp_path, tokens=20_000, batch_size=4, warmup_steps="auto")
    assert n > 0.05 * 20_000 and short.train.warmup_steps == round(0.05 * short.steps) == 8
    # the key and the MLflow params hold the number: the run given that number is the same run
    given = _cfg(tmp_path, tokens=20_000, batch_size=4, warmup_steps=8)
    assert run_key(short) == run_key(given)
    assert short.flat_params()["train.warmup_steps"] == 8
    # with the batch from the rule: the steps are the rule's batch's
    rule = _rule(tmp_path / "rule.json")
    both = _cfg(tmp_path, batch_size="auto", warmup_steps="auto", hparams_rule=str(rule))
    assert both.train.batch_size == 8 and both.train.warmup_steps == min(
        -(-n // 256), round(0.05 * both.steps)
    )


@pytest.mark.parametrize(
    ("train", "says"),
    [
        ({"warmup_steps": "soon"}, "train.warmup_steps='soon' must be a whole number of optimizer"),
        ({"lr": "fast"}, "train.lr='fast' must be a positive number or auto"),
        ({"batch_size": "many"}, "train.batch_size='many' must be a whole number of sequences"),
        ({"lr": "auto", "hparams_rule": "{tmp}/nope.json"}, "{tmp}/nope.json: no such file"),
        ({"lr": "auto", "hparams_rule": "{tmp}/text.json"}, "cannot read it as JSON"),
        ({"lr": "auto", "hparams_rule": "{tmp}/other.json"}, 'not a rule file (no "format"'),
        ({"lr": "auto", "hparams_rule": "{tmp}/nolr.json"}, "lr needs numbers coef and exponent"),
        ({"batch_size": "auto", "hparams_rule": "{tmp}/nobatch.json"}, "has no batch law"),
        ({"lr": "auto", "hparams_rule": ""}, "train.hparams_rule is empty"),
        ({"lr": "auto", "hparams_rule": "{tmp}/warn.json"}, "extrapolation_warn=0 must be"),
    ],
    ids=["warmup-word", "lr-word", "batch-word", "rule-missing", "rule-not-json", "rule-not-a-rule",
         "rule-without-lr", "batch-auto-without-batch-law", "rule-empty",
         "rule-warn-factor"],
)  # fmt: skip
def test_bad_auto_input_is_one_line_naming_the_key(tmp_path, train, says) -> None:
    (tmp_path / "text.json").write_text("not json\n")
    (tmp_path / "other.json").write_text(json.dumps({"law": "chinchilla"}))
    (tmp_path / "nolr.json").write_text(json.dumps({"format": HPARAMS_FORMAT, "lr": {"coef": 1}}))
    _rule(tmp_path / "nobatch.json", {**RULE, "batch_tokens": None})
    _rule(tmp_path / "warn.json", {**RULE, "extrapolation_warn": 0})
    train = {k: v.format(tmp=tmp_path) for k, v in train.items()}
    with pytest.raises(ConfigError) as err:
        _cfg(tmp_path, **train)
    assert "\n" not in str(err.value) and says.format(tmp=tmp_path) in str(err.value)


# ---- one real run (slow) ----------------------------------------------------------------------


@pytest.mark.slow
def test_an_auto_run_trains_with_the_resolved_numbers_and_records_the_rule(
    compose, tmp_path
) -> None:
    from mlflow import MlflowClient

    from scaling.training.prepare import prepare
    from scaling.training.run import train

    rule = _rule(tmp_path / "rule.json")
    prep = prepare(
        compose(
            "data=text", f"data.path={SMALL_TEXT_DIR}", "train.lr=auto", "train.batch_size=auto",
            f"train.hparams_rule={rule}",
        )
    )  # fmt: skip
    result = train(prep)
    assert result.status == "FINISHED"
    params = MlflowClient(tracking_uri=prep.cfg.tracking.uri).get_run(result.run_id).data.params
    assert params["train.lr"] == "0.05713" and params["train.batch_size"] == "8"
    assert params["hparams.rule"] == str(rule.resolve())
    assert params["hparams.auto"] == "lr,batch_size"
    assert params["train.hparams_rule"] == str(rule)
