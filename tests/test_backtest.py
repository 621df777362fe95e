"""The backtest of `scaling fit` (scaling/analysis/report/stats.py): it holds out whole budgets by
rank of compute (the top one, the top two from 5 budgets on, or `--backtest-holdout K`), never a
compute quantile, and a fit it cannot backtest says "not backtested" in its health, which makes
`scaling predict` refuse it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from synthetic_runs import grid_runs, isoflop_runs

from scaling.analysis.fitting.fit import FitOptions, fit, fit_law
from scaling.analysis.fitting.fit_dir import fit_to_dir
from scaling.analysis.report.stats import backtest
from scaling.cli import main

QUICK = FitOptions(grid_stride=31, polish=1, workers=1)
FAST = ["--bootstrap", "0", "--workers", "1"]


def demo_like(budgets: tuple[float, ...]) -> pd.DataFrame:
    """An IsoFLOP ladder as `make demo` plans it: 5 sizes per budget plus a second seed of the
    centre size, every run's counted FLOPs equal to its planned budget."""
    runs = isoflop_runs(budgets=budgets, sizes_per_budget=5)
    centre = runs.groupby("flops").nth(2).assign(loss=lambda r: r["loss"] * 1.003)
    runs = pd.concat([runs, centre], ignore_index=True)
    return runs.assign(planned_flops=runs["flops"])


def test_budgets_equal_to_their_planned_flops_are_backtested(tmp_path) -> None:
    # The old backtest held out the runs above the 0.75 quantile of compute: with 6 runs in each
    # of 3 budgets that quantile is the top budget's own compute, nothing was above it, and the
    # report had no backtest while health said OK.
    table = tmp_path / "runs.csv"
    demo_like((1e17, 3e17, 1e18)).to_csv(table, index=False)
    out = fit_to_dir(table, tmp_path / "fit", approach=2, options=QUICK)
    assert out.result.health["ok"], out.result.health["problems"]
    text = (tmp_path / "fit" / "report.md").read_text()
    assert "## Backtest" in text and "The backtest held out the top 1 of 3 budgets" in text
    assert "2 budgets fitted (IsoFLOP refit on their runs only), 1 IsoFLOP minima predicted" in text
    # approach 3 on the same runs: the 6 runs of the 1e18 budget predicted from the other 12
    runs = demo_like((1e17, 3e17, 1e18))
    bt = backtest(runs, fit_law(runs, "chinchilla", QUICK))
    assert (bt["n_test"], bt["n_train"]) == (6, 12)
    assert bt["test_budgets"] == [pytest.approx(1e18)]
    assert bt["table"]["flops"].tolist() == [pytest.approx(1e18)] * 6


@pytest.mark.parametrize(
    ("budgets", "held"),
    [
        ((1e17, 3e17, 1e18, 3e18), [3e18]),
        ((1e17, 3e17, 1e18, 3e18, 1e19), [3e18, 1e19]),
        ((1e17, 3e17, 1e18, 3e18, 1e19, 3e19), [1e19, 3e19]),
    ],
)
def test_four_budgets_hold_out_the_top_one_five_and_six_the_top_two(budgets, held) -> None:
    runs = isoflop_runs(budgets=budgets)  # 9 sizes per budget
    kept = len(budgets) - len(held)
    iso = backtest(runs, fit(runs, approach=2))
    assert iso["test_budgets"] == pytest.approx(held)
    assert iso["train_budgets"] == pytest.approx(list(budgets[:kept]))
    assert iso["table"]["flops"].tolist() == pytest.approx(held)
    assert f"held out the top {len(held)} of {len(budgets)} budgets" in iso["held_out"]
    law = backtest(runs, fit_law(runs, "chinchilla", QUICK))
    assert (law["n_test"], law["n_train"]) == (9 * len(held), 9 * kept)
    assert sorted(set(law["table"]["flops"].round(-10))) == pytest.approx(held)


def test_a_grid_without_budgets_holds_out_its_top_quarter_of_runs() -> None:
    runs = grid_runs(n=60, seed=2)  # log-uniform N and D: every run has its own compute
    bt = backtest(runs, fit_law(runs, "chinchilla", QUICK))
    top = np.sort(runs["flops"].to_numpy())[-15:]  # a quarter of 60 runs
    assert (bt["n_test"], bt["n_train"]) == (15, 45)
    assert np.array_equal(np.sort(bt["table"]["flops"].to_numpy()), top)
    assert "held out the top 15 of 60 budgets" in bt["held_out"]
    assert "each compute a budget of its own" in bt["grouped_by"]


