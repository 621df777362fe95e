"""Shared fixtures: compose the real Hydra configs, shrunk to test size, in a temp project."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "conf"
SWEEPS = REPO / "sweeps"

# Real text that every Python install has: one stdlib package (~150 KB of Python source).
SMALL_TEXT_DIR = Path(sysconfig.get_paths()["stdlib"]) / "json"

# A model and horizon that train in a couple of seconds on 2 CPU cores.
TINY = [
    "model.n_layer=1",
    "model.d_model=32",
    "model.n_head=2",
    "model.seq_len=32",
    "train.batch_size=8",
    "train.tokens=20000",
    "train.eval_points=4",
    "train.log_every=5",
    "train.checkpoint_every=0",
    "train.checkpoint_min_s=0",  # a test that sets checkpoint_every gets every one
    "data.val_tokens=4096",
    "threads=1",
    "progress=false",
]


def run_module(
    cwd: Path, *args: str, cache: Path | None = None, timeout: int = 300
) -> subprocess.CompletedProcess[str]:
    """`python -m <args>` as a user would run it, from ``cwd``, with its own token cache."""
    env = {**os.environ, "SCALING_CACHE": str(cache or cwd / "cache"), "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout,
    )  # fmt: skip


@pytest.fixture
def one_torch_thread():  # type: ignore[no-untyped-def]
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core machine OpenMP's
    barrier spinning makes each op ~30x slower under load."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One token cache for the whole session (tokenizing is what the cache saves)."""
    return tmp_path_factory.mktemp("token-cache")


@pytest.fixture
def compose(tmp_path: Path, shared_cache: Path) -> Callable[..., object]:
    """compose(*overrides) -> DictConfig of conf/config.yaml with results under tmp_path."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from scaling.config import register_configs

    register_configs()

    def _compose(*overrides: str, tiny: bool = True):  # type: ignore[no-untyped-def]
        base = [
            f"results_dir={tmp_path / 'results'}",
            f"data.cache_dir={shared_cache}",
        ]
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            return hydra_compose(
                config_name="config",
                overrides=base + (TINY if tiny else []) + list(overrides),
            )

    return _compose


@pytest.fixture
def text_data() -> list[str]:
    return ["data=text", f"data.path={SMALL_TEXT_DIR}"]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
