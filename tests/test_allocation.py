"""Compute-optimal allocation: closed forms vs brute force, predictions from fit.json."""

from __future__ import annotations

import json

import numpy as np
import pytest
from synthetic_runs import CHINCHILLA_TRUE, grid_runs

from scaling.analysis.allocation import (
    Predictor,
    chinchilla_exponents,
    chinchilla_optimal,
    gpu_hours_to_flops,
    kaplan_optimal,
    load_fit,
    numeric_optimal,
    optimal_allocation,
)
from scaling.errors import DataError, UserError
from scaling.analysis.fitting import FitOptions, fit_law
from scaling.analysis.laws import get_law


@pytest.mark.parametrize("C", [1e18, 5.76e23, 1e26])
def test_chinchilla_closed_form_matches_brute_force_argmin(C: float) -> None:
    law = get_law("chinchilla")
    N, D = chinchilla_optimal(CHINCHILLA_TRUE, C)
    assert 6 * N * D == pytest.approx(C)
    # brute force: the loss on a dense grid of N along C = 6ND
    Ns = np.geomspace(float(N) / 30, float(N) * 30, 200_001)
    i = np.argmin(law.predict(CHINCHILLA_TRUE, N=Ns, D=C / (6 * Ns)))
    assert float(N) == pytest.approx(Ns[i], rel=1e-3)
    N2, _ = numeric_optimal("chinchilla", law.from_params(CHINCHILLA_TRUE), C)
    assert float(N2[0]) == pytest.approx(float(N), rel=1e-4)


def test_chinchilla_exponents_formula() -> None:
    a, b, G = chinchilla_exponents(CHINCHILLA_TRUE)
    alpha, beta = CHINCHILLA_TRUE["alpha"], CHINCHILLA_TRUE["beta"]
    assert a == pytest.approx(beta / (alpha + beta))
    assert a + b == pytest.approx(1.0)
    A, B = CHINCHILLA_TRUE["A"], CHINCHILLA_TRUE["B"]
    assert G == pytest.approx((alpha * A / (beta * B)) ** (1 / (alpha + beta)))


def test_kaplan_closed_form_matches_numeric_optimum() -> None:
    p = {"alpha_N": 0.076, "N_c": 8.8e13, "alpha_D": 0.095, "D_c": 5.4e13}
    theta = get_law("kaplan").from_params(p)
    for C in (1e19, 1e23):
        N, _ = kaplan_optimal(p, C)
        N2, _ = numeric_optimal("kaplan", theta, C)
        assert float(N) == pytest.approx(float(N2[0]), rel=1e-3)
    pe = {"alpha_N": 0.3, "N_c": 2e8, "alpha_D": 0.35, "D_c": 5e9, "E": 1.7}
    N3, D3 = optimal_allocation("kaplan_e", pe, 1e21)
    Ns = np.geomspace(float(N3) / 10, float(N3) * 10, 100_001)
    loss = get_law("kaplan_e").predict(pe, N=Ns, D=1e21 / (6 * Ns))
    assert float(N3) == pytest.approx(Ns[np.argmin(loss)], rel=1e-3)


@pytest.fixture(scope="module")
def fit_doc(tmp_path_factory) -> tuple[dict, str]:
    runs = grid_runs(n=100, seed=3)
    result = fit_law(runs, "chinchilla", FitOptions(grid_stride=50, bootstrap=40, workers=1))
    path = tmp_path_factory.mktemp("fit") / "fit.json"
    path.write_text(json.dumps(result.to_dict()))
    return result.to_dict(), str(path)


def test_predictions_are_consistent(fit_doc) -> None:
    doc, path = fit_doc
    p = Predictor(load_fit(path))
    at = p.at_budget(1e21)
    assert at.params * at.tokens * 6 == pytest.approx(1e21)
    assert at.loss_ci[0] <= at.loss <= at.loss_ci[1]
    assert at.params_ci[0] <= at.params <= at.params_ci[1]
    same = p.at_size(at.params, at.tokens)
    assert same.loss == pytest.approx(at.loss)
    back = p.for_target_loss(at.loss)
    assert back.flops == pytest.approx(1e21, rel=1e-6)
    assert p.at_budget(1e21).warnings == ()
    far = p.at_budget(1e26)
    assert far.warnings and "beyond the largest fitted compute" in far.warnings[0]
    assert set(at.to_json()) >= {"flops", "params", "tokens", "loss", "loss_ci"}


def test_unreachable_target_and_bad_budgets(fit_doc) -> None:
    _, path = fit_doc
    p = Predictor(load_fit(path))
    with pytest.raises(UserError, match="irreducible"):
        p.for_target_loss(1.0)
    with pytest.raises(UserError, match="positive"):
        p.at_budget(0.0)
    with pytest.raises(UserError, match="positive"):
        p.at_size(-1.0, 1e9)


def test_gpu_hours_budget() -> None:
    assert gpu_hours_to_flops(1000, 1e15, 0.5) == pytest.approx(1.8e21)
    with pytest.raises(UserError, match="mfu"):
        gpu_hours_to_flops(1000, 1e15, 1.5)
    with pytest.raises(UserError, match="gpu-hours"):
        gpu_hours_to_flops(-1, 1e15, 0.5)


def test_load_fit_rejects_missing_and_malformed(tmp_path) -> None:
    with pytest.raises(DataError, match="no such fit file"):
        load_fit(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_fit(bad)
    bad.write_text(
        json.dumps({"law": "chinchilla", "params": {"E": 1.0}, "exponents": {}, "ranges": {}})
    )
    with pytest.raises(DataError, match="params lack"):
        load_fit(bad)