def test_a_two_budget_fit_is_not_backtested_and_predict_refuses_it(tmp_path, capsys) -> None:
    table, out = tmp_path / "runs.csv", tmp_path / "fit"
    isoflop_runs(budgets=(1e18, 3e18)).to_csv(table, index=False)
    assert main(["fit", str(table), "--approach", "2", "--out", str(out), *FAST]) == 0
    problems = json.loads((out / "fit.json").read_text())["health"]["problems"]
    assert len(problems) == 1 and problems[0].startswith("not backtested: 2 budgets")
    assert "leaves 1 to fit" in problems[0] and problems[0].endswith("; add 1 more budget")
    assert "**Not backtested**" in (out / "report.md").read_text()
    capsys.readouterr()
    argv = ["predict", "--fit", str(out), "--flops", "1e19"]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 3 and "not backtested" in err and "\n" not in err
    assert main([*argv, "--allow-unhealthy"]) == 0


def test_backtest_holdout_chooses_the_count_and_the_quantile_flag_is_refused(
    tmp_path, capsys
) -> None:
    table, out = tmp_path / "runs.csv", tmp_path / "fit"
    isoflop_runs(budgets=(1e17, 3e17, 1e18, 3e18, 1e19, 3e19)).to_csv(table, index=False)
    argv = ["fit", str(table), "--approach", "2", "--out", str(out), *FAST]
    assert main([*argv, "--backtest-holdout", "3"]) == 0
    doc = json.loads((out / "fit.json").read_text())
    assert doc["options"]["backtest_holdout"] == 3
    assert not any("not backtested" in p for p in doc["health"]["problems"])
    text = (out / "report.md").read_text()
    assert "held out the top 3 of 6 budgets by compute (--backtest-holdout 3)" in text
    assert "3 budgets fitted" in text and "3 IsoFLOP minima predicted" in text
    assert main(["report", str(out), "--backtest-holdout", "4"]) == 0  # re-rendered: top 4
    assert "3 budgets fitted" not in (text := (out / "report.md").read_text())
    assert "the top 4 of 6 budgets" in text and "2 budgets fitted" in text
    assert main([*argv, "--backtest-holdout", "5"]) == 0
    problems = json.loads((out / "fit.json").read_text())["health"]["problems"]
    assert problems[-1].endswith("add 1 more budget, or pass --backtest-holdout 4")
    capsys.readouterr()
    for command in (argv, ["report", str(out)]):
        with pytest.raises(SystemExit) as exc:
            main([*command, "--backtest-quantile", "0.75"])
        err = capsys.readouterr().err.strip()
        assert exc.value.code == 2 and "\n" not in err
        assert "--backtest-quantile was replaced by --backtest-holdout K" in err


def test_the_backtest_is_held_to_the_goal_at_its_own_distance_plus_the_runs_noise() -> None:
    """The product's goal is 1.5% at 10x beyond the data: a backtest 10x out may miss by 1.5%,
    one 3.16x out by 0.75%, each plus two sigma of the run noise (hand-computed)."""
    from scaling.analysis.prediction.health import _backtest, backtest_limit

    ten = {"train_budgets": [1e17, 3e17], "test_budgets": [3e18], "mean_abs_rel": 0.02}
    assert backtest_limit(ten, {"sigma_log": 0.0}) == pytest.approx(0.015)
    assert backtest_limit(ten, {"sigma_log": 0.005}) == pytest.approx(0.025)
    half = {**ten, "test_budgets": [3e17 * 10**0.5]}
    assert backtest_limit(half, None) == pytest.approx(0.0075)
    # two held out: their geometric mean's distance, 3x and 9x -> 5.2x
    two = {**ten, "test_budgets": [9e17, 2.7e18]}
    assert backtest_limit(two, {"sigma_log": 0}) == pytest.approx(0.015 * np.log10(27**0.5))
    assert _backtest(ten, {"sigma_log": 0.0})[0].startswith("the backtest (")
    assert _backtest(ten, {"sigma_log": 0.005}) == []


def test_the_same_runs_in_another_row_order_give_the_same_interval(tmp_path) -> None:
    """Runs finish in whatever order parallel workers end them; the run table's row order must
    not move the bootstrap (two fresh clones of `make demo` printed [1.742, 2.117] and
    [1.747, 2.117] from the same 18 losses in two orders)."""
    from scaling.analysis.prediction.predict import Predictor

    runs = isoflop_runs(budgets=(1e17, 3e17, 1e18), sizes_per_budget=5, noise=0.01, seed=3)
    intervals = []
    for k, order in enumerate((runs, runs.sample(frac=1.0, random_state=1))):
        table = tmp_path / f"runs{k}.csv"
        order.to_csv(table, index=False)
        out = fit_to_dir(table, tmp_path / f"fit{k}", approach=2, options=FitOptions(
            bootstrap=50, seed=0), report=False)  # fmt: skip
        intervals.append(Predictor(out.result).at_budget(3e18).loss_pi)
    assert intervals[0] == intervals[1]
