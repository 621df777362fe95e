"""One real training run end to end: Lightning, the real token data, a real MLflow store."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from scaling.config import build_run_config
from scaling.errors import ConfigError
from scaling.training.module import eval_steps, lr_factor
from scaling.training.run import prepare, train

REPO = Path(__file__).resolve().parent.parent


def _client(cfg):  # type: ignore[no-untyped-def]
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=cfg.tracking.uri)


def test_short_run_loss_falls_and_is_recorded_in_mlflow(compose, text_data) -> None:
    prep = prepare(compose(*text_data, "train.tokens=60000"))
    result = train(prep)
    assert result.status == "FINISHED"

    client = _client(prep.cfg)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == prep.name
    # Params: the flattened config, counted parameter groups, FLOPs, corpus identity.
    p = run.data.params
    assert p["model.n_layer"] == "1" and p["model.d_model"] == "32"
    assert int(p["params"]) == result.params
    assert int(p["params_nonembed"]) < int(p["params"])
    assert float(p["flops.6N"]) == pytest.approx(6 * result.params * prep.cfg.tokens)
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
    assert summary["val_loss"] == pytest.approx(result.val_loss)
    assert summary["tokens"] == prep.cfg.tokens


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


def test_lr_schedule_warms_up_then_decays_to_the_floor_at_the_horizon(compose) -> None:
    cfg = build_run_config(compose("train.warmup=0.1", "train.min_lr_ratio=0.1")).train
    total = 100
    f = [lr_factor(s, total, cfg) for s in range(total)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[9:], f[10:]))
    assert f[-1] == pytest.approx(0.1, abs=0.01)
    wsd = build_run_config(compose("train.schedule=wsd", "train.cooldown=0.2")).train
    g = [lr_factor(s, total, wsd) for s in range(total)]
    assert g[50] == 1.0 and g[79] == 1.0 and g[-1] == pytest.approx(0.1)


def test_eval_points_are_log_spaced_and_end_at_the_horizon() -> None:
    steps = eval_steps(1000, 8)
    assert steps[0] == 1 and steps[-1] == 1000 and len(steps) == 8
    ratios = [b / a for a, b in zip(steps[2:], steps[3:])]
    assert max(ratios) / min(ratios) < 1.2


def test_flops_horizon_derives_tokens_with_the_chosen_convention(compose) -> None:
    from scaling.counting import flops_per_token

    cfg = build_run_config(compose("train.tokens=null", "train.flops=1e11"))
    per_token = flops_per_token(cfg.model, "6N")
    assert cfg.tokens <= 1e11 / per_token < cfg.tokens + cfg.tokens_per_step
    kaplan = build_run_config(
        compose("train.tokens=null", "train.flops=1e11", "train.flops_convention=6N+attn")
    )
    kaplan_per_token = flops_per_token(kaplan.model, "6N+attn")
    assert kaplan_per_token != per_token
    assert kaplan.tokens <= 1e11 / kaplan_per_token < kaplan.tokens + kaplan.tokens_per_step
    assert kaplan.flops() == pytest.approx(kaplan.tokens * kaplan_per_token)


BAD_INPUTS = [
    (["model.d_model=30", "model.n_head=4"], "model.d_model"),
    (["train.flops=1e12"], "exactly one of train.tokens or train.flops"),
    (["train.tokens=null"], "exactly one of train.tokens or train.flops"),
    (["train.tokens=100"], "less than one optimizer step"),
    (["data=text"], "data.path"),
    (["data.tokenizer=wordpiece"], "data.tokenizer"),
    (["tracking.uri=http://127.0.0.1:9"], "unreachable"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_INPUTS)
def test_bad_input_is_one_line_before_any_run(compose, overrides, message) -> None:
    from scaling.errors import UserError

    with pytest.raises(UserError, match=message.replace(".", r"\.")) as err:
        prepare(compose(*overrides))
    assert "\n" not in str(err.value)


def test_empty_corpus_is_reported(compose, tmp_path) -> None:
    from scaling.errors import UserError

    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(UserError, match="empty"):
        prepare(compose("data=text", f"data.path={empty}"))


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


def test_config_error_names_the_key() -> None:
    with pytest.raises(ConfigError, match="train.micro_batch_size"):
        from scaling.config import TrainConfig

        TrainConfig(batch_size=32, micro_batch_size=5)
