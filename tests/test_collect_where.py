"""`scaling collect --where KEY=VALUE`: one sweep over data.process, two run tables."""

from __future__ import annotations

import pandas as pd
import pytest

from scaling.cli import main
from scaling.errors import EXIT_USER_ERROR, TrackingError
from scaling.training.collect import collect_runs, normal_param, param_matches
from scaling.training.tracking import ensure_experiment

RAW, DEDUP = "[]", "['dedup_exact', 'dedup_near']"  # as MLflow logs the Hydra lists


def _store(tmp_path) -> str:  # type: ignore[no-untyped-def]
    """Four FINISHED runs: two raw, two deduplicated (one of each with lr 0.003)."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp = ensure_experiment(uri, "study")
    client = MlflowClient(uri)
    for i, (process, lr) in enumerate([(RAW, "0.003"), (RAW, "0.01"), (DEDUP, "0.003"),
                                       (DEDUP, "0.01")]):  # fmt: skip
        run = client.create_run(exp, tags={"scaling.run_key": f"key{i}"})
        params = {"params": "1000", "planned.tokens": "20000", "data.process": process,
                  "train.lr": lr}  # fmt: skip
        if process == DEDUP:
            params["data.processed_id"] = "abc123def456"
        client.log_batch(
            run.info.run_id,
            params=[Param(k, v) for k, v in params.items()],
            metrics=[Metric("val/loss", 2.0 + i, 0, 20000)],
        )
        client.set_terminated(run.info.run_id, "FINISHED")
    return uri


def test_values_compare_in_one_spelling() -> None:
    assert normal_param("['dedup_exact', 'dedup_near']") == "[dedup_exact,dedup_near]"
    assert param_matches("[]", "[]") and param_matches("0.003", "3e-3")
    assert param_matches("['dedup_exact', 'dedup_near']", "[dedup_exact, dedup_near]")
    assert not param_matches("['dedup_exact']", "[dedup_exact,dedup_near]")
    assert not param_matches(None, "[]")  # a run without the param never matches


def test_collect_keeps_the_runs_that_match_every_condition(tmp_path) -> None:
    uri = _store(tmp_path)
    raw = collect_runs(uri, "study", where={"data.process": "[]"})
    assert sorted(raw.loss) == [2.0, 3.0]
    dedup = collect_runs(uri, "study", where={"data.process": "[dedup_exact,dedup_near]"})
    assert sorted(dedup.loss) == [4.0, 5.0]
    where = {"data.processed_id": "abc123def456", "train.lr": "0.01"}
    by_id = collect_runs(uri, "study", where=where)
    assert by_id.loss.tolist() == [5.0]
    assert len(collect_runs(uri, "study")) == 4
    with pytest.raises(TrackingError, match=r"matches --where data.process=\[x\]; values there: "
                       r"data.process: \['dedup_exact', 'dedup_near'\], \[\]"):  # fmt: skip
        collect_runs(uri, "study", where={"data.process": "[x]"})


def test_the_cli_writes_the_filtered_table_and_refuses_a_bad_condition(tmp_path, capsys) -> None:
    uri = _store(tmp_path)
    out = tmp_path / "raw.csv"
    args = ["collect", "--tracking-uri", uri, "--experiment", "study", "--out", str(out)]
    assert main([*args, "--where", "data.process=[]"]) == 0
    assert sorted(pd.read_csv(out).loss) == [2.0, 3.0]
    capsys.readouterr()
    for bad in ("data.process", "train.lr=1 --where train.lr=2"):
        with pytest.raises(SystemExit) as exit_:
            main([*args, *sum((["--where", w] for w in bad.split(" --where ")), [])])
        assert exit_.value.code == EXIT_USER_ERROR
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: --where") and "\n" not in err


def test_collect_curves_writes_the_lr_each_run_logged(tmp_path) -> None:
    """A run logging val/loss at some steps and lr every 10 steps (tokens as the MLflow step):
    each curve row gets the LR logged at its tokens, linear between logged points."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp = ensure_experiment(uri, "curves")
    client = MlflowClient(uri)
    run = client.create_run(exp, tags={"scaling.run_key": "k"})
    lrs = [Metric("lr", 1e-3 * (1 - s / 100), 0, s * 64) for s in range(0, 101, 10)]
    losses = [Metric("val/loss", 3.0 - s / 100, 0, s * 64) for s in (10, 25, 100)]
    client.log_batch(
        run.info.run_id,
        params=[Param("params", "1000"), Param("planned.tokens", "6400")],
        metrics=lrs + losses,
    )
    client.set_terminated(run.info.run_id, "FINISHED")
    df = collect_runs(uri, "curves", curves=True)
    assert df["tokens"].tolist() == [640, 1600, 6400]
    assert df["lr"].tolist() == pytest.approx([9e-4, 7.5e-4, 0.0], abs=1e-12)
