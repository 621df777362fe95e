"""LightningModule: next-token loss, AdamW, LR schedule, log-spaced validation, metrics.

The step axis of every metric is *tokens seen* (optimizer steps x batch x seq_len), so curves of
runs with different batch sizes line up, and approach-1 analyses read loss at a token count.

Exact resume: a checkpoint holds, besides Lightning's model, optimizer, scheduler and loop state,
the random generators (torch CPU and CUDA, Python's ``random``, numpy's global state) and the
partial ``train/loss`` average, restored just before the first step after the resume; with the
data position (:class:`~scaling.training.data.batches.TokenDataModule`'s state) a resumed run
takes the same steps as an uninterrupted one, bit for bit, dropout included. A step's metrics
are emitted (and its validation run) before that step's checkpoint is written, so a run resumed
from it neither misses nor repeats a logged point.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import Any

import lightning as L
import numpy as np
import torch

from scaling.config import GPTConfig, TrainConfig
from scaling.devices import FUSED_ADAMW_DEVICES
from scaling.schedule import cooldown_start, lr_factor
from scaling.training.model import GPT

MetricSink = Callable[[dict[str, float], int], None]


class DivergedError(RuntimeError):
    """Training loss became non-finite; the run is stopped early and marked FAILED."""


def build_optimizer(model: GPT, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over :meth:`GPT.param_groups` (decoupled decay, none on norms/biases/embeddings).

    Uses torch's fused kernel where the parameters' device has one
    (:data:`scaling.devices.FUSED_ADAMW_DEVICES`): the same update as the default per-tensor
    loop, one kernel instead of a Python loop over every tensor (README, "Where the code's
    numbers come from").
    """
    groups = model.param_groups(cfg.weight_decay)
    params = [p for g in groups for p in g["params"]]
    # torch checks fused support per parameter only at the first step, and lists the devices
    # that have the kernel only in a private helper: scaling.devices names them.
    fused = bool(params) and all(
        p.device.type in FUSED_ADAMW_DEVICES and p.is_floating_point() for p in params
    )
    return torch.optim.AdamW(
        groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=True if fused else None
    )


COOLDOWN_EVALS = 4  # wsd: extra validations evenly spaced over the cooldown


def eval_steps(total_steps: int, points: int, cooldown_from: int | None = None) -> list[int]:
    """Optimizer steps (1-based counts) after which validation runs: log-spaced, last = final;
    with ``cooldown_from`` (a wsd run's cooldown start) also :data:`COOLDOWN_EVALS` evenly
    spaced through the cooldown, where the loss falls fastest and a cooldown branch has its
    only points (what the loss-curve law reads the annealing term from)."""
    if points <= 1 or total_steps <= 1:
        steps = {total_steps}
    else:
        steps = {int(round(s)) for s in np.geomspace(1, total_steps, points)} | {total_steps}
    if cooldown_from is not None and points > 1:
        span = total_steps - cooldown_from
        ks = range(1, COOLDOWN_EVALS + 1)
        steps |= {cooldown_from + round(k * span / COOLDOWN_EVALS) for k in ks}
    return sorted(s for s in steps if s >= 1)


CHECKPOINT_KEY = "scaling"  # this module's state in a Lightning checkpoint


def rng_state() -> dict[str, Any]:
    """Every random generator a training step may draw from, in types a ``weights_only``
    checkpoint load accepts (tensors, lists, tuples, numbers, strings)."""
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": [str(name), [int(k) for k in keys], int(pos), int(has_gauss), float(cached)],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured (CUDA generators when this process has the same
    number of devices initialized)."""
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


class _StepEnd(L.Callback):
    """Runs :meth:`LMModule.step_end` as a callback: Lightning calls callbacks' batch-end hooks
    before the module's and moves ``ModelCheckpoint`` after every other callback, so a step's
    metrics and validation come before that step's checkpoint."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # type: ignore[no-untyped-def]
        pl_module.step_end()


