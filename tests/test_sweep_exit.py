"""A sweep's exit status tells the truth: signals, errors inside Hydra callbacks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scaling.errors import UserError
from scaling.training.sweep import SweepCallback, _signal_exit
from tests.conftest import SMALL_TEXT_DIR, TINY


def test_an_unexpected_error_in_a_sweep_callback_exits_1_instead_of_a_hydra_warning(
    capsys,
) -> None:
    def _end(config: object) -> None:  # e.g. collect crashing on a store it cannot read
        raise RuntimeError("database is locked")

    with pytest.raises(SystemExit) as exc:
        SweepCallback._guard(_end, None)
    assert exc.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        "error: sweep end (summary, collect, fit) failed: RuntimeError: database is locked"
    )


def test_a_user_error_in_a_sweep_callback_exits_2() -> None:
    def _start(config: object) -> None:
        raise UserError("seed=abc: not a whole number")

    with pytest.raises(SystemExit) as exc:
        SweepCallback._guard(_start, None)
    assert exc.value.code == 2


def test_signals_map_to_the_exit_status_of_a_signalled_process() -> None:
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    assert _signal_exit(SIGTERMException()) == ("SIGTERM", 143)
    assert _signal_exit(SystemExit(143)) == ("SIGTERM", 143)
    assert _signal_exit(KeyboardInterrupt()) == ("SIGINT", 130)
    assert _signal_exit(SystemExit(1)) is None and _signal_exit(SystemExit(0)) is None


def _finished(db: Path) -> int:
    from mlflow import MlflowClient

    if not db.exists():
        return 0
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    exp = client.get_experiment_by_name("scaling")
    if exp is None:
        return 0
    return sum(r.info.status == "FINISHED" for r in client.search_runs([exp.experiment_id]))


@pytest.mark.slow
def test_sigterm_stops_the_sweep_with_its_summary_and_143_and_the_rerun_finishes(
    tmp_path,
) -> None:
    results = tmp_path / "results"
    argv = [
        sys.executable, "-m", "scaling.sweep", "-m", *TINY, "data=text",
        f"data.path={SMALL_TEXT_DIR}", f"results_dir={results}", "sweep.fit=false",
        "train.tokens=200000", "train.checkpoint_every=20", "model.n_layer=1,2,3",
    ]  # fmt: skip
    env = {**os.environ, "SCALING_CACHE": str(tmp_path / "cache"), "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(
        argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 300
    # the store exists once the first run checkpoints (reading it earlier would race its creation)
    while not list(results.glob("checkpoints/**/last.ckpt")):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline, "no checkpoint within 300 s"
        time.sleep(0.2)
    while _finished(results / "mlflow.db") < 1:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline, "no run finished within 300 s"
        time.sleep(0.5)
    time.sleep(1.0)  # into the second run
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 143, err[-3000:]
    assert "sweep interrupted by SIGTERM; sweep summary: 1 finished" in out
    assert "rerun the same command" in out

    rerun = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "sweep summary: 2 finished, 1 skipped (already done), 0 failed" in rerun.stdout
    assert _finished(results / "mlflow.db") == 3


@pytest.mark.slow
def test_a_dead_joblib_worker_loses_nothing_and_the_sweep_exits_1_naming_its_run(tmp_path) -> None:
    """The OOM killer or a segfault takes one worker: the sweep does not die with a traceback;
    the lost runs are named, the grid finishes, and the exit status says something went wrong."""
    from mlflow import MlflowClient

    from scaling.training.leases import lease_holder

    results = tmp_path / "results"
    argv = [
        sys.executable, "-m", "scaling.sweep", "-m", *TINY, "data=text",
        f"data.path={SMALL_TEXT_DIR}", f"results_dir={results}", "sweep.fit=false",
        "train.tokens=150000", "train.checkpoint_every=20", "model.n_layer=1,2", "seed=0,1",
        "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "threads=1",
    ]  # fmt: skip
    env = {**os.environ, "SCALING_CACHE": str(tmp_path / "cache"), "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(
        argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 300
    victim = None
    while victim is None:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline, "no run checkpointed within 300 s"
        for lock in results.glob("checkpoints/*.lock"):
            holder = lease_holder(lock)
            if holder is not None and list(lock.with_suffix("").glob("last.ckpt")):
                victim = holder
                break
        time.sleep(0.2)
    os.kill(victim.pid, signal.SIGKILL)  # a worker dies, as under the OOM killer
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 1, err[-3000:]
    assert "Traceback" not in err
    assert "a launcher worker died while training" in out

    client = MlflowClient(tracking_uri=f"sqlite:///{results / 'mlflow.db'}")
    exp = client.get_experiment_by_name("scaling")
    found = client.search_runs([exp.experiment_id])
    assert sum(r.info.status == "FINISHED" for r in found) == 4  # every point finished
    assert not [r for r in found if r.info.status == "RUNNING"]  # no orphan left
    keys = [r.data.tags["scaling.run_key"] for r in found if r.info.status == "FINISHED"]
    assert len(set(keys)) == 4  # one run per key


def test_the_end_of_sweep_fit_is_checked_before_anything_trains() -> None:
    from scaling.config import ConfigError, SweepConfig, structured
    from scaling.training.sweep import _check_law

    with pytest.raises(UserError, match="sweep.law='nope' is not a known law; known: .*chinchilla"):
        _check_law(SweepConfig(law="nope"))
    with pytest.raises(ConfigError, match="sweep.approach=4 must be 1"):
        structured(SweepConfig, "sweep", {"approach": 4})
