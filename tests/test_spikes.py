"""Loss spikes (issue 24): caught while training, contained by ``skip``, a run ended as diverged
by ``stop``, nothing changed where nothing spikes, and a resumed run continues the detector.

A spike is injected by a test hook: the batches of a few optimizer steps are replaced by random
tokens (a corrupted shard), whose loss and gradient are far outside anything the run has seen.
"""

from __future__ import annotations

import json
import math
from collections.abc import Container

import pandas as pd
import pytest
import torch
from synthetic_runs import grid_runs

from scaling.cli import main
from scaling.config import SpikeConfig
from scaling.training import run, tracking
from scaling.training.collect import collect_runs
from scaling.training.module import LMModule
from scaling.training.prepare import prepare
from scaling.training.run import train
from scaling.training.spikes import SpikeDetector

# 234 optimizer steps of TINY's 8 x 32 tokens; the detector's z-score test is on from step 64
LONGER = ["train.tokens=60000"]
BAD_STEPS = range(150, 155)  # five corrupted batches at the peak LR's plateau of the decay


def _corrupt(monkeypatch: pytest.MonkeyPatch, steps: Container[int]) -> None:
    """The batches of optimizer ``steps`` (1-based) replaced by uniformly random tokens."""
    original = LMModule.training_step

    def training_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
        step = self.trainer.global_step + 1
        if step in steps:
            x, y = batch
            g = torch.Generator().manual_seed(step)
            vocab = self.model.config.vocab_size
            batch = (
                torch.randint(0, vocab, x.shape, generator=g),
                torch.randint(0, vocab, y.shape, generator=g),
            )
        return original(self, batch, batch_idx)

    monkeypatch.setattr(LMModule, "training_step", training_step)


def _metric(prep, run_id: str, key: str) -> float:  # type: ignore[no-untyped-def]
    return tracking.mlflow_client(prep.cfg.tracking.uri).get_run(run_id).data.metrics[key]


def _history(prep, run_id: str, key: str) -> list[tuple[int, float]]:  # type: ignore[no-untyped-def]
    points = tracking.mlflow_client(prep.cfg.tracking.uri).get_metric_history(run_id, key)
    return sorted((m.step, m.value) for m in points)


# ---- the detector alone -----------------------------------------------------------------------


def test_noise_is_not_a_spike_but_a_jump_is_and_it_stays_out_of_the_window() -> None:
    detector = SpikeDetector(SpikeConfig(window=32))
    rng = torch.Generator().manual_seed(0)
    noise = (torch.randn(200, 2, generator=rng) * 0.05).tolist()
    for step, (a, b) in enumerate(noise, 1):
        assert detector.check(step, 3.0 - step * 1e-3 + a, 1.0 + b) is None
    spike = detector.check(201, 3.5, 1.0)  # +0.5 nats on a noise of 0.05: 10 SD
    assert spike is not None and "training loss" in spike.evidence
    assert detector.check(202, 2.8, 6.0) is not None  # the gradient norm alone
    assert detector.check(203, float("nan"), 1.0) is not None
    assert detector.spikes == 3
    assert max(detector.losses.values) < 3.5  # spikes did not join the window


def test_under_clipping_the_gradient_norm_alone_is_no_spike_but_the_loss_still_is() -> None:
    rng = torch.Generator().manual_seed(0)
    noise = (torch.randn(200, 2, generator=rng) * 0.05).tolist()
    clipped = SpikeDetector(SpikeConfig(window=32), clipped=True)
    unclipped = SpikeDetector(SpikeConfig(window=32), clipped=False)
    for detector in (clipped, unclipped):
        for step, (a, b) in enumerate(noise, 1):
            assert detector.check(step, 3.0 - step * 1e-3 + a, 1.0 + b) is None
    spike = clipped.check(201, 3.5, 6.0)  # the loss 10 SD up: a spike, the norm named too
    assert spike is not None and "training loss" in spike.evidence
    assert "gradient norm" in spike.evidence
    assert unclipped.check(202, 2.8, 6.0) is not None  # a 6x norm without clipping
    assert clipped.check(202, 2.8, 6.0) is None  # clipping bounds that update
    assert clipped.norm_z is not None and clipped.norm_z > 6  # still measured
    assert clipped.check(203, 2.8, float("inf")) is not None  # a non-finite norm still is


