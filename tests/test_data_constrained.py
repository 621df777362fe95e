"""The data-constrained law (Muennighoff et al. 2023, eq. 5, data term): form, refusal, recovery."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from synthetic_runs import CHINCHILLA_TRUE

from scaling.analysis.columns import predict_table
from scaling.analysis.fitting.fit import FitOptions, fit_law
from scaling.analysis.fitting.laws import get_law
from scaling.errors import DataError

TRUE = {**CHINCHILLA_TRUE, "R_D_star": 15.0}
QUICK = FitOptions(grid_stride=7, polish=3)


def repeated_runs(noise: float = 0.003, seed: int = 0) -> pd.DataFrame:
    """Three unique-data sizes x six model sizes x epochs 0.5 .. 40 (D = U_D * epochs)."""
    rng = np.random.default_rng(seed)
    rows = [
        (n, u * ep, ep)
        for u in (1e8, 3e8, 1e9)
        for n in np.geomspace(1e7, 1e9, 6)
        for ep in (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 40.0)
    ]
    N, D, ep = (np.array(c) for c in zip(*rows, strict=True))
    loss = get_law("data_constrained").predict(TRUE, N=N, D=D, epochs=ep)
    loss = loss * np.exp(noise * rng.standard_normal(N.size))
    return pd.DataFrame({"params": N, "tokens": D, "loss": loss, "flops": 6 * N * D, "epochs": ep})


def test_equals_chinchilla_at_one_epoch_or_less() -> None:
    law, chin = get_law("data_constrained"), get_law("chinchilla")
    p = TRUE
    base = {k: v for k, v in p.items() if k != "R_D_star"}
    N, D = 1e8, 2e9
    by_hand = p["E"] + p["A"] / N ** p["alpha"] + p["B"] / D ** p["beta"]
    assert by_hand == pytest.approx(3.48587, abs=1e-5)
    for epochs in (0.25, 1.0, None, float("nan")):
        got = law.predict(p, N=N, D=D, epochs=epochs)
        assert got == chin.predict(base, N=N, D=D)  # bit for bit: D' = D when nothing repeats
        assert got == pytest.approx(by_hand, rel=1e-14)
    both = law.predict(p, N=[N, N], D=D, epochs=[1.0, 0.5])
    assert both.tolist() == chin.predict(base, N=[N, N], D=D).tolist()


def test_repeated_tokens_are_worth_less_as_muennighoff_writes() -> None:
    law = get_law("data_constrained")
    N, U, epochs = 1e8, 1e9, 40.0
    R = epochs - 1
    d_eff = U + U * TRUE["R_D_star"] * (1 - math.exp(-R / TRUE["R_D_star"]))
    by_hand = TRUE["E"] + TRUE["A"] / N ** TRUE["alpha"] + TRUE["B"] / d_eff ** TRUE["beta"]
    assert law.predict(TRUE, N=N, D=U * epochs, epochs=epochs) == pytest.approx(by_hand, rel=1e-13)
    # 40 epochs of U are worth less than 40 U fresh tokens, more than one epoch of U
    chin = get_law("chinchilla")
    base = {k: v for k, v in TRUE.items() if k != "R_D_star"}
    assert chin.predict(base, N=N, D=U * epochs) < by_hand < chin.predict(base, N=N, D=U)


def test_jacobian_with_the_epochs_row_matches_finite_differences() -> None:
    law = get_law("data_constrained")
    rng = np.random.default_rng(1)
    X = law.design(
        N=rng.uniform(1e6, 1e10, 9), D=rng.uniform(1e8, 1e10, 9), epochs=rng.uniform(0.5, 60, 9)
    )
    assert X.shape == (3, 9)
    theta = np.array([[5.0, 6.0, 0.5, 0.34, 0.28, math.log(15.0)], [3.0, 2.0, -1, 0.6, 0.5, 0.1]])
    f, jac = law.log_model(theta, X)
    for i in range(theta.shape[1]):
        step = np.zeros_like(theta)
        step[:, i] = 1e-6
        num = (law.log_model(theta + step, X)[0] - law.log_model(theta - step, X)[0]) / 2e-6
        np.testing.assert_allclose(jac[:, :, i], num, rtol=1e-5, atol=1e-8)
    f2, vjp = law.log_model_vjp(theta, X)
    v = rng.standard_normal(f.shape)
    np.testing.assert_allclose(f2, f, rtol=1e-12)
    np.testing.assert_allclose(vjp(v), np.einsum("kn,knp->kp", v, jac), rtol=1e-9)


def test_refuses_a_table_without_repetition_in_one_line() -> None:
    runs = repeated_runs()
    once = runs[runs["epochs"] <= 1]
    with pytest.raises(DataError) as err:
        fit_law(once, "data_constrained", QUICK)
    assert str(err.value) == (
        "the data_constrained law needs repeated data: no run has epochs > 1; fit chinchilla"
    )
    with pytest.raises(DataError) as err:
        fit_law(runs.drop(columns="epochs"), "data_constrained", QUICK)
    assert "\n" not in str(err.value) and "`epochs` column" in str(err.value)


def test_recovers_the_decay_constant_within_its_interval() -> None:
    runs = repeated_runs()
    result = fit_law(runs, "data_constrained", FitOptions(grid_stride=7, polish=3, bootstrap=40))
    assert result.convergence.converged and not result.convergence.on_bounds
    p, ci = result.params, result.ci
    lo, hi = ci["R_D_star"]
    assert lo <= TRUE["R_D_star"] <= hi, (lo, p["R_D_star"], hi)
    assert hi / lo < 3  # informative: the repeats pin it down
    for key in ("E", "alpha", "beta"):
        assert p[key] == pytest.approx(TRUE[key], rel=0.03), key
    # the residuals use each run's epochs
    rel = predict_table(get_law("data_constrained"), p, runs) / runs["loss"] - 1
    assert float(np.abs(rel).max()) < 0.02
    # an allocation plans fresh data: Chinchilla's closed form with the fitted A, B, alpha, beta
    true_a = TRUE["beta"] / (TRUE["alpha"] + TRUE["beta"])
    assert result.exponents["a"] == pytest.approx(true_a, abs=0.03)


def test_report_compares_it_and_warns_when_a_law_ignores_repetition() -> None:
    from scaling.analysis.report.fit_sections import _repeat_warning
    from scaling.analysis.report.stats import compare_laws, law_comparison

    runs = repeated_runs()
    once = runs[runs["epochs"] <= 1]
    assert compare_laws(runs)[-1] == "data_constrained"
    assert "data_constrained" not in compare_laws(once)
    assert "data_constrained" not in compare_laws(runs.drop(columns="epochs"))

    chin = fit_law(runs, "chinchilla", QUICK)
    rows = {r["law"]: r for r in law_comparison(runs, chin)}
    assert set(rows) == {"chinchilla", "kaplan", "kaplan_e", "data_constrained"}
    # the law that knows about repetition extrapolates best on data drawn from it
    assert rows["data_constrained"]["extrapolation"] < rows["chinchilla"]["extrapolation"]

    line = _repeat_warning(runs, chin).strip()
    assert line == (
        "**Warning:** runs repeat their data up to 40 epochs and the law has no repetition "
        "term: fit --law data_constrained."
    )
    assert _repeat_warning(once, chin) == ""
    assert _repeat_warning(runs, fit_law(runs, "data_constrained", QUICK)) == ""
