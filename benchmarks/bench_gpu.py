"""Benchmark: the harness at GPT-2 small's shape on a GPU, fp32 and bf16-mixed, eager and compiled.

    .venv/bin/python benchmarks/bench_gpu.py                    # a CUDA machine: ~4 minutes
    .venv/bin/python benchmarks/bench_gpu.py --device cpu --shapes 2x64x128x8 --steps 20  # smoke

One prepared script a GPU machine runs as it is (issue 25): ``train(prepare(cfg))`` -- the real
Hydra config, Lightning Trainer and MLflow store (SQLite in a temporary folder) -- at GPT-2
small's shape (12 layers, d_model 768, 12 heads, 1,024-token context, 16 sequences a step; the
byte vocabulary of the stdlib corpus, so ~85M parameters rather than GPT-2's 124M with its
50,257-token embedding), in four variants one after another:

* ``train.precision=32-true`` and ``bf16-mixed``,
* each eager and with ``train.compile=true`` (``torch.compile`` of the training forward).

For each: the steady tokens/s the run reports (first step and evaluations excluded: the compile
happens in the first step), the MFU against the matmul peak measured at the start in the run's
precision (``6N + 12 L T d`` FLOPs a token, as ``bench_train.py``), the whole ``train()``
wall-clock (compilation included) and the final validation loss. Prints a markdown table for the
README and the compiled / eager speed-ups.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import torch  # noqa: E402
from bench_train import (  # noqa: E402
    REPO,
    Shape,
    compose,
    flops_per_token,
    harness_run,
    matmul_peak,
)

GPT2_SMALL = Shape(12, 768, 1024, 16)
VARIANTS = {  # name -> (train.precision, train.compile)
    "fp32, eager": ("32-true", False),
    "fp32, compiled": ("32-true", True),
    "bf16-mixed, eager": ("bf16-mixed", False),
    "bf16-mixed, compiled": ("bf16-mixed", True),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--device", default=None, help="cuda (the default when there is one) or cpu (a smoke run)"
    )
    ap.add_argument("--shapes", type=Shape.parse, nargs="+", default=[GPT2_SMALL])
    ap.add_argument("--steps", type=int, default=200, help="optimizer steps a run (default 200)")
    ap.add_argument(
        "--cache",
        default=os.environ.get("SCALING_CACHE", str(REPO / ".cache" / "scaling")),
        help="token cache dir (default: $SCALING_CACHE or .cache/scaling)",
    )
    args = ap.parse_args(argv)
    if args.device is None:
        if not torch.cuda.is_available():
            print("bench_gpu: no CUDA device here: nothing measured (--device cpu: a smoke run)")
            return 0
        args.device = "cuda"
    os.environ.setdefault("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    from scaling.config import build_run_config
    from scaling.counting import count_params
    from scaling.training.tracking import ensure_experiment
    from scaling.training.trainer import quiet_libraries

    quiet_libraries()
    device = args.device
    name = torch.cuda.get_device_name() if device.startswith("cuda") else "cpu"
    n_max = 8192 if device.startswith("cuda") else 1024
    peaks = {
        "32-true": matmul_peak(torch.float32, device, n_max, 3.0)[0],
        "bf16-mixed": matmul_peak(torch.bfloat16, device, n_max, 3.0)[0],
    }
    print(
        f"bench_gpu: torch {torch.__version__}, {name}; matmul peak fp32 "
        f"{peaks['32-true'] / 1e12:,.1f} TFLOP/s, bf16 {peaks['bf16-mixed'] / 1e12:,.1f} TFLOP/s",
        flush=True,
    )
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_gpu-") as tmp:
        results = Path(tmp)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(results / "inductor")  # a cold compile
        ensure_experiment(f"sqlite:///{results}/mlflow.db", "bench_train")
        for shape in args.shapes:
            for i, (variant, (precision, compiled)) in enumerate(VARIANTS.items()):
                extra = [f"tracking.experiment=bench_gpu-{i}", "threads=0"]
                extra += ["train.compile=true"] if compiled else []
                cfg = compose(
                    shape, args.steps, precision, results, args.cache, device, 0, tuple(extra)
                )
                tps, wall, loss = harness_run(cfg)
                model = build_run_config(cfg).model
                _, fpt = flops_per_token(model)
                mfu = fpt * tps / peaks[precision]
                rows.append((shape, count_params(model).total, variant, tps, mfu, wall, loss))
                print(
                    f"  {shape.label} {variant:<22} {tps:>12,.0f} tok/s  MFU {mfu:6.1%}  "
                    f"train() {wall:6.1f} s  val/loss {loss:.4f}",
                    file=sys.stderr,
                    flush=True,
                )
    print(f"\n{name}, {args.steps} steps a run; MFU counts 6N + 12 L T d FLOPs a token\n")
    print("| model | params | variant | tokens/s | MFU | `train()` wall-clock | final val/loss |")
    print("|---|---|---|---|---|---|---|")
    for shape, params, variant, tps, mfu, wall, loss in rows:
        print(
            f"| {shape.label} | {params:,} | {variant} | {tps:,.0f} | {mfu:.1%} | "
            f"{wall:.1f} s | {loss:.4f} |"
        )
    by = {(r[0].label, r[2]): r[3] for r in rows}
    for shape in args.shapes:
        for p in ("fp32", "bf16-mixed"):
            speed = by[shape.label, f"{p}, compiled"] / by[shape.label, f"{p}, eager"]
            print(f"{shape.label}: {p} compiled / eager = {speed:.2f}x tokens/s")
        print(
            f"{shape.label}: bf16-mixed / fp32 (eager) = "
            f"{by[shape.label, 'bf16-mixed, eager'] / by[shape.label, 'fp32, eager']:.2f}x tokens/s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
