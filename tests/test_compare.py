"""`scaling compare` (analysis/prediction/compare.py, report/compare.py): two fits side by side and
the compute the worse one needs to match the better one, against hand computations."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from synthetic_runs import CHINCHILLA_TRUE, isoflop_runs

from scaling.analysis.prediction.compare import compare
from scaling.cli import main
from scaling.errors import EXIT_UNHEALTHY_FIT, EXIT_USER_ERROR, UnhealthyFitError, UserError

LAW = ("E", "A", "B", "alpha", "beta")
TARGET = 1e21


def optimal_loss_terms(p: dict) -> tuple[float, float]:
    """``(K, gamma)`` of the Chinchilla compute-optimal loss ``E + K (C/6)^-gamma``, by hand:
    N_opt = G (C/6)^(beta/(alpha+beta)), G = (alpha A / (beta B))^(1/(alpha+beta))."""
    a, b = p["alpha"], p["beta"]
    G = (a * p["A"] / (b * p["B"])) ** (1 / (a + b))
    return p["A"] * G**-a + p["B"] * G**b, a * b / (a + b)


def hand_loss(p: dict, C: float) -> float:
    K, gamma = optimal_loss_terms(p)
    return p["E"] + K * (C / 6) ** -gamma


def hand_compute(p: dict, loss: float) -> float:
    """The least C whose compute-optimal loss under ``p`` is ``loss`` (inf below E)."""
    K, gamma = optimal_loss_terms(p)
    if loss <= p["E"]:
        return math.inf
    return 6 * ((loss - p["E"]) / K) ** (-1 / gamma)


def write_fit(
    folder: Path,
    params: dict,
    *,
    spread: float = 0.01,
    seed: int = 0,
    healthy: bool = True,
    approach: int = 3,
    runs: pd.DataFrame | None = None,
) -> Path:
    """A fit.json with the given law parameters and bootstrap replicates scattered around them
    (each parameter times exp(spread * normal)), as `scaling fit` writes it."""
    rng = np.random.default_rng(seed)
    n = 200
    samples = {k: (v * np.exp(spread * rng.standard_normal(n))).tolist() for k, v in params.items()}
    a = params["beta"] / (params["alpha"] + params["beta"])
    doc = {
        "law": "chinchilla",
        "approach": approach,
        "params": dict(params) if approach == 3 else {},
        "exponents": {"a": a, "b": 1 - a},
        "allocation": {"a": a, "b": 1 - a, "N_coef": 0.1, "D_coef": 1.6},
        "n_points": 45,
        "ranges": {"N": [1e8, 1e10], "D": [1e9, 1e11], "C": [1e18, 1e20]},
        "options": {"level": 0.9, "seed": 0},
        "convergence": {"converged": True, "message": "ok", "n_starts": 10},
        "bootstrap": {"n_resamples": n, "seed": seed, "level": 0.9, "samples": samples},
        "noise": {"sigma_log": 0.01, "dof": 40, "source": "residuals"},
        "health": {"ok": healthy, "problems": [] if healthy else ["12 runs for 5 free params"]},
        "conventions": {"params": "params", "flops": "6ND"},
    }
    if approach == 2:
        doc["frontier"] = {"law": "kaplan_c", "params": {"C_c": 1e5, "alpha_C": 0.05}}
        doc["bootstrap"]["samples"] = {"a": [a] * n, "b": [1 - a] * n}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "fit.json").write_text(json.dumps(doc))
    if runs is not None:
        runs.to_csv(folder / "runs.csv", index=False)
    return folder / "fit.json"


def scaled(p: dict, s: float, **changes: float) -> dict:
    """``p`` with A and B both times ``s`` (same allocation, K times s) and other changes."""
    return {**p, "A": p["A"] * s, "B": p["B"] * s, **changes}


# ---- the multiplier against hand computations -------------------------------------------------


def test_a_worse_corpus_needs_s_to_the_one_over_gamma_times_the_compute(tmp_path) -> None:
    """A and B both s times larger: the compute-optimal loss is E + s K (C/6)^-gamma, so the
    worse side reaches the better side's loss at s^(1/gamma) times the compute."""
    good, bad = CHINCHILLA_TRUE, scaled(CHINCHILLA_TRUE, 1.1)
    fa = write_fit(tmp_path / "raw", bad, seed=1, spread=0.002)
    fb = write_fit(tmp_path / "dedup", good, seed=2, spread=0.002)
    cmp = compare([fa, fb], ["raw", "dedup"], TARGET)
    m = cmp.multiplier
    _, gamma = optimal_loss_terms(good)
    assert cmp.sides[m.better].label == "dedup"
    assert m.value == pytest.approx(1.1 ** (1 / gamma), rel=1e-6)  # about 1.86
    assert m.target_loss == pytest.approx(hand_loss(good, TARGET), rel=1e-9)
    assert m.flops_needed == pytest.approx(hand_compute(bad, m.target_loss), rel=1e-6)
    assert m.delta_loss == pytest.approx(hand_loss(bad, TARGET) - hand_loss(good, TARGET))
    # the paired interval holds the point estimate and the ranking rarely flips
    lo, hi = m.ci
    assert lo < m.value < hi and m.n_pairs == 200 and m.flip_share < 0.05
    assert m.delta_loss_ci[0] < m.delta_loss < m.delta_loss_ci[1]
    # the two predictions are the fits' own, with both intervals
    pa = cmp.predictions[0]
    assert pa.loss == pytest.approx(hand_loss(bad, TARGET), rel=1e-9)
    assert pa.loss_ci is not None and pa.loss_pi is not None


