"""Sweeps through real Hydra launchers, a real MLflow store, real Lightning runs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import CONF, SMALL_TEXT_DIR, TINY, run_module

# TINY (1 layer unless swept, d_model 32, seq_len 32, vocab 256): parameters by hand, and the
# 78 whole steps of 8 x 32 tokens that train.tokens=20000 buys.
PARAMS = {1: 21_984, 2: 34_688}
TOKENS = 19_968


def sweep(tmp_path: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """Run `python -m scaling.sweep -m` with tiny runs, everything under tmp_path."""
    return run_module(
        tmp_path, "scaling.sweep", "-m", *TINY, "data=text", f"data.path={SMALL_TEXT_DIR}",
        f"results_dir={tmp_path / 'results'}", "sweep.fit=false", *args, timeout=timeout,
    )  # fmt: skip


def runs(tmp_path: Path, experiment: str = "scaling") -> pd.DataFrame:
    """The MLflow runs that commands under tmp_path recorded."""
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
                "threads": r.data.params.get("threads"),
                "start": r.info.start_time,
                "end": r.info.end_time,
                "loss": r.data.metrics.get("val/loss"),
            }
            for r in found
        ]
    )


def test_the_grid_expands_as_hydras_basic_sweeper_launches_it() -> None:
    """Preset params first, then the command line; a key given again keeps its place with the new
    values; the last key varies fastest (the slow sweep test checks this against a launch)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from scaling.config import register_configs
    from scaling.training.sweep_grid import expand_grid

    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        preset = compose("sweep", overrides=["sweeps=kaplan"], return_hydra_config=True)
    # What `-m sweeps=kaplan model.n_layer=1,2 seed=range(0,2) train.lr=1e-3` hands the sweeper
    # (compose() refuses sweep values, so the command line is set as multirun records it).
    task = ["sweeps=kaplan", "model.n_layer=1,2", "seed=range(0,2)", "train.lr=1e-3"]
    params = OmegaConf.to_container(preset.hydra.sweeper.params)
    jobs = expand_grid(
        OmegaConf.create({"hydra": {"sweeper": {"params": params}, "overrides": {"task": task}}})
    )
    tokens = ["train.tokens=250000.0", "train.tokens=1000000.0", "train.tokens=4000000.0"]
    expected = [
        [f"model.n_layer={n}", t, "sweeps=kaplan", f"seed={s}", "train.lr=0.001"]
        for n in (1, 2)
        for t in tokens
        for s in (0, 1)
    ]
    assert jobs == expected


@pytest.mark.slow
def test_sweep_trains_the_planned_grid_collects_it_and_a_rerun_retrains_nothing(tmp_path) -> None:
    grid = ("model.n_layer=1,2", "seed=0,1")
    plan = sweep(tmp_path, *grid, "sweep.dry_run=true")
    assert plan.returncode == 0, plan.stderr[-3000:]
    planned = [line.split()[0] for line in plan.stdout.splitlines() if line.startswith("L")]
    assert [(name.split("-")[0], name.split("-")[-2]) for name in planned] == [
        ("L1", "s0"), ("L1", "s1"), ("L2", "s0"), ("L2", "s1"),
    ]  # fmt: skip
    assert "4 runs," in plan.stdout
    assert not (tmp_path / "results" / "mlflow.db").exists()  # a dry run trains nothing

    first = sweep(tmp_path, *grid)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "4 finished, 0 skipped" in first.stdout
    launched = sorted(re.findall(r"\[run (\d)/4\] (\S+)", first.stderr))
    assert [name for _, name in launched] == planned  # validated = launched, in Hydra's order
    df = runs(tmp_path)
    assert len(df) == 4 and set(df.status) == {"FINISHED"} and df.key.nunique() == 4
    assert sorted(df.name) == sorted(planned)
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
    assert sorted(table.n_layer) == [1, 1, 2, 2]
    assert (table.params == table.n_layer.map(PARAMS)).all() and (table.tokens == TOKENS).all()
    assert sorted(table.flops) == [2_633_859_072] * 2 + [4_155_899_904] * 2  # 6 N D by hand

    again = sweep(tmp_path, *grid)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "0 finished, 4 skipped" in again.stdout
    assert len(runs(tmp_path)) == 4  # nothing retrained


