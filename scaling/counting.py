"""Parameter counts and FLOPs per token: the one place the project counts them.

Everything here is analytic -- computed from the config, never from a built module -- so the
analysis side (fitting, allocation, predict) can import it without torch, and a sweep can size a
grid before any model exists. ``tests/test_counting.py`` checks every count against
``sum(p.numel())`` of the real :class:`scaling.training.model.GPT`.

Parameter groups (returned together so analysis can pick its convention):

- ``params``: everything trained, tied weights counted once (Chinchilla's ``N``; what 6ND uses).
- ``params_embed``: the vocabulary and position matrices: ``wte``, ``wpe`` (learned positions)
  and an untied ``lm_head``.
- ``params_nonembed``: ``params - params_embed`` (Kaplan et al. 2020's ``N``, which excludes "all
  vocabulary and positional embeddings").

FLOPs conventions (training FLOPs per token: forward + backward):

- ``"6N"``: ``6 * params``. Chinchilla's ``C = 6ND`` with ``N`` counting all parameters.
- ``"6N+attn"``: Kaplan et al. 2020, Table 1: ``C_forward = 2N + 2 n_layer n_ctx d_attn`` with
  ``N`` non-embedding; training is 3x forward, so ``6N + 6 n_layer seq_len d_model``.
- ``"chinchilla"``: Hoffmann et al. 2022, Appendix F, term by term (embeddings, attention, dense
  block, final logits; backward = 2x forward), per sequence / ``seq_len``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from scaling.errors import ConfigError


class ModelShape(Protocol):
    """What counting reads of a model config (:class:`scaling.config.GPTConfig` or any object
    with these attributes; ``d_ff, pos, norm, mlp, bias, tie_embeddings`` are optional)."""

    vocab_size: int
    seq_len: int
    n_layer: int
    n_head: int
    d_model: int


# numbers or numpy arrays: the analysis side applies C = 6ND to whole columns at once
Num = TypeVar("Num")

FLOPS_CONVENTIONS = ("6N", "6N+attn", "chinchilla")

# Spellings accepted on input besides the canonical names. "6N_attn" is the form used in logged
# keys: MLflow names may not contain "+".
_CONVENTION_ALIASES = {"6N_attn": "6N+attn", "kaplan": "6N+attn"}


def default_d_ff(d_model: int, mlp: str = "gelu") -> int:
    """Hidden width of the MLP when ``model.d_ff`` is not set.

    GELU: ``4 * d_model`` (GPT-2). SwiGLU has three matrices instead of two, so Shazeer (2020) and
    LLaMA shrink the width to ``8/3 * d_model`` to keep parameters and FLOPs equal to the GELU
    MLP; we round that up to a multiple of 64 (LLaMA's ``multiple_of``) so matmuls stay
    tile-friendly. E.g. d_model 128 -> 384, 768 -> 2048.
    """
    if mlp == "swiglu":
        return 64 * math.ceil(8 * d_model / 3 / 64)
    return 4 * d_model


def _arch(cfg: ModelShape | Any) -> dict[str, Any]:
    """Read the fields counting needs from any object shaped like :class:`GPTConfig`.

    Optional fields fall back to GPT-2's choices (GELU, LayerNorm, learned positions, biases,
    tied embeddings), so a plain namespace or an OmegaConf node holding only ``vocab_size,
    seq_len, n_layer, n_head, d_model`` counts like the default model.
    """
    d_model = int(cfg.d_model)
    mlp = getattr(cfg, "mlp", "gelu")
    d_ff = getattr(cfg, "d_ff", None)
    return {
        "vocab_size": int(cfg.vocab_size),
        "seq_len": int(cfg.seq_len),
        "n_layer": int(cfg.n_layer),
        "n_head": int(cfg.n_head),
        "d_model": d_model,
        "d_ff": int(d_ff) if d_ff is not None else default_d_ff(d_model, mlp),
        "pos": getattr(cfg, "pos", "learned"),
        "norm": getattr(cfg, "norm", "layernorm"),
        "mlp": mlp,
        "bias": bool(getattr(cfg, "bias", True)),
        "tie_embeddings": bool(getattr(cfg, "tie_embeddings", True)),
    }


# ---------------------------------------------------------------------------------------------
# Parameters


@dataclass(frozen=True)
class ParamCounts:
    """Parameter groups of one model; ``total == embedding + nonembedding``."""

    embedding: int
    nonembedding: int
    total: int

    def as_dict(self) -> dict[str, int]:
        """The groups under the names the run table and MLflow use."""
        return {
            "params_embed": self.embedding,
            "params_nonembed": self.nonembedding,
            "params": self.total,
        }


def count_params(cfg: ModelShape) -> ParamCounts:
    """Count the parameters of ``GPT(cfg)`` analytically, tied weights once.

    Mirrors ``scaling/model.py`` module by module; any change there must change this too (the
    tests compare the two for every option combination).
    """
    a = _arch(cfg)
    d, f, b = a["d_model"], a["d_ff"], a["bias"]

    # LayerNorm has a weight and (with bias) a shift; RMSNorm only a weight.
    norm = d + (d if b and a["norm"] == "layernorm" else 0)
    attn = d * 3 * d + (3 * d if b else 0)  # fused q, k, v projection
    attn += d * d + (d if b else 0)  # output projection
    n_in = 2 if a["mlp"] == "swiglu" else 1  # SwiGLU: gate and value projections
    mlp = n_in * (d * f + (f if b else 0))
    mlp += f * d + (d if b else 0)  # down projection
    per_layer = 2 * norm + attn + mlp

    wte = a["vocab_size"] * d
    wpe = a["seq_len"] * d if a["pos"] == "learned" else 0  # RoPE has no parameters
    lm_head = 0 if a["tie_embeddings"] else a["vocab_size"] * d  # no bias, as in GPT-2

    embedding = wte + wpe + lm_head
    nonembedding = a["n_layer"] * per_layer + norm  # + final norm
    return ParamCounts(
        embedding=embedding, nonembedding=nonembedding, total=embedding + nonembedding
    )


# ---------------------------------------------------------------------------------------------
# FLOPs


def chinchilla_flops_per_sequence(
    *,
    seq_len: int,
    vocab_size: int,
    d_model: int,
    ffw_size: int,
    n_heads: int,
    kv_size: int,
    n_layers: int,
    ffw_matrices: int = 2,
    include_embeddings: bool = True,
) -> float:
    """Training FLOPs (forward + backward) for one sequence, Hoffmann et al. 2022, Appendix F.

    Names follow the paper's Table A4 (``kv_size`` is the per-head key/query size, which need
    not equal ``d_model / n_heads``). ``ffw_matrices`` generalises the dense block to SwiGLU's
    three ``d_model x ffw_size`` matrices (the paper's model has two).

    ``include_embeddings=False`` drops the embedding and final-logit terms. The appendix text
    lists them, but Table A4's published ratios are reproduced only without them (to two
    decimals, all six rows; with them the 305M row would be 1.31, not 1.10).
    """
    attn_width = kv_size * n_heads
    qkv = 2 * 3 * seq_len * d_model * attn_width
    logits_qk = 2 * seq_len * seq_len * attn_width
    softmax = 3 * n_heads * seq_len * seq_len  # max-subtract, exp, divide
    softmax_v = 2 * seq_len * seq_len * attn_width
    out_proj = 2 * seq_len * attn_width * d_model
    attention = qkv + logits_qk + softmax + softmax_v + out_proj
    dense = 2 * seq_len * ffw_matrices * d_model * ffw_size

    forward = n_layers * (attention + dense)
    if include_embeddings:
        forward += 2 * seq_len * vocab_size * d_model  # embeddings (as a one-hot matmul)
        forward += 2 * seq_len * d_model * vocab_size  # final logits
    return float(3 * forward)  # backward = 2x forward


def chinchilla_paper_params(
    *, vocab_size: int, d_model: int, ffw_size: int, n_heads: int, kv_size: int, n_layers: int
) -> int:
    """Parameters of a Chinchilla/Gopher-architecture model (the ``N`` of Table A4's 6ND).

    Not our architecture: Transformer-XL relative positions (a relative-key projection and two
    bias vectors per layer), untied output matrix, input embedding not counted. This is the
    reconstruction in nanoGPT's ``scaling_laws.ipynb``; it reproduces Table A9's sizes to within
    a few percent and Table A4's ratios exactly (to the published two decimals).
    """
    d, f, attn_width = d_model, ffw_size, n_heads * kv_size
    attention = 3 * d * attn_width + 3 * attn_width  # q, k, v weights and biases
    relative_pos = d * attn_width + 2 * attn_width  # relative keys, content and position biases
    out_proj = attn_width * d + d
    ffw = d * f + f + f * d + d
    layernorms = 2 * 2 * d
    per_layer = attention + relative_pos + out_proj + ffw + layernorms
    return n_layers * per_layer + 2 * d + d * vocab_size  # + final norm + output matrix


# ---- C = 6ND --------------------------------------------------------------------------------
# Kaplan et al. 2020 (Sec. 2.1) and Hoffmann et al. 2022: training costs ~6 FLOPs per parameter
# per token (2 forward, 4 backward). The analysis side works with (N, D, C) columns and budgets;
# these two functions and FLOPS_PER_PARAM_TOKEN (N·D = C/6) are its only way between them.

FLOPS_PER_PARAM_TOKEN = 6.0


def compute_from(params: Num, tokens: Num) -> Num:
    """Training compute ``C = 6 N D`` of ``params`` trained on ``tokens`` (scalars or arrays)."""
    return FLOPS_PER_PARAM_TOKEN * params * tokens  # type: ignore[operator,return-value]


def tokens_from_compute(flops: Num, params: Num) -> Num:
    """Tokens ``D = C / 6N`` that a budget of ``flops`` buys a model of ``params``."""
    return flops / (FLOPS_PER_PARAM_TOKEN * params)  # type: ignore[operator,return-value]


def _canonical(convention: str) -> str:
    name = _CONVENTION_ALIASES.get(convention, convention)
    if name not in FLOPS_CONVENTIONS:
        valid = ", ".join(FLOPS_CONVENTIONS)
        raise ConfigError(f"unknown FLOPs convention {convention!r}: choose one of {valid}")
    return name


def flops_per_token(cfg: ModelShape, convention: str = "6N") -> float:
    """Training FLOPs (forward + backward) per token of ``GPT(cfg)`` under ``convention``."""
    name = _canonical(convention)
    a = _arch(cfg)
    counts = count_params(cfg)
    if name == "6N":
        return compute_from(float(counts.total), 1.0)
    if name == "6N+attn":
        # Kaplan et al. 2020, Table 1: 2 n_layer n_ctx d_attn per token forward for the
        # attention scores and their weighted sum; d_attn = d_model here.
        return 6.0 * counts.nonembedding + 6.0 * a["n_layer"] * a["seq_len"] * a["d_model"]
    per_sequence = chinchilla_flops_per_sequence(
        seq_len=a["seq_len"],
        vocab_size=a["vocab_size"],
        d_model=a["d_model"],
        ffw_size=a["d_ff"],
        n_heads=a["n_head"],
        kv_size=a["d_model"] // a["n_head"],
        n_layers=a["n_layer"],
        ffw_matrices=3 if a["mlp"] == "swiglu" else 2,
    )
    return per_sequence / a["seq_len"]


def flops_for_tokens(cfg: ModelShape, tokens: int, convention: str = "6N") -> float:
    """Training FLOPs to train ``GPT(cfg)`` on ``tokens`` tokens."""
    if not tokens >= 0:
        raise ConfigError(f"train.tokens={tokens} must be a non-negative number of tokens")
    return flops_per_token(cfg, convention) * tokens


def tokens_for_flops(cfg: ModelShape, flops: float, convention: str = "6N") -> int:
    """Whole tokens that fit in a budget of ``flops`` training FLOPs (rounded down)."""
    if not (flops >= 0 and math.isfinite(flops)):
        raise ConfigError(f"train.flops={flops} must be a finite, non-negative FLOPs budget")
    tokens = flops / flops_per_token(cfg, convention)
    # Round down, but forgive float error: flops_for_tokens(cfg, D) must give back exactly D.
    nearest = round(tokens)
    return nearest if abs(tokens - nearest) <= 1e-9 * max(1.0, tokens) else math.floor(tokens)


def convention_slug(convention: str) -> str:
    """A convention's name as it appears in MLflow keys and run-table columns (``+`` -> ``_``:
    MLflow names may not contain ``+``), e.g. ``6N+attn`` -> ``6N_attn``."""
    return _canonical(convention).replace("+", "_")


def all_conventions(cfg: ModelShape, tokens: int) -> dict[str, float]:
    """Training FLOPs and FLOPs per token under every convention, under the MLflow param names
    ``flops.<slug>`` and ``flops_per_token.<slug>``."""
    out: dict[str, float] = {}
    for name in FLOPS_CONVENTIONS:
        slug = convention_slug(name)
        out[f"flops.{slug}"] = flops_for_tokens(cfg, tokens, name)
        out[f"flops_per_token.{slug}"] = flops_per_token(cfg, name)
    return out
