"""The loss-curve law with LR annealing (`scaling fit --law curve`, analysis/curves/curve.py)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from scaling.analysis.curves.curve import CurveOptions, curves_from_table, fit_curves, fit_size
from scaling.analysis.curves.law import PARAMS, Schedule, run_areas, schedule_areas
from scaling.cli import main
from scaling.schedule import cooldown_start, lr_factors, warmup_length

TRUE = {"L0": 2.0, "A": 0.8, "alpha": 0.5, "C": 0.4}
LR = 3e-3
BATCH, SEQ = 8, 32  # 256 tokens per optimizer step
N = 1e6


def true_areas(sched: Schedule, total: int, lam: float = 0.999) -> tuple[np.ndarray, np.ndarray]:
    """S1, S2 of the paper's definition, written out here: the LR of scaling.schedule, the
    warmup counted at the peak LR, the momentum recursion step by step."""
    eta = LR * lr_factors(total, sched)
    eta[: warmup_length(total, sched)] = LR
    S1 = np.concatenate([[0.0], np.cumsum(eta)])
    m = np.zeros(total)
    for i in range(1, total):
        m[i] = lam * m[i - 1] + eta[i - 1] - eta[i]
    return S1, np.concatenate([[0.0], np.cumsum(m)])


def true_loss(sched: Schedule, total: int, steps: np.ndarray | int) -> np.ndarray:
    S1, S2 = true_areas(sched, total)
    return TRUE["L0"] + TRUE["A"] * S1[steps] ** -TRUE["alpha"] - TRUE["C"] * S2[steps]


def curve_rows(
    run_id: str,
    sched: Schedule,
    total: int,
    rng: np.random.Generator,
    *,
    params: float = N,
    points: int = 30,
    first: int = 1,
    noise: float = 0.002,
    role: str | None = None,
) -> pd.DataFrame:
    """One run as `scaling collect --curves` writes it: log-spaced validation steps (from
    ``first``, the cooldown start of a branch), the loss from the law with log-normal noise."""
    steps = np.unique(np.rint(np.geomspace(first, total, points)).astype(int))
    loss = true_loss(sched, total, steps) * np.exp(noise * rng.standard_normal(steps.size))
    return pd.DataFrame(
        {
            "run_id": run_id,
            "params": params,
            "tokens": steps * BATCH * SEQ,
            "loss": loss,
            "final_tokens": total * BATCH * SEQ,
            "train.lr": sched.lr,
            "train.batch_size": BATCH,
            "model.seq_len": SEQ,
            "train.schedule": sched.schedule,
            "train.warmup": sched.warmup,
            "train.warmup_steps": sched.warmup_steps,
            "train.cooldown": sched.cooldown,
            "train.min_lr_ratio": sched.min_lr_ratio,
            "seed": 0,
            "branch_role": role,
        }
    )


def three_schedules(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.concat(
        [
            curve_rows("cosine", Schedule("cosine", lr=LR), 2000, rng),
            curve_rows("wsd", Schedule("wsd", lr=LR), 2000, rng),
            curve_rows("constant", Schedule("constant", lr=LR), 2000, rng),
        ],
        ignore_index=True,
    )


def branched(seed: int = 1, params: float = N) -> pd.DataFrame:
    """A stable run (constant LR up to the longest cooldown start) and three WSD branches."""
    rng = np.random.default_rng(seed)
    frames = [
        curve_rows(
            "stable",
            Schedule("constant", warmup_steps=50, lr=LR),
            cooldown_start(2000, 0.2),
            rng,
            params=params,
            role="stable",
        )
    ]
    for total in (1000, 1500, 2000):
        sched = Schedule("wsd", warmup_steps=50, lr=LR)
        start = cooldown_start(total, sched.cooldown)
        frames.append(
            curve_rows(
                f"branch{total}", sched, total, rng, params=params, first=start, points=8,
                role="branch",
            )
        )  # fmt: skip
    df = pd.concat(frames, ignore_index=True)
    df["run_id"] = df["run_id"] + f"-{params:g}"
    return df


# ---- (a) the areas ---------------------------------------------------------------------------


def test_schedule_areas_by_hand() -> None:
    # eta = 2 * (1, 1, .5, .25) = (2, 2, 1, .5); drops (0, 0, 1, .5)
    # m = (0, 0, 1, .5 + .5 * 1) = (0, 0, 1, 1); S[s] sums i < s
    S1, S2 = schedule_areas([1.0, 1.0, 0.5, 0.25], lr=2.0, lam=0.5)
    assert S1.tolist() == [0.0, 2.0, 4.0, 5.0, 5.5]
    assert S2.tolist() == [0.0, 0.0, 0.0, 1.0, 2.0]
    # lam = 0: m is the drop itself, so S2[s] = eta_0 - eta_{s-1}
    _, S2 = schedule_areas([1.0, 1.0, 0.5, 0.25], lr=2.0, lam=0.0)
    assert S2.tolist() == [0.0, 0.0, 0.0, 1.0, 1.5]


def test_a_branch_shares_the_stable_runs_areas_up_to_its_cooldown() -> None:
    stable = run_areas(Schedule("constant", warmup_steps=20, lr=LR), 160)
    branch = run_areas(Schedule("wsd", warmup_steps=20, lr=LR), 200)
    start = cooldown_start(200, 0.2)
    assert start == 160
    for s, b in zip(stable, branch, strict=True):
        np.testing.assert_allclose(s[: start + 1], b[: start + 1], rtol=0, atol=1e-15)
    assert branch[1][-1] > 0 and not stable[1].any()  # only the cooldown anneals
    # the warmup counts at the peak LR (the paper's convention): S1 is linear from step 0
    assert stable[0][10] == pytest.approx(10 * LR)


# ---- (b) a synthetic truth -------------------------------------------------------------------


def test_fit_recovers_a_known_law_and_predicts_a_new_wsd_horizon() -> None:
    fit = fit_curves(three_schedules(seed=0), form="tissue", bootstrap=200, level=0.99, seed=0)
    (law,) = fit.sizes
    assert law.n_runs == 3 and law.lam == 0.999
    for name in PARAMS:
        lo, hi = law.ci[name]
        assert lo <= TRUE[name] <= hi, (name, law.values()[name], (lo, hi))
        assert hi - lo < 0.25 * TRUE[name]  # an interval that says something
    # a held-out horizon: WSD over 3000 steps (1.5x the longest run)
    held_out = Schedule("wsd", lr=LR)
    truth = float(true_loss(held_out, 3000, 3000))
    pred = fit.predict(N, held_out, 3000)
    assert pred.tokens == 3000 * BATCH * SEQ
    assert abs(pred.loss - truth) / truth < 0.005
    assert pred.loss_ci[0] < pred.loss < pred.loss_ci[1]
    assert pred.loss_pi[0] <= pred.loss_ci[0] and pred.loss_pi[1] >= pred.loss_ci[1]
    # the same through the size's typical schedule (wsd: the tie goes to the annealing one)
    assert fit.predict(N, {"schedule": "wsd"}, 3000).loss == pytest.approx(pred.loss)


def test_stable_run_plus_one_cooldown_predicts_the_other_horizons() -> None:
    """The lead's check: fit the stable run and one branch, predict the other branches."""
    df = branched()
    train = df["run_id"].str.startswith(("stable", "branch2000"))
    fit = fit_curves(df[train], form="tissue", bootstrap=0)
    assert sorted(r.role for r in fit.runs) == ["branch", "stable"]
    scores = fit.score(df[~train])
    assert sorted(scores["run_id"]) == ["branch1000-1e+06", "branch1500-1e+06"]
    assert (scores["step"] == scores["total_steps"]).all()
    assert scores["error_pct"].abs().max() < 1.0, scores
    # the same from the runs themselves (what benchmarks/bench_horizons.py calls)
    runs = curves_from_table(df)
    held = [r for r in runs if r.role == "stable" or r.run_id.startswith("branch2000")]
    law = fit_size(held, CurveOptions(form="tissue", bootstrap=0))
    for r in runs:
        if r not in held:
            pred = law.predict_final(r.schedule, r.total_steps).loss
            assert pred == pytest.approx(fit.predict(N, r.schedule, r.total_steps).loss)
            assert r.final_tokens == r.total_steps * BATCH * SEQ


