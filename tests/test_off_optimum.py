"""Predict the run that will be trained (issue 21, item 2): an approach-2 fit asked about a size
off the compute-optimal one adds the IsoFLOP parabola's cost of the distance, and `scaling
verify` scores the snapped shape against that, not against the optimum's loss."""

from __future__ import annotations

import pytest
from synthetic_runs import CHINCHILLA_TRUE, chinchilla_loss, isoflop_runs

from scaling.analysis.design.shapes import Shape
from scaling.analysis.fitting.allocation import chinchilla_optimal
from scaling.analysis.fitting.fit import fit
from scaling.analysis.fitting.results import FitOptions
from scaling.analysis.prediction.predict import Predictor
from scaling.training.verify import predicted_for


@pytest.fixture(scope="module")
def ladder() -> Predictor:
    # budgets 1e17..1e19, 9 sizes each over 1.2 decades, 0.1% noise, from a known Chinchilla law
    return Predictor(fit(isoflop_runs(noise=0.001), approach=2, options=FitOptions(bootstrap=200)))


@pytest.mark.parametrize("C", [3e18, 3e19])  # inside the ladder, and 3x beyond its top budget
@pytest.mark.parametrize("factor", [0.5, 4.0])
def test_a_size_off_the_optimum_costs_what_the_true_law_says(ladder, C, factor) -> None:
    n_opt, _ = chinchilla_optimal(CHINCHILLA_TRUE, C)
    N = float(n_opt) * factor
    D = C / (6 * N)
    truth = float(chinchilla_loss(CHINCHILLA_TRUE, N, D))  # the law the runs were drawn from
    got = ladder.at_size(N, D).loss
    assert got == pytest.approx(truth, rel=3e-3)
    # the frontier alone (what verify compared against before) misses the off-optimum run
    assert abs(ladder.at_budget(C).loss / truth - 1) > 7e-3


def test_the_interval_widens_with_the_distance_from_the_optimum(ladder) -> None:
    """Each resample's own N_opt sets its penalty: the allocation's doubt enters the interval."""
    C = 3e18
    n_opt = ladder.at_budget(C).params
    width = {}
    for factor in (1.0, 4.0):
        N = n_opt * factor
        lo, hi = ladder.at_size(N, C / (6 * N)).loss_ci
        width[factor] = hi - lo
    assert width[4.0] > 1.2 * width[1.0]


def test_verify_scores_the_snapped_shape_not_the_optimum(ladder) -> None:
    C = 3e18
    n_opt, _ = chinchilla_optimal(CHINCHILLA_TRUE, C)
    N = int(2 * n_opt)  # a shape snapped to twice the optimal size
    shape = Shape(n_layer=8, d_model=512, n_head=8, params=N, model=None)  # type: ignore[arg-type]
    tokens = int(C / (6 * N))
    pred = predicted_for(ladder, C, shape, tokens)
    truth = float(chinchilla_loss(CHINCHILLA_TRUE, N, tokens))
    assert pred.params == N and pred.loss == pytest.approx(truth, rel=3e-3)
