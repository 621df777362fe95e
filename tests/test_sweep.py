"""Sweeps through real Hydra launchers, a real MLflow store, real Lightning runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import SMALL_TEXT_DIR, TINY, run_module

REPO = Path(__file__).resolve().parent.parent


def sweep(tmp_path: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """Run `python -m scaling.training.sweep -m` with tiny runs, everything under tmp_path."""
    return run_module(
        tmp_path, "scaling.sweep", "-m", *TINY, "data=text", f"data.path={SMALL_TEXT_DIR}",
        f"results_dir={tmp_path / 'results'}", "sweep.fit=false", *args, timeout=timeout,
    )  # fmt: skip


def runs(tmp_path: Path, experiment: str = "scaling") -> pd.DataFrame:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    found = client.search_runs([exp.experiment_id]) if exp else []
    return pd.DataFrame(
        [
            {
                "status": r.info.status,
                "name": r.info.run_name,
                "key": r.data.tags.get("scaling.run_key"),
                "reason": r.data.tags.get("scaling.failure_reason"),
            }
            for r in found
        ]
    )


def test_sweep_trains_the_grid_collects_it_and_a_rerun_retrains_nothing(tmp_path) -> None:
    first = sweep(tmp_path, "model.n_layer=1,2", "seed=0,1")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "4 finished, 0 skipped" in first.stdout
    assert "[run 4/4]" in first.stderr
    df = runs(tmp_path)
    assert len(df) == 4 and set(df.status) == {"FINISHED"} and df.key.nunique() == 4
    table = pd.read_csv(tmp_path / "results" / "scaling.csv")
    assert len(table) == 4
    assert {
        "params",
        "tokens",
        "loss",
        "params_nonembed",
        "flops",
        "run_id",
        "n_layer",
        "d_model",
        "n_head",
        "seq_len",
        "vocab_size",
        "status",
    } <= set(table.columns)
    assert sorted(table.n_layer.unique()) == [1, 2]
    assert (table.flops == 6 * table.params * table.tokens).all()

    again = sweep(tmp_path, "model.n_layer=1,2", "seed=0,1")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 finished, 4 skipped" in again.stdout
    assert len(runs(tmp_path)) == 4  # nothing retrained


def test_a_failing_point_is_marked_failed_and_the_others_still_run(tmp_path) -> None:
    # lr=inf makes the first optimizer step produce non-finite weights: the loss diverges.
    out = sweep(tmp_path, "train.lr=inf,3e-3", "train.log_every=1")
    assert out.returncode == 1, out.stderr[-3000:]
    assert "1 finished, 0 skipped" in out.stdout and "1 failed" in out.stdout
    df = runs(tmp_path).set_index("status")
    assert "diverged" in df.loc["FAILED", "reason"].lower() or "nan" in df.loc["FAILED", "reason"]
    assert "FINISHED" in df.index


def test_invalid_grid_points_are_listed_before_anything_trains(tmp_path) -> None:
    out = sweep(tmp_path, "model.d_model=32,48", "model.n_head=2,5")
    assert out.returncode == 2
    assert "grid points are invalid" in out.stderr
    assert "model.d_model=32 model.n_head=5" in out.stderr
    assert "model.d_model=48 model.n_head=5" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "results" / "mlflow.db").exists()


def test_unknown_preset_lists_the_existing_ones_and_unknown_keys_get_hydras_error(tmp_path) -> None:
    out = sweep(tmp_path, "sweeps=nope")
    assert out.returncode != 0
    assert "isoflop" in out.stderr and "kaplan" in out.stderr
    bad_key = sweep(tmp_path, "model.n_layers=2")
    assert bad_key.returncode != 0 and "n_layers" in bad_key.stderr


@pytest.mark.parametrize("preset", ["kaplan", "isoflop", "horizons", "demo"])
def test_presets_expand_to_valid_grids_and_dry_run_trains_nothing(tmp_path, preset) -> None:
    out = run_module(
        tmp_path, "scaling.sweep", "-m", f"sweeps={preset}", "sweep.dry_run=true",
        f"results_dir={tmp_path / 'results'}", cache=tmp_path.parent / "stdlib-cache",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    assert lines[-1].split()[1] == "runs,"
    n_runs = int(lines[-1].split()[0])
    plan = [line for line in lines if line.startswith("L")]  # one line per run
    assert n_runs >= 6 and len(plan) == n_runs
    assert not (tmp_path / "results" / "mlflow.db").exists()


def test_joblib_runs_in_parallel_without_losing_runs(tmp_path) -> None:
    out = sweep(
        tmp_path,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "model.n_layer=1,2",
        "seed=0,1",
        "threads=0",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    df = runs(tmp_path)
    assert len(df) == 4 and set(df.status) == {"FINISHED"}
    assert "locked" not in (out.stdout + out.stderr).lower()


@pytest.mark.slow
def test_submitit_local_runs_the_slurm_code_path(tmp_path) -> None:
    out = sweep(tmp_path, "hydra/launcher=submitit_local", "model.n_layer=1,2", timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert set(runs(tmp_path).status) == {"FINISHED"} and len(runs(tmp_path)) == 2


def _train_args(root: Path, *args: str) -> list[str]:
    return ["scaling.train", *TINY, "data=text", f"data.path={SMALL_TEXT_DIR}",
            f"results_dir={root / 'results'}", *args]  # fmt: skip


def test_a_killed_run_resumes_from_its_checkpoint_to_the_same_final_loss(tmp_path) -> None:
    horizon = ["train.tokens=300000", "train.checkpoint_every=20", "train.eval_points=3"]
    reference = run_module(tmp_path, *_train_args(tmp_path / "ref", *horizon))
    assert reference.returncode == 0, reference.stderr[-3000:]

    ckpt_root = tmp_path / "killed" / "results" / "checkpoints"
    proc = subprocess.Popen(
        [sys.executable, "-m", *_train_args(tmp_path / "killed", *horizon)],
        cwd=tmp_path,
        env={**os.environ, "SCALING_CACHE": str(tmp_path / "cache")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 240
    while not list(ckpt_root.glob("*/last.ckpt")) and time.time() < deadline:
        assert proc.poll() is None, "run ended before its first checkpoint"
        time.sleep(0.2)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list(ckpt_root.glob("*/last.ckpt")), "no checkpoint was written"

    resumed = run_module(tmp_path, *_train_args(tmp_path / "killed", *horizon))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from step" in resumed.stderr

    def final(text: str) -> str:
        return text.split("val/loss ")[1].split()[0]

    assert final(resumed.stdout) == final(reference.stdout)
    assert not list(ckpt_root.glob("*/last.ckpt"))  # cleaned up once FINISHED


def test_ddp_with_two_cpu_processes_finishes_with_the_planned_tokens(tmp_path) -> None:
    from mlflow import MlflowClient

    out = run_module(
        tmp_path,
        *_train_args(tmp_path, "trainer.devices=2", "trainer.strategy=ddp", "train.tokens=40000"),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("scaling")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"
    planned = int(run.data.params["planned.tokens"])
    assert planned == 40000 // (8 * 32) * 8 * 32
    last = max(client.get_metric_history(run.info.run_id, "val/loss"), key=lambda m: m.step)
    assert last.step == planned
    assert run.data.params["trainer.devices"] == "2"
