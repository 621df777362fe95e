"""Resume that loses and duplicates nothing: a run killed after a checkpoint (or before its first)
continues its own MLflow run to the same final loss, bit for bit (dropout included), with every
logged point once; every exit leaves the run FINISHED, FAILED or KILLED with the truth."""

from __future__ import annotations

import io
import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from scaling.training import leases, run, tracking, trainer
from scaling.training.module import LMModule, eval_steps, rng_state, set_rng_state
from scaling.training.prepare import prepare
from scaling.training.run import train
from tests.conftest import run_module

# 78 steps of 8 x 32 tokens (TINY), a checkpoint every 10, validation at steps 1 2 3 6 12 22 42 78:
# a kill at step 25 comes after the checkpoint at 20 and the validation at 22.
RESUMABLE = ["model.dropout=0.1", "train.checkpoint_every=10", "train.eval_points=8"]
KILL_AT = 25


class Killed(BaseException):
    """What SIGKILL does to a process, in-process: nothing after it runs."""


def _client(prep):  # type: ignore[no-untyped-def]
    return tracking.mlflow_client(prep.cfg.tracking.uri)


def _runs(prep) -> list:  # type: ignore[no-untyped-def]
    client = _client(prep)
    exp = client.get_experiment_by_name(prep.cfg.tracking.experiment)
    return client.search_runs([exp.experiment_id]) if exp else []


def _history(prep, run_id: str, key: str) -> list[tuple[int, float]]:  # type: ignore[no-untyped-def]
    points = _client(prep).get_metric_history(run_id, key)
    return [(m.step, m.value) for m in sorted(points, key=lambda m: (m.step, m.timestamp))]


def _die_at(monkeypatch: pytest.MonkeyPatch, step: int, *, timer_flush: bool = True) -> None:
    """Kill the next run at optimizer ``step`` as SIGKILL would: the MLflow run stays RUNNING and
    the metrics still buffered are lost. With ``timer_flush`` the recorder's 30 s timer has just
    written what was buffered, including points after the last checkpoint (which the resumed
    run replays and must not log twice)."""
    original = LMModule.step_end

    def step_end(self: LMModule) -> None:
        original(self)
        if self.trainer.global_step == step:
            if timer_flush and self.sink is not None:
                self.sink.__self__.flush()  # type: ignore[attr-defined]
            raise Killed

    def finish(self, status: str = "FINISHED", reason: str | None = None) -> None:  # type: ignore[no-untyped-def]
        self._metrics.clear()

    monkeypatch.setattr(LMModule, "step_end", step_end)
    monkeypatch.setattr(tracking.RunRecorder, "finish", finish)


def test_rng_state_round_trips_through_a_weights_only_checkpoint() -> None:
    buffer = io.BytesIO()
    torch.save({"rng": rng_state()}, buffer)
    expected = (torch.rand(3), random.random(), np.random.random())
    buffer.seek(0)
    set_rng_state(torch.load(buffer, weights_only=True)["rng"])
    again = (torch.rand(3), random.random(), np.random.random())
    assert torch.equal(expected[0], again[0]) and expected[1:] == again[1:]


def test_the_checkpoint_folder_is_per_experiment_and_store(compose, text_data) -> None:
    a = prepare(compose(*text_data, "tracking.experiment=a")).cfg
    b = prepare(compose(*text_data, "tracking.experiment=b")).cfg
    other_store = prepare(
        compose(*text_data, "tracking.experiment=a", f"tracking.uri=sqlite:///{a.results_dir}/x.db")
    ).cfg
    assert run.run_key(a) == run.run_key(b) == run.run_key(other_store)
    folders = {run.checkpoint_dir(c) for c in (a, b, other_store)}
    assert len(folders) == 3
    assert all(f.parent == Path(a.results_dir) / "checkpoints" for f in folders)
    assert run.lease_path(a) == run.checkpoint_dir(a).with_name(
        run.checkpoint_dir(a).name + ".lock"
    )
    # one derivation: the tracking module's function is what the run uses
    assert run.checkpoint_dir(a) == leases.checkpoint_folder(
        a.results_dir, a.tracking.uri, "a", run.run_key(a)
    )


