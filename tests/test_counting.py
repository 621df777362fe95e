"""Parameter counts and FLOPs: exact against the model, and against published figures."""

from __future__ import annotations

import itertools
import math
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from scaling.config import GPTConfig
from scaling.counting import (
    FLOPS_CONVENTIONS,
    all_conventions,
    chinchilla_flops_per_sequence,
    chinchilla_paper_params,
    count_params,
    default_d_ff,
    flops_for_tokens,
    flops_per_token,
    tokens_for_flops,
)
from scaling.errors import ConfigError
from scaling.training.model import GPT

GPT2_SMALL = GPTConfig(vocab_size=50257, seq_len=1024, n_layer=12, n_head=12, d_model=768)

OPTIONS = list(
    itertools.product(
        ("learned", "rope"),
        ("layernorm", "rmsnorm"),
        ("gelu", "swiglu"),
        (True, False),
        (True, False),
    )
)
SHAPES = [
    dict(vocab_size=64, seq_len=16, n_layer=2, n_head=2, d_model=32),
    dict(vocab_size=101, seq_len=7, n_layer=1, n_head=3, d_model=48, d_ff=40),
    dict(vocab_size=256, seq_len=128, n_layer=3, n_head=4, d_model=96),
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _numel(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # parameters() yields a tied matrix once


@pytest.mark.parametrize("shape", SHAPES, ids=["tiny", "odd", "default-ish"])
@pytest.mark.parametrize(
    "pos,norm,mlp,bias,tie", OPTIONS, ids=["-".join(map(str, o)) for o in OPTIONS]
)
def test_count_params_equals_the_built_model(
    shape: dict, pos: str, norm: str, mlp: str, bias: bool, tie: bool
) -> None:
    cfg = GPTConfig(**shape, pos=pos, norm=norm, mlp=mlp, bias=bias, tie_embeddings=tie)
    model = GPT(cfg)
    counts = count_params(cfg)
    assert counts.total == _numel(model)
    embed = model.wte.weight.numel() + (model.wpe.weight.numel() if model.wpe is not None else 0)
    embed += 0 if tie else model.lm_head.weight.numel()
    assert counts.embedding == embed
    assert counts.nonembedding == counts.total - counts.embedding


def test_gpt2_small_is_the_published_124m() -> None:
    counts = count_params(GPT2_SMALL)
    assert counts.total == 124_439_808
    assert counts.nonembedding == 85_056_000  # Kaplan's N: ~85M for GPT-2 small
    assert counts.as_dict() == {
        "params_embed": 124_439_808 - 85_056_000,
        "params_nonembed": 85_056_000,
        "params": 124_439_808,
    }
    with torch.device("meta"):  # shapes only: no 500 MB allocation
        assert _numel(GPT(GPT2_SMALL)) == 124_439_808


# The default model (GPTConfig()): vocab 256, seq_len 128, 4 layers, d_model 64 (aspect 16),
# 4 heads, d_ff 256, learned positions, LayerNorm with biases, GELU, tied embeddings. By hand:
#   embedding      wte 256 x 64 + wpe 128 x 64                                      =  24,576
#   per layer      2 norms 2 x 128 + qkv 64 x 192 + 192 + proj 64 x 64 + 64
#                  + fc 64 x 256 + 256 + proj 256 x 64 + 64                          =  49,984
#   non-embedding  4 x 49,984 + final norm 128                                       = 200,064
DEFAULT_PARAMS = 224_640
# FLOPs per token: 6N = 6 x 224,640; 6N+attn = 6 x 200,064 + 6 x 4 layers x 128 x 64;
# chinchilla per sequence (x3 of forward): 4 x (attention 8,585,216 + dense 8,388,608)
#   + embeddings 4,194,304 + logits 4,194,304 = 76,283,904 forward -> 228,851,712 / 128.
DEFAULT_PER_TOKEN = {"6N": 1_347_840, "6N+attn": 1_396_992, "chinchilla": 1_787_904}


def test_the_default_model_counts_as_by_hand() -> None:
    counts = count_params(GPTConfig())
    assert (counts.embedding, counts.nonembedding, counts.total) == (24_576, 200_064, 224_640)
    for convention, per_token in DEFAULT_PER_TOKEN.items():
        assert flops_per_token(GPTConfig(), convention) == per_token


def test_counts_a_duck_typed_config_like_the_default_model() -> None:
    duck = SimpleNamespace(vocab_size=256, seq_len=128, n_layer=4, n_head=4, d_model=64)
    assert count_params(duck).total == DEFAULT_PARAMS
    assert flops_per_token(duck, "chinchilla") == DEFAULT_PER_TOKEN["chinchilla"]


def test_swiglu_default_width_keeps_the_mlp_about_the_size_of_gelu() -> None:
    assert default_d_ff(768, "gelu") == 3072
    assert default_d_ff(768, "swiglu") == 2048  # 8/3 * 768, already a multiple of 64
    assert default_d_ff(128, "swiglu") == 384  # 341.3 rounded up to a multiple of 64
    gelu = count_params(GPTConfig(d_model=768, n_head=12)).nonembedding
    swiglu = count_params(GPTConfig(d_model=768, n_head=12, mlp="swiglu")).nonembedding
    assert swiglu == pytest.approx(gelu, rel=0.01)


# Hoffmann et al. 2022 (Chinchilla), Appendix F, Table A4: (label, num_layers, d_model, ffw_size,
# num_heads, k/q size, FLOP ratio ours/6ND). Vocabulary 32,000 and sequence length 2,048.
TABLE_A4 = [
    ("73M", 10, 640, 2560, 10, 64, 1.03),
    ("305M", 20, 1024, 4096, 16, 64, 1.10),
    ("552M", 24, 1280, 5120, 10, 128, 1.08),
    ("1.1B", 26, 1792, 7168, 14, 128, 1.04),
    ("1.6B", 28, 2048, 8192, 16, 128, 1.03),
    ("6.8B", 40, 3584, 14336, 28, 128, 0.99),
]


@pytest.mark.parametrize("row", TABLE_A4, ids=[r[0] for r in TABLE_A4])
def test_chinchilla_table_a4_flop_ratio(row: tuple) -> None:
    label, n_layers, d_model, ffw_size, n_heads, kv_size, published = row
    shape = dict(d_model=d_model, ffw_size=ffw_size, n_heads=n_heads, kv_size=kv_size)
    seq_len = 2048
    flops = chinchilla_flops_per_sequence(
        seq_len=seq_len, vocab_size=32000, n_layers=n_layers, include_embeddings=False, **shape
    )
    n_params = chinchilla_paper_params(vocab_size=32000, n_layers=n_layers, **shape)
    ratio = flops / (6 * n_params * seq_len)  # one sequence: D = seq_len
    assert round(ratio, 2) == published
    scale = {"M": 1e6, "B": 1e9}[label[-1]]
    assert n_params == pytest.approx(float(label[:-1]) * scale, rel=0.04)


def test_conventions_follow_their_definitions() -> None:
    cfg = GPT2_SMALL
    assert flops_per_token(cfg) == flops_per_token(cfg, "6N") == 6 * 124_439_808
    # Kaplan et al. 2020 Table 1 (x3 for training): 6N_nonembed + 6 n_layer n_ctx d_model.
    assert flops_per_token(cfg, "6N+attn") == 6 * 85_056_000 + 6 * 12 * 1024 * 768
    # What a run logs: the hand-computed totals at 1,000 tokens, under MLflow names.
    logged = all_conventions(cfg, 1_000)
    assert logged["flops.6N"] == 6 * 124_439_808 * 1_000
    assert logged["flops.6N_attn"] == (6 * 85_056_000 + 6 * 12 * 1024 * 768) * 1_000
    assert logged["flops_per_token.6N"] == 6 * 124_439_808
    default = all_conventions(GPTConfig(), 1_000)
    assert default["flops.chinchilla"] == 1_787_904_000
    assert default["flops_per_token.chinchilla"] == 1_787_904


def test_logged_keys_are_valid_mlflow_names() -> None:
    for key in all_conventions(GPTConfig(), 10):
        assert re.fullmatch(r"[/\w.\- :]+", key), key


@pytest.mark.parametrize("convention", FLOPS_CONVENTIONS)
@pytest.mark.parametrize("tokens", [1, 1_000, 12_345_678, 10**12])
def test_tokens_and_flops_round_trip(convention: str, tokens: int) -> None:
    cfg = GPTConfig()
    flops = flops_for_tokens(cfg, tokens, convention)
    assert flops == DEFAULT_PER_TOKEN[convention] * tokens
    assert tokens_for_flops(cfg, flops, convention) == tokens
    assert tokens_for_flops(cfg, flops * 0.999999, convention) == math.floor(tokens * 0.999999)


def test_unknown_convention_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"6N, 6N\+attn, chinchilla"):
        flops_per_token(GPTConfig(), "6ND")
    assert flops_per_token(GPTConfig(), "6N_attn") == flops_per_token(GPTConfig(), "6N+attn")


def test_bad_budgets_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"train\.flops"):
        tokens_for_flops(GPTConfig(), -1.0)
    with pytest.raises(ConfigError, match=r"train\.flops"):
        tokens_for_flops(GPTConfig(), float("inf"))
    with pytest.raises(ConfigError, match=r"train\.tokens"):
        flops_for_tokens(GPTConfig(), -5)


def test_counting_imports_without_torch() -> None:
    # Analysis (fit, allocation, predict) must run on a laptop without the training stack.
    code = "import sys, scaling.counting; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
