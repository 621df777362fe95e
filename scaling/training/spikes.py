"""Loss-spike detection: which optimizer steps are spikes, from the training loss and the
gradient norm of each step (``train.spike.*``, :class:`scaling.config.SpikeConfig`).

A step is a spike when its loss or its gradient norm is not finite; or, once half a window of
steps has been seen, when its loss, or the logarithm of its gradient norm, lies more than
``threshold`` standard deviations above the mean of the last ``window`` steps that were not
spikes (the rolling test of OLMo-core's skip-step optimizer, one-sided: a falling loss is never
a spike; the norm in logs, as it varies by factors: a norm of small batches has a heavy upper
tail); or, before that, when the loss is more than ``ratio`` times the least loss seen so far.
A spike does not enter the window, so a run of spikes is measured against the steps before it.

The gradient norm's test decides only when gradients are not clipped (``train.grad_clip`` 0):
clipping bounds the update a large norm would make, so with clipping on a step is a spike by its
loss (or a non-finite norm) alone, and the norm's z-score is kept as :attr:`SpikeDetector.norm_z`
(logged as ``train/grad_norm_z_max``) and named in a loss spike's evidence.

Pure Python and no torch: :class:`~scaling.training.module.LMModule` feeds it one
``(step, loss, grad_norm)`` per optimizer step and acts on what it returns. Its whole state is
:meth:`SpikeDetector.state_dict`, which goes into the run's checkpoints, so that a resumed run
continues the same window.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from scaling.config import SpikeConfig

# A window's standard deviation is taken as at least 0.1% of its mean loss (of the norm: 0.001 in
# logs, 0.1%), so that a window of nearly equal values does not make a tiny excursion a spike.
MIN_RELATIVE_SD = 1e-3


@dataclass(frozen=True)
class Spike:
    """One spiking step and the evidence for it."""

    step: int  # optimizer steps done once this one is (1-based)
    loss: float
    grad_norm: float
    evidence: str

    def describe(self) -> str:
        return f"step {self.step:,}: {self.evidence}"


class Window:
    """The last ``size`` values with their running sum and sum of squares, so that a step's mean
    and standard deviation cost O(1) whatever the window (the sums are saved with the values, so
    a resumed run continues with the same floats)."""

    def __init__(
        self, size: int, values: Sequence[float] = (), sums: tuple[float, float] | None = None
    ) -> None:
        self.values: deque[float] = deque(maxlen=size)
        self.total = self.squares = 0.0
        for v in values:
            self.append(v)
        if sums is not None:
            self.total, self.squares = sums

    def __len__(self) -> int:
        return len(self.values)

    def append(self, value: float) -> None:
        if len(self.values) == self.values.maxlen:
            old = self.values[0]
            self.total -= old
            self.squares -= old * old
        self.values.append(value)
        self.total += value
        self.squares += value * value

    def mean_sd(self, logs: bool) -> tuple[float, float]:
        n = len(self.values)
        mean = self.total / n
        var = max(0.0, (self.squares - n * mean * mean) / max(1, n - 1))
        return mean, max(math.sqrt(var), MIN_RELATIVE_SD * (1.0 if logs else abs(mean)))

    def sums(self) -> list[float]:
        return [self.total, self.squares]


class SpikeDetector:
    """The rolling test of the module docstring over one run's steps.

    ``spikes`` counts the steps judged spikes, ``skipped`` those whose update was not applied
    (the module counts them, :meth:`skipped_one`), ``consecutive`` the spikes in a row up to
    the last step seen. ``clipped``: gradients are clipped, so the norm's z-score alone makes
    no spike; ``norm_z`` is the last step's (None before the rolling test is on).
    """

    def __init__(self, cfg: SpikeConfig, *, clipped: bool = False) -> None:
        self.clipped = clipped
        self.norm_z: float | None = None
        self.window = cfg.window
        self.threshold = float(cfg.threshold)
        self.ratio = float(cfg.ratio)
        self.losses = Window(cfg.window)
        self.norms = Window(cfg.window)  # their logarithms
        self.least_loss = math.inf
        self.spikes = 0
        self.skipped = 0
        self.consecutive = 0

    @property
    def rolling(self) -> bool:
        """Whether the z-score test is on (half a window seen), else the ratio test."""
        return len(self.losses) >= max(2, self.window // 2)

    def check(self, step: int, loss: float, grad_norm: float) -> Spike | None:
        """Judge one step; a step that is not a spike joins the window."""
        evidence = self._evidence(loss, grad_norm)
        if evidence is None:
            self.losses.append(loss)
            self.norms.append(math.log(grad_norm))
            self.least_loss = min(self.least_loss, loss)
            self.consecutive = 0
            return None
        self.spikes += 1
        self.consecutive += 1
        return Spike(step, loss, grad_norm, evidence)

    def _evidence(self, loss: float, grad_norm: float) -> str | None:
        self.norm_z = None
        if not math.isfinite(loss):
            return f"training loss {loss}"
        if not (math.isfinite(grad_norm) and grad_norm > 0):
            return f"gradient norm {grad_norm}"
        if not self.rolling:
            if loss > self.ratio * self.least_loss:
                return (
                    f"training loss {loss:.4g} > {self.ratio:g} x the least so far "
                    f"({self.least_loss:.4g})"
                )
            return None
        found = []
        mean, sd = self.losses.mean_sd(logs=False)
        z = (loss - mean) / sd
        loss_spike = z > self.threshold
        if loss_spike:
            found.append(
                f"training loss {loss:.4g} is {z:.1f} SD above the mean {mean:.4g} of the last "
                f"{len(self.losses)} steps"
            )
        mean, sd = self.norms.mean_sd(logs=True)
        z = self.norm_z = (math.log(grad_norm) - mean) / sd
        if z > self.threshold and (loss_spike or not self.clipped):
            found.append(
                f"gradient norm {grad_norm:.4g} is {z:.1f} SD above the geometric mean "
                f"{math.exp(mean):.4g} of the last {len(self.norms)} steps (in logs)"
            )
        return "; ".join(found) or None

    def skipped_one(self) -> None:
        self.skipped += 1

    def rewind(self, state: dict[str, Any], skipped: int) -> None:
        """Back to an earlier :meth:`state_dict`'s windows (``train.spike.action=rollback``),
        with ``skipped`` steps skipped so far; the count of spikes is kept, and the spike that
        caused the rollback is the first of a run of consecutive ones."""
        spikes = self.spikes
        self.load_state_dict(state)
        self.spikes, self.skipped, self.consecutive = spikes, skipped, 1

    # ---- checkpoints: plain numbers and lists, what a weights_only load accepts ----------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "losses": list(self.losses.values),
            "norms": list(self.norms.values),
            "sums": [self.losses.sums(), self.norms.sums()],
            "least_loss": self.least_loss,
            "spikes": self.spikes,
            "skipped": self.skipped,
            "consecutive": self.consecutive,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        sums = state.get("sums") or [None, None]  # a checkpoint written before the sums were
        self.losses = Window(self.window, [float(v) for v in state["losses"]], _pair(sums[0]))
        self.norms = Window(self.window, [float(v) for v in state["norms"]], _pair(sums[1]))
        self.least_loss = float(state["least_loss"])
        self.spikes = int(state["spikes"])
        self.skipped = int(state["skipped"])
        self.consecutive = int(state["consecutive"])


def _pair(sums: list[float] | None) -> tuple[float, float] | None:
    return None if sums is None else (float(sums[0]), float(sums[1]))
