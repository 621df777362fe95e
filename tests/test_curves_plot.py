"""The report's training-curves figure (issue 24): the runs' validation curves with the loss
spikes their detector saw, and where diverged runs stopped, marked at the right points."""

from __future__ import annotations

import pandas as pd
import pytest
from synthetic_runs import grid_runs

from scaling.analysis.report.curves_plot import CONTAINED, SPIKE, STOPPED, Mark, marks
from scaling.cli import main

TOKENS = [1000, 2000, 4000, 8000, 16000]


def _curve(run: str, counts: list[int] | None, action: str = "warn", diverged: bool = False):
    """A run's curve of five validation points (loss falling 2.0 -> 1.6)."""
    rows = pd.DataFrame(
        {
            "run_id": run,
            "run_name": run,
            "params": 1e5,
            "tokens": TOKENS,
            "final_tokens": TOKENS[-1],
            "loss": [2.0, 1.9, 1.8, 1.7, 1.6],
            "train.spike.action": action,
            "diverged": diverged,
        }
    )
    if counts is not None:
        rows["spikes_so_far"] = counts
    return rows


def test_a_spike_is_marked_at_the_first_validation_after_it_and_by_what_was_done() -> None:
    curves = pd.concat(
        [
            _curve("warned", [0, 0, 2, 2, 3]),
            _curve("skipped", [1, 1, 1, 1, 1], action="skip"),
            _curve("clean", [0, 0, 0, 0, 0]),
            _curve("off", None),  # the detector was off: no column for this run
            _curve("stopped", [0, 0, 0, 1, 1], action="stop", diverged=True),
        ]
    )
    found = marks(curves)
    assert Mark("warned", 4000, 1.8, SPIKE, 2) in found
    assert Mark("warned", 16000, 1.6, SPIKE, 1) in found
    assert Mark("skipped", 1000, 2.0, CONTAINED, 1) in found  # before its first validation
    assert Mark("stopped", 8000, 1.7, SPIKE, 1) in found
    assert Mark("stopped", 16000, 1.6, STOPPED) in found
    assert not [m for m in found if m.run in ("clean", "off")]
    assert len(found) == 5


def test_the_fit_report_draws_the_curves_it_is_given_and_no_figure_without(tmp_path) -> None:
    runs = grid_runs(n=30, seed=5)
    runs["run_id"] = runs["run_name"] = [f"r{i}" for i in range(len(runs))]
    table = tmp_path / "runs.csv"
    runs.to_csv(table, index=False)
    curves = pd.concat(
        runs.assign(tokens=runs.tokens * f, loss=runs.loss * (2 - f), spikes_so_far=spikes)
        for f, spikes in ((0.25, 0), (0.5, 1), (1.0, 1))
    )
    curves.loc[curves.run_id != "r7", "spikes_so_far"] = 0
    curves_path = tmp_path / "curves.csv"
    curves.to_csv(curves_path, index=False)
    fast = ["--bootstrap", "0", "--grid-stride", "60", "--workers", "1"]

    out = tmp_path / "with"
    assert main(["fit", str(table), "--out", str(out), "--curves", str(curves_path), *fast]) == 0
    report = (out / "report.md").read_text()
    assert "![Training curves" in report and "(training_curves.png)" in report
    assert (out / "training_curves.png").stat().st_size > 10_000

    out = tmp_path / "without"
    assert main(["fit", str(table), "--out", str(out), *fast]) == 0
    assert "training_curves.png" not in (out / "report.md").read_text()
    assert not (out / "training_curves.png").exists()


def test_a_missing_curves_table_is_one_line_and_exit_2_before_anything_is_written(
    tmp_path, capsys
) -> None:
    runs = grid_runs(n=30, seed=5)
    table = tmp_path / "runs.csv"
    runs.to_csv(table, index=False)
    out = tmp_path / "fit"
    with pytest.raises(SystemExit) as exit_:
        main(["fit", str(table), "--out", str(out), "--curves", str(tmp_path / "nope.csv")])
    assert exit_.value.code == 2
    assert "nope.csv: no such file" in capsys.readouterr().err
    assert not out.exists()