# ---- (c) the CLI end to end ------------------------------------------------------------------


def test_cli_fits_a_curves_table_and_writes_curve_fit_json(tmp_path, capsys) -> None:
    table = tmp_path / "curves.csv"
    pd.concat([three_schedules(seed=3), branched(seed=4, params=4e6)]).to_csv(table, index=False)
    out = tmp_path / "fit"
    argv = ["fit", str(table), "--law", "curve", "--out", str(out), "--bootstrap", "30"]
    argv += ["--predict-tokens", "1e6,2e6", "--schedule", "wsd", "--curve-form", "tissue"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "L0 =" in printed and "error" in printed
    doc = json.loads((out / "curve_fit.json").read_text())
    assert (out / "curve_fit.png").stat().st_size > 0
    assert doc["law"] == "curve" and doc["lam"] == 0.999
    assert [s["params"] for s in doc["sizes"]] == [1e6, 4e6]
    for size in doc["sizes"]:
        assert set(PARAMS) <= set(size) and all(size["ci"][k] for k in PARAMS)
    assert len(doc["runs"]) == 7
    assert max(abs(r["error_pct"]) for r in doc["runs"]) < 1.0
    roles = {r["run_id"]: r["role"] for r in doc["runs"]}
    assert roles["stable-4e+06"] == "stable" and roles["cosine"] is None
    assert len(doc["predictions"]) == 4
    assert {p["schedule"]["schedule"] for p in doc["predictions"]} == {"wsd"}
    assert doc["predictions"][0]["steps"] == int(1e6 // (BATCH * SEQ))


# ---- (d) bad input ---------------------------------------------------------------------------


def test_bad_tables_are_one_line_exit_2_nothing_written(tmp_path, capsys) -> None:
    final = three_schedules().groupby("run_id").tail(1)  # a plain run table: no curves
    no_schedule = three_schedules().drop(columns="train.schedule")
    for name, df, says in (
        ("final.csv", final, "curves"),
        ("noschedule.csv", no_schedule, "train.schedule"),
    ):
        path = tmp_path / name
        df.to_csv(path, index=False)
        out = tmp_path / f"out-{name}"
        with pytest.raises(SystemExit) as err:
            main(["fit", str(path), "--law", "curve", "--out", str(out), "--bootstrap", "0"])
        assert err.value.code == 2
        stderr = capsys.readouterr().err
        assert stderr.startswith("error: ") and stderr.count("\n") == 1 and says in stderr
        assert not out.exists()
    with pytest.raises(SystemExit) as err:
        main(["fit", str(tmp_path / "final.csv"), "--predict-tokens", "1e6"])
    assert err.value.code == 2 and "--law curve" in capsys.readouterr().err
