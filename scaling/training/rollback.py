"""``train.spike.action=rollback``: on a loss spike, the weights, AdamW's moments and the spike
detector's window go back to a snapshot taken before the batches that led to it.

Snapshots are taken after every ``train.spike.window``-th optimizer step (and at step 0). A new
one is a *candidate*: it becomes the *good* snapshot, the one a rollback restores, only once a
whole window of steps has passed after it without a spike, so that the batches building up to a
spike are never inside it; a spike discards the candidate. The good snapshot is therefore one
to two windows older than the step that spikes.

What goes back and what does not (the form PaLM and OPT used, with the step counter kept):

- back: the model's weights, the optimizer's state (moments and its own step count), the
  detector's windows of losses and gradient norms;
- forward: the step counter, so the LR schedule, the token count of every metric and the data
  position continue as if the steps between snapshot and spike had been trained: their batches
  are skipped, not trained again, and the run still ends at its horizon. Their updates count
  as skipped steps (``train/skipped_steps``), the rollbacks as ``train/rollbacks``.

A spike right after a rollback (the next batch is bad too) does not roll back again: the state is
already the good one, so its update is skipped as under ``skip``. After ``max_rollbacks``
rollbacks, the next spike ends the run as diverged, as ``stop`` does.

Snapshots are copies on the CPU (device memory is left to training) and go into the run's
checkpoints, so a run killed and resumed rolls back to the same snapshot as the run that was
not killed; the checkpoint then holds up to three copies of the weights and moments.
"""

from __future__ import annotations

from typing import Any

import torch

from scaling.training.spikes import SpikeDetector


def _to_cpu(value: Any) -> Any:
    """A copy of a (nested) state dict with every tensor cloned to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


class Rollbacks:
    """The snapshots of one run and its count of rollbacks (``count``).

    ``applied``: optimizer updates applied so far (steps done minus skipped steps), kept in each
    snapshot so that a rollback knows how many updates it undoes.
    """

    def __init__(self, every: int, max_rollbacks: int) -> None:
        self.every = every
        self.max_rollbacks = max_rollbacks
        self.count = 0
        self.good: dict[str, Any] | None = None
        self.candidate: dict[str, Any] | None = None

    def after_step(
        self,
        step: int,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        detector: SpikeDetector,
    ) -> None:
        """After optimizer step ``step`` (0: before the first, a good snapshot at once): at a
        multiple of ``every``, the candidate that lived a whole window without a spike becomes
        the good snapshot, and this step's state is the new candidate."""
        if step % self.every:
            return
        if self.candidate is not None:
            self.good = self.candidate
        snapshot = {
            "step": step,
            "applied": step - detector.skipped,
            "model": _to_cpu(model.state_dict()),
            "optimizer": _to_cpu(optimizer.state_dict()),
            "detector": detector.state_dict(),
        }
        if step == 0:  # the initial weights: no batch led anywhere yet
            self.good, self.candidate = snapshot, None
        else:
            self.candidate = snapshot

    def spiked(self) -> None:
        """A spike: the candidate may hold the batches that led to it."""
        self.candidate = None

    @property
    def exhausted(self) -> bool:
        """No rollback is left (``max_rollbacks`` done): the next spike ends the run."""
        return self.count >= self.max_rollbacks

    def restore(
        self,
        step: int,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        detector: SpikeDetector,
    ) -> int:
        """Roll back at spiking step ``step`` (whose update is not applied) to the good
        snapshot; returns the step it was taken after."""
        good = self.good
        assert good is not None  # step 0's snapshot is good from the start
        model.load_state_dict(good["model"])  # copies into the parameters the optimizer holds
        lrs = [group["lr"] for group in optimizer.param_groups]
        optimizer.load_state_dict(_to_cpu(good["optimizer"]))  # cloned: moved or aliased
        for group, lr in zip(optimizer.param_groups, lrs):  # the schedule's, not the snapshot's
            group["lr"] = lr
        detector.rewind(good["detector"], skipped=step - int(good["applied"]))
        self.count += 1
        return int(good["step"])

    # ---- checkpoints: tensors, dicts, lists and numbers, what a weights_only load accepts ----
    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "good": self.good, "candidate": self.candidate}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count = int(state["count"])
        self.good = state["good"]
        self.candidate = state["candidate"]
