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


def _mean_sd(values: deque[float], logs: bool) -> tuple[float, float]:
    n = len(values)
    mean = math.fsum(values) / n
    var = math.fsum((v - mean) ** 2 for v in values) / max(1, n - 1)
    return mean, max(math.sqrt(var), MIN_RELATIVE_SD * (1.0 if logs else abs(mean)))


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
        self.losses: deque[float] = deque(maxlen=cfg.window)
        self.norms: deque[float] = deque(maxlen=cfg.window)  # their logarithms
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
        mean, sd = _mean_sd(self.losses, logs=False)
        z = (loss - mean) / sd
        loss_spike = z > self.threshold
        if loss_spike:
            found.append(
                f"training loss {loss:.4g} is {z:.1f} SD above the mean {mean:.4g} of the last "
                f"{len(self.losses)} steps"
            )
        mean, sd = _mean_sd(self.norms, logs=True)
        z = self.norm_z = (math.log(grad_norm) - mean) / sd
        if z > self.threshold and (loss_spike or not self.clipped):
            found.append(
                f"gradient norm {grad_norm:.4g} is {z:.1f} SD above the geometric mean "
                f"{math.exp(mean):.4g} of the last {len(self.norms)} steps (in logs)"
            )
        return "; ".join(found) or None

    def skipped_one(self) -> None:
        self.skipped += 1

    # ---- checkpoints: plain numbers and lists, what a weights_only load accepts ----------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "losses": list(self.losses),
            "norms": list(self.norms),
            "least_loss": self.least_loss,
            "spikes": self.spikes,
            "skipped": self.skipped,
            "consecutive": self.consecutive,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.losses = deque((float(v) for v in state["losses"]), maxlen=self.window)
        self.norms = deque((float(v) for v in state["norms"]), maxlen=self.window)
        self.least_loss = float(state["least_loss"])
        self.spikes = int(state["spikes"])
        self.skipped = int(state["skipped"])
        self.consecutive = int(state["consecutive"])
