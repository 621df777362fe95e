"""``scaling study``: the pilot brackets a misplaced optimum, the LR check, the prior it hands the
ladder, bad input refused before anything trains, and a killed study finished by a rerun with
no run trained twice."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from scaling.analysis.design.options import PlanOptions
from scaling.analysis.design.plan import plan_ladder
from scaling.analysis.design.prior import Prior, default_prior
from scaling.analysis.design.study import (
    LR_SHIFT_LIMIT,
    PILOT_ROUNDS,
    Measured,
    Vertex,
    design_pilot,
    edge_runs,
    lr_check,
    pilot_prior,
    pilot_vertex,
)
from scaling.analysis.design.throughput import Throughput
from scaling.analysis.report.study_report import STUDY_HEAD, with_study_section
from scaling.cli import main
from scaling.cli.study import STUDY_RECIPE
from scaling.cli.study_run import Study
from scaling.errors import UserError

REPO = Path(__file__).resolve().parent.parent
TP = Throughput.default()


def _opts(target: float) -> PlanOptions:
    return PlanOptions(target_flops=target, **STUDY_RECIPE)


def _true_n_opt(C: float) -> float:
    """A synthetic corpus's optimum: 20K parameters at 1.23e11 FLOPs, N_opt ∝ C^0.5."""
    return 2.0e4 * math.sqrt(C / 1.23e11)


def _loss(params: float, C: float) -> float:
    """An IsoFLOP curve that is a parabola in ln N about the true optimum."""
    return 2.0 + 0.03 * math.log(params / _true_n_opt(C)) ** 2


class _SyntheticStudy(Study):
    """A study whose sweeps train nothing: its table holds the runs the last sweep was given,
    with losses from :func:`_loss` (the synthetic truth)."""

    trained: list

    def _sweep(self, preset, runs, opts, stage, lr_per_point=False):  # type: ignore[no-untyped-def]
        self.trained = list(runs)
        return 0.0, 0.0

    def table(self, curves: bool = False) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {"n_layer": r.shape.n_layer, "d_model": r.shape.d_model, "seed": r.seed,
                 "planned_flops": r.budget, "lr": r.lr, "params": r.params,
                 "loss": _loss(r.params, r.budget)}
                for r in getattr(self, "trained", [])
            ]
        )  # fmt: skip


def _pilot_on_truth(prior: Prior) -> list[Vertex]:
    """The pilot as ``scaling study`` runs it, with the synthetic corpus's losses: the design,
    then edge rounds while a budget's lowest loss sits at an edge (at 1e15 the sizes that pass
    the guards span more than the pilot's two decades)."""
    opts = _opts(1e15)
    budgets, runs = design_pilot(opts, prior, TP)
    for _ in range(PILOT_ROUNDS):
        measured = {
            b: [Measured(r.params, _loss(r.params, b)) for r in runs if r.budget == b]
            for b in budgets
        }
        extra = [r for b in budgets for r in edge_runs(b, measured[b], opts, TP)]
        if not extra:
            break
        runs = runs + extra
    measured = {
        b: [Measured(r.params, _loss(r.params, b)) for r in runs if r.budget == b] for b in budgets
    }
    return [pilot_vertex(b, measured[b]) for b in budgets]


@pytest.mark.parametrize("off", [0.1, 10.0])
def test_the_pilot_finds_the_optimum_when_the_prior_is_off_by_10x(off: float) -> None:
    prior = Prior(n_opt=lambda C: off * _true_n_opt(C), source=f"{off}x the truth")
    vertices = _pilot_on_truth(prior)
    assert len(vertices) == 2
    for v in vertices:
        assert v.interior, v
        assert abs(math.log(v.params / _true_n_opt(v.budget))) < math.log(1.15), v
    # and the ladder's prior, built from them, is centred on the truth at the ladder's top
    centre = pilot_prior(vertices)
    assert abs(math.log(centre.n_opt(3.33e14) / _true_n_opt(3.33e14))) < math.log(1.3)


