"""The fit reproduces a published answer: Besiroglu et al. 2024's refit of Chinchilla.

Hoffmann et al. 2022's approach 3 on the 240 points digitised from their Fig. 4 (data/README.md;
the five highest-loss points dropped, as the replication does), through the real CLI. Published
(Besiroglu et al. 2024, arXiv:2404.10102, Table 1): E = 1.82, A = 482.01, B = 2085.43,
alpha = 0.3478, beta = 0.3658, hence a = beta / (alpha + beta) = 0.5126 for N_opt ∝ C^a.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from scaling.cli import main

DATA = Path(__file__).resolve().parent.parent / "data" / "chinchilla_epoch_ndl.csv"


def test_approach_3_reproduces_the_chinchilla_replication(tmp_path: Path) -> None:
    points = pd.read_csv(DATA)
    points = points[points["excluded_top5_loss"] == 0]
    assert len(points) == 240
    table = tmp_path / "chinchilla.csv"
    points.rename(columns={"N": "params", "D": "tokens", "C": "flops"}).to_csv(table, index=False)

    code = main(["fit", str(table), "--bootstrap", "0", "--no-report", "--out", str(tmp_path)])
    assert code == 0
    fit = json.loads((tmp_path / "fit.json").read_text())
    p = fit["params"]
    assert p["alpha"] == pytest.approx(0.3478, abs=0.002)
    assert p["beta"] == pytest.approx(0.3658, abs=0.003)
    assert p["E"] == pytest.approx(1.82, abs=0.01)
    assert p["A"] == pytest.approx(482.01, rel=0.03)
    assert p["B"] == pytest.approx(2085.43, rel=0.05)
    assert fit["exponents"]["a"] == pytest.approx(0.5126, abs=0.003)
