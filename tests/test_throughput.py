"""The throughput model's wall-clock: fitted to runs' measured wall-clock, and the time of a
stage that trains several runs at once."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaling.analysis.design.throughput import (
    Throughput,
    throughput_from_runs,
    throughput_from_wall,
)
from scaling.analysis.report.study_report import StageRecord, stage_table

DATA = Path(__file__).parent / "data"
# a machine with known costs: 80,000 tokens/s at 30K params falling as N^-0.8, 3 ms a step,
# 1.5 s a run
TRUTH = Throughput(n0=3e4, t0=8e4, slope=-0.8, source="truth", step_s=0.003, run_s=1.5)


def _ladder(truth: Throughput, noise: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """A ladder-like table: 5 budgets x 6 sizes, batch 8 x 32 tokens, wall-clock from
    ``truth`` (times a log-normal factor of sd ``noise``)."""
    rng = np.random.default_rng(seed)
    rows = []
    for budget in (4e10, 1.2e11, 3.7e11, 1.1e12, 3.3e12):
        for n in np.geomspace(3e3, 3e5, 6):
            tokens = budget / (6 * n)
            if not 1 <= tokens / n <= 1000:
                continue
            steps = int(tokens / 256)
            wall = truth.seconds(n, steps * 256, steps) * np.exp(noise * rng.standard_normal())
            rows.append(
                {
                    "params": n,
                    "tokens": steps * 256,
                    "loss": 2.0,
                    "batch_size": 8,
                    "seq_len": 32,
                    "wall_s": wall,
                    "tokens_per_s": tokens / wall,
                }
            )
    return pd.DataFrame(rows)


def test_the_wall_clock_fit_recovers_a_known_machine(tmp_path) -> None:
    path = tmp_path / "runs.csv"
    _ladder(TRUTH).to_csv(path, index=False)
    tp = throughput_from_runs(path)
    assert "wall-clock" in tp.source
    assert tp.slope == pytest.approx(-0.8, abs=1e-4)
    assert tp.step_s == pytest.approx(0.003, rel=1e-3)
    assert tp.run_s == pytest.approx(1.5, rel=1e-3)
    assert tp.tokens_per_s(3e4) == pytest.approx(8e4, rel=1e-3)


def test_with_noisy_runs_the_fit_estimates_another_ladder_within_its_noise(tmp_path) -> None:
    """Each run measured with 10% noise (18 runs pass the guards): the fitted model's estimate
    of another ladder's total (its sizes 1.4x larger at the same budgets) is within 8% of that
    ladder's true time, for three draws of the noise."""
    other = _ladder(TRUTH)
    other = other.assign(params=other["params"] * 1.4, tokens=other["tokens"] / 1.4)
    steps = (other["tokens"] / 256).astype(int)
    truth = sum(TRUTH.seconds(n, t, s) for n, t, s in zip(other.params, other.tokens, steps))
    for seed in range(3):
        path = tmp_path / f"runs{seed}.csv"
        _ladder(TRUTH, noise=0.10, seed=seed).to_csv(path, index=False)
        tp = throughput_from_runs(path)
        est = sum(tp.seconds(n, t, s) for n, t, s in zip(other.params, other.tokens, steps))
        assert est == pytest.approx(truth, rel=0.08)


def test_too_few_runs_with_a_wall_clock_fall_back_to_tokens_per_second(tmp_path) -> None:
    path = tmp_path / "runs.csv"
    _ladder(TRUTH).head(4).to_csv(path, index=False)
    tp = throughput_from_runs(path)
    assert "wall-clock" not in tp.source and tp.step_s == 0 and tp.run_s == 0


def test_a_sweep_hands_its_jobs_in_order_to_the_first_free_worker() -> None:
    tp = Throughput(n0=1e4, t0=1e4, slope=0.0, source="flat", sweep_s=8.0)
    assert tp.wall_seconds([10, 10, 10, 10], workers=2) == 8 + 20
    assert tp.wall_seconds([10, 10, 10, 10], workers=1) == 8 + 40
    assert tp.wall_seconds([100, 1, 1], workers=2) == 8 + 100  # the longest run decides
    assert tp.wall_seconds([1, 1, 100], workers=2) == 8 + 101  # it started last
    assert tp.wall_seconds([], workers=2) == 8  # nothing to train: the sweep still starts
    jobs = replace(tp, job_s=1.5)  # every job, a skipped one (0 s of training) too
    assert jobs.wall_seconds([0, 0, 0, 0], workers=2) == 8 + 3.0
    assert jobs.wall_seconds([10, 0, 0], workers=2) == 8 + 11.5


