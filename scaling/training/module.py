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

Loss spikes (``train.spike.*``, :mod:`scaling.training.spikes`): each optimizer step's loss and
gradient norm (the norm that clipping computes, :meth:`LMModule.configure_gradient_clipping`)
go to a :class:`~scaling.training.spikes.SpikeDetector`, whose state is in the checkpoint too.
Under ``skip`` and ``rollback`` a step is judged before its update (one device-to-host transfer
a step) and a spike's gradients are dropped, so AdamW leaves the weights and its moments as they
were (``rollback`` then also restores an earlier snapshot, :mod:`scaling.training.rollback`);
under ``warn`` and ``stop`` the steps are judged when ``train/loss`` is logged (one transfer per
``log_every`` steps, as the loss already costs).
"""

from __future__ import annotations

import math
import random
import sys
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
from scaling.training.rollback import Rollbacks
from scaling.training.spikes import Spike, SpikeDetector

MetricSink = Callable[[dict[str, float], int], None]


class DivergedError(RuntimeError):
    """The run diverged at optimizer step ``step``: its training loss became non-finite, or the
    spike detector stopped it (``train.spike.action=stop``, ``skip`` or ``rollback`` with a
    whole window of steps skipped in a row, ``rollback`` with no rollback left); the run ends
    FAILED, tagged diverged (:mod:`scaling.training.run`).
    """

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message)
        self.step = step


SPIKE_LINES = 10  # spikes printed to stderr per run; the metrics and the counts hold them all
JUDGED_BEFORE_UPDATE = ("skip", "rollback")  # spike actions that keep a spike's update out


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


# Attributes set on every optimizer step that are never parameters, buffers or submodules:
# assigned directly, not through ``nn.Module.__setattr__`` (its checks cost microseconds a call,
# and Lightning sets ``_current_fx_name`` around each of the ~20 hooks it calls a step).
PLAIN_ATTRIBUTES = frozenset(
    {
        "_current_fx_name",
        "_step_micro",
        "_step_loss",
        "_step_start",
        "_loss_sum",
        "_loss_count",
        "_clock",
        "_last_seen_step",
        "_train_seconds",
        "_timed_tokens",
        "_interval_norm_z",
    }
)


class LMModule(L.LightningModule):
    """Trains a :class:`GPT`; validation on a fixed token set at log-spaced token counts."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in PLAIN_ATTRIBUTES:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

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
        # train.compile: the training forward through torch.compile, held as a function (not a
        # submodule), so the state dict and checkpoints keep the eager model's keys and a run
        # resumes from a checkpoint written with or without it; evaluation stays eager.
        self._compiled: Callable[..., Any] | None = (
            torch.compile(self.model.forward, mode=train_cfg.compile_mode)
            if train_cfg.compile
            else None
        )
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
        # loss spikes (train.spike.*): the detector and what this step / this interval hold
        self.spike_action = train_cfg.spike.action
        self.detector = (
            SpikeDetector(train_cfg.spike, clipped=bool(train_cfg.grad_clip))
            if self.spike_action != "off"
            else None
        )
        spike = train_cfg.spike
        self.rollbacks = (
            Rollbacks(spike.window, spike.max_rollbacks)
            if self.spike_action == "rollback"
            else None
        )
        self._step_loss = torch.zeros(())  # this step's micro-batch losses, summed
        self._step_micro = 0
        self._step_start: tuple[torch.Tensor, int] = (self._loss_sum, 0)  # to undo a skipped step
        # the loss and gradient norm of each step not yet judged (warn, stop), and its step
        self._pending_losses: list[torch.Tensor] = []
        self._pending_norms: list[torch.Tensor] = []
        self._pending_steps: list[int] = []
        self._interval_norms: list[float] = []  # gradient norms judged since the last log
        self._interval_norm_z: float | None = None  # their largest z-score (detector.norm_z)
        self._logged_counts: dict[str, float] | None = None  # the counts as last logged
        self._new_spikes: list[Spike] = []  # judged, not yet emitted

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
        _, loss = (self._compiled or self.model)(x, y)
        detached = loss.detach()
        if self.detector is not None:
            if self._step_micro == 0:
                self._step_start = (self._loss_sum, self._loss_count)
                self._step_loss = detached
            else:
                self._step_loss = self._step_loss + detached
            self._step_micro += 1
        self._loss_sum = self._loss_sum + detached.float()
        self._loss_count += 1
        return loss

    def configure_gradient_clipping(  # type: ignore[override]
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Lightning's clipping, after every backward of a step, before the update; with spike
        detection on, it also hands the step's loss and gradient norm to the detector (under
        ``skip`` and ``rollback``, a spike's gradients are set to None: AdamW then updates
        nothing; the first spike of a run of them rolls back under ``rollback``)."""
        if self.detector is None:
            super().configure_gradient_clipping(
                optimizer, gradient_clip_val, gradient_clip_algorithm
            )
            return
        norm = self._clip_and_norm(optimizer, gradient_clip_val, gradient_clip_algorithm)
        step_loss = self._step_loss
        if self._step_micro > 1:
            step_loss = step_loss / self._step_micro
        self._step_micro = 0
        if self.trainer.world_size > 1:  # the mean loss over ranks (gradients are already one)
            values = torch.stack([step_loss.float(), norm.float()])
            step_loss, norm = self.trainer.strategy.reduce(values, reduce_op="mean")
        step = self.trainer.global_step + 1
        if self.spike_action not in JUDGED_BEFORE_UPDATE:  # judged at the next log, together
            self._pending_losses.append(step_loss)
            self._pending_norms.append(norm)
            self._pending_steps.append(step)
            return
        loss, grad_norm = torch.stack([step_loss.float(), norm.float()]).tolist()
        if self._judge(step, loss, grad_norm):
            optimizer.zero_grad(set_to_none=True)
            self._loss_sum, self._loss_count = self._step_start  # train/loss: applied steps
            rollbacks = self.rollbacks
            if rollbacks is not None:
                rollbacks.spiked()
            # a spike right after a rollback is skipped: the state is already the good one
            if (
                rollbacks is not None
                and rollbacks.good is not None
                and self.detector.consecutive == 1
            ):
                self._roll_back(step, optimizer, rollbacks)
            else:
                self.detector.skipped_one()
            if self.detector.consecutive >= self.detector.window:  # no update for a window
                last = self._new_spikes[-1].evidence
                self._stopping(step)
                raise DivergedError(
                    f"diverged: {self.detector.consecutive} steps in a row skipped as loss "
                    f"spikes up to step {step:,} (train.spike.action={self.spike_action}); "
                    f"the last: {last}",
                    step - self.detector.consecutive + 1,
                )

    def _roll_back(self, step: int, optimizer: torch.optim.Optimizer, rollbacks: Rollbacks) -> None:
        """The spike at ``step`` rolls the run back to its good snapshot, or, with no rollback
        left, ends it as diverged."""
        assert self.detector is not None
        spike = self._new_spikes[-1]
        if rollbacks.exhausted:
            self._stopping(step)
            raise DivergedError(
                f"diverged: loss spike at {spike.describe()} with no rollback left "
                f"({rollbacks.count} done, train.spike.max_rollbacks={rollbacks.max_rollbacks})",
                step,
            )
        to = rollbacks.restore(step, self.model, optimizer, self.detector)
        if self.trainer.is_global_zero:
            print(
                f"warning: rolled back at step {step:,} to the state after step {to:,} "
                f"(rollback {rollbacks.count} of at most {rollbacks.max_rollbacks}); the "
                f"batches of steps {to + 1:,}-{step:,} are skipped",
                file=sys.stderr,
                flush=True,
            )

    def _clip_and_norm(
        self, optimizer: torch.optim.Optimizer, clip: float | None, algorithm: str | None
    ) -> torch.Tensor:
        """The total gradient norm before clipping, clipping as Lightning would: by norm it is
        torch's ``clip_grad_norm_`` on the precision plugin's parameters, as Lightning calls it,
        returning the norm it computes anyway."""
        from lightning.pytorch.plugins.precision import Precision

        plugin = self.trainer.precision_plugin
        by_norm = algorithm is None or str(getattr(algorithm, "value", algorithm)) == "norm"
        own = type(plugin).clip_grad_by_norm is Precision.clip_grad_by_norm
        if clip and by_norm and own:
            return torch.nn.utils.clip_grad_norm_(plugin.main_params(optimizer), clip)
        grads = [p.grad for p in plugin.main_params(optimizer) if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads)
        super().configure_gradient_clipping(optimizer, clip, algorithm)
        return norm

    def _judge(self, step: int, loss: float, grad_norm: float) -> bool:
        """One step through the detector; True for a spike. A non-finite loss ends the run
        (diverged) unless ``skip`` or ``rollback`` keeps its update out; ``stop`` ends it on any
        spike."""
        assert self.detector is not None
        if math.isfinite(grad_norm):
            self._interval_norms.append(grad_norm)
        spike = self.detector.check(step, loss, grad_norm)
        z = self.detector.norm_z
        if z is not None and (self._interval_norm_z is None or z > self._interval_norm_z):
            self._interval_norm_z = z
        if spike is None:
            return False
        self._new_spikes.append(spike)
        if self.detector.spikes <= SPIKE_LINES and self.trainer.is_global_zero:
            more = " (no more are printed)" if self.detector.spikes == SPIKE_LINES else ""
            print(
                f"warning: loss spike at {spike.describe()} "
                f"(train.spike.action={self.spike_action}){more}",
                file=sys.stderr,
                flush=True,
            )
        kept_out = self.spike_action in JUDGED_BEFORE_UPDATE  # a non-finite update too
        if self.spike_action == "stop" or (not kept_out and not math.isfinite(loss)):
            self._stopping(step)
            raise DivergedError(f"diverged: loss spike at {spike.describe()}", step)
        return True

    def _judge_pending(self) -> None:
        """Judge the steps waiting since the last log (``warn``, ``stop``): one transfer."""
        if not self._pending_steps:
            return
        values = self._pending_values()
        steps = self._pending_steps
        self._pending_losses, self._pending_norms, self._pending_steps = [], [], []
        for step, (loss, grad_norm) in zip(steps, values):
            self._judge(step, loss, grad_norm)

    def _pending_values(self) -> list[list[float]]:
        """``[loss, grad norm]`` of each step not yet judged, as floats: one transfer."""
        if not self._pending_steps:
            return []
        losses = torch.stack(self._pending_losses).float()
        return torch.stack([losses, torch.stack(self._pending_norms).float()], 1).tolist()

    def _stopping(self, step: int) -> None:
        """Before a diverged run stops: its spikes and their counts, as of ``step``."""
        self._emit_spikes()
        self._emit(self._spike_metrics(final=True), step * self.tokens_per_step)

    def _emit_spikes(self) -> None:
        for spike in self._new_spikes:
            self._emit(
                {"spike/loss": spike.loss, "spike/grad_norm": spike.grad_norm},
                spike.step * self.tokens_per_step,
            )
        self._new_spikes = []

    def _spike_metrics(self, final: bool = False) -> dict[str, float]:
        """``train/grad_norm`` (mean and max over the steps since the last log), the largest
        z-score of its logarithm in the detector's window (``train/grad_norm_z_max``, once the
        rolling test is on) and the run's counts of spikes and skipped steps so far (logged at
        the first log, when they change and at the run's end: a count is a step function)."""
        assert self.detector is not None
        counts = {
            "train/spikes": self.detector.spikes,
            "train/skipped_steps": self.detector.skipped,
        }
        if self.rollbacks is not None:
            counts["train/rollbacks"] = self.rollbacks.count
        out: dict[str, float] = {}
        if final or counts != self._logged_counts:
            out.update(counts)
            self._logged_counts = counts
        norms = self._interval_norms
        if norms:
            out["train/grad_norm"] = math.fsum(norms) / len(norms)
            out["train/grad_norm_max"] = max(norms)
        if self._interval_norm_z is not None:
            out["train/grad_norm_z_max"] = self._interval_norm_z
        self._interval_norms, self._interval_norm_z = [], None
        return out

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
        elif self.rollbacks is not None and self.detector is not None:
            self.rollbacks.after_step(0, self.model, self.trainer.optimizers[0], self.detector)

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
        if self.detector is not None:
            pending = self._pending_values()
            checkpoint[CHECKPOINT_KEY]["spikes"] = {
                "detector": self.detector.state_dict(),
                "pending": pending,
                "pending_steps": list(self._pending_steps),
                "interval_norms": list(self._interval_norms),
                "interval_norm_z": self._interval_norm_z,
                "logged_counts": self._logged_counts,
            }
            if self.rollbacks is not None:
                checkpoint[CHECKPOINT_KEY]["spikes"]["rollback"] = self.rollbacks.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get(CHECKPOINT_KEY)
        self._last_seen_step = int(checkpoint.get("global_step", -1))
        if state is None:  # a checkpoint from before RNG state was saved
            return
        self._restore_rng = state["rng"]
        self._loss_sum = state["loss_sum"].to(self._loss_sum.device)
        self._loss_count = int(state["loss_count"])
        spikes = state.get("spikes")
        if self.detector is not None and spikes is not None:
            self.detector.load_state_dict(spikes["detector"])
            pending = [torch.tensor(v, dtype=torch.float32) for v in spikes["pending"]]
            self._pending_losses = [v[0] for v in pending]
            self._pending_norms = [v[1] for v in pending]
            self._pending_steps = [int(s) for s in spikes["pending_steps"]]
            self._interval_norms = [float(v) for v in spikes["interval_norms"]]
            self._interval_norm_z = spikes.get("interval_norm_z")
            self._logged_counts = spikes.get("logged_counts")
            if self.rollbacks is not None and spikes.get("rollback") is not None:
                self.rollbacks.load_state_dict(spikes["rollback"])

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
        if self._new_spikes:  # skip, rollback: judged during the step
            self._emit_spikes()
        if self.rollbacks is not None and self.detector is not None:
            self.rollbacks.after_step(step, self.model, self.trainer.optimizers[0], self.detector)
        if step % self.train_cfg.log_every == 0 or step == self.total_steps:
            self._judge_pending()
            self._emit_spikes()
            metrics = {"lr": self.lr_schedulers().get_last_lr()[0]}
            if self._loss_count:  # none when every step since the last log was skipped
                loss = (self._loss_sum / self._loss_count).item()
                if not math.isfinite(loss):
                    raise DivergedError(
                        f"train/loss became {loss} after {tokens:,} tokens (step {step})", step
                    )
                self.last_train_loss = loss
                if self._progress_bar:  # Lightning self.log costs ~1 ms a call; only the bar
                    self.log("train/loss", loss, prog_bar=True)
                metrics["train/loss"] = loss
            self._loss_sum, self._loss_count = torch.zeros(()), 0
            if self._train_seconds > 0:
                metrics["throughput/tokens_per_s"] = self.throughput()
            if self.detector is not None:
                metrics.update(self._spike_metrics(final=step == self.total_steps))
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
        with torch.no_grad(), self.trainer.precision_plugin.forward_context():
            for i in range(0, len(windows), self.eval_batch_size):
                chunk = windows[i : i + self.eval_batch_size].to(self.device)
                _, loss = self.model(chunk[:, :-1], chunk[:, 1:])
                total += loss.double().cpu() * len(chunk)
                count += len(chunk)
        self.model.train(was_training)
        return float(total / count)