def test_before_half_a_window_a_loss_far_above_the_least_so_far_is_a_spike() -> None:
    detector = SpikeDetector(SpikeConfig(window=128, ratio=2.0))
    for step, loss in enumerate([5.5, 4.0, 3.2, 3.5, 3.0], 1):
        assert detector.check(step, loss, 1.0) is None  # a bumpy start is not a spike
    assert detector.check(6, 6.5, 1.0) is not None  # more than twice the least (3.0)


# ---- training runs ----------------------------------------------------------------------------


@pytest.mark.slow
def test_without_spikes_detection_changes_nothing_and_logs_the_gradient_norm(
    compose, text_data, one_torch_thread
) -> None:
    off = train(prepare(compose(*text_data, *LONGER, "train.spike.action=off")))
    prep = prepare(compose(*text_data, *LONGER, "tracking.experiment=on"))
    on = train(prep)  # the default: warn
    skip = train(prepare(compose(*text_data, *LONGER, "train.spike.action=skip")))
    rollback = train(prepare(compose(*text_data, *LONGER, "train.spike.action=rollback")))
    assert on.val_loss == off.val_loss == skip.val_loss == rollback.val_loss  # bit for bit
    assert _metric(prep, on.run_id, "train/spikes") == 0
    assert _metric(prep, on.run_id, "train/skipped_steps") == 0
    norms = _history(prep, on.run_id, "train/grad_norm")
    assert len(norms) == len(_history(prep, on.run_id, "train/loss"))
    assert all(math.isfinite(v) and v > 0 for _, v in norms)


@pytest.mark.slow
def test_skip_contains_corrupted_batches_that_warn_lets_through(
    compose, text_data, one_torch_thread, monkeypatch
) -> None:
    clean = train(prepare(compose(*text_data, *LONGER, "tracking.experiment=clean")))
    _corrupt(monkeypatch, BAD_STEPS)
    warned = train(prepare(compose(*text_data, *LONGER, "tracking.experiment=warn")))
    prep = prepare(compose(*text_data, *LONGER, "train.spike.action=skip"))
    skipped = train(prep)
    assert warned.status == skipped.status == "FINISHED"
    assert abs(skipped.val_loss / clean.val_loss - 1) < 0.01
    assert abs(skipped.val_loss - clean.val_loss) < abs(warned.val_loss - clean.val_loss)
    assert _metric(prep, skipped.run_id, "train/skipped_steps") == len(BAD_STEPS)
    assert _metric(prep, skipped.run_id, "train/spikes") == len(BAD_STEPS)
    tokens = [s for s, _ in _history(prep, skipped.run_id, "spike/loss")]
    assert tokens == [s * prep.cfg.tokens_per_step for s in BAD_STEPS]
    assert all(math.isfinite(v) for _, v in _history(prep, skipped.run_id, "train/loss"))
    curves = collect_runs(prep.cfg.tracking.uri, "scaling", curves=True)  # the report's figure
    seen = curves.set_index("tokens")["spikes_so_far"]
    assert (seen[seen.index < tokens[0]] == 0).all() and seen.iloc[-1] == len(BAD_STEPS)
    assert (seen[seen.index >= tokens[-1]] == len(BAD_STEPS)).all()


def _failed_run(prep):  # type: ignore[no-untyped-def]
    """The one MLflow run of ``prep``'s experiment, checked FAILED."""
    client = tracking.mlflow_client(prep.cfg.tracking.uri)
    (record,) = client.search_runs([client.get_experiment_by_name("scaling").experiment_id])
    assert record.info.status == "FAILED"
    return record


