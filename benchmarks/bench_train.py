"""Benchmark: training throughput of the full harness vs a bare PyTorch loop, MFU, bf16.

    .venv/bin/python benchmarks/bench_train.py            # ~5 minutes on 2 cores
    .venv/bin/python benchmarks/bench_train.py --quick    # ~2 minutes, 1 repeat, fewer steps
    .venv/bin/python benchmarks/bench_train.py --repeats 5 --shapes 2x64x128x32
    .venv/bin/python benchmarks/bench_train.py --device cuda --shapes 12x768x1024x16   # GPU
    .venv/bin/python benchmarks/bench_train.py --ladder             # ladder sizes, ms/step
    .venv/bin/python benchmarks/bench_train.py --ladder --compile   # ... and train.compile=true

What is measured, in one run, side by side:

* **Peak.** The machine's matmul peak: best of several square matmuls (2048^3 on CPU, 8192^3 on
  CUDA) in fp32 and bf16, with the thread count training uses.
* **Bare loop.** ``scaling.training.model.GPT`` trained by a plain PyTorch loop: the same AdamW
  (``scaling.training.module.build_optimizer``: ``GPT.param_groups``, fused kernel), gradient
  clipping, LR schedule (``scaling.training.module.lr_factor``), seed and data batches
  (``TokenBatches`` through a ``DataLoader``, as ``TokenDataModule`` builds them) as the harness.
* **Harness.** ``train(prepare(cfg))`` -- Hydra-composed config, Lightning, a real MLflow SQLite
  store in a temp dir -- reporting ``RunResult.tokens_per_s`` (``LMModule.throughput()``).
  Also with ``train.precision=bf16-mixed``.

Both are timed the same way: steady state, the first optimizer step (one-off costs) and
evaluations excluded. Variants are alternated within each repeat (the order rotates) and the
machine is noisy, so the table shows medians over repeats; ratios are medians of the per-repeat
paired ratios.

``--ladder``: the sizes a ladder on a CPU trains (issue 25's table: 7.9K, 99K and 830K parameters,
32-token context, one thread), in ms per optimizer step, plain loop against harness; with
``--compile`` also the harness under ``train.compile=true``, its steady ms/step and the wall-clock
of its whole ``train()`` call against the eager harness's (the compile time is in the wall-clock,
not in the steady rate). torch's compile cache goes to a fresh temporary folder, so the first
compiled run of each shape compiles from nothing (``cold``) and later repeats hit the cache.

MFU = model FLOPs/s / measured fp32 peak (bf16 peak for bf16). Model FLOPs per token:
``6N`` (``scaling.counting.flops_per_token(cfg, "6N")``, N = every trained parameter, tied
embeddings once; counts the LM head matmul but not the attention scores) and ``6N+12LTd`` (PaLM
App. B / nanoGPT's ``estimate_mfu``: ``6N`` plus ``12 * n_layer * seq_len * d_model`` for the
``QK^T`` and ``AV`` matmuls, forward + backward, no causal discount). Targets are judged on the
latter.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

# (n_layer, d_model, seq_len, batch) -> optimizer steps timed (after 1 warm-up step), full / quick.
DEFAULT_SHAPES = [(2, 64, 128, 32), (4, 128, 128, 32), (4, 256, 256, 16)]
TARGET_RATIO = 0.95
# --ladder: (n_layer, d_model, seq_len, batch) -> optimizer steps (issue 25: 7.9K / 99K / 830K)
LADDER_SHAPES = {(1, 16, 32, 4): 600, (3, 48, 32, 8): 600, (4, 128, 32, 32): 150}
LADDER_TARGETS = {(1, 16, 32, 4): 0.90}  # harness/plain; 0.95 at the other shapes
TARGET_MFU = {128: 0.50, 256: 0.70}  # d_model -> MFU target (6N+12LTd)


@dataclass
class Shape:
    n_layer: int
    d_model: int
    seq_len: int
    batch: int

    @classmethod
    def parse(cls, text: str) -> Shape:
        parts = [int(p) for p in text.lower().split("x")]
        if len(parts) != 4:
            raise argparse.ArgumentTypeError(
                f"shape {text!r}: want n_layer x d_model x seq_len x batch"
            )
        return cls(*parts)

    @property
    def label(self) -> str:
        return f"({self.n_layer}, {self.d_model}, {self.seq_len}, {self.batch})"

    @property
    def tokens_per_step(self) -> int:
        return self.seq_len * self.batch


def timed_steps(shape: Shape, quick: bool, device: str, peak: float) -> int:
    """Steps timed per measurement: ~6 s (quick: ~2 s) of steady state, assuming 40% MFU."""
    from scaling.config import GPTConfig
    from scaling.counting import flops_per_token as fpt

    cfg = GPTConfig(
        n_layer=shape.n_layer,
        d_model=shape.d_model,
        seq_len=shape.seq_len,
        n_head=max(1, shape.d_model // 16),
    )
    step_flops = (fpt(cfg, "6N") + 12 * shape.n_layer * shape.seq_len * shape.d_model) * (
        shape.tokens_per_step
    )
    seconds = 2.0 if quick else 6.0
    steps = int(seconds * 0.4 * peak / step_flops)
    lo = 4 if quick else (8 if device == "cpu" else 30)
    return max(lo, min(steps, 300))


# ---------------------------------------------------------------------------------------- peak


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_peak(dtype: torch.dtype, device: str, n_max: int, budget_s: float) -> tuple[float, int]:
    """Best FLOP/s of square ``n x n @ n x n`` matmuls (2 n^3 FLOPs); returns (FLOP/s, n).

    ``n`` grows from 256 to ``n_max`` while one matmul stays short: a CPU without native bf16
    (AVX2 only) runs bf16 matmuls ~200x slower than fp32, and one 2048^3 of them takes a minute.
    Then the best of as many repeats as fit in ``budget_s`` (at least 3).
    """

    def once(n: int, a: torch.Tensor, b: torch.Tensor) -> float:
        inner = 10 if device.startswith("cuda") else 1
        t0 = time.perf_counter()
        for _ in range(inner):
            torch.matmul(a, b)
        _sync(device)
        return (time.perf_counter() - t0) / inner

    n = 256
    while True:
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        t = min(once(n, a, b) for _ in range(2))  # the first call also warms up
        if n >= n_max or t * 8 > budget_s / 5:
            break
        n *= 2
    best, spent = t, 0.0
    for i in range(100):
        if i >= 3 and spent + best > budget_s:
            break
        dt = once(n, a, b)
        best, spent = min(best, dt), spent + dt
    return 2 * n**3 / best, n


# ---------------------------------------------------------------------------------- the configs


def compose(
    shape: Shape,
    steps: int,
    precision: str,
    results: Path,
    cache: str,
    device: str,
    threads: int,
    extra: tuple[str, ...] = (),
):  # -> DictConfig
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from scaling.config import CONF_DIR, register_configs

    overrides = [
        f"model.n_layer={shape.n_layer}",
        f"model.d_model={shape.d_model}",
        f"model.seq_len={shape.seq_len}",
        f"train.batch_size={shape.batch}",
        f"train.tokens={steps * shape.tokens_per_step}",
        f"train.precision={precision}",
        "train.eval_points=2",
        "train.checkpoint_every=0",
        "progress=false",
        f"threads={threads}",
        f"results_dir={results}",
        f"tracking.uri=sqlite:///{results}/mlflow.db",
        "tracking.experiment=bench_train",
        f"data.cache_dir={cache}",
        f"trainer.accelerator={'gpu' if device.startswith('cuda') else 'cpu'}",
        *extra,
    ]
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides)


# -------------------------------------------------------------------------------- bare PyTorch


def bare_loop(
    prep,
    device: str,
    precision: str,  # type: ignore[no-untyped-def]
    max_seconds: float | None = None,
) -> float:
    """Steady-state tokens/s of a plain PyTorch loop over the same model, optimizer and data.

    With ``max_seconds`` the timed part stops early once it has run that long (bf16 on a CPU
    without native bf16 is ~10x slower; the ratio is clear long before the horizon)."""
    from torch.utils.data import DataLoader

    from scaling.training.data.batches import TokenBatches
    from scaling.training.model import GPT
    from scaling.training.module import build_optimizer, lr_factor

    cfg = prep.cfg
    tc = cfg.train
    torch.manual_seed(cfg.seed)
    model = GPT(cfg.model).to(device)
    model.train()
    opt = build_optimizer(model, tc)  # the harness's AdamW: GPT.param_groups, fused where possible
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg.steps, tc))
    batches = TokenBatches(
        prep.corpus.train, cfg.model.seq_len, cfg.steps * tc.batch_size, cfg.seed
    )
    loader = DataLoader(
        batches, batch_size=tc.batch_size, shuffle=False, num_workers=0, drop_last=True
    )
    amp = precision.startswith("bf16")
    dev_type = "cuda" if device.startswith("cuda") else "cpu"
    params = [p for g in opt.param_groups for p in g["params"]]
    start, timed = None, 0
    for step, (x, y) in enumerate(loader, start=1):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast(dev_type, dtype=torch.bfloat16, enabled=amp):
            _, loss = model(x, y)
        loss.backward()
        if tc.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        if step == 1:  # the first step pays one-off costs (as LMModule.throughput excludes it)
            _sync(device)
            start = time.perf_counter()
        else:
            timed += 1
        if step == cfg.steps or (max_seconds and time.perf_counter() - start > max_seconds):
            break
    _sync(device)
    elapsed = time.perf_counter() - start
    if not torch.isfinite(loss):
        raise RuntimeError(f"bare loop diverged: loss {loss.item()}")
    return timed * cfg.tokens_per_step / elapsed


# ------------------------------------------------------------------------------------- harness


def harness(cfg) -> float:  # type: ignore[no-untyped-def]
    return harness_run(cfg)[0]


def harness_run(cfg) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
    """(steady tokens/s, wall-clock seconds of the whole ``train()`` call, final val loss)."""
    from scaling.training.prepare import prepare
    from scaling.training.run import train

    result = train(prepare(cfg))
    if result.status != "FINISHED" or not result.tokens_per_s:
        raise RuntimeError(f"harness run ended {result.status}: {result.reason}")
    return float(result.tokens_per_s), result.wall_s, float(result.val_loss or "nan")


# ------------------------------------------------------------------------------------- counting


def flops_per_token(model_cfg) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(6N, 6N + 12 L T d) training FLOPs per token."""
    from scaling.counting import flops_per_token as fpt

    six_n = fpt(model_cfg, "6N")
    attn = 12.0 * model_cfg.n_layer * model_cfg.seq_len * model_cfg.d_model
    return six_n, six_n + attn


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def _fmt_tps(x: float) -> str:
    return f"{x:,.0f}" if x == x else "-"


