"""The MLflow side: a real tracking server, collect, and unreachable stores."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from scaling.errors import TrackingError
from scaling.training.collect import collect_runs
from scaling.training.tracking import check_reachable, ensure_experiment
from tests.conftest import SMALL_TEXT_DIR, TINY, run_module


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A real `mlflow server` on 127.0.0.1 (SQLite backend), stopped by its process group."""
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(
        [
            str(mlflow_bin),
            "server",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'srv.db'}",
            "--default-artifact-root",
            str(tmp_path / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(uri + "/health", timeout=1)
            break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                os.killpg(proc.pid, signal.SIGKILL)
                pytest.fail("mlflow server did not start")
            time.sleep(0.5)
    yield uri
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.slow
def test_a_sweep_against_a_real_tracking_server_and_collect_reads_it_back(
    tmp_path: Path, mlflow_server: str
) -> None:
    out = run_module(
        tmp_path, "scaling.sweep", "-m", *TINY, "data=text", f"data.path={SMALL_TEXT_DIR}",
        f"tracking.uri={mlflow_server}", "tracking.experiment=served",
        f"results_dir={tmp_path / 'results'}", "sweep.fit=false", "model.n_layer=1,2",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "2 finished" in out.stdout
    table = collect_runs(mlflow_server, "served")
    assert len(table) == 2 and table.loss.notna().all()
    assert (table.status == "FINISHED").all()
    # The CLI writes the same table.
    dest = tmp_path / "served.parquet"
    cli = run_module(
        tmp_path, "scaling", "collect", "--tracking-uri", mlflow_server,
        "--experiment", "served", "--out", str(dest),
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert len(pd.read_parquet(dest)) == 2


def test_unreachable_server_is_one_line_and_quick() -> None:
    started = time.perf_counter()
    with pytest.raises(TrackingError, match="unreachable") as err:
        check_reachable(f"http://127.0.0.1:{_free_port()}")
    assert time.perf_counter() - started < 10
    assert "\n" not in str(err.value)


def test_collect_curves_gives_one_row_per_validation_point(compose, text_data) -> None:
    from mlflow import MlflowClient

    from scaling.training.model import GPT
    from scaling.training.prepare import prepare
    from scaling.training.run import train

    prep = prepare(compose(*text_data, "train.eval_points=5"))
    started = time.time()
    result = train(prep)
    elapsed = time.time() - started
    uri, experiment = prep.cfg.tracking.uri, prep.cfg.tracking.experiment
    final = collect_runs(uri, experiment)
    curves = collect_runs(uri, experiment, curves=True)
    assert len(final) == 1 and len(curves) == 5
    row = final.iloc[0]
    assert (row.run_id, row.run_key, row.status) == (result.run_id, prep.key, "FINISHED")
    assert row.loss == MlflowClient(uri).get_run(result.run_id).data.metrics["val/loss"]
    # the full config travels with each row, under its Hydra key
    assert row["model.n_layer"] == 1 and row["train.lr"] == 3e-3
    assert row["data.tokenizer"] == "byte"
    # N counted on the built model, 78 steps of 256 tokens, and C = 6ND by hand
    built = sum(p.numel() for p in GPT(prep.cfg.model).parameters())
    assert row.params == built == 21_984 and row.params_nonembed == 12_768
    assert row.tokens == 19_968 and row.flops == 2_633_859_072
    assert row.flops_6N_attn == 82_752 * 19_968 and row.flops_exact == 184_896 * 19_968
    # validation at log-spaced steps 1, 3, 9, 26, 78 -> tokens = steps x 256
    assert curves.tokens.tolist() == [256, 768, 2_304, 6_656, 19_968]
    assert (curves.final_tokens == 19_968).all() and (curves.params == 21_984).all()
    assert curves.flops.tolist() == [6 * 21_984 * t for t in curves.tokens]
    assert curves.flops_6N_attn.tolist() == [82_752 * t for t in curves.tokens]
    assert curves.loss.iloc[-1] == row.loss and curves.loss.iloc[0] > row.loss
    # the run's wall-clock, MLflow start to end: inside the time train() took, its training
    # (tokens at the logged steady rate) inside it
    assert row.tokens / row.tokens_per_s < row.wall_s <= elapsed


def test_collect_names_the_experiments_that_exist_and_needs_finished_runs(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ensure_experiment(uri, "scaling")
    with pytest.raises(TrackingError, match=r"'nope' not found in .*experiments there: .*scaling"):
        collect_runs(uri, "nope")
    with pytest.raises(TrackingError, match=r"'scaling' .* has no FINISHED runs yet"):
        collect_runs(uri, "scaling")


def test_collect_keeps_one_finished_run_per_key(compose, text_data) -> None:
    """Two processes that trained the same key (two sweeps of one grid at once) must not make
    the fit count that training twice: collect keeps the newest and says how many it dropped."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    from scaling.training.prepare import prepare
    from scaling.training.run import train

    prep = prepare(compose(*text_data))
    first = train(prep)
    uri, experiment = prep.cfg.tracking.uri, prep.cfg.tracking.experiment
    client = MlflowClient(uri)
    original = client.get_run(first.run_id)
    twin = client.create_run(original.info.experiment_id, tags=dict(original.data.tags))
    params = [Param(k, v) for k, v in original.data.params.items()]
    for i in range(0, len(params), 100):
        client.log_batch(twin.info.run_id, params=params[i : i + 100])
    client.log_batch(
        twin.info.run_id,
        metrics=[Metric("val/loss", 1.5, 0, prep.cfg.tokens)],
        tags=[RunTag("note", "the later duplicate")],
    )
    client.set_terminated(twin.info.run_id, "FINISHED")

    table = collect_runs(uri, experiment)
    assert len(table) == 1 and table.attrs["dropped_duplicates"] == 1
    assert table.run_id.iloc[0] == twin.info.run_id and table.loss.iloc[0] == 1.5
    curves = collect_runs(uri, experiment, curves=True)
    assert set(curves.run_id) == {twin.info.run_id}


def test_a_deleted_experiment_is_not_silently_restored_with_its_old_runs(tmp_path) -> None:
    """Deleting an experiment in the MLflow UI to start over must not make the next sweep skip
    every point because restoring it brought the old FINISHED runs back."""
    from mlflow import MlflowClient

    from scaling.errors import TrackingError
    from scaling.training.tracking import ensure_experiment

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp_id = ensure_experiment(uri, "study")
    MlflowClient(tracking_uri=uri).delete_experiment(exp_id)
    with pytest.raises(TrackingError, match=r"was deleted in MLflow(.|\n)*mlflow gc"):
        ensure_experiment(uri, "study")
    assert MlflowClient(tracking_uri=uri).get_experiment(exp_id).lifecycle_stage == "deleted"
