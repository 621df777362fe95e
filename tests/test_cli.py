"""`scaling fit` / `scaling predict` round trips and bad input (collect is tested with tracking)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from synthetic_runs import brute_force_optimum, chinchilla_loss, grid_runs, isoflop_runs

from scaling.cli import build_parser, main

FAST = ["--bootstrap", "10", "--grid-stride", "60", "--workers", "1"]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    runs = root / "runs.csv"
    grid_runs(n=60, seed=2).to_csv(runs, index=False)
    out = root / "analysis"
    assert main(["fit", str(runs), "--out", str(out), "--no-report", *FAST]) == 0
    return root, out


def test_fit_then_predict_json_round_trip(fitted, capsys) -> None:
    _, out = fitted
    doc = json.loads((out / "fit.json").read_text())
    assert doc["law"] == "chinchilla"
    assert set(doc["params"]) == {"E", "A", "B", "alpha", "beta"}
    assert {"a", "b"} <= set(doc["exponents"]) and {"alpha", "a"} <= set(doc["ci"])
    assert doc["n_points"] == 60 and set(doc["ranges"]) >= {"N", "D", "C"}
    assert doc["objective"] > 0 and doc["options"]["bootstrap"] == 10
    capsys.readouterr()
    assert main(["predict", "--fit", str(out / "fit.json"), "--flops", "1e21", "--json"]) == 0
    pred = json.loads(capsys.readouterr().out)
    assert {"flops", "params", "tokens", "loss", "loss_ci"} <= set(pred)
    n_brute, loss_brute = brute_force_optimum(doc["params"], 1e21)  # the law in fit.json
    assert pred["params"] == pytest.approx(n_brute, rel=1e-3)
    assert pred["loss"] == pytest.approx(loss_brute, rel=1e-7)
    assert (
        main(
            [
                "predict",
                "--fit",
                str(out / "fit.json"),
                "--params",
                "1e9",
                "--tokens",
                "2e10",
                "--json",
            ]
        )
        == 0
    )
    size = json.loads(capsys.readouterr().out)
    assert size["loss"] == pytest.approx(chinchilla_loss(doc["params"], 1e9, 2e10), rel=1e-12)
    assert size["flops"] == pytest.approx(1.2e20) and size["tokens_per_param"] == 20
    assert (
        main(
            [
                "predict",
                "--fit",
                str(out / "fit.json"),
                "--target-loss",
                str(pred["loss"]),
                "--json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["flops"] == pytest.approx(1e21, rel=1e-5)
    gpu = ["predict", "--fit", str(out / "fit.json"), "--gpu-hours", "1e6", "--peak-flops", "1e15"]
    gpu += ["--mfu", "0.5"]
    with pytest.raises(SystemExit) as exc:  # 1.8e24 is far beyond the fitted C: refused
        main(gpu)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 3 and "\n" not in err and "is 284x beyond the largest fitted" in err
    assert main([*gpu, "--allow-unhealthy"]) == 0
    text = capsys.readouterr()
    assert "compute: 1.8e+24 FLOPs" in text.out  # 1e6 h x 3600 s x 1e15 FLOP/s x 0.5
    assert "params" in text.out and "warning: unsupported: the budget asked" in text.err


def test_fit_json_flag_then_report_subcommand(tmp_path, capsys) -> None:
    runs = tmp_path / "iso.csv"
    isoflop_runs().to_csv(runs, index=False)
    out = tmp_path / "iso"
    argv = ["fit", str(runs), "--approach", "2", "--out", str(out), "--json", "--no-report"]
    assert main([*argv, "--bootstrap", "10", "--grid-stride", "60"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["approach"] == 2 and doc["params"] == {} and "a" in doc["exponents"]
    assert not (out / "report.md").exists()
    assert main(["report", str(out)]) == 0  # renders from fit.json + runs.csv
    text = (out / "report.md").read_text()
    assert "IsoFLOP budgets" in text and "](isoflop.png)" in text and "## Backtest" in text
    assert (out / "isoflop.png").stat().st_size > 5000
    # the backtest of the 3 lowest budgets' power law misses this law's irreducible term by
    # more than the 1.5% goal allows at its distance: unhealthy, predicted only when allowed
    assert (
        main(["predict", "--fit", str(out), "--flops", "1e19", "--json", "--allow-unhealthy"]) == 0
    )
    assert "params" in json.loads(capsys.readouterr().out)


def _bad_tables(tmp_path):
    good = grid_runs(n=30, seed=1)
    cases = {
        "missing": (good.drop(columns="loss"), "missing column"),
        "text": (
            good.astype({"loss": object}).assign(loss=["x"] + list(good.loss[1:])),
            "non-numeric",
        ),
        "negative": (good.assign(tokens=-good.tokens), "must be positive"),
        "nan": (good.assign(loss=[np.nan] + list(good.loss[1:])), "NaN"),
        "few": (good.head(3), "free parameters"),
        "one_size": (good.assign(params=1e8), "same params"),
    }
    for name, (df, msg) in cases.items():
        path = tmp_path / f"{name}.csv"
        df.to_csv(path, index=False)
        yield name, path, msg


def test_each_bad_table_is_one_line_exit_2_nothing_written(tmp_path, capsys) -> None:
    for name, path, msg in _bad_tables(tmp_path):
        out = tmp_path / f"out_{name}"
        with pytest.raises(SystemExit) as exc:
            main(["fit", str(path), "--out", str(out), *FAST])
        assert exc.value.code == 2, name
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and msg in err and "\n" not in err, (name, err)
        assert not out.exists(), name


def test_bad_fit_file_and_budget(fitted, tmp_path, capsys) -> None:
    root, out = fitted
    bad = tmp_path / "fit.json"
    bad.write_text("{oops")
    cases = [
        (["predict", "--fit", str(tmp_path / "none.json"), "--flops", "1e21"], "no such fit"),
        (["predict", "--fit", str(bad), "--flops", "1e21"], "not valid JSON"),
        (["predict", "--fit", str(out / "fit.json"), "--flops", "0"], "positive"),
        (["predict", "--fit", str(out / "fit.json"), "--flops=-1e20"], "positive"),
        (["predict", "--fit", str(out / "fit.json"), "--flops", "-1e20"], "positive"),
        (["predict", "--fit", str(out / "fit.json"), "--params", "1e9"], "go together"),
        (["predict", "--fit", str(out / "fit.json")], "exactly one"),
        (["fit", str(root / "nope.csv")], "no such file"),
    ]
    for argv, msg in cases:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err.strip()
        assert msg in err and "\n" not in err, err


def test_no_traceback_from_the_console(tmp_path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("params,tokens\n1,2\n")
    out = subprocess.run(
        [sys.executable, "-m", "scaling", "fit", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1


def test_fit_defaults_are_the_documented_ones() -> None:
    args = build_parser().parse_args(["fit", "runs.csv"])
    assert (args.bootstrap, args.seed, args.level, args.workers) == (1000, 0, 0.95, None)
    assert (args.huber_delta, args.grid_stride, args.isoflop_tolerance) == (1e-3, 1, 0.05)
    assert (args.law, args.approach, args.backtest_holdout) == ("chinchilla", 3, None)
    collect = build_parser().parse_args(["collect", "--out", "runs.csv"])
    assert collect.tracking_uri == "sqlite:///results/mlflow.db"
    assert collect.experiment == "scaling"


def test_help_lists_subcommands(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for sub in ("collect", "fit", "predict", "report"):
        assert sub in text
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    assert "--target-loss" in capsys.readouterr().out