def test_the_default_estimates_stages_it_was_not_fitted_to_within_20_percent() -> None:
    """The default is Throughput.fit_wall on 22 runs measured on the reference machine on
    2026-12-07 (tests/data/throughput_reference.csv: `make demo`'s pilot and LR check, and
    sitepackages' denser ladder at 1e13, 3.2K..170K parameters). Two stages it never saw, as
    measured the same day: `make demo`'s ladder (18 runs in the preset's order, 4 of them
    already trained, 2 at a time: 60.6 s) and sitepackages' verification at 1e13 (3 runs of
    71K..337K parameters one after the other: 761 s)."""
    tp = Throughput.default()
    ref = pd.read_csv(DATA / "throughput_reference.csv")
    fitted = throughput_from_wall(ref, "reference")
    assert fitted is not None
    assert tp.slope == pytest.approx(fitted.slope, abs=1e-3)
    assert tp.step_s == pytest.approx(fitted.step_s, rel=1e-3)
    assert tp.seconds(1e5, 1e7, 40_000) == pytest.approx(fitted.seconds(1e5, 1e7, 40_000), 1e-3)
    held = pd.read_csv(DATA / "throughput_heldout.csv")
    for stage, workers, measured in (("demo ladder", 2, 60.6), ("sitepackages verify", 1, 761.0)):
        runs = held[held["stage"] == stage]
        jobs = [
            tp.seconds(n, t, int(t // (b * s))) if trained else 0.0
            for n, t, b, s, trained in zip(
                runs.params, runs.tokens, runs.batch_size, runs.seq_len, runs.trained
            )
        ]
        assert tp.wall_seconds(jobs, workers) == pytest.approx(measured, rel=0.20), stage


def test_a_study_stage_run_in_process_is_estimated_with_its_smaller_fixed_costs() -> None:
    """Since a study runs its sweeps in its own process, `make demo`'s ladder (the same 18 runs,
    4 already trained) took 49.4 s, not 60.6: no Python start, warm workers. The default's
    sweep and job costs would put it at 58.5 s (+18%); with IN_PROCESS_COSTS (measured on the
    starts of that demo's three stages and its jobs' gaps) at 49.0 s."""
    from scaling.analysis.design.throughput import IN_PROCESS_COSTS

    tp = Throughput.default()
    runs = pd.read_csv(DATA / "throughput_heldout.csv").query("stage == 'demo ladder'")
    jobs = [
        tp.seconds(n, t, int(t // (b * s))) if trained else 0.0
        for n, t, b, s, trained in zip(
            runs.params, runs.tokens, runs.batch_size, runs.seq_len, runs.trained
        )
    ]
    staged = replace(tp, **IN_PROCESS_COSTS)
    assert staged.wall_seconds(jobs, 2) == pytest.approx(49.4, rel=0.10)
    assert tp.wall_seconds(jobs, 2) > 1.15 * 49.4  # a standalone sweep's costs: too high
    # the driver validates every grid point before the first job starts
    assert staged.wall_seconds([0.0] * 18, 2) - staged.wall_seconds([0.0] * 5, 2) == (
        pytest.approx(13 * IN_PROCESS_COSTS["point_s"] + (9 - 3) * IN_PROCESS_COSTS["job_s"], 1e-9)
    )


def test_the_study_table_shows_each_stages_estimate_and_its_error() -> None:
    stages = [
        StageRecord("pilot", 13, 1e12, 100.0, [], estimate=120.0),
        StageRecord("ladder", 30, 3e13, 600.0, [], estimate=540.0),
        StageRecord("fit", 0, 0.0, 3.0, []),
    ]
    rows = stage_table(stages)
    assert rows[0].endswith("| wall-clock | estimated | estimate's error |")
    assert rows[2].endswith("| 1.7 min | 2.0 min | +20% |")
    assert rows[3].endswith("| 10.0 min | 9.0 min | -10% |")
    assert rows[4].endswith("| 3 s | - | - |")
    # the total's estimate covers the estimated stages only: 660 s against 700 s
    assert rows[5].endswith("| 11.0 min | -6% (the estimated stages) |")


def test_a_study_plans_its_ladder_with_the_speed_its_pilot_measured(capsys) -> None:
    """After the pilot, the study refits the model to its own runs' wall-clock (this machine,
    this corpus, its launcher), and the ladder's runs are timed with it."""
    from scaling.analysis.design.options import PlanOptions
    from scaling.analysis.design.prior import default_prior
    from scaling.cli.study import STUDY_RECIPE
    from scaling.cli.study_run import Study

    runs = _ladder(TRUTH)

    class Measured(Study):
        def table(self, curves: bool = False) -> pd.DataFrame:
            return runs

    opts = PlanOptions(target_flops=1e13, **STUDY_RECIPE)
    study = Measured("x", opts, [], default_prior(), Throughput.default(), "sqlite:///u.db", "c")
    study.refit_throughput()
    assert study.throughput.run_s == pytest.approx(1.5, rel=1e-3)
    assert study.throughput.sweep_s == Throughput.default().sweep_s
    assert "study: throughput: fitted to the wall-clock of" in capsys.readouterr().out
    plan = study.ladder_plan(default_prior())
    r = plan.runs[0]
    assert r.seconds == pytest.approx(TRUTH.seconds(r.params, r.tokens, r.steps), rel=1e-3)
