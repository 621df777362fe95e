"""A wheel, not only an editable checkout, carries the Hydra configs and presets it needs: the
checkout's top-level conf/ and sweeps/ ship inside the package as scaling/conf/."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_a_built_wheel_runs_the_demo_preset_from_anywhere(tmp_path: Path) -> None:
    # Build from a copy of the tracked files, so that build/ and *.egg-info stay out of the repo.
    src = tmp_path / "src"
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    for name in files:
        if (REPO / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_bytes((REPO / name).read_bytes())
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(wheels), str(src)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = wheels.glob("scaling-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for preset in ("demo", "isoflop", "kaplan", "horizons", "horizons_wsd", "hparams"):
        assert f"scaling/conf/sweeps/{preset}.yaml" in names
    assert not any(n.startswith(("conf/", "sweeps/")) for n in names)  # inside the package only
    assert "scaling/conf/config.yaml" in names and "scaling/conf/data/stdlib.yaml" in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "SCALING_CACHE": str(tmp_path / "cache")}
    where = subprocess.run(
        [sys.executable, "-c", "import scaling.config as c; print(c.CONF_DIR)"],
        cwd=elsewhere, env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert where.startswith(str(site)), where  # the wheel's copy, not this checkout
    plan = subprocess.run(
        [sys.executable, "-m", "scaling.sweep", "-m", "sweeps=demo", "sweep.dry_run=true"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert plan.returncode == 0, plan.stderr[-2000:]
    assert "18 runs" in plan.stdout, plan.stdout  # the planned demo ladder
    assert not (elsewhere / "results" / "mlflow.db").exists()  # a dry run writes no store
