"""The LightningModule's pieces (scaling/training/module.py): LR schedule, AdamW groups, when
validation runs."""

from __future__ import annotations

import pytest
import torch

from scaling.config import GPTConfig, TrainConfig
from scaling.training.model import GPT
from scaling.training.module import build_optimizer, eval_steps, lr_factor

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TOTAL = 100  # steps; warmup 0.1 -> 10 warmup steps


@pytest.mark.parametrize(
    ("step", "factor"),
    [
        (0, 0.1),  # warmup: (step + 1) / 10
        (4, 0.5),
        (9, 1.0),
        (10, 1.0),  # cosine from here: 0.1 + 0.9 * (1 + cos(pi * (step - 10) / 90)) / 2
        (40, 0.775),  # a third of the way: cos(pi / 3) = 1/2
        (55, 0.55),  # half way
        (99, 0.10027412784140691),  # one step short of the floor: cos(pi * 89 / 90)
    ],
)
def test_cosine_warms_up_then_decays_to_the_floor_at_this_runs_horizon(step, factor) -> None:
    cfg = TrainConfig(warmup=0.1, min_lr_ratio=0.1, schedule="cosine")
    assert lr_factor(step, TOTAL, cfg) == pytest.approx(factor, abs=1e-12)


@pytest.mark.parametrize(
    ("step", "factor"),
    [
        (0, 0.1),
        (9, 1.0),
        (50, 1.0),  # stable
        (79, 1.0),  # the last stable step: cooldown 0.2 -> the final 20 steps
        (80, 0.955),  # linear to the floor: 1 - 0.9 * (step - 79) / 20
        (89, 0.55),
        (99, 0.1),
    ],
)
def test_wsd_is_warmup_stable_then_linear_cooldown(step, factor) -> None:
    cfg = TrainConfig(warmup=0.1, min_lr_ratio=0.1, schedule="wsd", cooldown=0.2)
    assert lr_factor(step, TOTAL, cfg) == pytest.approx(factor, abs=1e-12)


def test_no_warmup_starts_at_the_peak() -> None:
    assert lr_factor(0, TOTAL, TrainConfig(warmup=0.0)) == 1.0


@pytest.mark.parametrize("tie", [True, False])
def test_weight_decay_shrinks_matrices_but_not_norms_biases_or_embeddings(tie: bool) -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=64, seq_len=16, n_layer=2, d_model=32, tie_embeddings=tie))
    lr, wd = 0.01, 0.1
    opt = build_optimizer(model, TrainConfig(lr=lr, weight_decay=wd))
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # zero gradient: Adam's step is 0, only decay moves a weight
    opt.step()
    decayed = {"attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight"}
    for name, p in model.named_parameters():
        shrunk = name.split(".", 2)[-1] in decayed or name == "lm_head.weight"
        expected = before[name] * (1 - lr * wd) if shrunk else before[name]
        torch.testing.assert_close(p.detach(), expected, rtol=0, atol=1e-7, msg=name)
    names = {n for n, _ in model.named_parameters()}
    assert ("lm_head.weight" in names) is not tie  # tied: the embedding, never decayed
    assert {"wte.weight", "wpe.weight", "ln_f.weight", "ln_f.bias"} <= names
    assert opt.defaults["fused"] is True  # CPU has torch's fused AdamW kernel


def test_eval_steps_are_log_spaced_and_end_at_the_last_step() -> None:
    # geomspace(1, 1000, 8) = 10 ** (3k / 7) = 1, 2.68, 7.20, 19.3, 51.8, 138.9, 372.8, 1000
    assert eval_steps(1000, 8) == [1, 3, 7, 19, 52, 139, 373, 1000]
    assert eval_steps(4, 8) == [1, 2, 3, 4]  # fewer steps than points: each step once
    assert eval_steps(5, 1) == [5] and eval_steps(1, 8) == [1]
