"""Gates about the question (issue 21, item 5): a prediction is judged where it is asked (how
far beyond the data, how wide its interval there), not refused for every question because a
parameter is undetermined, nor answered at any distance because none is."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bench_modules import load_benchmark

from scaling.analysis.fitting.fit import FitOptions, fit
from scaling.analysis.fitting.results import FitResult, save_fit
from scaling.analysis.prediction.health import assess
from scaling.analysis.prediction.predict import Predictor
from scaling.analysis.prediction.question import unsupported
from scaling.cli import main

DATA = Path(__file__).resolve().parent.parent / "data" / "porian2024_isoflop.csv"
# Porian et al.'s final configuration: RefinedWeb, tuned hyperparameters, short warmup, constant
# LR, standard parameter count, validation loss (data/README.md)
CONFIG = {"dataset": "rw", "hparams": "tuned", "warmup": "short", "decay": "const"}
CONFIG |= {"param_count": "standard", "loss_type": "val"}
FITTED_UP_TO = 2.3e8  # the family's members up to 221M parameters are fitted


def porian_runs() -> pd.DataFrame:
    d = pd.read_csv(DATA)
    mask = np.all([d[k] == v for k, v in CONFIG.items()], axis=0)
    cols = {"N": "params", "D": "tokens", "C": "flops"}
    return d[mask].rename(columns=cols)[["params", "tokens", "flops", "loss"]]


@cache
def porian_fit() -> tuple[FitResult, pd.DataFrame]:
    """Approach 3 on the family's smaller members; the larger ones are held out."""
    runs = porian_runs()
    small = runs[runs.params <= FITTED_UP_TO]
    result = fit(small, approach=3, options=FitOptions(bootstrap=100, seed=0, level=0.9))
    health = assess(result, N=small.params.to_numpy(), D=small.tokens.to_numpy())
    from dataclasses import replace

    return replace(result, health=health), runs[runs.params > FITTED_UP_TO]


def test_a_larger_member_of_a_published_family_is_answered_and_comes_true() -> None:
    """Members 2x and 2.8x larger than any fitted, at token counts inside the fitted range and
    at least 5 tokens a parameter (the runs a user trains, not the sweep's starved corners):
    answered, with the fit's undetermined parameters as warnings, each measured loss inside its
    90% prediction interval."""
    result, held = porian_fit()
    predictor = Predictor(result)
    assert result.health["ok"] and result.health["warnings"]  # some parameter not pinned
    lo, hi = result.ranges["D"]
    asked = held[
        (held.params <= 3 * FITTED_UP_TO)
        & held.tokens.between(lo, hi)
        & (held.tokens >= 5 * held.params)
    ]
    assert len(asked) >= 5 and asked.params.max() / FITTED_UP_TO > 2.5
    for run in asked.itertuples():
        pred = predictor.at_size(run.params, run.tokens)
        assert unsupported(predictor, pred) == [], (run, pred)
        assert pred.loss_pi[0] <= run.loss <= pred.loss_pi[1], (run, pred)


def test_a_member_100x_larger_is_refused_with_one_line(tmp_path: Path, capsys) -> None:
    result, _ = porian_fit()
    save_fit(result, tmp_path / "fit.json")
    argv = ["predict", "--fit", str(tmp_path / "fit.json"), "--params", "2.2e10"]
    argv += ["--tokens", "2e9"]  # inside the fitted token counts
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 3 and "\n" not in err
    assert "the size asked (2.2e+10 params) is 100x beyond the largest fitted" in err
    # a member 2x larger at the same tokens is answered, the fit's warnings printed beside it
    assert main([*argv[:4], "4.4e8", *argv[5:], "--json"]) == 0
    out = capsys.readouterr()
    doc = json.loads(out.out)
    assert any(w.startswith("fit: ") and "not determined" in w for w in doc["warnings"])


def _ladder(truth: str, n_budgets: int, seed: int = 0) -> tuple[pd.DataFrame, float]:
    module = load_benchmark("bench_coverage")
    return module.ladder(truth, n_budgets, seed), module.TOP


def test_an_interval_too_wide_to_bet_on_is_refused_and_a_narrow_one_answered() -> None:
    """Three budgets of a frontier the power law does not contain: 10x beyond, the interval
    that holds the form's doubt is wider than +-10% (refused); 3x beyond the same ladder it is
    not (answered); the judgement is the same at any --level."""
    runs, top = _ladder("irreducible", 3)
    lines = {}
    for level in (0.8, 0.95):
        result = fit(runs, approach=2, options=FitOptions(bootstrap=200, seed=0, level=level))
        predictor = Predictor(result)
        lines[level] = {
            k: unsupported(predictor, predictor.at_budget(k * top), allocation=True)
            for k in (3, 10)
        }
    assert lines[0.8] == lines[0.95]
    far, near = lines[0.8][10], lines[0.8][3]
    assert len(far) == 1 and far[0].startswith("the loss's 90% prediction interval")
    assert near == []
