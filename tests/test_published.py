"""The fit reproduces a published answer: Besiroglu et al. 2024's refit of Chinchilla.

Hoffmann et al. 2022's approach 3 on the 240 points digitised from their Fig. 4 (data/README.md;
the five highest-loss points dropped, as the replication does), through the real CLI. Published
(Besiroglu et al. 2024, arXiv:2404.10102, Table 1): E = 1.82, A = 482.01, B = 2085.43,
alpha = 0.3478, beta = 0.3658, hence a = beta / (alpha + beta) = 0.5126 for N_opt ∝ C^a.

And Porian et al. 2024 (arXiv:2406.19146, data/README.md), RefinedWeb, "Correcting warmup" (base
hyperparameters, short warmup, Kaplan decay, standard parameter count, validation loss): the
authors' a = 0.602, 95% interval (0.59, 0.62) -- their weighted fit of log N_opt on log C through
their per-budget optima, each weighted by 1 / sd(log N_opt)^2, the bootstrap over their seed noise
for the interval (paper_tables.py of github.com/formll/resolving-scaling-law-discrepancies on its
summary_df at data commit 859f146). Approach 2 on the same sweep: the bootstrap of a is centred on
the point estimate (issue 9's "done when").
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaling.analysis.fitting.fit import FitOptions, fit
from scaling.analysis.fitting.frontier import fit_power_law
from scaling.cli import main

DATA = Path(__file__).resolve().parent.parent / "data" / "chinchilla_epoch_ndl.csv"
PORIAN = DATA.parent / "porian2024_isoflop.csv"
PORIAN_PAIRS = DATA.parent / "porian2024_optimal_pairs.csv"
# the "Correcting warmup" configuration on RefinedWeb (132 runs at 12 budgets 1.25e16..2.56e19)
WARMUP_FIXED = {"dataset": "rw", "hparams": "base", "warmup": "short", "decay": "kaplan"}
WARMUP_FIXED |= {"param_count": "standard", "loss_type": "val"}
PUBLISHED_A, PUBLISHED_A_95 = 0.602, (0.59, 0.62)  # Porian et al.'s estimate and 95% interval


def test_approach_3_reproduces_the_chinchilla_replication(tmp_path: Path) -> None:
    points = pd.read_csv(DATA)
    points = points[points["excluded_top5_loss"] == 0]
    assert len(points) == 240
    table = tmp_path / "chinchilla.csv"
    points.rename(columns={"N": "params", "D": "tokens", "C": "flops"}).to_csv(table, index=False)

    code = main(["fit", str(table), "--bootstrap", "0", "--no-report", "--out", str(tmp_path)])
    assert code == 0
    fit = json.loads((tmp_path / "fit.json").read_text())
    p = fit["params"]
    assert p["alpha"] == pytest.approx(0.3478, abs=0.002)
    assert p["beta"] == pytest.approx(0.3658, abs=0.003)
    assert p["E"] == pytest.approx(1.82, abs=0.01)
    assert p["A"] == pytest.approx(482.01, rel=0.03)
    assert p["B"] == pytest.approx(2085.43, rel=0.05)
    assert fit["exponents"]["a"] == pytest.approx(0.5126, abs=0.003)


def _rows(path: Path) -> pd.DataFrame:
    table = pd.read_csv(path)
    return table[(table[list(WARMUP_FIXED)] == pd.Series(WARMUP_FIXED)).all(axis=1)]


def _porian_runs() -> pd.DataFrame:
    rows = _rows(PORIAN)
    assert len(rows) == 132
    return pd.DataFrame(
        {
            "params": rows["N"],
            "tokens": rows["D"],
            "loss": rows["loss"],
            "flops": rows["C"],
            "planned_flops": rows["C"],
        }
    )


def test_the_weighted_allocation_fit_gives_porians_exponent_from_their_optima() -> None:
    """N_opt(C) fitted through the authors' own per-budget optima, weighted as they weight them,
    gives their published a (the step after the vertices; the whole fit is checked below)."""
    pairs = _rows(PORIAN_PAIRS)
    assert len(pairs) == 12
    C, n_opt, sd = (pairs[k].to_numpy() for k in ("C", "N_opt", "n_star_std_log"))
    # derived here: weighted least squares with numpy (np.polyfit weights multiply residuals)
    by_hand = np.polyfit(np.log(C), np.log(n_opt), 1, w=1 / sd)[0]
    assert by_hand == pytest.approx(PUBLISHED_A, abs=5e-4)  # published to three digits
    assert fit_power_law(C, n_opt, 1 / sd**2).exponent == pytest.approx(PUBLISHED_A, abs=5e-4)


@pytest.mark.xfail(
    strict=True,
    reason="approach 2 gives a = 0.635 on this sweep: a parabola through all 6-16 sizes of a "
    "budget puts the small budgets' vertices below the authors' interpolated minima",
)
def test_approach_2_on_porians_sweep_gives_their_exponent_within_their_interval() -> None:
    a = fit(_porian_runs(), approach=2, options=FitOptions(bootstrap=0)).allocation["a"]
    assert PUBLISHED_A_95[0] <= a <= PUBLISHED_A_95[1]


def test_approach_2_bootstrap_is_centred_on_the_porian_isoflop_data() -> None:
    result = fit(_porian_runs(), approach=2, options=FitOptions(bootstrap=1000, seed=0))
    a = result.allocation["a"]
    assert len(result.isoflop) == 12 and all(m.used for m in result.isoflop)
    samples = result.bootstrap.samples["a"]
    assert result.bootstrap.n_failed == 0 and np.isfinite(samples).all()
    # before issue 9: mean 0.646 against 0.659, the top budget dropped in 38% of resamples
    assert abs(samples.mean() - a) < 0.005
    lo, hi = result.ci["a"]
    assert lo < a < hi and hi - lo < 0.1
    assert result.to_dict()["ci"]["a"] == [lo, hi]  # the interval is reported in fit.json
    # the budgets whose vertex leaves its sizes in resamples are named, not dropped
    outside = [m.outside_fraction for m in result.isoflop]
    assert max(outside) > 0.1 and sum("fell outside" in w for w in result.warnings) == sum(
        f > 0.1 for f in outside
    )
