"""The run table contract (scaling/analysis/table.py): columns from an MLflow record, reading,
validating and writing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from scaling.analysis.table import curve_rows, frame, read_run_table, run_row, write_table
from scaling.errors import DataError, UserError

RUNS = pd.DataFrame(
    {
        "params": [21_984, 34_688],
        "tokens": [19_968, 59_904],
        "loss": [2.75, 2.5],
        "run_id": ["a1", "b2"],
        "n_layer": [1, 2],
    }
)

# A run's MLflow params as logged (always strings): TINY with 1 layer, 19,968 tokens.
PARAMS = {
    "params": "21984",
    "params_nonembed": "12768",
    "params_embed": "9216",
    "planned.tokens": "19968",
    "model.n_layer": "1",
    "model.d_model": "32",
    "train.lr": "0.003",
    "train.flops": "None",
    "data.tokenizer": "byte",
    "flops.6N": "2633859072.0",
    "flops.6N_attn": "1652391936.0",
    "flops.chinchilla": "3692003328.0",
    "flops_per_token.6N": "131904.0",
    "flops_per_token.6N_attn": "82752.0",
    "flops_per_token.chinchilla": "184896.0",
    "git_commit": "abc",
}
METRICS = {"val/loss": 2.75, "throughput/tokens_per_s": 1234.5, "train/loss": 2.7}


def test_round_trip_through_csv_and_parquet(tmp_path: Path) -> None:
    for name in ("runs.csv", "runs.parquet"):
        path = write_table(RUNS, tmp_path / "sub" / name)
        back = read_run_table(path)
        assert back[["params", "tokens", "loss"]].to_numpy().tolist() == [
            [21_984, 19_968, 2.75],
            [34_688, 59_904, 2.5],
        ]
        assert back.run_id.tolist() == ["a1", "b2"] and back.n_layer.tolist() == [1, 2]
        # no flops column: C = 6ND, by hand
        assert back.flops.tolist() == [2_633_859_072, 12_467_699_712]
        assert not list(path.parent.glob(".*"))  # the temp file was renamed away


def test_params_column_picks_another_count(tmp_path: Path) -> None:
    path = write_table(RUNS.assign(params_nonembed=[12_768, 25_472]), tmp_path / "runs.csv")
    assert read_run_table(path, "params_nonembed").params.tolist() == [12_768, 25_472]


def _bad(tmp_path: Path, df: pd.DataFrame) -> Path:
    path = tmp_path / "bad.csv"
    df.to_csv(path, index=False)
    return path


BAD = {
    "missing": (RUNS.drop(columns="loss"), r"missing column\(s\) loss; a run table needs"),
    "non-numeric": (RUNS.assign(tokens=["10", "x"]), r"'tokens' has a non-numeric .*'x' \(row 2\)"),
    "nan": (RUNS.assign(loss=[2.5, None]), r"'loss' has a missing/NaN/inf value \(row 2\)"),
    "zero": (RUNS.assign(params=[0, 1]), r"'params' must be positive; row 1 has 0"),
    "negative-flops": (RUNS.assign(flops=[1e9, -1e9]), r"'flops' must be positive; row 2 has -1e"),
    "empty": (RUNS.iloc[:0], r"the table has no rows"),
}


@pytest.mark.parametrize("case", BAD)
def test_each_bad_table_is_one_line_naming_the_column_and_row(tmp_path, case) -> None:
    df, pattern = BAD[case]
    path = _bad(tmp_path, df)
    with pytest.raises(DataError, match=pattern) as err:
        read_run_table(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_bad_paths_and_options_are_one_line(tmp_path: Path) -> None:
    cases = [
        (lambda: read_run_table(tmp_path / "nope.csv"), r"nope\.csv: no such file"),
        (lambda: read_run_table(tmp_path), r"is a directory"),
        (lambda: read_run_table(_bad(tmp_path, RUNS), "params_x"), r"'params_x' is not a column"),
        (lambda: read_run_table(_bad(tmp_path, RUNS.drop(columns="run_id")), curves=True),
         r"a curves table \(--approach 1\) needs a run_id column"),
        (lambda: write_table(RUNS, tmp_path / "runs.xlsx"), r"unknown table extension '\.xlsx'"),
    ]  # fmt: skip
    for call, pattern in cases:
        with pytest.raises(UserError, match=pattern) as err:
            call()
        assert "\n" not in str(err.value)
    binary = tmp_path / "garbage.csv"
    binary.write_bytes(b"\xff\xfe\x00\x01" * 100)
    with pytest.raises(DataError, match=r"garbage\.csv: cannot"):
        read_run_table(binary)


def test_a_curves_table_reads_as_each_runs_final_row_or_as_curves(tmp_path: Path) -> None:
    curves = pd.DataFrame(
        {
            "run_id": ["b", "a", "a", "b", "a"],
            "params": [200, 100, 100, 200, 100],
            "tokens": [1000, 3000, 1000, 500, 2000],
            "loss": [3.0, 2.0, 4.0, 3.5, 3.0],
        }
    )
    path = write_table(curves, tmp_path / "curves.csv")
    final = read_run_table(path)
    assert final[["run_id", "tokens", "loss"]].values.tolist() == [
        ["a", 3000, 2.0],
        ["b", 1000, 3.0],
    ]
    full = read_run_table(path, curves=True)
    assert full.run_id.tolist() == ["a", "a", "a", "b", "b"]
    assert full.tokens.tolist() == [1000, 2000, 3000, 500, 1000]


# ---- rows from an MLflow record ---------------------------------------------------------------


def test_a_run_row_maps_params_and_metrics_to_columns() -> None:
    row = run_row(PARAMS, METRICS, run_id="r1", run_name="L1", status="FINISHED", run_key="0a1b")
    assert (row["params"], row["params_nonembed"], row["params_embed"]) == (21_984, 12_768, 9_216)
    assert (row["tokens"], row["loss"], row["tokens_per_s"]) == (19_968, 2.75, 1234.5)
    assert (row["n_layer"], row["d_model"], row["lr"]) == (1, 32, 0.003)
    assert row["run_key"] == "0a1b" and row["planned_flops"] == "None"
    assert row["flops"] == 2_633_859_072  # 6 x 21,984 x 19,968
    assert row["flops_6N_attn"] == 1_652_391_936 and row["flops_exact"] == 3_692_003_328
    # every config key travels under its Hydra name; other params do not
    assert row["model.n_layer"] == 1 and row["data.tokenizer"] == "byte"
    assert "git_commit" not in row and "train/loss" not in row


def test_curve_rows_scale_every_flops_column_to_the_tokens_seen() -> None:
    row = run_row(PARAMS, METRICS, run_id="r1")
    rows = curve_rows(row, PARAMS, [(19_968, 2.75), (256, 5.5), (2_560, 3.25)])
    assert [(r["tokens"], r["loss"]) for r in rows] == [(256, 5.5), (2_560, 3.25), (19_968, 2.75)]
    assert {r["final_tokens"] for r in rows} == {19_968}
    first = rows[0]
    assert first["flops"] == 6 * 21_984 * 256 == 33_767_424
    assert first["flops_6N_attn"] == 82_752 * 256
    assert first["flops_chinchilla"] == first["flops_exact"] == 184_896 * 256
    assert rows[-1]["flops"] == row["flops"]


def test_collected_columns_come_first() -> None:
    row = run_row(PARAMS, METRICS, run_id="r1", run_name="L1", status="FINISHED")
    columns = list(frame([row]).columns)
    assert columns[:7] == ["params", "tokens", "loss", "params_nonembed", "flops", "flops_exact",
                           "run_id"]  # fmt: skip


def test_the_table_and_config_import_without_the_training_stack() -> None:
    code = (
        "import sys\n"
        "for name in ('torch', 'lightning', 'mlflow'): sys.modules[name] = None\n"
        "import scaling.config, scaling.analysis.table\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