def ladder(args: argparse.Namespace) -> int:
    """``--ladder``: plain loop vs harness in ms/step at ladder sizes (and ``--compile``)."""
    from scaling.config import build_run_config
    from scaling.counting import count_params
    from scaling.training.prepare import prepare
    from scaling.training.trainer import quiet_libraries, set_threads

    quiet_libraries()
    threads = set_threads(args.threads or 1)
    shapes = args.shapes or [Shape(*s) for s in LADDER_SHAPES]
    repeats = args.repeats or (1 if args.quick else 3)
    variants = ["plain", "harness"] + (["compiled"] if args.compile else [])
    t_begin, load0 = time.perf_counter(), os.getloadavg()[0]
    print(
        f"bench_train --ladder: torch {torch.__version__}, cpu, {threads} thread(s), "
        f"load average {load0:.2f}",
        flush=True,
    )
    # (shape index, variant) -> [(ms/step, wall s, val loss)] per repeat
    out: dict[tuple[int, str], list[tuple[float, float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_train-") as tmp:
        results = Path(tmp)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(results / "inductor")  # a cold compile cache
        from scaling.training.tracking import ensure_experiment

        ensure_experiment(f"sqlite:///{results}/mlflow.db", "bench_train")
        cfgs = {}
        for i, shape in enumerate(shapes):
            key = (shape.n_layer, shape.d_model, shape.seq_len, shape.batch)
            steps = args.steps or LADDER_SHAPES.get(key, 600)
            if args.quick:
                steps = max(50, steps // 4)
            for rep in range(repeats):  # an experiment per run: the same key is not skipped
                for v, extra in (("eager", ()), ("compiled", ("train.compile=true",))):
                    cfgs[i, v, rep] = compose(
                        shape,
                        steps,
                        "32-true",
                        results,
                        args.cache,
                        "cpu",
                        threads,
                        (*extra, f"tracking.experiment=bench_train-{v}-{rep}"),
                    )
        for rep in range(repeats):
            for i, shape in enumerate(shapes):
                order = variants[rep % len(variants) :] + variants[: rep % len(variants)]
                for variant in order:
                    cfg = cfgs[i, "compiled" if variant == "compiled" else "eager", rep]
                    if variant == "plain":
                        prep = prepare(cfg, check_tracking=False)
                        set_threads(threads)
                        t0 = time.perf_counter()
                        tps = bare_loop(prep, "cpu", "32-true")
                        wall, loss = time.perf_counter() - t0, float("nan")
                    else:
                        tps, wall, loss = harness_run(cfg)
                    ms = 1000 * shape.tokens_per_step / tps
                    out.setdefault((i, variant), []).append((ms, wall, loss))
                    print(
                        f"  repeat {rep + 1}/{repeats} {shape.label:<18} {variant:<9} "
                        f"{ms:8.3f} ms/step, wall {wall:6.2f} s  (load {os.getloadavg()[0]:.2f})",
                        file=sys.stderr,
                        flush=True,
                    )

    def col(i: int, variant: str, k: int) -> list[float]:
        return [r[k] for r in out.get((i, variant), [])]

    head = "| model | params | batch | steps | plain loop | harness | harness/plain |"
    if args.compile:
        head += " compiled | eager/compiled ms | run wall eager | run wall compiled |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    verdicts = []
    for i, shape in enumerate(shapes):
        model_cfg = build_run_config(cfgs[i, "eager", 0]).model
        n = count_params(model_cfg).total
        plain, har = col(i, "plain", 0), col(i, "harness", 0)
        pairs = [p / h for p, h in zip(plain, har, strict=True)]  # speed ratio harness/plain
        ratio = _median(pairs)
        steps = build_run_config(cfgs[i, "eager", 0]).steps
        row = (
            f"| {shape.n_layer} layer(s), d {shape.d_model} | {n:,} | {shape.batch} x "
            f"{shape.seq_len} | {steps} | {_median(plain):.2f} ms/step | {_median(har):.2f} "
            f"ms/step | {ratio:.2f} ({', '.join(f'{r:.2f}' for r in pairs)}) |"
        )
        key = (shape.n_layer, shape.d_model, shape.seq_len, shape.batch)
        target = LADDER_TARGETS.get(key, TARGET_RATIO)
        verdicts.append(
            f"{shape.label}: harness/plain {ratio:.2f} "
            f"({'ok' if ratio >= target else 'BELOW'} target {target:.2f})"
        )
        if args.compile:
            comp = col(i, "compiled", 0)
            speed = _median([h / c for h, c in zip(har, comp, strict=True)])
            walls_e, walls_c = col(i, "harness", 1), col(i, "compiled", 1)
            warm = f", then {_median(walls_c[1:]):.1f} s" if len(walls_c) > 1 else ""
            row += (
                f" {_median(comp):.2f} ms/step | {speed:.2f} | {_median(walls_e):.1f} s | "
                f"{walls_c[0]:.1f} s (cold cache){warm} |"
            )
            le, lc = col(i, "harness", 2)[0], col(i, "compiled", 2)[0]
            verdicts.append(
                f"{shape.label}: compiled steady {speed:.2f}x the eager harness's speed; "
                f"final val/loss eager {le:.6f}, compiled {lc:.6f} (diff {lc - le:+.1e})"
            )
        lines.append(row)
    print()
    print(
        f"Ladder sizes, cpu, {threads} thread(s), byte tokens (vocab 256) on the stdlib corpus, "
        f"AdamW with clipping; median of {repeats} repeat(s), steady state (first step and "
        "evaluations excluded); harness/plain = plain ms / harness ms, per repeat in brackets."
    )
    _footer(lines, verdicts, load0, t_begin)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 repeat, fewer steps (~2 min)")
    ap.add_argument("--repeats", type=int, default=None, help="repeats per variant (default 3)")
    ap.add_argument(
        "--shapes",
        type=Shape.parse,
        nargs="+",
        default=None,
        help="n_layer x d_model x seq_len x batch, e.g. 2x64x128x32",
    )
    ap.add_argument(
        "--steps", type=int, default=None, help="timed steps per run (default: by shape)"
    )
    ap.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="cpu or cuda (default: cuda when available)",
    )
    ap.add_argument(
        "--threads", type=int, default=0, help="torch threads (0 = all cores, the harness default)"
    )
    ap.add_argument("--no-bf16", action="store_true", help="skip the bf16-mixed runs")
    ap.add_argument(
        "--ladder",
        action="store_true",
        help="ladder sizes (7.9K, 99K, 830K params; 32 tokens; 1 thread): plain vs harness",
    )
    ap.add_argument(
        "--compile", action="store_true", help="--ladder: also the harness with train.compile=true"
    )
    ap.add_argument(
        "--cache",
        default=os.environ.get("SCALING_CACHE", str(REPO / ".cache" / "scaling")),
        help="token cache dir (default: $SCALING_CACHE or .cache/scaling)",
    )
    args = ap.parse_args(argv)
    if args.ladder:
        os.environ.setdefault("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
        warnings.filterwarnings("ignore")
        logging.getLogger("lightning").setLevel(logging.ERROR)
        return ladder(args)
    repeats = args.repeats or (1 if args.quick else 3)
    shapes = args.shapes or [Shape(*s) for s in DEFAULT_SHAPES]
    device = args.device
    os.environ.setdefault("MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING", "false")
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning").setLevel(logging.ERROR)

    from scaling.training.prepare import prepare
    from scaling.training.trainer import quiet_libraries, set_threads

    quiet_libraries()
    threads = set_threads(args.threads)
    t_begin = time.perf_counter()
    load0 = os.getloadavg()[0]
    print(
        f"bench_train: torch {torch.__version__}, device {device}, {threads} threads, "
        f"load average {load0:.2f}",
        flush=True,
    )

    # Peak (with the training thread count).
    n_max = 8192 if device.startswith("cuda") else 2048
    budget = 1.5 if args.quick else 3.0
    peak32, n32 = matmul_peak(torch.float32, device, n_max, budget)
    peak16, n16 = matmul_peak(torch.bfloat16, device, n_max, budget)
    print(
        f"matmul peak: fp32 {peak32 / 1e9:,.1f} GFLOP/s ({n32}^3), "
        f"bf16 {peak16 / 1e9:,.1f} GFLOP/s ({n16}^3)",
        flush=True,
    )

    variants = ["bare", "harness"] + ([] if args.no_bf16 else ["bare-bf16"])
    bf16_cap = 3.0 if args.quick else 6.0  # seconds of timed bf16 steps per measurement
    tps: dict[tuple[int, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_train-") as tmp:
        results = Path(tmp)
        from scaling.training.tracking import ensure_experiment

        ensure_experiment(f"sqlite:///{results}/mlflow.db", "bench_train")  # migrations once
        cfgs = {}
        for i, shape in enumerate(shapes):
            steps = 1 + (args.steps or timed_steps(shape, args.quick, device, peak32))
            cfgs[i] = compose(shape, steps, "32-true", results, args.cache, device, threads)
        for rep in range(repeats):
            for i, shape in enumerate(shapes):
                order = variants[rep % len(variants) :] + variants[: rep % len(variants)]
                for variant in order:
                    if (
                        variant == "bare-bf16"
                        and rep
                        and _median(tps[i, variant]) < 0.5 * _median(tps[i, "bare"])
                    ):
                        continue  # clearly slower (no native bf16): one measurement says so
                    if variant == "harness":
                        value = harness(cfgs[i])
                    else:
                        prep = prepare(cfgs[i], check_tracking=False)
                        set_threads(threads)
                        bf16 = variant.endswith("bf16")
                        value = bare_loop(
                            prep,
                            device,
                            "bf16-mixed" if bf16 else "32-true",
                            max_seconds=bf16_cap if bf16 else None,
                        )
                    tps.setdefault((i, variant), []).append(value)
                    print(
                        f"  repeat {rep + 1}/{repeats} {shape.label:<20} {variant:<10} "
                        f"{value:>10,.0f} tok/s  (load {os.getloadavg()[0]:.2f})",
                        file=sys.stderr,
                        flush=True,
                    )

    from scaling.config import build_run_config
    from scaling.counting import count_params

    header = (
        f"{'(n_layer, d_model, seq_len, batch)':<34} {'params':>9} {'bare tok/s':>11} "
        f"{'harness tok/s':>13} {'harness/bare':>12} {'MFU 6N':>7} {'MFU 6N+12LTd':>12} "
        f"{'bf16 tok/s':>11} {'bf16/fp32':>9}"
    )
    lines = [header, "-" * len(header)]
    verdicts = []
    for i, shape in enumerate(shapes):
        bare, har = tps[i, "bare"], tps[i, "harness"]
        b16 = tps.get((i, "bare-bf16"), [])
        pairs = [h / b for h, b in zip(har, bare, strict=True)]
        ratio = _median(pairs)
        bf_pairs = [x / b for x, b in zip(b16, bare[: len(b16)], strict=True)]
        bf_ratio = _median(bf_pairs) if b16 else float("nan")
        model_cfg = build_run_config(cfgs[i]).model
        f6n, fattn = flops_per_token(model_cfg)
        mfu6, mfu_attn = (f * _median(har) / peak32 for f in (f6n, fattn))
        lines.append(
            f"{shape.label:<34} {count_params(model_cfg).total:>9,} {_fmt_tps(_median(bare)):>11} "
            f"{_fmt_tps(_median(har)):>13} {ratio:>12.3f} {mfu6:>7.1%} {mfu_attn:>12.1%} "
            f"{_fmt_tps(_median(b16)):>11} {bf_ratio:>9.2f}"
        )
        v = (
            f"{shape.label}: harness/bare {ratio:.3f} "
            f"({'ok' if ratio >= TARGET_RATIO else 'BELOW'} target {TARGET_RATIO}; "
            f"per-repeat {', '.join(f'{r:.3f}' for r in pairs)})"
        )
        if shape.d_model in TARGET_MFU and device == "cpu":
            t = TARGET_MFU[shape.d_model]
            v += f"; MFU {mfu_attn:.1%} ({'ok' if mfu_attn >= t else 'BELOW'} target {t:.0%})"
        if b16:
            v += (
                f"; bf16-mixed {'faster' if bf_ratio > 1 else 'slower'} ({bf_ratio:.2f}x fp32, "
                f"{len(b16)} measurement(s))"
            )
        verdicts.append(v)
    print()
    print(
        f"Training throughput, {device}, {threads} threads, byte tokens (vocab 256) on the "
        f"stdlib corpus; median of {repeats} repeat(s), steady state (first step and evaluations "
        "excluded); harness = train(prepare(cfg)) with Lightning + MLflow (SQLite)."
    )
    print(
        f"Peak (measured): fp32 {peak32 / 1e9:,.1f} GFLOP/s, bf16 {peak16 / 1e9:,.1f} GFLOP/s. "
        "MFU = FLOPs/token x harness tok/s / fp32 peak; bf16 = bare loop under bf16 autocast."
    )
    _footer(lines, verdicts, load0, t_begin)
    return 0


def _footer(lines: list[str], verdicts: list[str], load0: float, t_begin: float) -> None:
    """The table's rows, its verdicts and the machine's load while it ran."""
    print("\n".join(lines))
    print("\n".join(verdicts))
    print(
        f"load average (1 min) at start {load0:.2f}, at end {os.getloadavg()[0]:.2f}; "
        f"total {time.perf_counter() - t_begin:.0f} s"
    )


if __name__ == "__main__":
    raise SystemExit(main())
