"""Benchmark: what a sweep of tiny runs costs beyond their steps (issue 25's fixed cost per run).

    .venv/bin/python benchmarks/bench_fixed_cost.py          # ~2 minutes on 2 cores

Ten runs of the smallest ladder model (1 layer, d 16, 4 x 32 tokens a step, 600 steps, one
thread, stdlib corpus), measured three ways in the same invocation, one after another:

1. **plain**: one Python process that imports torch, builds each model and trains its 600 steps
   in a plain loop (AdamW, clipping, the cosine schedule, the harness's data) -- the steps'
   wall-clock -- plus one ``python -c "import torch"`` start-up, timed alone;
2. **sweep**: ``python -m scaling.sweep -m ... seed=range(10)`` on a fresh MLflow store (the
   token cache already built), the whole command;
3. **where the difference goes**: the imports (``python -c "import lightning.pytorch"``, and
   with MLflow, Hydra and the sweep's module; each a whole command, start-up and exit
   included), each run's ``train()`` as the sweep printed it, and the rest (store creation,
   composing and validating the grid, between runs).

Prints sweep / (plain steps + start-up) against the target 2.0.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET = 2.0
RUNS, STEPS, BATCH, SEQ = 10, 600, 4, 32
OVERRIDES = [
    "model.n_layer=1",
    "model.d_model=16",
    f"model.seq_len={SEQ}",
    f"train.batch_size={BATCH}",
    f"train.tokens={STEPS * BATCH * SEQ}",
    "train.lr=3e-3",
    "threads=1",
]

PLAIN = """
import sys, time
t0 = time.perf_counter()
import torch
from hydra import compose, initialize_config_dir
from scaling.config import CONF_DIR, register_configs
from scaling.training.prepare import prepare
from scaling.training.data.batches import TokenBatches
from scaling.training.model import GPT
from scaling.training.module import build_optimizer, lr_factor
torch.set_num_threads(1)
register_configs()
with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
    cfg = compose("config", overrides=sys.argv[1:])
prep = prepare(cfg, check_tracking=False)
c, tc = prep.cfg, prep.cfg.train
steps = 0.0
for seed in range(%(runs)d):
    t = time.perf_counter()
    torch.manual_seed(seed)
    model = GPT(c.model)
    opt = build_optimizer(model, tc)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, c.steps, tc))
    loader = torch.utils.data.DataLoader(
        TokenBatches(prep.corpus.train, c.model.seq_len, c.steps * tc.batch_size, seed),
        batch_size=tc.batch_size, drop_last=True)
    params = list(model.parameters())
    for x, y in loader:
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
    steps += time.perf_counter() - t
print(f"STEPS {steps:.3f}")
"""


def _env(cache: str) -> dict[str, str]:
    return {**os.environ, "SCALING_CACHE": cache, "PYTHONWARNINGS": "ignore"}


def _timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}: {' '.join(cmd)}\n{out[-3000:]}")
    return wall, out


def _import_s(module: str, env: dict[str, str], repeats: int = 3) -> float:
    return min(_timed([sys.executable, "-c", f"import {module}"], env)[0] for _ in range(repeats))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=os.environ.get("SCALING_CACHE", ".cache/scaling"))
    args = parser.parse_args(argv)
    cache = str(Path(args.cache).resolve())
    env = _env(cache)
    started, load0 = time.perf_counter(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_fixed_cost-") as tmp:
        results = Path(tmp)
        sweep = [sys.executable, "-m", "scaling.sweep", "-m", *OVERRIDES, f"seed=range({RUNS})",
                 "sweep.fit=false", "sweep.collect=false", "progress=false"]  # fmt: skip
        # the token cache, built before any timing
        _timed([*sweep, f"results_dir={results / 'dry'}", "sweep.dry_run=true"], env)
        start_up = _import_s("torch", env)
        plain_wall, out = _timed(
            [sys.executable, "-c", PLAIN % {"runs": RUNS}, *OVERRIDES, f"results_dir={results}"],
            env,
        )
        steps = float(re.search(r"STEPS ([\d.]+)", out).group(1))  # type: ignore[union-attr]
        sweep_wall, out = _timed([*sweep, f"results_dir={results / 'sweep'}"], env)
        trains = [float(s) for s in re.findall(r"nats/token after [\d,]+ tokens \(([\d.]+) s", out)]
        imports = {
            "torch": start_up,
            "torch and Lightning": _import_s("lightning.pytorch", env),
            "torch, Lightning, MLflow, Hydra and the sweep": _import_s(
                "lightning.pytorch, mlflow, hydra, scaling.training.sweep", env
            ),
        }
    baseline = steps + start_up
    ratio = sweep_wall / baseline
    print(
        f"bench_fixed_cost: {RUNS} runs x {STEPS} steps of 1 layer, d 16, {BATCH} x {SEQ} tokens, "
        f"1 thread; load average {load0:.2f} at start"
    )
    print("| measurement | seconds |")
    print("|---|---|")
    print(f"| plain loop, the {RUNS * STEPS:,} steps | {steps:.1f} |")
    print(f"| Python start-up with torch (`python -c 'import torch'`) | {start_up:.1f} |")
    print(f"| **plain total** | **{baseline:.1f}** |")
    print(f"| `python -m scaling.sweep` of the {RUNS} runs, whole command | {sweep_wall:.1f} |")
    for name, s in imports.items():
        print(f"| of which importing {name} (alone, with start-up) | {s:.1f} |")
    print(f"| of which the runs' `train()` ({len(trains)} runs, as printed) | {sum(trains):.1f} |")
    rest = sweep_wall - imports["torch, Lightning, MLflow, Hydra and the sweep"] - sum(trains)
    print(f"| of which the rest (store, grid, between runs, exit) | {rest:.1f} |")
    verdict = "meets" if ratio <= TARGET else "misses"
    print(f"\nsweep / plain = {ratio:.2f} ({verdict} the target <= {TARGET}); "
          f"total {time.perf_counter() - started:.0f} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
