"""One real training run end to end: Lightning, the real token data, a real MLflow store."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from scaling.training.model import GPT
from scaling.training.prepare import prepare
from scaling.training.run import train

REPO = Path(__file__).resolve().parent.parent


def _client(cfg):  # type: ignore[no-untyped-def]
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=cfg.tracking.uri)


def test_short_run_loss_falls_and_is_recorded_in_mlflow(compose, text_data) -> None:
    prep = prepare(compose(*text_data, "train.tokens=60000", "train.checkpoint_every=100"))
    result = train(prep)
    assert result.status == "FINISHED"

    client = _client(prep.cfg)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == prep.name
    # Params: the flattened config, counted parameter groups, FLOPs, corpus identity.
    p = run.data.params
    assert p["model.n_layer"] == "1" and p["model.d_model"] == "32"
    built = sum(t.numel() for t in GPT(prep.cfg.model).parameters())
    assert int(p["params"]) == result.params == built == 21_984
    assert int(p["params_nonembed"]) == 12_768
    assert prep.cfg.tokens == 59_904  # 234 whole steps of 8 x 32 tokens
    assert float(p["flops.6N"]) == 6 * 21_984 * 59_904
    assert p["data.tokenizer_id"] == "byte"
    # Metrics: val/loss along the way with step = tokens seen; the final one is the result.
    history = sorted(client.get_metric_history(result.run_id, "val/loss"), key=lambda m: m.step)
    steps = [m.step for m in history]
    assert steps[-1] == prep.cfg.tokens
    assert len(set(steps)) >= 3
    assert history[-1].value == pytest.approx(result.val_loss)
    assert history[-1].value < history[0].value - 0.5  # clearly learning
    assert history[0].value < math.log(256) + 0.1
    train_loss = client.get_metric_history(result.run_id, "train/loss")
    assert len(train_loss) >= 3
    assert run.data.metrics["throughput/tokens_per_s"] > 0
    # Artifacts: resolved config and summary.json.
    names = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"config.yaml", "summary.json"} <= names
    summary = json.loads(Path(client.download_artifacts(result.run_id, "summary.json")).read_text())
    assert summary["val_loss"] == run.data.metrics["val/loss"] == result.val_loss
    assert summary["tokens"] == prep.cfg.tokens and summary["status"] == "FINISHED"
    config = Path(client.download_artifacts(result.run_id, "config.yaml")).read_text()
    assert "n_layer: 1" in config and "hydra" not in config
    assert not (Path(prep.cfg.results_dir) / "checkpoints" / prep.key).exists()  # removed once done


@pytest.mark.slow
def test_same_config_and_seed_give_the_same_final_loss(compose, text_data) -> None:
    a = train(prepare(compose(*text_data, "tracking.experiment=a")))
    b = train(prepare(compose(*text_data, "tracking.experiment=b")))
    c = train(prepare(compose(*text_data, "tracking.experiment=c", "seed=1")))
    assert a.val_loss == b.val_loss
    assert a.run_key == b.run_key  # tracking settings are not part of a run's identity
    assert c.val_loss != a.val_loss and c.run_key != a.run_key


@pytest.mark.slow
def test_synthetic_source_approaches_but_never_beats_its_entropy_rate(compose) -> None:
    prep = prepare(
        compose(
            "data=markov",
            "data.states=16",
            "data.concentration=0.2",
            "data.corpus_tokens=400000",
            "model.n_layer=2",
            "model.d_model=64",
            "model.n_head=2",
            "train.tokens=400000",
            "train.lr=3e-3",
            "train.eval_points=6",
            "data.val_tokens=16384",
        )
    )
    entropy = prep.corpus.entropy_rate
    assert entropy is not None and 0 < entropy < math.log(16)
    result = train(prep)
    # A first-order chain: the model can learn it exactly, but never beat the entropy rate
    # (beyond the sampling noise of a 16k-token validation set).
    assert result.val_loss > entropy - 0.02
    assert result.val_loss < entropy + 0.10
    assert result.val_loss < math.log(16) - 0.5


def test_a_trainer_setting_lightning_rejects_is_one_line_and_records_nothing(
    compose, text_data
) -> None:
    from scaling.errors import ConfigError

    # A name Lightning knows but this machine lacks (unknown names are refused by prepare).
    prep = prepare(compose(*text_data, "trainer.accelerator=mps"))
    with pytest.raises(ConfigError, match=r"Lightning rejects trainer\.accelerator=mps") as err:
        train(prep)
    assert "\n" not in str(err.value)
    db = Path(prep.cfg.tracking.uri.removeprefix("sqlite:///"))
    assert not db.exists() or not _client(prep.cfg).search_runs(
        [e.experiment_id for e in _client(prep.cfg).search_experiments()]
    )


def test_empty_corpus_is_reported(compose, tmp_path) -> None:
    from scaling.errors import UserError

    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(UserError, match="empty"):
        prepare(compose("data=text", f"data.path={empty}"))


@pytest.mark.slow
def test_cli_bad_input_exits_2_with_one_line_and_creates_no_run(tmp_path) -> None:
    db = tmp_path / "mlflow.db"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "scaling.train",
            "model.d_model=30",
            "model.n_head=4",
            f"tracking.uri=sqlite:///{db}",
            f"results_dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [lines[0]] and lines[0].startswith("error: model.d_model=30")
    assert "Traceback" not in proc.stderr
    assert not db.exists()


def test_a_run_killed_after_its_final_checkpoint_finishes_when_rerun(
    compose, text_data, monkeypatch
) -> None:
    """The checkpoint saved after the last step cannot be resumed into (no step is left, and
    Lightning would stop before the final validation): the rerun must start over and finish,
    not fail the same way forever."""
    from scaling.training import run, trainer

    prep = prepare(compose(*text_data, "train.tokens=8192", "train.checkpoint_every=8"))
    assert prep.cfg.steps == 32  # a multiple of checkpoint_every: last.ckpt at the final step

    def killed(*args, **kwargs):  # the process dies between the last step and FINISHED
        raise KeyboardInterrupt

    monkeypatch.setattr(run, "_summary", killed)
    with pytest.raises(KeyboardInterrupt):
        train(prep)
    ckpt = run.checkpoint_dir(prep.cfg) / "last.ckpt"
    assert trainer.resume_step(ckpt) == prep.cfg.steps
    monkeypatch.undo()

    result = train(prep)
    assert result.status == "FINISHED" and result.resumed_from_step == 0
    assert math.isfinite(result.val_loss)
    assert not ckpt.parent.exists()
    finished = [
        r
        for r in _client(prep.cfg).search_runs(
            [_client(prep.cfg).get_experiment_by_name(prep.cfg.tracking.experiment).experiment_id]
        )
        if r.info.status == "FINISHED"
    ]
    assert [r.info.run_id for r in finished] == [result.run_id]


@pytest.mark.slow
def test_a_run_shorter_than_checkpoint_min_s_writes_no_checkpoint(
    compose, text_data, monkeypatch
) -> None:
    """``train.checkpoint_min_s``: checkpoints wait that long since the run's start, so a run of
    a few seconds killed before FINISHED leaves none (its rerun trains from step 0)."""
    from scaling.training import run

    every = ["train.tokens=8192", "train.checkpoint_every=8", "train.checkpoint_min_s=3600"]
    prep = prepare(compose(*text_data, *every))

    def killed(*args, **kwargs):  # the process dies between the last step and FINISHED
        raise KeyboardInterrupt

    monkeypatch.setattr(run, "_summary", killed)
    with pytest.raises(KeyboardInterrupt):
        train(prep)
    assert not (run.checkpoint_dir(prep.cfg) / "last.ckpt").exists()
    monkeypatch.undo()
    result = train(prep)
    assert result.status == "FINISHED" and result.resumed_from_step == 0