@pytest.mark.parametrize("timer_flush", [False, True], ids=["buffer-lost", "buffer-flushed"])
def test_a_run_killed_after_a_checkpoint_resumes_its_own_run_exactly(
    compose, text_data, monkeypatch, timer_flush: bool
) -> None:
    """Dropout on: the resumed run reaches the uninterrupted run's final loss as the same float,
    and its curves hold the same points, each once: points up to the checkpoint were flushed
    with it (a kill loses none of them), points after it that reached MLflow before the kill
    are not logged again by the replay."""
    ref = prepare(compose(*text_data, *RESUMABLE, "tracking.experiment=ref"))
    reference = train(ref)
    prep = prepare(compose(*text_data, *RESUMABLE, "tracking.experiment=killed"))
    ckpt = run.checkpoint_dir(prep.cfg) / "last.ckpt"

    _die_at(monkeypatch, KILL_AT, timer_flush=timer_flush)
    with pytest.raises(Killed):
        train(prep)
    monkeypatch.undo()
    (orphan,) = _runs(prep)
    assert orphan.info.status == "RUNNING"
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert saved["global_step"] == 20 and saved[trainer.RUN_ID_KEY] == orphan.info.run_id
    assert saved["TokenDataModule"]["sequences_seen"] == 20 * 8
    assert "rng" in saved["scaling"]
    logged = sorted(step for step, _ in _history(prep, orphan.info.run_id, "val/loss"))
    tokens_per_step = prep.cfg.tokens_per_step
    before_checkpoint = [s * tokens_per_step for s in (1, 2, 3, 6, 12)]
    assert logged == before_checkpoint + ([22 * tokens_per_step] if timer_flush else [])

    resumed = train(prep)
    assert resumed.status == "FINISHED" and resumed.resumed_from_step == 20
    assert resumed.run_id == orphan.info.run_id  # taken over, not duplicated
    assert resumed.val_loss == reference.val_loss  # bit for bit
    (record,) = _runs(prep)
    assert record.info.status == "FINISHED"
    assert tracking.REASON_TAG not in record.data.tags
    for key in ("val/loss", "train/loss", "lr"):
        assert _history(prep, resumed.run_id, key) == _history(ref, reference.run_id, key), key
    steps = [s for s, _ in _history(prep, resumed.run_id, "val/loss")]
    assert steps == [s * tokens_per_step for s in eval_steps(prep.cfg.steps, 8)]
    assert not ckpt.parent.exists()


def test_an_orphan_killed_before_its_first_checkpoint_is_taken_over(
    compose, text_data, monkeypatch
) -> None:
    prep = prepare(compose(*text_data, "train.checkpoint_every=0"))
    _die_at(monkeypatch, 7)
    with pytest.raises(Killed):
        train(prep)
    monkeypatch.undo()
    (orphan,) = _runs(prep)
    assert orphan.info.status == "RUNNING"
    assert leases.orphans(prep.cfg.tracking.uri, prep.cfg.tracking.experiment, [prep.key]) == [
        (prep.key, orphan.info.run_id)
    ]

    result = train(prep)
    assert result.status == "FINISHED" and result.resumed_from_step == 0
    (record,) = _runs(prep)  # one run: the orphan, finished
    assert record.info.run_id == orphan.info.run_id == result.run_id
    assert record.info.status == "FINISHED"
    for key in ("val/loss", "train/loss"):
        steps = [s for s, _ in _history(prep, result.run_id, key)]
        assert steps == sorted(set(steps)), f"{key} logged a step twice"
    assert leases.orphans(prep.cfg.tracking.uri, prep.cfg.tracking.experiment, [prep.key]) == []