def test_a_minimum_at_the_pilots_edge_gets_sizes_beyond_it_until_it_is_interior() -> None:
    """The edge rounds: a truth whose optimum lies 1.7x below the pilot's smallest size (under
    tokens-per-parameter guards wide enough to leave sizes below it)."""
    opts = replace(_opts(1e15), tpp_range=(0.05, 2e4))
    budgets, runs = design_pilot(opts, default_prior(), TP)
    b = budgets[0]
    first = [r for r in runs if r.budget == b]
    truth = min(r.params for r in first) / 1.7

    def loss(n: float) -> float:
        return 2.0 + 0.03 * math.log(n / truth) ** 2

    points = [Measured(r.params, loss(r.params)) for r in first]
    assert not pilot_vertex(b, points).interior
    for _ in range(PILOT_ROUNDS):
        extra = edge_runs(b, points, opts, TP)
        assert extra and all(r.params < min(p.params for p in points) for r in extra)
        points += [Measured(r.params, loss(r.params)) for r in extra]
        if pilot_vertex(b, points).interior:
            break
    vertex = pilot_vertex(b, points)
    assert vertex.interior and abs(math.log(vertex.params / truth)) < math.log(1.05)


def test_an_interior_minimum_adds_no_sizes() -> None:
    opts = _opts(1e13)
    prior = Prior(n_opt=_true_n_opt, source="the truth")
    budgets, runs = design_pilot(opts, prior, TP)
    top = [Measured(r.params, _loss(r.params, budgets[0])) for r in runs if r.budget == budgets[0]]
    assert edge_runs(budgets[0], top, opts, TP) == []


def test_the_pilot_is_a_few_percent_of_the_ladder_at_its_lowest_budgets_at_1e13() -> None:
    opts = _opts(1e13)
    budgets, runs = design_pilot(opts, default_prior(), TP)
    ladder = sorted(b.flops for b in plan_ladder(opts, default_prior(), TP).budgets)
    assert sorted(budgets) == ladder[:2] or max(budgets) < ladder[0]
    assert sum(r.flops for r in runs) < 0.05 * plan_ladder(opts, default_prior(), TP).total_flops


def test_every_budget_a_demo_study_trains_is_below_the_budget_it_verifies() -> None:
    """`make demo` verifies at its --target-flops: no pilot or ladder run trained there."""
    demo = next(
        line
        for line in (REPO / "Makefile").read_text().splitlines()
        if "study" in line and "--target-flops" in line
    )
    words = demo.split()
    target = float(words[words.index("--target-flops") + 1])
    opts = _opts(target)
    low = default_prior()
    for prior in (low, Prior(lambda C: low.n_opt(C) / 3, "3x lower")):
        budgets, _ = design_pilot(opts, prior, TP)
        ladder = plan_ladder(opts, prior, TP)
        assert max([*budgets, *(b.flops for b in ladder.budgets)]) <= target / 2.99


def _lr_losses(best: float, lrs: list[float]) -> list[float]:
    return [2.0 + 0.05 * math.log(lr / best) ** 2 for lr in lrs]


def test_the_lr_check_keeps_a_rule_within_sqrt2_of_the_best() -> None:
    rule = 0.01
    lrs = [rule * f for f in (0.5, 2**-0.5, 1.0, 2**0.5, 2.0)]
    check = lr_check(rule, lrs, _lr_losses(0.013, lrs))
    assert check.shift == 1.0
    assert check.best_lr == pytest.approx(0.013, rel=1e-6)


def test_the_lr_check_shifts_a_rule_that_is_off_and_bounds_the_shift() -> None:
    rule = 0.01
    lrs = [rule * f for f in (0.5, 2**-0.5, 1.0, 2**0.5, 2.0)]
    low = lr_check(rule, lrs, _lr_losses(0.006, lrs))
    assert low.shift == pytest.approx(0.6, rel=1e-6) and not low.at_edge
    far = lr_check(rule, lrs, _lr_losses(0.2, lrs))  # the best LR is beyond the probe
    assert far.at_edge and 1.0 < far.shift <= LR_SHIFT_LIMIT


def test_the_pilots_prior_follows_its_vertices_and_clamps_a_wild_slope() -> None:
    vertices = [Vertex(1e10, 1e4, True), Vertex(1e11, 10**4.5, True)]
    prior = pilot_prior(vertices)
    assert prior.n_opt(1e12) == pytest.approx(1e5, rel=1e-9)
    steep = pilot_prior([Vertex(1e10, 1e3, True), Vertex(1e11, 1e5, True)])  # slope 2
    assert steep.n_opt(1e12) / steep.n_opt(1e11) == pytest.approx(10**0.7, rel=1e-9)


