"""What the model sees: seeded, resumable training windows and the fixed validation windows."""

from __future__ import annotations

import bisect

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from scaling.errors import ConfigError, DataError
from scaling.training.data.cache import Corpus


class TokenBatches(Dataset):
    """Training windows of ``seq_len + 1`` tokens, in a seeded order; item i -> (x, y).

    Epoch ``e`` reads the non-overlapping windows ``tokens[o + k*seq_len : o + (k+1)*seq_len
    + 1]`` (consecutive windows share one boundary token, so every token is a target once) in a
    permutation drawn from ``SeedSequence([seed, e])``; epoch 0 starts at offset ``o = 0``, later
    epochs at a seeded offset in ``[0, seq_len)`` so that repeated data is cut differently.
    Item ``i`` depends only on ``(seed, i)``: a run resumed with ``start=k`` sees exactly items
    ``k, k+1, ...`` of the uninterrupted run (``resumed[j] == full[k + j]``).
    """

    def __init__(
        self, tokens: np.ndarray, seq_len: int, n_sequences: int, seed: int, start: int = 0
    ) -> None:
        if seq_len < 1:
            raise ConfigError(f"model.seq_len={seq_len} must be positive")
        if len(tokens) < seq_len + 1:
            raise DataError(
                f"the training split holds {len(tokens):,} tokens, fewer than one window of "
                f"model.seq_len+1={seq_len + 1}: use a bigger corpus or lower data.val_tokens"
            )
        if not 0 <= start <= n_sequences:
            raise ValueError(f"start={start} must be in [0, n_sequences={n_sequences}]")
        self.tokens, self.seq_len, self.seed = tokens, seq_len, seed % 2**63
        self.n_sequences, self.start = n_sequences, start
        self._epoch_starts = [0]  # first item of each epoch laid out so far
        self._epoch_layout: list[tuple[int, int]] = []  # (offset, n_windows) per epoch
        self._perm: tuple[int, np.ndarray] | None = None  # the current epoch's permutation

    def __len__(self) -> int:
        # The full run's length even when resuming: Lightning restores its batch counter from
        # the checkpoint and ends the epoch at len(loader) batches, so a shorter loader would
        # make it start a new epoch (re-reading early items) before max_steps. Items past the
        # horizon are well defined and only ever prefetched, never trained on.
        return self.n_sequences

    def _rng(self, epoch: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.seed, epoch]))

    def _layout(self, epoch: int) -> tuple[int, int]:
        while len(self._epoch_layout) <= epoch:
            e = len(self._epoch_layout)
            span = len(self.tokens) - 1
            offset = 0 if e == 0 else int(self._rng(e).integers(self.seq_len))
            if span - offset < self.seq_len:
                offset = 0
            n_windows = (span - offset) // self.seq_len
            self._epoch_layout.append((offset, n_windows))
            self._epoch_starts.append(self._epoch_starts[-1] + n_windows)
        return self._epoch_layout[epoch]

    def window_start(self, i: int) -> int:
        """Token position where item ``i`` (counted from the start of the run) begins."""
        while self._epoch_starts[-1] <= i:
            self._layout(len(self._epoch_layout))
        epoch = bisect.bisect_right(self._epoch_starts, i) - 1
        offset, n_windows = self._layout(epoch)
        if self._perm is None or self._perm[0] != epoch:
            rng = self._rng(epoch)
            if epoch > 0:
                rng.integers(self.seq_len)  # the offset draw, as in _layout
            self._perm = (epoch, rng.permutation(n_windows))
        return offset + int(self._perm[1][i - self._epoch_starts[epoch]]) * self.seq_len

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        pos = self.window_start(self.start + index)
        window = torch.from_numpy(
            np.asarray(self.tokens[pos : pos + self.seq_len + 1], dtype=np.int64)
        )
        return window[:-1], window[1:]  # (T,), (T,)


def val_windows(corpus: Corpus, seq_len: int) -> torch.Tensor:
    """(n, seq_len + 1) validation windows with stride ``seq_len``: every target scored once.

    ``n = (len(val) - 1) // seq_len``, at least ``val_tokens / seq_len`` for seq_len <= 4096.
    """
    val = corpus.val
    n = (len(val) - 1) // seq_len
    if n < 1:
        raise DataError(
            f"the validation split holds {len(val):,} tokens, fewer than one window of "
            f"model.seq_len+1={seq_len + 1}: raise data.val_tokens"
        )
    idx = np.arange(n)[:, None] * seq_len + np.arange(seq_len + 1)[None, :]
    return torch.from_numpy(np.asarray(val, dtype=np.int64)[idx])


class TokenDataModule(L.LightningDataModule):
    """Training batches from :class:`TokenBatches`.

    No ``val_dataloader``: the module scores :func:`val_windows` itself at chosen token counts
    (a Lightning val loop here would only warn when the module has no ``validation_step``).

    With ``sequences_per_step`` (sequences per optimizer step, all ranks together), a checkpoint
    records the position of the data (``sequences_seen``), and a run resumed from it starts
    there, whatever ``start_sequence`` said: Lightning restores this state before it asks for
    the training loader.
    """

    def __init__(
        self,
        corpus: Corpus,
        seq_len: int,
        micro_batch_size: int,
        n_sequences: int,
        seed: int,
        start_sequence: int = 0,
        sequences_per_step: int = 0,
    ) -> None:
        super().__init__()
        self.corpus, self.seq_len, self.micro_batch_size = corpus, seq_len, micro_batch_size
        self.n_sequences, self.seed, self.start_sequence = n_sequences, seed, start_sequence
        self.sequences_per_step = sequences_per_step

    def state_dict(self) -> dict[str, int]:
        trainer = getattr(self, "trainer", None)
        if not self.sequences_per_step or trainer is None:
            return {}
        return {
            "sequences_seen": trainer.global_step * self.sequences_per_step,
            "seed": self.seed,
        }

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        if "sequences_seen" not in state_dict:
            return
        if int(state_dict.get("seed", self.seed)) != self.seed:
            raise ValueError(
                f"the checkpoint's data order has seed {state_dict['seed']}, this run {self.seed}"
            )
        self.start_sequence = int(state_dict["sequences_seen"])

    def train_dataloader(self) -> DataLoader:
        batches = TokenBatches(
            self.corpus.train, self.seq_len, self.n_sequences, self.seed, self.start_sequence
        )
        return DataLoader(
            batches, batch_size=self.micro_batch_size, shuffle=False, num_workers=0, drop_last=True
        )
