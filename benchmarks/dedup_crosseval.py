"""Is a raw-vs-dedup loss gap the training data or the validation split? A cross-evaluation.

    .venv/bin/python benchmarks/dedup_crosseval.py                 # 3 seeds, ~2.5 min on 2 cores
    .venv/bin/python benchmarks/dedup_crosseval.py --quick         # 1 seed, 400K tokens

`scaling compare` (and the `dedup_study` preset) compare fits whose losses are each measured on
their own corpus's validation split: the raw sitepackages corpus and its deduplicated version
(data.process=[dedup_exact,dedup_near]) have different splits, since dedup moves where the fixed
validation pieces fall. This script separates the two effects: it trains the same small GPT
(a plain torch loop, one thread, the same seed and batches drawn the same way) once on each
corpus's training split and scores both models on BOTH validation splits.

- val-split gap: one model, raw val minus dedup val -- how much easier one split is;
- training-data gap: one val split, raw-trained minus dedup-trained -- what dedup bought.

The first run processes and tokenizes the sitepackages corpus into the cache (about a minute).
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from scaling.config import DataConfig, GPTConfig
from scaling.training.data import Corpus, load_corpus
from scaling.training.data.batches import val_windows
from scaling.training.model import GPT

SEQ, BATCH, LR = 128, 4, 3e-3
PROCESS = {"raw": [], "dedup": ["dedup_exact", "dedup_near"]}


def corpora() -> dict[str, Corpus]:
    return {
        k: load_corpus(DataConfig(source="sitepackages", process=v), seq_len=SEQ)
        for k, v in PROCESS.items()
    }


def evaluate(model: GPT, windows: torch.Tensor) -> float:
    """Mean next-token loss (nats/token) over the validation windows."""
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(windows), 32):
            w = windows[i : i + 32]
            _, loss = model(w[:, :-1], w[:, 1:])
            total += float(loss) * len(w)
            n += len(w)
    model.train()
    return total / n


def train(tokens: np.ndarray, n_tokens: int, shape: tuple[int, int], seed: int) -> GPT:
    """AdamW, warmup then cosine to 0.1x, random windows of the training split."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    cfg = GPTConfig(n_layer=shape[0], d_model=shape[1], seq_len=SEQ, vocab_size=256)
    model = GPT(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.1, betas=(0.9, 0.95))
    steps = n_tokens // (SEQ * BATCH)
    warm = max(1, steps // 100)
    for step in range(steps):
        cosine = 0.5 * (1 + math.cos(math.pi * step / steps))
        for group in opt.param_groups:
            group["lr"] = LR * min(1.0, (step + 1) / warm) * (0.1 + 0.9 * cosine)
        starts = rng.integers(0, len(tokens) - SEQ - 1, BATCH)
        batch = np.stack([np.asarray(tokens[s : s + SEQ + 1], dtype=np.int64) for s in starts])
        x = torch.from_numpy(batch)
        _, loss = model(x[:, :-1], x[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 seed, 400K tokens")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--tokens", type=float, default=1_330_176)
    ap.add_argument("--shape", default="1,32", help="n_layer,d_model (default: 1,32)")
    args = ap.parse_args()
    seeds, n_tokens = (1, 400_000) if args.quick else (args.seeds, int(args.tokens))
    shape = tuple(int(x) for x in args.shape.split(","))
    torch.set_num_threads(1)
    data = corpora()
    vals = {k: val_windows(c, SEQ) for k, c in data.items()}
    print(f"L{shape[0]}-d{shape[1]}, {n_tokens:,} tokens, batches {BATCH}x{SEQ}, {seeds} seed(s)")
    print("seed  trained on  raw val  dedup val   s")
    split_gap, data_gap = [], []
    for seed in range(seeds):
        scores = {}
        for name, corpus in data.items():
            t0 = time.perf_counter()
            model = train(corpus.train, n_tokens, shape, seed)
            scores[name] = {v: evaluate(model, w) for v, w in vals.items()}
            row = scores[name]
            print(
                f"{seed:>4}  {name:>10}  {row['raw']:.4f}   {row['dedup']:.4f}  "
                f"{time.perf_counter() - t0:4.0f}",
                flush=True,
            )
        split_gap += [scores[m]["raw"] - scores[m]["dedup"] for m in data]
        data_gap += [scores["raw"][v] - scores["dedup"][v] for v in vals]

    def summary(values: list[float]) -> str:
        sd = f" (sd {np.std(values, ddof=1):.4f}, n {len(values)})" if len(values) > 1 else ""
        return f"{np.mean(values):+.4f}{sd}"

    print(f"val-split gap, one model (raw val - dedup val):           {summary(split_gap)}")
    print(f"training-data gap, one split (raw-trained - dedup-trained): {summary(data_gap)}")


if __name__ == "__main__":
    main()