def test_the_study_section_goes_after_the_title_and_replaces_an_old_one() -> None:
    report = "# Fit\n\nhealth\n\n## Data\n\nrows\n"
    once = with_study_section(report, STUDY_HEAD + "\nfirst\n")
    assert once.index(STUDY_HEAD) < once.index("## Data") and "rows" in once
    twice = with_study_section(once, STUDY_HEAD + "\nsecond\n")
    assert "first" not in twice and twice.count(STUDY_HEAD) == 1 and "rows" in twice


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--target-flops", "1e9"], "the smallest --target-flops that works is 1e+11"),
        (["--target-flops", "1e12", "data=nosuch"], "nosuch"),
        (["--target-flops", "1e12", "model.n_layer=3"], "model.n_layer is set by the study"),
        (["--target-flops", "1e12", "--bracket"], "add --verify"),
        (["--target-flops", "-5"], "--target-flops must be a positive number"),
        (["--target-flops", "1e12", "--name", "demo"], "shipped preset"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_before_anything_is_written(
    tmp_path, monkeypatch, capsys, argv: list[str], says: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SCALING_CACHE", str(tmp_path / "cache"))
    with pytest.raises(SystemExit) as exc:
        main(["study", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err
    assert not (tmp_path / "sweeps").exists() and not (tmp_path / "results").exists()
    assert not (tmp_path / "analysis").exists()


def test_a_corpus_too_small_for_the_studys_runs_is_refused(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SCALING_CACHE", str(tmp_path / "cache"))
    (tmp_path / "tiny.txt").write_text("a small corpus of a few words. " * 2000)
    with pytest.raises(SystemExit) as exc:
        main(["study", "--target-flops", "1e13", "data=text", "data.path=tiny.txt"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "epochs" in err[0], err
    assert not (tmp_path / "sweeps").exists() and not (tmp_path / "analysis").exists()


def _runs(cwd: Path, experiment: str) -> list[tuple[str, str, float]]:
    """(run key, status, planned FLOPs) of every MLflow run of the experiment."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{cwd / 'results' / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=5000)
    return [
        (r.data.tags.get("scaling.run_key", ""), r.info.status,
         float(r.data.params.get("train.flops", "nan")))
        for r in runs
    ]  # fmt: skip


@pytest.mark.slow
def test_a_study_killed_in_its_pilot_finishes_on_rerun_with_no_run_trained_twice(tmp_path) -> None:
    env = {**os.environ, "SCALING_CACHE": str(tmp_path / "cache"), "PYTHONWARNINGS": "ignore"}
    argv = [sys.executable, "-m", "scaling", "study", "--target-flops", "1e11", "--name", "k"]
    first = subprocess.Popen(
        argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert first.stdout is not None
    seen = 0
    for line in first.stdout:  # kill once two pilot runs have finished
        seen += "val/loss" in line
        if seen >= 2:
            first.send_signal(signal.SIGTERM)
            break
    rest = first.stdout.read()
    assert first.wait(timeout=120) == 143, rest
    before = [r for r in _runs(tmp_path, "k") if r[1] == "FINISHED"]
    assert 2 <= len(before) < 8
    started = time.monotonic()
    again = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=900)  # fmt: skip
    assert again.returncode in (0, 3), again.stdout[-3000:] + again.stderr[-3000:]
    assert "study: fit" in again.stdout, time.monotonic() - started
    finished = [r for r in _runs(tmp_path, "k") if r[1] == "FINISHED"]
    keys = [r[0] for r in finished]
    assert len(keys) == len(set(keys)), "a run key finished twice"
    assert set(before) <= set(finished)
    assert all(r[2] <= 1e11 / 3 for r in finished), "a pilot or ladder run at the target budget"
    assert (tmp_path / "analysis" / "k" / "report.md").read_text().count(STUDY_HEAD) == 1
    fit = json.loads((tmp_path / "analysis" / "k" / "fit.json").read_text())
    assert fit["bootstrap"]["n_resamples"] == 200  # the interval holds the fit's uncertainty


def test_a_pilot_optimum_below_the_smallest_sizes_still_gets_a_ladder_kept_inside_the_guards() -> (
    None
):
    """`make demo` found it: at 2e11 the pilot put N_opt(6.67e10) at 9.7K, 0.09 decades above
    the smallest size the guards allow there (7.92K): no ladder bracketed it, at any ratio. The
    study then centres the ladder 0.45 decades inside the passing sizes."""

    opts = _opts(2e11)
    low = Prior(n_opt=lambda C: 9.7e3 * (C / 6.67e10) ** 0.45, source="low")
    with pytest.raises(UserError):
        plan_ladder(opts, low, TP)
    study = Study("x", opts, [], low, TP, "sqlite:///unused.db", "corpus")
    plan = study.ladder_plan(low)
    assert len(plan.budgets) == 3 and "inside the guards" in plan.prior
    top = plan.budgets[0]
    assert top.runs[0].params == 7_920  # the smallest size that passes at 6.67e10


def test_a_ladder_budget_whose_lowest_loss_is_at_its_edge_gets_sizes_beyond_it() -> None:
    """On the GCIDE dictionary at 1e13 the top budget's lowest loss sat at its smallest size
    (vertex 69K against sizes 51K..337K) and the fit was refused. The ladder stage now trains
    sizes beyond such an edge (losses here from a truth whose optimum at the top budget lies
    below the ladder's smallest size)."""

    opts = _opts(1e13)
    prior = Prior(n_opt=lambda C: 3.0 * _true_n_opt(C), source="3x high")
    study = _SyntheticStudy("x", opts, [], prior, TP, "sqlite:///unused.db", "corpus")
    plan = plan_ladder(opts, prior, TP)
    top = plan.budgets[0]
    assert _true_n_opt(top.flops) < top.runs[0].params  # the truth lies below its sizes
    study.ladder(plan)
    added = [r for r in study.ladder_runs if r not in plan.runs]
    assert added and all(r.params < top.runs[0].params for r in added if r.budget == top.flops)
    points = [Measured(r.params, _loss(r.params, top.flops)) for r in study.ladder_runs
              if r.budget == top.flops]  # fmt: skip
    assert pilot_vertex(top.flops, points).interior
    assert "edge round 1" in " ".join(study.stages[-1].notes)


def test_a_study_preset_is_the_users_not_a_shipped_one(tmp_path) -> None:
    """`make demo` twice in a checkout: the study's presets land in the repository's ./sweeps/,
    and a preset not marked as written by a command counted as shipped, so the second run was
    refused (`--name study is a shipped preset`)."""
    from scaling.analysis.design.preset import _planned
    from scaling.cli.study_run import preset_text

    opts = _opts(2e11)
    _, runs = design_pilot(opts, default_prior(), TP)
    path = tmp_path / "study_pilot.yaml"
    path.write_text(preset_text("study", runs, opts, "pilot", lr_per_point=False))
    assert _planned(path)


def test_a_ladder_whose_backtest_missed_gets_budgets_between_its_top_ones_once() -> None:
    """On sitepackages at 1e13 the fit's only problem was its backtest (the top 2 of 5 budgets
    held out, 3 left to fit). The study then trains budgets at the geometric midpoints of the
    top three, sized like the ladder's, so the backtest refits 5 budgets; once."""

    from scaling.analysis.design.study import midpoint_budgets

    # by hand: sqrt(3.33e12 * 1.11e12) = 1.9226e12, sqrt(1.11e12 * 3.7e11) = 6.4086e11
    ladder = [3.33e12, 1.11e12, 3.7e11, 1.23e11, 4.12e10]
    assert midpoint_budgets(ladder, 2) == [1.92e12, 6.41e11]
    assert midpoint_budgets(ladder, 1) == [1.92e12]
    opts = _opts(1e13)
    prior = Prior(n_opt=_true_n_opt, source="truth")
    study = _SyntheticStudy("x", opts, [], prior, TP, "sqlite:///unused.db", "corpus")
    plan = study.ladder_plan(prior)
    study.ladder(plan)
    before = list(study.ladder_runs)
    assert study.denser(plan, 2)
    added = [r for r in study.ladder_runs if r not in before]
    budgets = sorted({r.budget for r in added}, reverse=True)
    top = [b.flops for b in plan.budgets[:3]]
    assert budgets == midpoint_budgets(top, 2)
    for b in budgets:
        sizes = [r.params for r in added if r.budget == b and not r.replicate]
        assert len(sizes) == opts.sizes and min(sizes) < _true_n_opt(b) < max(sizes)
        assert [r.seed for r in added if r.budget == b and r.replicate] == [1]
    assert set(before) <= set(study.trained)  # the ladder's runs are in the sweep (skipped by key)
    assert "missed its backtest" in " ".join(study.stages[-1].notes)
    assert not study.denser(plan, 2)  # one round