def test_a_failed_attempt_resumed_from_its_checkpoint_finishes_without_its_old_reason(
    compose, text_data, monkeypatch
) -> None:
    prep = prepare(compose(*text_data, *RESUMABLE))
    original = LMModule.step_end

    def step_end(self: LMModule) -> None:
        original(self)
        if self.trainer.global_step == KILL_AT:
            raise RuntimeError("the GPU fell off the bus")

    monkeypatch.setattr(LMModule, "step_end", step_end)
    with pytest.raises(RuntimeError):
        train(prep)
    monkeypatch.undo()
    (failed,) = _runs(prep)
    assert failed.info.status == "FAILED"
    assert failed.data.tags[tracking.REASON_TAG] == "RuntimeError: the GPU fell off the bus"

    result = train(prep)
    assert result.resumed_from_step == 20 and result.run_id == failed.info.run_id
    (record,) = _runs(prep)
    assert record.info.status == "FINISHED"
    assert tracking.REASON_TAG not in record.data.tags


def test_a_failure_in_the_success_tail_leaves_the_run_failed_with_a_reason(
    compose, text_data, monkeypatch
) -> None:
    prep = prepare(compose(*text_data))

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError("No space left on device")

    monkeypatch.setattr(run, "_summary", broken)
    with pytest.raises(OSError):
        train(prep)
    (record,) = _runs(prep)
    assert record.info.status == "FAILED"
    assert record.data.tags[tracking.REASON_TAG] == "OSError: No space left on device"


def test_a_failure_during_set_up_leaves_the_run_failed_with_a_reason(
    compose, text_data, monkeypatch
) -> None:
    prep = prepare(compose(*text_data))

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise ValueError("bad param")

    # after the MLflow run is created
    monkeypatch.setattr("scaling.training.record.run_params", broken)
    with pytest.raises(ValueError):
        train(prep)
    (record,) = _runs(prep)
    assert record.info.status == "FAILED"
    assert record.data.tags[tracking.REASON_TAG] == "ValueError: bad param"


def test_ctrl_c_during_training_records_the_run_killed(compose, text_data, monkeypatch) -> None:
    prep = prepare(compose(*text_data, "train.checkpoint_every=10"))
    original = LMModule.step_end

    def step_end(self: LMModule) -> None:
        original(self)
        if self.trainer.global_step == 15:
            raise KeyboardInterrupt  # Lightning catches it and marks the trainer interrupted

    monkeypatch.setattr(LMModule, "step_end", step_end)
    with pytest.raises(SystemExit) as exit_info:
        train(prep)
    assert exit_info.value.code == 130
    (record,) = _runs(prep)
    assert record.info.status == "KILLED"
    assert record.data.tags[tracking.REASON_TAG].startswith("SIGINT: interrupted at step 15")


# ---- real processes, real SIGKILL -----------------------------------------------------------


@pytest.mark.slow
def test_sigkill_after_a_checkpoint_then_rerun_equals_the_uninterrupted_run(tmp_path) -> None:
    """Dropout on, a real SIGKILL: the same final val/loss float, one FINISHED run, and
    ``collect --curves`` rows with no gap and no repeated token count."""
    from scaling.training.collect import collect_runs
    from tests.test_sweep import _train_args, _train_until_first_checkpoint

    horizon = [
        "train.tokens=120000",
        "train.checkpoint_every=20",
        "train.eval_points=12",
        "model.dropout=0.1",
    ]
    reference = run_module(tmp_path, *_train_args(tmp_path / "ref", *horizon))
    assert reference.returncode == 0, reference.stderr[-3000:]

    root = tmp_path / "killed"
    proc = _train_until_first_checkpoint(tmp_path, root, horizon)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    resumed = run_module(tmp_path, *_train_args(root, *horizon))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from step" in resumed.stderr

    def store(where: Path) -> str:
        return f"sqlite:///{where / 'results' / 'mlflow.db'}"

    ref_curve = collect_runs(store(tmp_path / "ref"), "scaling", curves=True).sort_values("tokens")
    curve = collect_runs(store(root), "scaling", curves=True).sort_values("tokens")
    assert curve.run_id.nunique() == 1
    assert list(curve.tokens) == list(ref_curve.tokens)  # every point, once
    assert list(curve.loss) == list(ref_curve.loss)  # the same floats, the last is the result
    client = tracking.mlflow_client(store(root))
    (record,) = client.search_runs([client.get_experiment_by_name("scaling").experiment_id])
    assert record.info.status == "FINISHED"