@pytest.mark.slow
def test_stop_ends_the_run_failed_and_tagged_diverged_at_the_spike(
    compose, text_data, one_torch_thread, monkeypatch
) -> None:
    _corrupt(monkeypatch, BAD_STEPS)
    prep = prepare(compose(*text_data, *LONGER, "train.spike.action=stop"))
    with pytest.raises(RuntimeError, match="loss spike at step 150"):
        train(prep)
    record = _failed_run(prep)
    assert record.data.tags[tracking.DIVERGED_TAG] == "true"
    assert record.data.tags[tracking.DIVERGED_STEP_TAG] == "150"
    assert "gradient norm" in record.data.tags[tracking.REASON_TAG]

    monkeypatch.undo()  # another seed, no spike: it finishes beside the diverged run
    other = train(prepare(compose(*text_data, *LONGER, "train.spike.action=stop", "seed=1")))
    rows = collect_runs(prep.cfg.tracking.uri, "scaling").set_index("run_id")
    assert list(rows.diverged) == [False, True] and rows.index[0] == other.run_id
    assert math.isnan(rows.loss[record.info.run_id]) and rows.loss[other.run_id] > 0
    assert list(rows.spikes) == [0, 1]


@pytest.mark.slow
def test_skip_gives_up_as_diverged_after_a_whole_window_of_skipped_steps(
    compose, text_data, one_torch_thread, monkeypatch
) -> None:
    _corrupt(monkeypatch, range(40, 79))  # every batch from step 40 on is garbage
    prep = prepare(compose(*text_data, "train.spike.action=skip", "train.spike.window=8"))
    with pytest.raises(RuntimeError, match="8 steps in a row skipped"):
        train(prep)
    record = _failed_run(prep)
    assert record.data.tags[tracking.DIVERGED_STEP_TAG] == "40"
    assert record.data.metrics["train/skipped_steps"] == 8


def _killed_at_152_and_resumed(compose, monkeypatch, args: list[str], bad: range):  # type: ignore[no-untyped-def]
    """A reference run and the same run killed at step 152 and resumed (spikes injected at
    ``bad`` in both): ``(ref, reference, prep, resumed)``; the resume starts at 147."""
    from tests.test_resume import Killed, _die_at

    _corrupt(monkeypatch, bad)
    ref = prepare(compose(*args, "tracking.experiment=ref"))
    reference = train(ref)
    prep = prepare(compose(*args, "tracking.experiment=killed"))
    _die_at(monkeypatch, 152, timer_flush=False)
    with pytest.raises(Killed):
        train(prep)
    monkeypatch.undo()
    _corrupt(monkeypatch, bad)
    ckpt = run.checkpoint_dir(prep.cfg) / "last.ckpt"
    assert torch.load(ckpt, weights_only=True)["global_step"] == 147
    resumed = train(prep)
    assert resumed.resumed_from_step == 147
    assert resumed.val_loss == reference.val_loss
    return ref, reference, prep, resumed


@pytest.mark.slow
@pytest.mark.parametrize("action", ["skip", "warn"])
def test_a_run_with_spikes_resumes_exactly_from_between_two_logged_points(
    compose, text_data, one_torch_thread, monkeypatch, action: str
) -> None:
    """Spikes at steps 140-144; checkpoints at steps 7, 14, ..., 147; train/loss every 5 steps:
    the checkpoint at 147 holds the detector's window and counts and the two steps since the
    last log (under warn, not yet judged). Killed at 152, the resumed run logs from 148 on."""
    args = [*text_data, *LONGER, f"train.spike.action={action}", "train.checkpoint_every=7"]
    early = range(140, 145)
    ref, reference, prep, resumed = _killed_at_152_and_resumed(compose, monkeypatch, args, early)
    assert _metric(prep, resumed.run_id, "train/spikes") == len(early)
    keys = ("train/loss", "train/grad_norm", "train/spikes", "train/skipped_steps", "spike/loss")
    for key in keys:
        assert _history(prep, resumed.run_id, key) == _history(ref, reference.run_id, key), key