def test_a_higher_irreducible_loss_is_solved_for_compute_and_can_be_unreachable(tmp_path) -> None:
    good = CHINCHILLA_TRUE
    worse_e = {**good, "E": good["E"] + 0.05}
    fa = write_fit(tmp_path / "a", good, spread=0.0)
    fb = write_fit(tmp_path / "b", worse_e, spread=0.0)
    C = 1e19
    m = compare([fa, fb], ["a", "b"], C).multiplier
    expected = hand_compute(worse_e, hand_loss(good, C)) / C
    assert m.better == 0 and m.value == pytest.approx(expected, rel=1e-6)
    # at a large enough budget the better loss drops below the worse side's E: never reached
    big = 1e30
    assert hand_loss(good, big) < worse_e["E"]
    cmp = compare([fa, fb], ["a", "b"], big)
    assert math.isinf(cmp.multiplier.value) and cmp.multiplier.unreachable_share == 1.0


def test_the_same_law_twice_is_a_multiplier_of_one_with_an_undecided_ranking(tmp_path) -> None:
    fa = write_fit(tmp_path / "a", CHINCHILLA_TRUE, seed=1)
    fb = write_fit(tmp_path / "b", CHINCHILLA_TRUE, seed=2)
    m = compare([fa, fb], ["a", "b"], TARGET).multiplier
    assert m.value == pytest.approx(1.0) and m.ci[0] < 1 < m.ci[1]
    assert 0.3 < m.flip_share < 0.7


# ---- the report -------------------------------------------------------------------------------


