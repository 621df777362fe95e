"""``data=markov``: a synthetic corpus with a known floor, a seeded first-order Markov chain over
``data.states`` tokens (Dirichlet rows of ``data.concentration``).

The chain's exact entropy rate (nats/token) is the loss no model can beat; runs on
``data=markov`` log it as ``data.entropy_rate``. Its tokens are the chain's states: it has no
documents (``data.process`` refuses it) and no tokenizer (its tokenizer id is ``markov<states>``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from scaling.errors import ConfigError
from scaling.sources.base import DataSettings, Source

MAX_MARKOV_TOKENS = 10**9  # sampling holds 16 bytes a token in memory


@dataclass(frozen=True)
class MarkovKeys:
    states: int = 64
    concentration: float = 0.1  # Dirichlet concentration of transition rows: lower = less entropy
    markov_seed: int = 0
    corpus_tokens: int = 4_000_000


class MarkovSource(Source):
    """``data.corpus_tokens`` states of the chain ``(data.states, data.concentration,
    data.markov_seed)``."""

    name = "markov"
    keys = MarkovKeys
    tokens_are = "sampled"

    @classmethod
    def check(cls, cfg: DataSettings) -> None:
        if not 2 <= cfg.states <= 65535:
            raise ConfigError(f"data.states={cfg.states} must be between 2 and 65535")
        if not (cfg.concentration > 0 and math.isfinite(cfg.concentration)):
            raise ConfigError(
                f"data.concentration={cfg.concentration} must be a positive, finite number "
                "(e.g. data.concentration=0.1)"
            )
        if not 1 <= cfg.corpus_tokens <= MAX_MARKOV_TOKENS:
            raise ConfigError(
                f"data.corpus_tokens={cfg.corpus_tokens:,} must be between 1 and "
                f"{MAX_MARKOV_TOKENS:,} (e.g. data.corpus_tokens=4000000)"
            )

    @classmethod
    def identity(cls, cfg: DataSettings) -> dict[str, Any]:
        # data.states is in the tokenizer id (markov<states>)
        return {
            "concentration": cfg.concentration,
            "markov_seed": cfg.markov_seed,
            "corpus_tokens": cfg.corpus_tokens,
        }

    @classmethod
    def token_vocab(cls, cfg: DataSettings) -> int | None:
        return cfg.states

    def __init__(self, cfg: DataSettings) -> None:
        self.cfg = cfg
        self.label = f"markov-s{cfg.states}-c{cfg.concentration:g}-seed{cfg.markov_seed}"
        self.where = f"the markov source ({self.label})"

    def fingerprint(self) -> Any:
        c = self.cfg
        return [self.label, c.states, c.concentration, c.markov_seed, c.corpus_tokens]

    def tokens(self) -> tuple[np.ndarray, dict[str, Any]]:
        c = self.cfg
        P = markov_chain(c.states, c.concentration, c.markov_seed)
        ids = sample_markov(P, c.corpus_tokens, c.markov_seed)
        return ids, {"entropy_rate": entropy_rate(P)}


def markov_chain(states: int, concentration: float, seed: int) -> np.ndarray:
    """Transition matrix ``P[i, j] = p(next=j | current=i)``, rows ~ Dirichlet(concentration)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x6D61726B]))
    return rng.dirichlet(np.full(states, concentration), size=states)


def stationary_distribution(P: np.ndarray) -> np.ndarray:
    """pi with pi P = pi, sum(pi) = 1 (least squares; the chain is irreducible a.s.)."""
    n = P.shape[0]
    A = np.vstack([P.T - np.eye(n), np.ones((1, n))])
    b = np.zeros(n + 1)
    b[-1] = 1.0
    pi = np.linalg.lstsq(A, b, rcond=None)[0]
    pi = np.clip(pi, 0.0, None)
    return pi / pi.sum()


def entropy_rate(P: np.ndarray) -> float:
    """Entropy rate of a stationary first-order chain, nats/token: H = sum_i pi_i H(P_i)."""
    pi = stationary_distribution(P)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(P > 0, P * np.log(P), 0.0)
    return float(-(pi * plogp.sum(axis=1)).sum())


def sample_markov(P: np.ndarray, n_tokens: int, seed: int, n_chains: int = 256) -> np.ndarray:
    """``n_tokens`` states from ``n_chains`` stationary chains run side by side, concatenated.

    Each chain starts from the stationary distribution, so the stream is stationary except at
    the ``n_chains - 1`` joins (under 0.01% of transitions at the default 4M tokens). One
    vectorised inverse-CDF step moves every chain: the rows' CDFs, shifted by their row index,
    form one sorted array, so ``searchsorted(cdf, state + u)`` samples each chain's next state.
    """
    S = P.shape[0]
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x73616D70]))
    n_chains = max(1, min(n_chains, n_tokens))
    steps = -(-n_tokens // n_chains)
    cdf = np.cumsum(P, axis=1)
    cdf[:, -1] = 1.0
    flat = (cdf + np.arange(S)[:, None]).ravel()
    out = np.empty((steps, n_chains), dtype=np.int64)
    pi = stationary_distribution(P)
    state = rng.choice(S, size=n_chains, p=pi)
    for t in range(steps):
        out[t] = state
        u = rng.random(n_chains)
        state = np.searchsorted(flat, state + u, side="right") - state * S
        np.minimum(state, S - 1, out=state)  # guard the float edge state + u == state + 1
    return out.T.ravel()[:n_tokens]