# ---- rollback ----------------------------------------------------------------------------------

# snapshots every 8 steps: the good one is 8 to 16 steps old when a spike comes
ROLLBACK = ["train.spike.action=rollback", "train.spike.window=8"]
LATE_BAD_STEPS = range(200, 205)  # in the cosine's tail, where 20 lost updates cost < 1%


@pytest.mark.slow
def test_rollback_restores_the_state_from_before_the_spike_and_finishes_near_the_clean_run(
    compose, text_data, one_torch_thread, monkeypatch, capsys
) -> None:
    """Spikes at steps 200-204: the snapshot after step 184 (good since step 192) comes back at
    step 200, the other four bad batches are skipped; the batches of steps 185-204 are never
    trained (their updates count as skipped), and the run ends within 1% of the clean run."""
    clean = train(prepare(compose(*text_data, *LONGER, "tracking.experiment=clean")))
    _corrupt(monkeypatch, LATE_BAD_STEPS)
    skip = train(prepare(compose(*text_data, *LONGER, "train.spike.action=skip")))
    prep = prepare(compose(*text_data, *LONGER, *ROLLBACK))
    rolled = train(prep)
    assert rolled.status == "FINISHED"
    assert abs(rolled.val_loss / clean.val_loss - 1) < 0.01
    assert rolled.val_loss != skip.val_loss  # not the skip action under another name
    assert _metric(prep, rolled.run_id, "train/rollbacks") == 1
    assert _metric(prep, rolled.run_id, "train/spikes") == len(LATE_BAD_STEPS)
    assert _metric(prep, rolled.run_id, "train/skipped_steps") == 204 - 184
    client = tracking.mlflow_client(prep.cfg.tracking.uri)
    assert client.get_run(rolled.run_id).data.tags[tracking.ROLLBACKS_TAG] == "1"
    assert "rolled back at step 200 to the state after step 184" in capsys.readouterr().err


@pytest.mark.slow
def test_rollback_ends_the_run_diverged_when_spikes_come_back_after_the_last_rollback(
    compose, text_data, one_torch_thread, monkeypatch
) -> None:
    _corrupt(monkeypatch, [100, 101, 102, 150])  # rolled back (the only one allowed) at 100
    prep = prepare(compose(*text_data, *LONGER, *ROLLBACK, "train.spike.max_rollbacks=1"))
    with pytest.raises(RuntimeError, match="step 150.*no rollback left"):
        train(prep)  # and at step 150 there is none left
    record = _failed_run(prep)
    assert record.data.tags[tracking.DIVERGED_TAG] == "true"
    assert record.data.tags[tracking.DIVERGED_STEP_TAG] == "150"
    assert record.data.tags[tracking.ROLLBACKS_TAG] == "1"
    assert record.data.metrics["train/rollbacks"] == 1


@pytest.mark.slow
def test_a_rolling_back_run_killed_after_a_checkpoint_rolls_back_to_the_same_snapshot(
    compose, text_data, one_torch_thread, monkeypatch
) -> None:
    """Checkpoints at 7, 14, ..., 147 hold the snapshots (good: after step 136); spikes at
    149-150 roll back to it; killed at 152 and resumed from 147, the run rolls back the same."""
    args = [*text_data, *LONGER, *ROLLBACK, "train.checkpoint_every=7"]
    bad = range(149, 151)
    ref, reference, prep, resumed = _killed_at_152_and_resumed(compose, monkeypatch, args, bad)
    assert _metric(prep, resumed.run_id, "train/rollbacks") == 1
    assert _metric(prep, resumed.run_id, "train/skipped_steps") == 150 - 136
    keys = ("train/loss", "train/skipped_steps", "train/rollbacks", "spike/loss")
    for key in keys:
        assert _history(prep, resumed.run_id, key) == _history(ref, reference.run_id, key), key


