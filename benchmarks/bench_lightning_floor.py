"""Benchmark: what Lightning's own training loop costs a step at ladder sizes (issue 25).

    .venv/bin/python benchmarks/bench_lightning_floor.py            # ~3 minutes on 2 cores
    .venv/bin/python benchmarks/bench_lightning_floor.py --steps 1000 --repeats 2

The same GPT (``scaling.training.model.GPT``), fused AdamW, gradient clipping at 1.0 and a
``LambdaLR`` schedule, on the same in-memory batches of random byte tokens, one thread, trained
three ways in one process, alternated within each repeat:

* **plain**: a PyTorch loop (forward, ``zero_grad``, ``backward``, clip, step, schedule);
* **automatic**: a minimal ``LightningModule`` (``training_step`` returns the loss) under a
  ``Trainer`` with no logger, callback, checkpoint, progress bar or validation;
* **manual**: the same module with ``automatic_optimization = False`` (the loop of *plain* inside
  ``training_step``, ``manual_backward``).

Each reports the steady ms per optimizer step (the first 10 steps excluded); the ratios
``plain / automatic`` and ``plain / manual`` are the most a harness built on a Lightning
``Trainer`` can reach against a plain loop, before any of its own work (metrics, evaluation,
checkpoints, spike detection). Medians over repeats.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

# (n_layer, d_model, batch) at a 32-token context: 7.9K and 99K parameters (issue 25's sizes)
SHAPES = ((1, 16, 4), (3, 48, 8))
SEQ_LEN, VOCAB, WARM = 32, 256, 10


def _model(n_layer: int, d_model: int):  # type: ignore[no-untyped-def]
    from scaling.schema import GPTConfig
    from scaling.training.model import GPT

    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=VOCAB, seq_len=SEQ_LEN, n_layer=n_layer, d_model=d_model))


def _optimizer(model: torch.nn.Module) -> tuple[torch.optim.Optimizer, object]:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)


def _loader(batches: torch.Tensor):  # type: ignore[no-untyped-def]
    from torch.utils.data import DataLoader, Dataset

    class Batches(Dataset):
        def __len__(self) -> int:
            return len(batches)

        def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
            return batches[i][:, :-1], batches[i][:, 1:]

    return DataLoader(Batches(), batch_size=None, shuffle=False)


def _ms_per_step(stamps: list[float]) -> float:
    t = stamps[WARM:]
    return (t[-1] - t[0]) / (len(t) - 1) * 1e3


def plain(shape: tuple[int, int, int], batches: torch.Tensor) -> float:
    model = _model(*shape[:2])
    opt, sched = _optimizer(model)
    stamps = []
    for x, y in _loader(batches):
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()  # type: ignore[attr-defined]
        stamps.append(time.perf_counter())
    return _ms_per_step(stamps)


def lightning(shape: tuple[int, int, int], batches: torch.Tensor, manual: bool) -> float:
    import lightning as L

    class Minimal(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = _model(*shape[:2])
            self.stamps: list[float] = []
            self.automatic_optimization = not manual

        def training_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
            _, loss = self.model(*batch)
            if manual:
                opt, sched = self.optimizers(), self.lr_schedulers()
                opt.zero_grad(set_to_none=True)  # type: ignore[union-attr]
                self.manual_backward(loss)
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
                opt.step()  # type: ignore[union-attr]
                sched.step()  # type: ignore[union-attr]
            return loss

        def on_train_batch_end(self, *args) -> None:  # type: ignore[no-untyped-def]
            self.stamps.append(time.perf_counter())

        def configure_optimizers(self):  # type: ignore[no-untyped-def]
            opt, sched = _optimizer(self.model)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    module = Minimal()
    trainer = L.Trainer(
        max_steps=len(batches),
        gradient_clip_val=None if manual else 1.0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        accelerator="cpu",
        devices=1,
    )
    trainer.fit(module, _loader(batches))
    return _ms_per_step(module.stamps)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    print("| model | batch | plain | Lightning, automatic | Lightning, manual | plain / automatic "
          "| plain / manual |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for shape in SHAPES:
        batches = torch.randint(0, VOCAB, (args.steps, shape[2], SEQ_LEN + 1))
        ms: dict[str, list[float]] = {"plain": [], "automatic": [], "manual": []}
        for _ in range(args.repeats):
            ms["plain"].append(plain(shape, batches))
            ms["automatic"].append(lightning(shape, batches, manual=False))
            ms["manual"].append(lightning(shape, batches, manual=True))
        med = {k: statistics.median(v) for k, v in ms.items()}
        n = sum(p.numel() for p in _model(*shape[:2]).parameters())
        print(
            f"| {shape[0]} layer(s), d {shape[1]} ({n:,} params) | {shape[2]} × {SEQ_LEN} "
            f"| {med['plain']:.2f} ms | {med['automatic']:.2f} ms | {med['manual']:.2f} ms "
            f"| {med['plain'] / med['automatic']:.2f} | {med['plain'] / med['manual']:.2f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