def test_the_report_has_both_columns_the_answer_and_a_figure(tmp_path, capsys) -> None:
    runs = isoflop_runs(budgets=(1e18, 1e19, 1e20), sizes_per_budget=5)
    runs["corpus"] = "sitepackages-3.11-1a2b"
    runs["data.process"] = "[]"
    fa = write_fit(tmp_path / "raw", scaled(CHINCHILLA_TRUE, 1.1), runs=runs)
    fb = write_fit(tmp_path / "dedup", CHINCHILLA_TRUE, runs=runs.assign(corpus="proc-9f"))
    out = tmp_path / "cmp"
    args = [str(fa), str(fb.parent), "--labels", "raw,dedup", "--flops", "1e21", "--out", str(out)]
    assert main(["compare", *args]) == 0
    line = capsys.readouterr().out
    assert "dedup reaches expected loss" in line and "raw needs" in line and "x1.86" in line
    md = (out / "compare.md").read_text()
    assert "| quantity | `raw` | `dedup` |" in md
    for name in LAW + ("a (N_opt ∝ C^a)", "b (D_opt ∝ C^b)"):
        assert f"| `{name}` |" in md
    alpha_row = next(r for r in md.splitlines() if r.startswith("| `alpha` |"))
    assert alpha_row.count("[") == 2  # an interval in each column
    assert "**Health: both fits OK**" in md and "x1.86 the compute [90% CI" in md
    assert "expected loss [CI] at C" in md and "one new run [PI] at C" in md
    assert "sitepackages-3.11-1a2b" in md and "proc-9f" in md
    assert "own corpus's validation split" in md and "![compare.png](compare.png)" in md
    assert (out / "compare.png").stat().st_size > 10_000
    doc = json.loads((out / "compare.json").read_text())
    assert doc["multiplier"]["better"] == "dedup" and doc["multiplier"]["value"] == pytest.approx(
        1.1 ** (1 / optimal_loss_terms(CHINCHILLA_TRUE)[1]), rel=1e-6
    )
    assert [s["label"] for s in doc["sides"]] == ["raw", "dedup"]
    assert doc["sides"][0]["corpus"]["data.process"] == ["[]"]


def test_an_unhealthy_fit_is_refused_unless_allowed_and_then_flagged(tmp_path, capsys) -> None:
    fa = write_fit(tmp_path / "a", CHINCHILLA_TRUE, healthy=False)
    fb = write_fit(tmp_path / "b", CHINCHILLA_TRUE)
    with pytest.raises(UnhealthyFitError, match=r"\(A\): the fit cannot support a comparison"):
        compare([fa, fb], ["A", "B"], TARGET)
    out = tmp_path / "out"
    base = ["compare", str(fa), str(fb), "--flops", "1e21", "--out", str(out)]
    with pytest.raises(SystemExit) as exit_:
        main(base)
    assert exit_.value.code == EXIT_UNHEALTHY_FIT and not out.exists()
    capsys.readouterr()
    assert main([*base, "--allow-unhealthy", "--json"]) == 0
    captured = capsys.readouterr()
    assert "warning: unhealthy fit A: 12 runs" in captured.err
    assert json.loads(captured.out)["sides"][0]["health"]["ok"] is False
    md = (out / "compare.md").read_text()
    assert "**Health: NOT OK" in md and "- `A`: 12 runs for 5 free params" in md


@pytest.mark.parametrize(
    ("extra", "pattern"),
    [
        (["--labels", "raw"], "--labels needs two distinct names"),
        (["--labels", "x,x"], "--labels needs two distinct names"),
        (["--flops", "-1e20"], "--flops must be a positive number"),
    ],
)
def test_bad_arguments_are_one_line(tmp_path, capsys, extra, pattern) -> None:
    fa = write_fit(tmp_path / "a", CHINCHILLA_TRUE)
    fb = write_fit(tmp_path / "b", CHINCHILLA_TRUE)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_:
        main(["compare", str(fa), str(fb), "--flops", "1e21", "--out", str(out), *extra])
    assert exit_.value.code == EXIT_USER_ERROR
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and pattern in err and "\n" not in err
    assert not out.exists()


def test_fits_of_two_approaches_are_refused_and_approach_2_says_why_no_interval(tmp_path) -> None:
    f3 = write_fit(tmp_path / "three", CHINCHILLA_TRUE)
    f2 = write_fit(tmp_path / "two", CHINCHILLA_TRUE, approach=2)
    with pytest.raises(UserError, match="one law and approach: A is approach 3"):
        compare([f3, f2], ["A", "B"], TARGET)
    f2b = write_fit(tmp_path / "two-b", CHINCHILLA_TRUE, approach=2)
    cmp = compare([f2, f2b], ["A", "B"], 1e20)
    assert cmp.multiplier.value == pytest.approx(1.0) and cmp.multiplier.ci is None
    assert any("approach-2 fits bootstrap the allocation" in w for w in cmp.warnings)
