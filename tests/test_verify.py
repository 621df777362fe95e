"""`scaling verify`: the closed loop from a fit's prediction to a trained run."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from synthetic_runs import grid_runs

from scaling.analysis.design.shapes import nearest_shape
from scaling.cli import main
from scaling.training.verify import Verification, allocation_verdict
from tests.conftest import SMALL_TEXT_DIR, TINY


def _v(role: str, measured: float, params: int = 1000) -> Verification:
    return Verification(
        role=role, flops=1e9, n_layer=1, d_model=16, params=params, tokens=1000,
        predicted=2.0, loss_ci=(1.98, 2.02), loss_pi=(1.9, 2.1), level=0.9,
        measured=measured, run_id=None, run_name="r",
    )  # fmt: skip


def test_the_verdict_line_scores_the_prediction_against_its_prediction_interval() -> None:
    assert _v("optimum", 2.05).line() == (
        "predicted 2 [1.9, 2.1], measured 2.05, error +2.50%, inside: yes"
    )
    assert _v("optimum", 2.2).inside is False and _v("optimum", 2.2).error_pct == pytest.approx(10)


def test_the_allocation_verdict_compares_the_optimum_with_its_neighbours_beyond_noise() -> None:
    close = [_v("optimum", 2.00), _v("0.5x", 1.995, 500), _v("2x", 2.03, 2000)]
    assert "no worse than its neighbours" in allocation_verdict(close, sigma_log=0.01)
    beaten = [_v("optimum", 2.10), _v("0.5x", 2.0, 500), _v("2x", 2.2, 2000)]
    assert "beat the predicted optimum" in allocation_verdict(beaten, sigma_log=0.01)


def _hand_counted(n_layer: int, d_model: int, seq_len: int = 128, vocab: int = 256) -> int:
    """Parameters of the default GPT, counted from scaling/training/model.py by hand: per block
    c_attn 3d^2 + 3d, c_proj d^2 + d, MLP c_fc 4d^2 + 4d and c_proj 4d^2 + d, two LayerNorms 4d
    (12d^2 + 13d); a final LayerNorm 2d; wte vocab*d (lm_head tied to it) and wpe seq_len*d."""
    d = d_model
    return n_layer * (12 * d * d + 13 * d) + 2 * d + vocab * d + seq_len * d


def _hand_family(family: str) -> list[tuple[int, int, int]]:
    """(params, n_layer, d_model) of every shape up to 64 layers, by the rule the shapes module
    documents: aspect 16, head_dim 16; ``aspect``: d_model = 16 n_layer; ``free``: d_model any
    multiple of 16 within a factor of two of 16 n_layer."""
    out = []
    for n_layer in range(1, 65):
        if family == "aspect":
            widths = [16 * n_layer]
        else:
            widths = list(range(16 * max(1, math.ceil(8 * n_layer / 16)), 32 * n_layer + 1, 16))
        out += [(_hand_counted(n_layer, d), n_layer, d) for d in widths]
    return sorted(out)


def test_the_snapped_shape_is_the_valid_model_nearest_the_predicted_size() -> None:
    assert _hand_counted(4, 64) == 224_640  # the default model (tests/test_architecture.py)
    for family in ("aspect",):
        catalogue = _hand_family(family)
        sizes = [p for p, _, _ in catalogue]
        assert len(set(sizes)) == len(sizes)  # no two shapes tie
        targets = [9e3, 4e4, 2.5e5]
        # just either side of the geometric midpoint of two neighbours: the nearest in log space,
        # not in parameters (the arithmetic midpoint lies above), nor the next one up
        for i in (0, 2, 4, 9, 20):
            mid = math.sqrt(sizes[i] * sizes[i + 1])
            targets += [mid * 0.999, mid * 1.001]
        for target in targets:
            distance = [abs(math.log(p / target)) for p in sizes]
            best = int(np.argmin(distance))
            params, n_layer, d_model = catalogue[best]
            shape = nearest_shape(target, seq_len=128, vocab_size=256, family=family)
            assert (shape.params, shape.n_layer, shape.d_model) == (params, n_layer, d_model)
            assert shape.n_head == d_model // 16
            # it beats the shapes one step smaller and one step larger
            assert all(distance[best] < distance[j] for j in (best - 1, best + 1) if j >= 0)
    # a 250K prediction trains the 225K default model, not the 420K one above it
    assert nearest_shape(2.5e5, 128, 256).params == 224_640


def test_a_free_size_snaps_to_the_shape_of_the_ladders_family_not_merely_the_nearest() -> None:
    """At 1e13 FLOPs on the stdlib corpus the predicted 127K parameters snapped to L4-d48
    (127,008, aspect 12) and measured 3.4% above the prediction; L3-d56 (131,320, aspect 18.7,
    0.015 decades away, the aspect the ladder's sizes were picked by) measured 0.6% above. Among
    shapes within 0.04 decades of the nearest, the aspect closest to 16 is trained."""
    assert _hand_counted(4, 48, seq_len=32) == 127_008
    assert _hand_counted(3, 56, seq_len=32) == 131_320
    shape = nearest_shape(127_008, seq_len=32, vocab_size=256, family="free", head_dim=8)
    assert (shape.n_layer, shape.d_model, shape.params) == (3, 56, 131_320)
    # and never a shape beyond the band: the 3.2K one-layer model stays itself
    small = nearest_shape(3_192, seq_len=32, vocab_size=256, family="free", head_dim=8)
    assert (small.n_layer, small.d_model) == (1, 8)


def test_a_verification_after_the_fit_enters_its_report_once(tmp_path) -> None:
    from scaling.analysis.report.markdown import refresh_verifications
    from scaling.training.verify import append_history

    report = tmp_path / "report.md"
    report.write_text("# Fit\n\n## Backtest\n\nok\n\n## Warnings\n\nNone.\n")
    history = tmp_path / "verifications.csv"
    append_history(history, tmp_path / "fit.json", _v("optimum", 2.05))
    assert refresh_verifications(report, history)
    text = report.read_text()
    assert text.index("## Backtest") < text.index("## Verifications") < text.index("## Warnings")
    assert "1 verification(s): mean |error| 2.50%, 1 of 1 inside" in text
    append_history(history, tmp_path / "fit.json", _v("optimum", 2.2))
    assert refresh_verifications(report, history)  # replaced, not added twice
    text = report.read_text()
    assert text.count("## Verifications") == 1 and "2 verification(s)" in text
    assert text.endswith("## Warnings\n\nNone.\n")
    assert not refresh_verifications(tmp_path / "none.md", history)


@pytest.mark.slow
def test_verify_trains_the_predicted_optimum_and_its_neighbours_and_records_them(
    tmp_path, capsys
) -> None:
    runs = grid_runs(n=60, noise=0.003, seed=4, n_range=(3e3, 1e5), tpp_range=(2, 200))
    table = tmp_path / "ladder.csv"
    runs.to_csv(table, index=False)
    fit_dir = tmp_path / "analysis"
    assert main(["fit", str(table), "--out", str(fit_dir), "--bootstrap", "40"]) == 0
    capsys.readouterr()
    overrides = [
        *TINY, "data=text", f"data.path={SMALL_TEXT_DIR}", f"results_dir={tmp_path / 'results'}",
        f"tracking.uri=sqlite:///{tmp_path / 'results' / 'mlflow.db'}",
    ]  # fmt: skip
    argv = ["verify", "--fit", str(fit_dir / "fit.json"), "--flops", "2.4e9", "--bracket"]
    assert main([*argv, *overrides]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "predicted" in line and "measured" in line]
    assert len(lines) >= 2 and all("inside: " in line and "error " in line for line in lines)
    assert "allocation:" in out

    history = pd.read_csv(fit_dir / "verifications.csv")
    assert len(history) == len(lines) and "optimum" in set(history.role)
    # the fit's report shows them at once (not only after the next fit or `scaling report`)
    assert "## Verifications" in (fit_dir / "report.md").read_text()
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'results' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("verify")
    found = client.search_runs([exp.experiment_id])
    assert {r.data.tags["scaling.verify.role"] for r in found} == set(history.role)
    assert all(float(r.data.tags["scaling.verify.predicted"]) > 0 for r in found)

    # the same command again trains nothing new and reads the recorded result
    assert main([*argv[:-1], "--json", *overrides]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc[0]["role"] == "optimum" and doc[0]["measured"] == pytest.approx(
        float(history[history.role == "optimum"].measured.iloc[0])
    )
    assert main(["report", str(fit_dir)]) == 0
    assert "## Verifications" in (fit_dir / "report.md").read_text()


@pytest.mark.slow
def test_verify_on_a_grid_points_config_trains_with_its_data_and_hyperparameters(
    tmp_path, compose
) -> None:  # type: ignore[no-untyped-def]
    """sweep.verify_flops verifies with the grid's first point's config (its data, batch,
    context), replacing only the shape and the horizon."""
    from scaling.training.verify import verify

    runs = grid_runs(n=60, noise=0.003, seed=4, n_range=(3e3, 1e5), tpp_range=(2, 200))
    table = tmp_path / "ladder.csv"
    runs.to_csv(table, index=False)
    fit_dir = tmp_path / "analysis"
    assert main(["fit", str(table), "--out", str(fit_dir), "--bootstrap", "40"]) == 0
    base = compose("data=text", f"data.path={SMALL_TEXT_DIR}", "train.batch_size=4")
    (v,) = verify(fit_dir / "fit.json", 2.4e9, base_config=base)
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=str(base.tracking.uri))
    run = client.get_run(v.run_id)
    assert run.data.params["train.batch_size"] == "4"  # the grid's, not the default 32
    assert run.data.params["model.seq_len"] == str(base.model.seq_len)
    assert run.data.params["data.source"] == "text"
    assert int(run.data.params["model.n_layer"]) == v.n_layer
    assert float(run.data.params["train.flops"]) == 2.4e9


@pytest.mark.slow
def test_a_sweep_asked_to_verify_an_unhealthy_fit_says_so_and_exits_3(tmp_path) -> None:
    from tests.conftest import run_module

    proc = run_module(
        tmp_path, "scaling.sweep", "-m", "model.n_layer=1", "model.n_head=1", "model.seq_len=32",
        "train.batch_size=8", "train.tokens=null", "train.flops=3e8,1e9",
        "model.d_model=16,32,48", "sweep.bootstrap=0", "sweep.verify_flops=1e10",
        "progress=false",
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "run table:" in proc.stdout  # the grid was trained, collected and fitted
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert "cannot support a prediction" in line or "no fit to verify" in line


def test_a_ladder_of_head_dim_8_is_verified_on_its_own_shapes() -> None:
    """A ladder planned with --head-dim 8 (sizes down to 3.2K parameters) is verified on that
    family: the shape nearest 3.2K is the one-layer, 8-wide model, which head_dim 16 lacks."""
    from scaling.counting import count_params

    small = nearest_shape(3_200, seq_len=32, vocab_size=256, family="free", head_dim=8)
    assert (small.n_layer, small.d_model, small.n_head) == (1, 8, 1)
    assert small.params == count_params(small.model).total
    default = nearest_shape(3_200, seq_len=32, vocab_size=256, family="free")
    assert default.d_model >= 16