@pytest.mark.slow
def test_a_failing_point_is_marked_failed_and_the_others_still_run(tmp_path) -> None:
    # lr=1e30 passes validation (finite, positive) but its first AdamW step moves every weight by
    # about 1e30: the next forward pass overflows float32 and the loss is not finite.
    out = sweep(tmp_path, "train.lr=1e30,3e-3", "train.log_every=1")
    assert out.returncode == 1, out.stderr[-3000:]
    assert "1 finished, 0 skipped" in out.stdout and "1 failed" in out.stdout
    df = runs(tmp_path).set_index("status")
    assert "diverged" in df.loc["FAILED", "reason"].lower() or "nan" in df.loc["FAILED", "reason"]
    assert "FINISHED" in df.index


@pytest.mark.slow
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


@pytest.mark.slow
def test_joblib_runs_two_workers_at_once_with_the_cores_split_between_them(tmp_path) -> None:
    out = sweep(
        tmp_path,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "model.n_layer=1,2",
        "seed=0,1",
        "threads=0",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    df = runs(tmp_path).sort_values("start")
    assert len(df) == 4 and set(df.status) == {"FINISHED"}
    assert "locked" not in (out.stdout + out.stderr).lower()
    # threads=0 means every core for one run; each of two workers gets half of them
    assert set(df.threads) == {str(max(1, (os.cpu_count() or 1) // 2))}
    # and they ran at the same time: some run started before the one started before it ended
    spans = list(zip(df.start, df.end))
    assert any(start < previous_end for (_, previous_end), (start, _) in zip(spans, spans[1:]))


@pytest.mark.slow
def test_submitit_local_runs_the_slurm_code_path(tmp_path) -> None:
    out = sweep(tmp_path, "hydra/launcher=submitit_local", "model.n_layer=1,2", timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert set(runs(tmp_path).status) == {"FINISHED"} and len(runs(tmp_path)) == 2


def _train_args(root: Path, *args: str) -> list[str]:
    return ["scaling.train", *TINY, "data=text", f"data.path={SMALL_TEXT_DIR}",
            f"results_dir={root / 'results'}", *args]  # fmt: skip


def _train_until_first_checkpoint(
    cwd: Path, root: Path, horizon: list[str]
) -> subprocess.Popen[str]:
    """Start `python -m scaling.train` under ``root`` and return once it wrote a checkpoint."""
    proc = subprocess.Popen(
        [sys.executable, "-m", *_train_args(root, *horizon)],
        cwd=cwd,
        env={**os.environ, "SCALING_CACHE": str(cwd / "cache")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.time() + 240
    while not list((root / "results" / "checkpoints").glob("*/last.ckpt")):
        assert proc.poll() is None, "run ended before its first checkpoint"
        assert time.time() < deadline, "no checkpoint within 240 s"
        time.sleep(0.2)
    return proc


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_checkpoint_to_the_same_final_loss(tmp_path) -> None:
    horizon = ["train.tokens=300000", "train.checkpoint_every=20", "train.eval_points=3"]
    reference = run_module(tmp_path, *_train_args(tmp_path / "ref", *horizon))
    assert reference.returncode == 0, reference.stderr[-3000:]

    ckpt_root = tmp_path / "killed" / "results" / "checkpoints"
    proc = _train_until_first_checkpoint(tmp_path, tmp_path / "killed", horizon)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert list(ckpt_root.glob("*/last.ckpt")), "no checkpoint was written"

    resumed = run_module(tmp_path, *_train_args(tmp_path / "killed", *horizon))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from step" in resumed.stderr

    reference_run, killed_run = runs(tmp_path / "ref"), runs(tmp_path / "killed")
    assert len(killed_run) == 1 and killed_run.status.iloc[0] == "FINISHED"  # reopened, not new
    assert killed_run.loss.iloc[0] == reference_run.loss.iloc[0]  # the same float, every digit
    assert not list(ckpt_root.glob("*/last.ckpt"))  # cleaned up once FINISHED


@pytest.mark.slow
def test_sigterm_records_the_run_killed_exits_143_and_the_rerun_resumes(tmp_path) -> None:
    """SLURM preemption, `kill`, `docker stop`: the exit status says the run did not finish,
    MLflow says KILLED and why, and the same command resumes it to FINISHED."""
    from mlflow import MlflowClient

    horizon = ["train.tokens=300000", "train.checkpoint_every=20", "train.eval_points=3"]
    proc = _train_until_first_checkpoint(tmp_path, tmp_path, horizon)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-3000:]  # 128 + SIGTERM, as a signalled process

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("scaling")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "KILLED"
    assert run.data.tags["scaling.failure_reason"].startswith("SIGTERM: interrupted at step")

    resumed = run_module(tmp_path, *_train_args(tmp_path, *horizon))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from step" in resumed.stderr
    (run,) = client.search_runs([exp.experiment_id])  # the same run, reopened
    assert run.info.status == "FINISHED"


@pytest.mark.slow
def test_ddp_with_two_cpu_processes_finishes_with_the_planned_tokens(tmp_path) -> None:
    from mlflow import MlflowClient

    out = run_module(
        tmp_path,
        *_train_args(tmp_path, "trainer.devices=2", "trainer.strategy=ddp", "train.tokens=40000"),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("scaling")
    (run,) = client.search_runs([exp.experiment_id])  # one run: only global zero records
    assert run.info.status == "FINISHED"
    planned = int(run.data.params["planned.tokens"])
    assert planned == 40000 // (8 * 32) * 8 * 32
    last = max(client.get_metric_history(run.info.run_id, "val/loss"), key=lambda m: m.step)
    assert last.step == planned
    assert run.data.params["trainer.devices"] == "2"


@pytest.mark.slow
def test_an_approach_1_sweep_ends_with_its_curves_table_and_the_envelope_fit(tmp_path) -> None:
    tiny = [o for o in TINY if not o.startswith(("train.tokens", "model.d_model"))]
    proc = run_module(
        tmp_path, "scaling.sweep", "-m", *tiny, "data=text", f"data.path={SMALL_TEXT_DIR}",
        "model.d_model=16,32", "train.tokens=1e4,2e4", "sweep.approach=1", "sweep.bootstrap=0",
        "progress=false",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    curves = pd.read_csv(tmp_path / "results" / "scaling_curves.csv")
    assert curves["run_id"].nunique() == 4 and len(curves) > 4  # several points per run
    assert "curves table:" in proc.stdout
    assert "fit report:" in proc.stdout or "fit skipped:" in proc.stdout
    if "fit report:" in proc.stdout:
        assert '"approach": 1' in (tmp_path / "analysis" / "scaling" / "fit.json").read_text()


def test_the_eta_weighs_runs_by_their_steps_not_only_their_flops() -> None:
    """Two runs of one budget: FLOPs call them equal, but the small model trains ~8x the steps.
    Measured (sweeps=demo, 2-core CPU): at 2e11 FLOPs, 22K params in 5,922 steps took 40.8 s and
    169K params in 772 steps 15.8 s (2.6x). The ETA's weights follow the measurement."""
    from scaling.config import build_run_config
    from scaling.training.sweep_grid import _planned_seconds
    from scaling.training.sweep_jobs import eta_seconds

    def run(n_layer: int, d_model: int):
        return build_run_config(
            {
                "model": {"n_layer": n_layer, "d_model": d_model, "seq_len": 32},
                "data": {},
                "train": {"tokens": None, "flops": 2e11, "batch_size": 8},
            }
        )

    small, large = run(1, 32), run(3, 64)
    assert (small.steps, large.steps) == (5_922, 772)
    ratio = _planned_seconds(small) / _planned_seconds(large)
    measured = 40.8 / 15.8
    assert measured / 1.7 < ratio < measured * 1.7  # FLOPs alone say 1.0
    # the finished small run took 40 s: the large one is expected to take 40 / ratio more
    work = [_planned_seconds(small), _planned_seconds(large)]
    assert eta_seconds(40.0, work, 1) == pytest.approx(40.0 / ratio)


def test_with_two_workers_the_eta_waits_for_a_finished_job(monkeypatch, capsys) -> None:
    """Under the joblib launcher job k starts while job k-1 is still training: the ETA counts
    only the jobs two back as done (the demo's second run printed 'ETA 0.7 min' of 4.5)."""
    import types

    import hydra.core.hydra_config as hc

    import scaling.training.sweep_jobs as sw

    state = {"total": 4, "start": time.time() - 600.0, "work": [10.0, 10.0, 10.0, 10.0]}
    monkeypatch.setattr(sw, "_local_workers", lambda: 2)

    def line(num: int) -> str:
        job = types.SimpleNamespace(job=types.SimpleNamespace(num=num))
        monkeypatch.setattr(hc.HydraConfig, "get", staticmethod(lambda: job))
        sw._progress_line(state, f"run{num}")
        return capsys.readouterr().err.strip()

    def eta_per_elapsed(text: str) -> float:
        elapsed, eta = re.search(r"elapsed ([\d.]+) min, ETA ([\d.]+) min$", text).groups()
        return float(eta) / float(elapsed)

    assert line(1) == "[run 2/4] run1"  # job 0 may still be training: no ETA yet
    # job 2 starts: job 0 is done (~600 s for 10 s of planned work), jobs 1..3 remain: 3x
    assert eta_per_elapsed(line(2)) == pytest.approx(3.0, abs=0.1)
    monkeypatch.setattr(sw, "_local_workers", lambda: None)  # sequential: jobs 0, 1 done: 1x
    assert eta_per_elapsed(line(2)) == pytest.approx(1.0, abs=0.1)


_TWO_SWEEPS = """
import sys
from pathlib import Path
from scaling.training.sweep import run_sweep

def workers():  # this process's children (Linux)
    tasks = Path("/proc/self/task").glob("*/children")
    return sorted(pid for f in tasks for pid in f.read_text().split())

common = sys.argv[1:]
first = run_sweep([*common, "train.lr=1e-3,0.001,3e-3"])  # job 1: a duplicate of job 0
before = workers()
second = run_sweep([*common, "train.lr=1e-3,2e-3"])  # job 1: a new run
print("STATUS", first, second, "WORKERS", before == workers() and len(before) >= 2)
"""


@pytest.mark.slow
def test_sweeps_run_in_one_process_share_workers_and_each_tells_its_own_jobs(tmp_path) -> None:
    """A study runs its stages in one process: the joblib workers the first sweep started train
    the second's runs too, and what the second sweep tells its jobs (here: job 1 is no
    duplicate) is its own, not what those workers were told when they started."""
    env = {**os.environ, "SCALING_CACHE": str(tmp_path / "cache"), "PYTHONWARNINGS": "ignore"}
    common = [*TINY, "data=text", f"data.path={SMALL_TEXT_DIR}",
              f"results_dir={tmp_path / 'results'}", "sweep.fit=false", "sweep.collect=false",
              "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", _TWO_SWEEPS, *common],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )  # fmt: skip
    assert "STATUS 0 0 WORKERS True" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]
    df = runs(tmp_path)
    assert len(df) == 3 and set(df.status) == {"FINISHED"}  # 1e-3, 3e-3 and 2e-3, once each
    assert len(set(df.key)) == 3
    assert "duplicate of grid point 1" in out.stdout  # the first sweep's job 1, only
    assert out.stdout.count("duplicate of grid point") == 1