class LMModule(L.LightningModule):
    """Trains a :class:`GPT`; validation on a fixed token set at log-spaced token counts."""

    def __init__(
        self,
        model_cfg: GPTConfig,
        train_cfg: TrainConfig,
        total_steps: int,
        tokens_per_step: int,
        val_windows: torch.Tensor,
        eval_batch_size: int,
        sink: MetricSink | None = None,
    ) -> None:
        super().__init__()
        self.model = GPT(model_cfg)
        self.train_cfg = train_cfg
        self.total_steps = total_steps
        self.tokens_per_step = tokens_per_step
        self.val_windows = val_windows
        self.eval_batch_size = eval_batch_size
        self.sink = sink
        wsd = train_cfg.schedule == "wsd"
        self.eval_at = eval_steps(
            total_steps,
            train_cfg.eval_points,
            cooldown_start(total_steps, train_cfg.cooldown) if wsd else None,
        )
        self._eval_at = frozenset(self.eval_at)
        self.final_val_loss: float | None = None
        self.last_train_loss: float | None = None
        self._last_seen_step = -1
        self._clock: float | None = None
        self._train_seconds = 0.0
        self._timed_tokens = 0
        self._loss_sum = torch.zeros(())
        self._loss_count = 0
        self._restore_rng: dict[str, Any] | None = None

    # ---- optimisation ------------------------------------------------------------------------
    def configure_optimizers(self):  # type: ignore[no-untyped-def]
        cfg = self.train_cfg
        opt = build_optimizer(self.model, cfg)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: lr_factor(step, self.total_steps, cfg)
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        x, y = batch  # (B, T), (B, T)
        _, loss = self.model(x, y)
        self._loss_sum = self._loss_sum + loss.detach().float()
        self._loss_count += 1
        return loss

    # ---- bookkeeping at optimizer-step boundaries ----------------------------------------------
    def tokens_seen(self) -> int:
        return self.trainer.global_step * self.tokens_per_step

    # Throughput is timed here rather than with Lightning's ThroughputMonitor callback, which
    # writes through trainer.logger (runs use logger=False and record to MLflow themselves) under
    # its own names with step = batches, not tokens, and would count the evaluations this hook
    # runs as training time; fabric's Throughput reports nothing until its window is full, so the
    # run's steady-state average would still need this clock and leave it one division to do.
    def on_train_start(self) -> None:
        self._clock = time.perf_counter()
        # The LR of the next step from this run's own schedule: a checkpoint restores the LR
        # its run set, and a WSD branch starts from a constant-LR stable run's checkpoint.
        step = self.trainer.global_step
        if step:
            sched = self.lr_schedulers()
            factor = lr_factor(step, self.total_steps, self.train_cfg)
            for group, base in zip(sched.optimizer.param_groups, sched.base_lrs):
                group["lr"] = base * factor
            sched._last_lr = [g["lr"] for g in sched.optimizer.param_groups]

    def configure_callbacks(self) -> list[L.Callback]:
        return [_StepEnd()]

    def on_train_batch_start(self, batch, batch_idx: int) -> None:  # type: ignore[no-untyped-def]
        # The generators as the checkpoint left them, now that Lightning has restored the loops
        # and started the data loader (whose iterator draws a seed from torch's generator).
        if self._restore_rng is not None:
            set_rng_state(self._restore_rng)
            self._restore_rng = None

    # ---- checkpoints: the state Lightning does not keep -----------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = {
            "rng": rng_state(),
            "loss_sum": self._loss_sum.detach().cpu().clone(),
            "loss_count": self._loss_count,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get(CHECKPOINT_KEY)
        self._last_seen_step = int(checkpoint.get("global_step", -1))
        if state is None:  # a checkpoint from before RNG state was saved
            return
        self._restore_rng = state["rng"]
        self._loss_sum = state["loss_sum"].to(self._loss_sum.device)
        self._loss_count = int(state["loss_count"])

    def step_end(self) -> None:
        """Bookkeeping after each training batch (run by :class:`_StepEnd`): at an optimizer
        step boundary, throughput, ``train/loss`` every ``log_every`` steps and validation at
        the log-spaced steps."""
        step = self.trainer.global_step
        if step == self._last_seen_step:
            return  # mid-accumulation
        self._last_seen_step = step
        now = time.perf_counter()
        if self._clock is not None and step > 1:  # the first step pays one-off costs
            self._train_seconds += now - self._clock
            self._timed_tokens += self.tokens_per_step
        self._clock = now
        tokens = self.tokens_seen()
        if step % self.train_cfg.log_every == 0 or step == self.total_steps:
            loss = (self._loss_sum / max(1, self._loss_count)).item()
            self._loss_sum, self._loss_count = torch.zeros(()), 0
            if not math.isfinite(loss):
                raise DivergedError(
                    f"train/loss became {loss} after {tokens:,} tokens (step {step})"
                )
            self.last_train_loss = loss
            if self._progress_bar:  # Lightning self.log costs ~1 ms a call; only the bar reads it
                self.log("train/loss", loss, prog_bar=True)
            metrics = {"train/loss": loss, "lr": self.lr_schedulers().get_last_lr()[0]}
            if self._train_seconds > 0:
                metrics["throughput/tokens_per_s"] = self.throughput()
            self._emit(metrics, tokens)
        if step in self._eval_at:
            val = self.evaluate()
            if self._progress_bar:
                self.log("val/loss", val, prog_bar=True)
            self._emit({"val/loss": val}, tokens)
            if step == self.total_steps:
                self.final_val_loss = val
            self._clock = time.perf_counter()  # evaluation time is not training throughput

    @property
    def _progress_bar(self) -> bool:
        return self.trainer.progress_bar_callback is not None

    def throughput(self) -> float:
        """Steady-state training tokens/s (excludes the first step and evaluations)."""
        return self._timed_tokens / self._train_seconds if self._train_seconds else float("nan")

    def _emit(self, metrics: dict[str, float], tokens: int) -> None:
        if self.sink is not None and self.trainer.is_global_zero:
            self.sink(metrics, tokens)

    # ---- validation on the fixed set ---------------------------------------------------------
    @torch.no_grad()
    def evaluate(self) -> float:
        """Mean next-token loss (nats/token) over every validation window, equal on all ranks."""
        was_training = self.model.training
        self.model.eval()
        total, count = torch.zeros((), dtype=torch.float64), 0
        windows = self.val_windows
        with self.trainer.precision_plugin.forward_context():
            for i in range(0, len(windows), self.eval_batch_size):
                chunk = windows[i : i + self.eval_batch_size].to(self.device)
                _, loss = self.model(chunk[:, :-1], chunk[:, 1:])
                total += loss.double().cpu() * len(chunk)
                count += len(chunk)
        self.model.train(was_training)
        return float(total / count)
