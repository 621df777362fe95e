"""Two intervals named for what they cover, run-to-run noise, target-loss intervals, health."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from synthetic_runs import CHINCHILLA_TRUE, chinchilla_loss, grid_runs

from scaling.analysis.fitting.bootstrap import resample_weights
from scaling.analysis.fitting.fit import fit
from scaling.analysis.fitting.noise import SOURCE_REPLICATES, SOURCE_RESIDUALS, replicate_noise
from scaling.analysis.fitting.results import (
    Bootstrap,
    Convergence,
    FitOptions,
    FitResult,
    load_fit,
    save_fit,
)
from scaling.analysis.prediction.health import assess
from scaling.analysis.prediction.predict import Predictor
from scaling.cli import main

QUICK = FitOptions(bootstrap=60, seed=0, level=0.9, grid_stride=5, workers=1)


def _replicated(sigma: float, seeds: int = 3, configs: int = 40, seed: int = 0) -> pd.DataFrame:
    """``configs`` training settings, each run with ``seeds`` seeds; log-normal noise ``sigma``."""
    base = grid_runs(n=configs, noise=0.0, seed=seed)
    rng = np.random.default_rng(seed + 1)
    rows = []
    for s in range(seeds):
        rep = base.copy()
        rep["seed"] = s
        rep["loss"] = rep["loss"] * np.exp(sigma * rng.standard_normal(len(rep)))
        rows.append(rep)
    return pd.concat(rows, ignore_index=True)


@pytest.fixture(scope="module")
def noisy_fit() -> FitResult:
    return fit(grid_runs(n=80, noise=0.01, seed=5), options=QUICK)


def test_prediction_interval_of_a_new_run_is_wider_than_the_interval_of_the_mean(
    noisy_fit,
) -> None:
    pred = Predictor(noisy_fit).at_budget(1e21)
    (clo, chi), (plo, phi) = pred.loss_ci, pred.loss_pi
    assert plo < clo < pred.loss < chi < phi
    # the noise term alone spans about +-1.645 sigma at 90%: sigma was 0.01 in log loss
    half_width = math.log(phi / plo) / 2
    assert 1.645 * 0.008 < half_width < 1.645 * 0.013 + math.log(chi / clo)
    doc = pred.to_json()
    assert doc["level"] == 0.9 and len(doc["loss_pi"]) == 2 and "residuals" in doc["noise"]


def test_noise_is_measured_on_seed_replicates_when_the_table_has_them() -> None:
    runs = _replicated(sigma=0.02)
    noise = replicate_noise(runs)
    assert noise is not None and noise.source == SOURCE_REPLICATES
    assert noise.dof == 80 and noise.n_groups == 40  # 40 settings x (3 seeds - 1)
    assert noise.sigma_log == pytest.approx(0.02, rel=0.2)
    result = fit(runs, options=FitOptions(grid_stride=5, workers=1))
    assert result.noise["source"] == SOURCE_REPLICATES
    # the same table without its seed column falls back to the fit's residuals
    plain = fit(runs.drop(columns="seed"), options=FitOptions(grid_stride=5, workers=1))
    assert plain.noise["source"] == SOURCE_RESIDUALS
    assert plain.noise["sigma_log"] == pytest.approx(0.02, rel=0.25)


def test_residual_noise_recovers_the_known_noise_level() -> None:
    result = fit(grid_runs(n=200, noise=0.01, seed=3), options=FitOptions(grid_stride=5))
    assert result.noise["sigma_log"] == pytest.approx(0.01, rel=0.15)
    assert result.noise["dof"] == 195


def test_cluster_bootstrap_draws_replicates_of_one_setting_together() -> None:
    clusters = np.repeat(np.arange(10), 3)
    W = resample_weights(30, 200, seed=0, clusters=clusters)
    per_cluster = W.reshape(200, 10, 3)
    assert (per_cluster == per_cluster[:, :, :1]).all()  # the 3 replicates always share a count
    assert (W.sum(axis=1) == 30).all()
    assert (W == 0).any()  # some settings are left out of some resamples
    plain = resample_weights(30, 200, seed=0)
    assert not (plain.reshape(200, 10, 3) == plain.reshape(200, 10, 3)[:, :, :1]).all()


def _hand_fit(E_samples: np.ndarray) -> FitResult:
    """A Chinchilla fit whose bootstrap replicates differ only in E (and A for spread)."""
    n = E_samples.size
    A = np.linspace(300, 500, n)
    samples = {
        "E": E_samples,
        "A": A,
        "B": np.full(n, 410.7),
        "alpha": np.full(n, 0.34),
        "beta": np.full(n, 0.28),
    }
    return FitResult(
        law="chinchilla",
        approach=3,
        params=dict(CHINCHILLA_TRUE),
        exponents={},
        allocation={},
        objective=0.0,
        n_points=100,
        ranges={"N": (1e7, 1e9), "D": (1e8, 1e11), "C": (1e17, 1e21), "loss": (2.0, 4.0)},
        options=FitOptions(level=0.9),
        convergence=Convergence(True, "ok", 1, 1),
        bootstrap=Bootstrap(n_resamples=n, seed=0, level=0.9, samples=samples),
    )


def test_target_loss_counts_replicates_that_never_reach_it_and_opens_the_interval() -> None:
    E = np.where(np.arange(100) < 70, 1.60, 1.90)  # 30 replicates have E above the target
    pred = Predictor(_hand_fit(E)).for_target_loss(1.8)
    assert pred.unreachable_share == pytest.approx(0.30)
    assert math.isinf(pred.flops_ci[1]) and math.isinf(pred.params_ci[1])
    doc = pred.to_json()
    assert doc["flops_ci"][1] is None and doc["unreachable_share"] == pytest.approx(0.3)
    assert any("never reach" in w for w in pred.warnings)
    # all replicates reach it: a finite interval, and nothing unreachable
    reach = Predictor(_hand_fit(np.full(100, 1.6))).for_target_loss(1.8)
    assert reach.unreachable_share == 0 and math.isfinite(reach.flops_ci[1])


def test_target_loss_size_interval_carries_the_compute_uncertainty() -> None:
    p = Predictor(_hand_fit(np.linspace(1.55, 1.65, 100)))
    target = p.for_target_loss(1.9)
    at_point_c = p.at_budget(target.flops)
    # N at each replicate's own least compute spreads wider than N at one fixed compute
    assert np.log(target.params_ci[1] / target.params_ci[0]) > 2 * np.log(
        at_point_c.params_ci[1] / at_point_c.params_ci[0]
    )


def test_health_flags_too_few_runs_and_bounds() -> None:
    runs = grid_runs(n=6, noise=0.01, seed=1)
    result = fit(runs, options=FitOptions(bootstrap=30, grid_stride=5, workers=1))
    verdict = assess(result)
    assert not verdict["ok"]
    assert any("6 runs for 5 free parameters" in p for p in verdict["problems"])
    healthy = fit(grid_runs(n=80, noise=0.003, seed=2), options=QUICK)
    assert assess(healthy)["ok"], assess(healthy)["problems"]


def test_health_flags_a_backtest_that_missed() -> None:
    healthy = fit(grid_runs(n=80, noise=0.003, seed=2), options=QUICK)
    missed = {"test_budgets": [1e19], "mean_abs_rel": 0.12, "max_abs_rel": 0.2}
    verdict = assess(healthy, backtest=missed)
    assert not verdict["ok"] and "12.0%" in verdict["problems"][0]
    skipped = assess(healthy, backtest={"not_backtested": "1 budget left; add 1 more budget"})
    assert skipped["problems"] == ["not backtested: 1 budget left; add 1 more budget"]


def test_predict_refuses_an_unhealthy_fit_with_exit_status_3(tmp_path, capsys) -> None:
    runs = grid_runs(n=6, noise=0.01, seed=1)
    result = fit(runs, options=FitOptions(bootstrap=30, grid_stride=5, workers=1))
    result = type(result)(**{**result.__dict__, "health": assess(result)})
    save_fit(result, tmp_path / "fit.json")
    argv = ["predict", "--fit", str(tmp_path / "fit.json"), "--flops", "1e21"]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 3
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "cannot support a prediction" in err and "6 runs" in err
    assert main([*argv, "--allow-unhealthy", "--json"]) == 0
    out = capsys.readouterr()
    assert "unhealthy fit" in out.err and "loss" in json.loads(out.out)


def test_predict_prints_both_intervals_labelled(noisy_fit, tmp_path, capsys) -> None:
    save_fit(noisy_fit, tmp_path / "fit.json")
    assert load_fit(tmp_path / "fit.json").noise == noisy_fit.noise
    assert main(["predict", "--fit", str(tmp_path / "fit.json"), "--flops", "1e20"]) == 0
    out = capsys.readouterr().out
    assert "90% CI of the expected loss" in out and "90% prediction interval" in out
    assert "residuals" in out


@pytest.mark.slow
def test_interval_coverage_on_synthetic_laws_with_known_noise() -> None:
    """The 90% prediction interval covers held-out runs, and the 90% confidence interval covers
    the true mean curve, 85-95% of the time over 200 tables drawn from a known law."""
    sigma, draws = 0.01, 200
    pi_hits = ci_hits = 0
    for k in range(draws):
        runs = grid_runs(n=40, noise=sigma, seed=1000 + k, n_range=(1e7, 1e9), tpp_range=(5, 100))
        opts = FitOptions(bootstrap=100, seed=k, level=0.9, grid_stride=5, workers=1)
        result = fit(runs, options=opts)
        rng = np.random.default_rng(k)
        N = float(np.exp(rng.uniform(np.log(1e7), np.log(1e9))))
        D = N * float(np.exp(rng.uniform(np.log(5), np.log(100))))
        truth = float(chinchilla_loss(CHINCHILLA_TRUE, N, D))
        new_run = truth * math.exp(sigma * rng.standard_normal())
        pred = Predictor(result).at_size(N, D)
        pi_hits += pred.loss_pi[0] <= new_run <= pred.loss_pi[1]
        ci_hits += pred.loss_ci[0] <= truth <= pred.loss_ci[1]
    print(f"coverage over {draws} tables: PI {pi_hits / draws:.3f}, CI {ci_hits / draws:.3f}")
    assert 0.85 <= pi_hits / draws <= 0.95
    assert 0.85 <= ci_hits / draws <= 0.95


def test_seed_replicates_do_not_narrow_the_interval_as_if_they_were_new_settings() -> None:
    """Three seeds of one setting are one point of the design, not three: the bootstrap draws
    settings, so copying every run under two more seeds leaves the intervals about as wide."""
    base = grid_runs(n=40, noise=0.01, seed=7)
    tripled = pd.concat([base.assign(seed=s) for s in range(3)], ignore_index=True)
    opts = FitOptions(bootstrap=80, seed=0, level=0.9, grid_stride=5, workers=1)

    def width(runs: pd.DataFrame) -> float:
        lo, hi = fit(runs, options=opts).ci["a"]
        return hi - lo

    one, three = width(base), width(tripled)
    assert three == pytest.approx(one, rel=0.3)
    # resampled as independent rows, the copies would shrink it by about sqrt(3)
    rows = width(tripled.drop(columns="seed"))
    assert rows < 0.75 * one


def _ladder(noise: float) -> pd.DataFrame:
    from synthetic_runs import isoflop_runs

    return isoflop_runs(budgets=(1e17, 3e17, 1e18), sizes_per_budget=5, noise=noise, seed=1)


def test_the_width_gates_judge_the_same_fit_the_same_whatever_level_it_reports() -> None:
    """A refit at --level 0.8 must not pass what a 0.95 fit refuses: the gates read the
    bootstrap samples at one fixed level."""
    from scaling.analysis.prediction.health import MAX_EXPONENT_WIDTH

    runs = _ladder(noise=0.02)
    verdicts = {}
    for level in (0.8, 0.95, 0.99):
        result = fit(runs, approach=2, options=FitOptions(bootstrap=200, seed=0, level=level))
        verdicts[level] = [p for p in assess(result)["warnings"] if "not determined" in p]
    a = result.bootstrap.samples["a"]
    a = a[np.isfinite(a)]

    def width(level: float) -> float:
        lo, hi = np.percentile(a, [50 - 50 * level, 50 + 50 * level])
        return float(hi - lo)

    # the case that split the verdicts: a's 95% interval is wider than the gate, its 90% narrower
    assert width(0.95) > MAX_EXPONENT_WIDTH > width(0.9)
    assert verdicts[0.8] == verdicts[0.95] == verdicts[0.99] == []


def test_an_undetermined_allocation_exponent_is_one_problem_not_four() -> None:
    """b = 1 - a and D_coef = 1 / (6 N_coef) are derived from a and N_coef; N_coef at C = 1 trades
    off against a across tens of decades: only a (and the size at the data's centre) are judged,
    as warnings that the question weighs."""
    result = fit(_ladder(noise=0.03), approach=2, options=FitOptions(bootstrap=200, seed=0))
    undetermined = [p for p in assess(result)["warnings"] if "not determined" in p]
    assert len(undetermined) == 1 and undetermined[0].startswith("exponent a "), undetermined


def test_a_frontier_that_did_not_converge_is_a_problem() -> None:
    """Approaches 1 and 2 predict losses through the frontier: its fit's convergence is gated."""
    from dataclasses import replace

    result = fit(_ladder(noise=0.005), approach=2, options=FitOptions(bootstrap=50, seed=0))
    assert assess(result)["ok"], assess(result)["problems"]
    stalled = replace(result, frontier={**result.frontier, "converged": False})
    assert any("frontier's fit did not converge" in p for p in assess(stalled)["problems"])
