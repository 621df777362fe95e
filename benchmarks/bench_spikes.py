"""Benchmark: training throughput with loss-spike detection on vs off (issue 24).

    .venv/bin/python benchmarks/bench_spikes.py              # ~3 minutes on 2 cores
    .venv/bin/python benchmarks/bench_spikes.py --quick      # 2 repeats, fewer steps
    .venv/bin/python benchmarks/bench_spikes.py --device cuda --shape 4x256x256x32 --steps 600

Runs ``train(prepare(cfg))`` (Lightning, a real MLflow SQLite store in a temp folder) of one tiny
model with ``train.spike.action`` = ``off`` (no detection, no gradient norm), ``warn`` (the
default: each step's loss and gradient norm judged once per ``log_every`` steps) and ``skip``
(each step judged before its update: one device-to-host transfer a step), alternated within
each repeat (the order rotates), in one process. Reports each variant's median steady-state
tokens/s (``RunResult.tokens_per_s``: the first step and evaluations excluded) and the median of
the per-repeat paired ratios to ``off``; checks that ``warn`` keeps at least 0.98x of ``off`` and
that the three end on the same ``val/loss`` (no spike fires in a clean run).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks._verdict import verdict  # noqa: E402

VARIANTS = ("off", "warn", "skip")
TARGET = 0.98  # warn's throughput / off's (issue 24)


def compose(shape: tuple[int, int, int, int], steps: int, action: str, tag: str, args):  # type: ignore[no-untyped-def]
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from scaling.config import CONF_DIR, register_configs

    n_layer, d_model, seq_len, batch = shape
    results = Path(args.work) / "results"
    overrides = [
        f"model.n_layer={n_layer}",
        f"model.d_model={d_model}",
        f"model.seq_len={seq_len}",
        f"train.batch_size={batch}",
        f"train.tokens={steps * batch * seq_len}",
        f"train.spike.action={action}",
        "train.eval_points=2",
        "train.checkpoint_every=0",
        "progress=false",
        f"threads={args.threads}",
        f"results_dir={results}",
        f"tracking.uri=sqlite:///{results}/mlflow.db",
        f"tracking.experiment=bench_spikes_{tag}",  # one experiment per run: none is skipped
        f"data.cache_dir={Path(args.work) / 'cache'}",
        f"trainer.accelerator={'gpu' if args.device.startswith('cuda') else 'cpu'}",
    ]
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 repeats of 300 steps")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--shape", default="2x64x128x32", help="n_layer x d_model x seq_len x batch")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", default=None, help="work folder (default: a temp folder)")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats, args.steps = 2, 300
    args.work = args.work or tempfile.mkdtemp(prefix="bench_spikes_")
    shape = tuple(int(v) for v in args.shape.split("x"))
    assert len(shape) == 4, "--shape is n_layer x d_model x seq_len x batch"

    from scaling.training.prepare import prepare
    from scaling.training.run import train
    from scaling.training.trainer import quiet_libraries

    quiet_libraries()
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    speed: dict[str, list[float]] = {v: [] for v in VARIANTS}
    losses: dict[str, set[float]] = {v: set() for v in VARIANTS}
    ratios: dict[str, list[float]] = {v: [] for v in VARIANTS if v != "off"}
    for r in range(args.repeats):
        order = VARIANTS[r % 3 :] + VARIANTS[: r % 3]
        got = {}
        for action in order:
            result = train(prepare(compose(shape, args.steps, action, f"{action}{r}", args)))
            if result.status != "FINISHED" or not result.tokens_per_s:
                raise RuntimeError(f"{action}: ended {result.status}: {result.reason}")
            got[action] = result.tokens_per_s
            losses[action].add(result.val_loss)
            speed[action].append(result.tokens_per_s)
        for v in ratios:
            ratios[v].append(got[v] / got["off"])
        line = ", ".join(f"{v} {got[v]:,.0f}" for v in VARIANTS)
        print(f"repeat {r + 1}/{args.repeats} (order {' '.join(order)}): tokens/s {line}")

    print(f"\nshape {args.shape}, {args.steps} steps, device {args.device}, {args.repeats} repeats")
    print(f"{'action':<6} {'median tokens/s':>16} {'ratio to off':>13}")
    for v in VARIANTS:
        ratio = f"{statistics.median(ratios[v]):.3f}" if v in ratios else "1"
        print(f"{v:<6} {statistics.median(speed[v]):>16,.0f} {ratio:>13}")
    failures = []
    warn = statistics.median(ratios["warn"])
    if warn < TARGET:
        failures.append(f"warn keeps {warn:.3f}x of off's throughput, under {TARGET}")
    finals = set().union(*losses.values())
    if len(finals) != 1:
        failures.append(f"the variants end on different val/loss: {sorted(finals)}")
    return verdict(Path(args.work), failures)


if __name__ == "__main__":
    raise SystemExit(main())
