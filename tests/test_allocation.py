"""Compute-optimal allocation and predictions: against published numbers and brute force."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from synthetic_runs import (
    CHINCHILLA_TRUE,
    brute_force_optimum,
    chinchilla_loss,
    grid_runs,
    isoflop_runs,
)

from scaling.analysis.fitting.allocation import (
    chinchilla_exponents,
    chinchilla_optimal,
    kaplan_exponents,
    kaplan_optimal,
    numeric_optimal,
    optimal_allocation,
)
from scaling.analysis.fitting.fit import FitOptions, fit_isoflop, fit_law
from scaling.analysis.fitting.laws import get_law
from scaling.analysis.fitting.results import fit_from_dict, load_fit, save_fit
from scaling.analysis.prediction.predict import Predictor, gpu_hours_to_flops
from scaling.errors import DataError, UserError

# Besiroglu et al. 2024 (arXiv:2404.10102), their refit of the Chinchilla points.
BESIROGLU = {"E": 1.82, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}


@pytest.mark.parametrize("C", [1e18, 5.76e23, 1e26])
def test_chinchilla_closed_form_matches_brute_force_argmin(C: float) -> None:
    N, D = chinchilla_optimal(CHINCHILLA_TRUE, C)
    n_brute, _ = brute_force_optimum(CHINCHILLA_TRUE, C)
    assert float(N) == pytest.approx(n_brute, rel=1e-3)
    assert float(D) == pytest.approx(C / (6 * n_brute), rel=1e-3)  # D_opt = G^-1 (C/6)^b
    N2, D2 = numeric_optimal("chinchilla", get_law("chinchilla").from_params(CHINCHILLA_TRUE), C)
    assert float(N2[0]) == pytest.approx(float(N), rel=1e-4)
    assert float(D2[0]) == pytest.approx(float(D), rel=1e-4)


def test_allocation_exponents_match_published_values() -> None:
    # a = beta / (alpha + beta) = 0.3658 / 0.7136 (Besiroglu et al. 2024, Table 1 / eq. 4)
    a, b, _ = chinchilla_exponents(BESIROGLU)
    assert a == pytest.approx(0.5126, abs=5e-5)
    assert b == pytest.approx(0.4874, abs=5e-5)
    # Kaplan et al. 2020 L(N, D): alpha_N/alpha_D = 0.076/0.095 = 0.8, so a = 1/1.8 = 5/9
    a_k, b_k = kaplan_exponents({"alpha_N": 0.076, "alpha_D": 0.095})
    assert (a_k, b_k) == (pytest.approx(5 / 9), pytest.approx(4 / 9))


def test_exponent_is_the_slope_of_the_brute_force_optimum() -> None:
    n_lo, _ = brute_force_optimum(BESIROGLU, 1e20)
    n_hi, _ = brute_force_optimum(BESIROGLU, 1e24)
    slope = math.log(n_hi / n_lo) / math.log(1e4)
    assert slope == pytest.approx(0.5126, abs=2e-4)
    N, _ = chinchilla_optimal(BESIROGLU, 1e22)
    assert float(N) == pytest.approx(brute_force_optimum(BESIROGLU, 1e22)[0], rel=1e-3)


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
    Ds = 1e21 / (6 * Ns)
    ratio = pe["alpha_N"] / pe["alpha_D"]
    loss = pe["E"] + ((pe["N_c"] / Ns) ** ratio + pe["D_c"] / Ds) ** pe["alpha_D"]  # eq. 1.5 + E
    assert float(N3) == pytest.approx(Ns[np.argmin(loss)], rel=1e-3)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    runs = grid_runs(n=100, seed=3)
    result = fit_law(runs, "chinchilla", FitOptions(grid_stride=50, bootstrap=40, workers=1))
    path = tmp_path_factory.mktemp("fit") / "fit.json"
    save_fit(result, path)
    return result, path


def test_predictions_match_the_law_by_hand(fitted) -> None:
    result, path = fitted
    p = Predictor(load_fit(path))
    law = dict(result.params)
    at = p.at_budget(1e21)
    n_brute, loss_brute = brute_force_optimum(law, 1e21)
    assert at.params == pytest.approx(n_brute, rel=1e-3)
    assert at.tokens == pytest.approx(1e21 / (6 * n_brute), rel=1e-3)
    assert at.loss == pytest.approx(loss_brute, rel=1e-7)
    assert at.loss_ci[0] <= at.loss <= at.loss_ci[1]
    assert at.params_ci[0] <= at.params <= at.params_ci[1]
    size = p.at_size(1e9, 2e10)
    assert size.loss == pytest.approx(chinchilla_loss(law, 1e9, 2e10), rel=1e-12)
    assert size.flops == pytest.approx(1.2e20)
    assert size.loss_ci[0] <= size.loss <= size.loss_ci[1]
    back = p.for_target_loss(at.loss)
    assert back.flops == pytest.approx(1e21, rel=1e-6)
    assert p.at_budget(1e21).warnings == ()
    far = p.at_budget(1e26)
    assert far.warnings and "beyond the largest fitted compute" in far.warnings[0]
    assert set(at.to_json()) >= {"flops", "params", "tokens", "loss", "loss_ci"}


def test_fit_json_round_trip_gives_the_same_predictions(fitted, tmp_path) -> None:
    result, path = fitted
    iso = fit_isoflop(isoflop_runs(), FitOptions(bootstrap=20))
    save_fit(iso, tmp_path / "fit.json")
    for live, file in ((result, path), (iso, tmp_path / "fit.json")):
        loaded = load_fit(file)
        assert loaded.to_dict() == json.loads(file.read_text())
        assert fit_from_dict(live.to_dict()).to_dict() == live.to_dict()
        for C in (1e19, 1e21):
            from_file = Predictor(loaded).at_budget(C).to_json()
            assert from_file == Predictor(live).at_budget(C).to_json()


def test_unreachable_target_and_bad_budgets(fitted) -> None:
    _, path = fitted
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


def test_load_fit_rejects_missing_and_malformed(fitted, tmp_path) -> None:
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
    doc = json.loads(fitted[1].read_text())
    doc["bootstrap"]["n_resamples"] = "many"
    bad.write_text(json.dumps(doc))
    with pytest.raises(DataError, match="malformed fit.json"):
        load_fit(bad)