# ---- the fit keeps diverged runs out --------------------------------------------------------


def test_the_fit_leaves_diverged_runs_out_and_names_them(tmp_path, capsys) -> None:
    runs = grid_runs(n=40, seed=3)
    runs["run_name"] = [f"run{i}" for i in range(len(runs))]
    runs["diverged"] = False
    runs["spikes"] = 0
    runs["skipped_steps"] = 0
    runs["rollbacks"] = 0
    runs.loc[3, ["spikes", "skipped_steps", "rollbacks"]] = [2, 20, 1]  # rolled back: contained
    stopped = runs.iloc[[0]].assign(run_name="stopped", diverged=True, loss=float("nan"))
    spoiled = runs.iloc[[1]].assign(run_name="spoiled", diverged=True, loss=runs.loss[1] * 1.5)
    runs.loc[2, "spikes"] = 3  # spiked under warn: fitted, but named
    table = tmp_path / "runs.csv"
    pd.concat([runs, stopped, spoiled]).to_csv(table, index=False)
    fast = ["--bootstrap", "0", "--grid-stride", "60", "--workers", "1"]

    assert main(["fit", str(table), "--out", str(tmp_path / "a"), *fast]) == 0
    doc = json.loads((tmp_path / "a" / "fit.json").read_text())
    assert doc["n_points"] == 40
    report = (tmp_path / "a" / "report.md").read_text()
    assert "left out 2 diverged run(s)" in report and "stopped, spoiled" in report
    assert "run2" in report  # its spikes were not contained
    section = report[report.index("## Loss spikes") :]
    assert "| run2 | 3 | 0 | 0 | no | yes |" in section
    assert "| run3 | 2 | 20 | 1 | no | yes |" in section
    assert "| stopped | 0 | 0 | 0 | yes | no |" in section
    assert "| run4 |" not in section  # untouched runs have no line
    assert "stopped, spoiled" in capsys.readouterr().err

    assert main(["fit", str(table), "--out", str(tmp_path / "b"), "--keep-diverged", *fast]) == 0
    doc = json.loads((tmp_path / "b" / "fit.json").read_text())
    assert doc["n_points"] == 41  # the spoiled run, which has a loss; the stopped one has none
    report = (tmp_path / "b" / "report.md").read_text()
    assert "left out 1 diverged run(s)" in report
    assert "| spoiled | 0 | 0 | 0 | yes | yes |" in report


@pytest.mark.slow
def test_a_sweep_with_a_diverging_lr_tags_it_leaves_it_out_of_the_table_fit_and_exits_1(
    tmp_path,
) -> None:
    from tests.test_sweep import sweep

    out = sweep(tmp_path, "train.lr=1.0,3e-3", "train.spike.action=stop")
    assert out.returncode == 1, out.stderr[-3000:]
    assert "1 finished, 0 skipped" in out.stdout and "1 failed" in out.stdout
    assert "1 diverged run(s), left out of the fit" in out.stdout
    client = tracking.mlflow_client(f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
    found = client.search_runs([client.get_experiment_by_name("scaling").experiment_id])
    by_status = {r.info.status: r for r in found}
    assert set(by_status) == {"FINISHED", "FAILED"}
    failed = by_status["FAILED"]
    assert failed.data.params["train.lr"] == "1.0"
    assert failed.data.tags[tracking.DIVERGED_TAG] == "true"
    assert int(failed.data.tags[tracking.DIVERGED_STEP_TAG]) >= 1
    table = pd.read_csv(tmp_path / "results" / "scaling.csv")
    assert sorted(table.diverged) == [False, True]
    assert table.loss[table.diverged].isna().all()
