"""A GPT-style decoder-only language model in plain torch (no Lightning).

Reads top to bottom: :class:`GPTConfig` -> :class:`CausalSelfAttention` -> :class:`MLP` ->
:class:`Block` -> :class:`GPT`. Defaults are nanoGPT's (GPT-2) choices: learned positions,
LayerNorm, GELU, biases, tied input/output embeddings. The options the scaling-law literature
varies -- rotary positions (Su et al. 2021), RMSNorm (Zhang & Sennrich 2019), SwiGLU (Shazeer
2020) -- are one config field each.

The config (:class:`scaling.config.GPTConfig`) and the parameter counts and FLOPs
(:mod:`scaling.counting`, computed from the config) live in the pure core; the tests check the
counts match this module exactly.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from scaling.config import GPTConfig


def _norm(cfg: GPTConfig) -> nn.Module:
    if cfg.norm == "rmsnorm":
        return nn.RMSNorm(cfg.d_model, eps=1e-5)
    return nn.LayerNorm(cfg.d_model, eps=1e-5, bias=cfg.bias)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (Su et al. 2021), GPT-NeoX "rotate half" layout.

    cos/sin are computed once for the whole context and kept as non-persistent buffers: they
    follow ``.to(device)`` but stay out of the state dict, and no parameter exists to count.
    """

    def __init__(self, head_dim: int, seq_len: int, base: float = 10000.0) -> None:
        super().__init__()
        inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        angles = torch.outer(torch.arange(seq_len, dtype=torch.float32), inv_freq)  # (T, hd/2)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, nh, T, hd)
        T = x.size(-2)
        cos = self.cos[:T].to(x.dtype)  # (T, hd/2), broadcast over B and heads
        sin = self.sin[:T].to(x.dtype)
        x1, x2 = x.chunk(2, dim=-1)  # (B, nh, T, hd/2) each
        return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.dropout = cfg.dropout
        # One fused matmul for q, k and v: fewer, larger kernels are faster on CPU and GPU.
        self.c_attn = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)
        self.c_proj.residual_proj = True  # scaled init, see GPT._init_weights
        self.resid_dropout = nn.Dropout(cfg.dropout)
        self.rotary = RotaryEmbedding(cfg.attn_head_dim, cfg.seq_len) if cfg.pos == "rope" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)  # (B, T, C) each
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hd)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        if self.rotary is not None:
            q, k = self.rotary(q), self.rotary(k)
        # Fused (flash / memory-efficient) kernel; is_causal applies the lower-triangular mask.
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )  # (B, nh, T, hd)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble heads: (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.swiglu = cfg.mlp == "swiglu"
        hidden = cfg.mlp_dim
        self.c_fc = nn.Linear(cfg.d_model, hidden, bias=cfg.bias)
        if self.swiglu:
            # SwiGLU: silu(x W_gate) * (x W), Shazeer 2020 "GLU Variants Improve Transformer".
            self.c_gate = nn.Linear(cfg.d_model, hidden, bias=cfg.bias)
        self.c_proj = nn.Linear(hidden, cfg.d_model, bias=cfg.bias)
        self.c_proj.residual_proj = True
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.swiglu:
            h = F.silu(self.c_gate(x)) * self.c_fc(x)  # (B, T, d_ff)
        else:
            h = F.gelu(self.c_fc(x))  # (B, T, d_ff); exact erf GELU
        return self.dropout(self.c_proj(h))  # (B, T, C)


class Block(nn.Module):
    """Pre-norm residual block (GPT-2): x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = _norm(cfg)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = _norm(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.d_model)  # token embedding
        self.wpe = nn.Embedding(cfg.seq_len, cfg.d_model) if cfg.pos == "learned" else None
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = _norm(cfg)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            # Weight tying (Press & Wolf 2017), as in GPT-2: one matrix embeds and un-embeds.
            self.lm_head.weight = self.wte.weight
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        # GPT-2 init: N(0, 0.02) everywhere; projections that write into the residual stream are
        # scaled by 1/sqrt(2 n_layer) so its variance does not grow with depth (two per block).
        if isinstance(module, nn.Linear):
            std = 0.02
            if getattr(module, "residual_proj", False):
                std /= math.sqrt(2 * self.config.n_layer)
            if module.weight is not getattr(self.wte, "weight", None):
                nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits ``(B, T, vocab)`` for token ids ``(B, T)``; with ``targets`` ``(B, T)`` also the
        mean cross-entropy in nats/token (targets of -1 are ignored)."""
        B, T = idx.size()
        if T > self.config.seq_len:
            raise ValueError(f"sequence of {T} tokens exceeds model.seq_len={self.config.seq_len}")
        x = self.wte(idx)  # (B, T, C)
        if self.wpe is not None:
            x = x + self.wpe.weight[:T]  # (T, C) broadcast over the batch
        x = self.drop(x)
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        logits = self.lm_head(x)  # (B, T, vocab)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(
                logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1
            )
        return logits, loss

    def param_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """AdamW parameter groups: decay only the 2-D weights of linear layers.

        Norm gains, biases and embeddings (``wte``, ``wpe``, and the tied ``lm_head``, which is
        ``wte``) get no decay: shrinking them toward zero only rescales activations or starves
        rare tokens. Every parameter appears in exactly one group.
        """
        embeddings = {id(m.weight) for m in (self.wte, self.wpe) if m is not None}
        linear_weights = {
            id(m.weight) for m in self.modules() if isinstance(m, nn.Linear)
        } - embeddings
        decay, no_decay = [], []
        for p in self.parameters():  # deduplicated: a tied weight is yielded once
            if not p.requires_grad:
                continue
            (decay if id(p) in linear_weights and p.dim() == 2 else no_decay).append(p)
        return [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
