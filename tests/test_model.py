"""The GPT model: causality, training sanity, tying, optimizer groups (config: test_config.py)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from scaling.config import GPTConfig
from scaling.training.model import GPT

TINY = dict(vocab_size=64, seq_len=16, n_layer=2, n_head=2, d_model=32)
VARIANTS = list(
    itertools.product(("learned", "rope"), ("layernorm", "rmsnorm"), ("gelu", "swiglu"))
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _ids(variant: tuple[str, ...]) -> str:
    return "-".join(variant)


@pytest.mark.parametrize("pos,norm,mlp", VARIANTS, ids=map(_ids, VARIANTS))
def test_future_tokens_never_change_earlier_logits(pos: str, norm: str, mlp: str) -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(**TINY, pos=pos, norm=norm, mlp=mlp)).eval()
    idx = torch.randint(0, 64, (2, 16))
    t = 9
    changed = idx.clone()
    changed[:, t:] = torch.randint(0, 64, (2, 16 - t))
    with torch.no_grad():
        before, _ = model(idx)
        after, _ = model(changed)
    assert before.shape == (2, 16, 64)
    torch.testing.assert_close(after[:, :t], before[:, :t], rtol=0, atol=1e-6)
    # The check has teeth: the changed positions themselves do see the change.
    assert not torch.allclose(after[:, t:], before[:, t:])


def test_loss_at_init_is_uniform_over_the_vocabulary() -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig())  # defaults: vocab 256, the byte tokenizer's
    idx = torch.randint(0, 256, (8, 129))  # random bytes: the next one is unpredictable
    with torch.no_grad():
        _, loss = model(idx[:, :-1], idx[:, 1:])
    assert loss is not None and loss.ndim == 0
    assert loss.item() == pytest.approx(math.log(256), abs=0.1)


@pytest.mark.parametrize("pos,norm,mlp", [("learned", "layernorm", "gelu"), VARIANTS[-1]])
def test_overfits_a_fixed_batch(pos: str, norm: str, mlp: str) -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(**TINY, pos=pos, norm=norm, mlp=mlp))
    idx = torch.randint(0, 64, (4, 17))
    x, y = idx[:, :-1], idx[:, 1:]
    opt = torch.optim.AdamW(model.param_groups(weight_decay=0.0), lr=1e-2)
    for _ in range(150):
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    assert loss.item() < 0.1  # from ln(64) = 4.16: the model memorised the batch


def test_targets_of_minus_one_are_ignored() -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(**TINY)).eval()
    idx = torch.randint(0, 64, (2, 16))
    masked = idx.clone()
    masked[:, 8:] = -1
    with torch.no_grad():
        logits, loss = model(idx, masked)
    expected = nn.functional.cross_entropy(logits[:, :8].reshape(-1, 64), idx[:, :8].reshape(-1))
    torch.testing.assert_close(loss, expected)


def test_rejects_sequences_longer_than_the_context() -> None:
    model = GPT(GPTConfig(**TINY))
    with pytest.raises(ValueError, match="model.seq_len=16"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_bf16_autocast_runs_every_option() -> None:
    model = GPT(GPTConfig(**TINY, pos="rope", norm="rmsnorm", mlp="swiglu"))
    idx = torch.randint(0, 64, (2, 16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, loss = model(idx, idx)
    loss.backward()
    assert math.isfinite(loss.item())


def test_rope_tables_are_buffers_outside_the_state_dict() -> None:
    model = GPT(GPTConfig(**TINY, pos="rope"))
    assert model.wpe is None
    names = {name for name, _ in model.named_buffers()}
    assert "blocks.0.attn.rotary.cos" in names
    assert not any(k.endswith(("cos", "sin")) for k in model.state_dict())


def test_tied_embeddings_share_one_matrix() -> None:
    tied = GPT(GPTConfig(**TINY))
    assert tied.lm_head.weight is tied.wte.weight
    untied = GPT(GPTConfig(**TINY, tie_embeddings=False))
    assert untied.lm_head.weight is not untied.wte.weight


def test_init_scales_residual_projections_by_depth() -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=8, d_model=256, n_head=4))
    std_qkv = model.blocks[0].attn.c_attn.weight.std().item()
    std_proj = model.blocks[0].attn.c_proj.weight.std().item()
    assert std_qkv == pytest.approx(0.02, rel=0.05)
    assert std_proj == pytest.approx(0.02 / math.sqrt(2 * 8), rel=0.05)


@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("pos,norm,mlp", [("learned", "layernorm", "gelu"), VARIANTS[-1]])
def test_param_groups_decay_only_linear_weights(tie: bool, pos: str, norm: str, mlp: str) -> None:
    model = GPT(GPTConfig(**TINY, pos=pos, norm=norm, mlp=mlp, tie_embeddings=tie))
    decay, no_decay = model.param_groups(weight_decay=0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0

    grouped = [id(p) for p in decay["params"] + no_decay["params"]]
    assert len(grouped) == len(set(grouped))  # nothing twice (the tied matrix included)
    assert set(grouped) == {id(p) for p in model.parameters()}  # nothing left out

    decayed = {id(p) for p in decay["params"]}
    names = {id(p): n for n, p in model.named_parameters()}
    for pid in decayed:
        assert names[pid].endswith(".weight") and "ln_" not in names[pid]
    assert id(model.wte.weight) not in decayed
    if model.wpe is not None:
        assert id(model.wpe.weight) not in decayed
    assert all(p.dim() == 2 for p in decay["params"])
    assert all(id(p) not in decayed for n, p in model.named_parameters() if n.endswith(".bias"))
    # Every attention/MLP matrix is decayed: 2 attention + 2 (gelu) or 3 (swiglu) per block.
    per_block = 2 + (3 if mlp == "swiglu" else 2)
    assert len(decay["params"]) == TINY["n_layer"] * per_block + (0 if tie else 1)
    torch.optim.AdamW([decay, no_decay], lr=1e-3)  # accepted as-is by the optimizer
