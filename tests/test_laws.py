"""Law registry: equations, parameter round trips, analytic Jacobians."""

from __future__ import annotations

import numpy as np
import pytest

from scaling.analysis.fitting.laws import LAWS, get_law


def _random_theta(law, rng):
    lo = np.maximum(np.array(law.lower), -3.0)
    hi = np.minimum(np.array(law.upper), 3.0)
    return rng.uniform(lo + 0.05, hi)[None, :]


@pytest.mark.parametrize("name", list(LAWS))
def test_jacobian_matches_finite_differences(name: str) -> None:
    law = get_law(name)
    rng = np.random.default_rng(1)
    X = np.log(rng.uniform(1e6, 1e10, (len(law.inputs), 9)))
    theta = _random_theta(law, rng)
    _, jac = law.log_model(theta, X)
    eps = 1e-6
    for i in range(theta.shape[1]):
        step = np.zeros_like(theta)
        step[0, i] = eps
        num = (law.log_model(theta + step, X)[0] - law.log_model(theta - step, X)[0]) / (2 * eps)
        np.testing.assert_allclose(jac[0, :, i], num[0], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", list(LAWS))
def test_vjp_agrees_with_jacobian(name: str) -> None:
    law = get_law(name)
    rng = np.random.default_rng(2)
    X = np.log(rng.uniform(1e6, 1e10, (len(law.inputs), 11)))
    theta = np.vstack([_random_theta(law, rng) for _ in range(4)])
    f, jac = law.log_model(theta, X)
    f2, vjp = law.log_model_vjp(theta, X)
    v = rng.standard_normal(f.shape)
    np.testing.assert_allclose(f2, f, rtol=1e-12)
    np.testing.assert_allclose(vjp(v), np.einsum("kn,knp->kp", v, jac), rtol=1e-9, atol=1e-12)


def test_chinchilla_reproduces_the_paper_prediction() -> None:
    # Hoffmann et al. 2022: their fit predicts ~1.94 nats for Chinchilla (70B params, 1.4T tokens).
    law = get_law("chinchilla")
    p = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
    assert law.predict(p, N=70e9, D=1.4e12) == pytest.approx(1.9367, abs=1e-3)
    assert law.predict(p, N=[1e9, 1e10], D=[2e10, 2e11]).shape == (2,)


def test_kaplan_forms_match_their_equations() -> None:
    p = {"alpha_N": 0.076, "N_c": 8.8e13, "alpha_D": 0.095, "D_c": 5.4e13}
    N, D = 1e9, 1e10
    expected = ((p["N_c"] / N) ** (p["alpha_N"] / p["alpha_D"]) + p["D_c"] / D) ** p["alpha_D"]
    assert get_law("kaplan").predict(p, N=N, D=D) == pytest.approx(expected, rel=1e-12)
    assert get_law("kaplan_e").predict({**p, "E": 1.0}, N=N, D=D) == pytest.approx(1 + expected)
    assert get_law("kaplan_n").predict({"alpha_N": 0.076, "N_c": 8.8e13}, N=N) == pytest.approx(
        (8.8e13 / N) ** 0.076
    )
    assert get_law("kaplan_c_e").predict({"alpha_C": 0.05, "C_c": 3e8, "E": 1.5}, C=1e20) == (
        pytest.approx(1.5 + (3e8 / 1e20) ** 0.05)
    )


@pytest.mark.parametrize("name", list(LAWS))
def test_param_round_trip_and_docs(name: str) -> None:
    law = get_law(name)
    theta = _random_theta(law, np.random.default_rng(3))[0]
    np.testing.assert_allclose(law.from_params(law.to_params(theta)), theta)
    assert law.equation.startswith("L(") and law.citation


def test_batch_param_round_trip() -> None:
    law = get_law("chinchilla")
    rng = np.random.default_rng(4)
    theta = np.vstack([_random_theta(law, rng) for _ in range(3)])
    np.testing.assert_allclose(law.from_params_array(law.to_params_array(theta)), theta)
    one = {"A": 406.4, "B": 410.7, "E": 1.69, "alpha": 0.34, "beta": 0.28}
    expected = [[np.log(406.4), np.log(410.7), np.log(1.69), 0.34, 0.28]]
    np.testing.assert_allclose(law.from_params_array(one), expected)


def test_published_grid_has_4500_starts() -> None:
    assert get_law("chinchilla").start_grid().shape == (4500, 5)


def test_unknown_law_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="chinchilla"):
        get_law("nope")
