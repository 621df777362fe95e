"""The shape catalogue: every valid model shape of a family, by parameter count.

A model's shape follows its own aspect rule (``d_model = aspect · n_layer``, ``n_head =
d_model // head_dim``), so the achievable sizes are discrete.  ``scaling plan`` snaps each wanted
size of a ladder to one of these shapes and ``scaling verify`` snaps the predicted optimum to the
nearest; each shape's parameters come from :func:`scaling.counting.count_params`, as the run
counts them.

Families (:data:`SHAPE_FAMILIES`): ``aspect``, one shape per depth; ``free``, ``d_model`` any
multiple of ``head_dim`` within a factor of two of the aspect, which makes the sizes nearly
continuous.

Pure: the core only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol

from scaling.config import GPTConfig
from scaling.counting import count_params

SHAPE_FAMILIES = ("aspect", "free")
SNAP_TOLERANCE = 0.04  # decades: free shapes this close to a wanted size count as equal
_FREE_ASPECT = 2.0  # free shapes: d_model / n_layer within [aspect / 2, aspect * 2]
_MAX_LAYERS = 512  # the shape search stops here (about 1e10 parameters at aspect 16)


class ShapeOptions(Protocol):
    """What picks a catalogue: the family and the model keys that change a shape's size
    (:class:`~scaling.analysis.design.options.PlanOptions` has them)."""

    @property
    def shapes(self) -> str: ...  # a family of SHAPE_FAMILIES
    @property
    def seq_len(self) -> int: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def head_dim(self) -> int: ...


@dataclass(frozen=True)
class Shape:
    """A valid model: ``d_model`` (a multiple of ``head_dim`` in the ``free`` family) decides
    ``n_head = d_model // head_dim``."""

    n_layer: int
    d_model: int
    n_head: int
    params: int
    model: GPTConfig = field(repr=False, compare=False)

    @property
    def aspect(self) -> float:
        return self.d_model / self.n_layer


@lru_cache(maxsize=32)
def _family(
    family: str, seq_len: int, vocab_size: int, n_max: int, head_dim: int = GPTConfig.head_dim
) -> tuple[Shape, ...]:
    """Every shape of ``family`` with ``n_layer <= n_max``, by parameters.

    ``aspect``: the model's own rule, ``d_model = aspect · n_layer`` (one shape per depth).
    ``free``: ``d_model`` any multiple of ``head_dim`` with ``d_model / n_layer`` within a factor
    of two of the aspect (Kaplan et al. 2020, Fig. 5: loss is flat over such shapes), which makes
    the sizes nearly continuous.
    """
    base = GPTConfig(head_dim=head_dim)
    out = []
    for n_layer in range(1, n_max + 1):
        if family == "aspect":
            widths: Sequence[int | None] = [None]
        else:
            step = base.head_dim
            lo = max(step, step * math.ceil(base.aspect * n_layer / _FREE_ASPECT / step))
            hi = max(lo, step * math.floor(base.aspect * n_layer * _FREE_ASPECT / step))
            widths = range(lo, hi + 1, step)
        for width in widths:
            model = GPTConfig(
                n_layer=n_layer,
                d_model=width,
                head_dim=head_dim,
                seq_len=seq_len,
                vocab_size=vocab_size,
            )
            params = count_params(model).total
            out.append(Shape(n_layer, int(model.d_model), int(model.n_head), params, model))
    return tuple(sorted(out, key=lambda s: (s.params, s.n_layer)))


def shapes(opts: ShapeOptions, max_params: float) -> tuple[Shape, ...]:
    """The shapes of ``opts.shapes`` up to (at least) ``max_params`` parameters."""
    n_max = 16
    while n_max < _MAX_LAYERS:
        # the narrowest shape of depth n_max is above max_params: deeper ones are too
        width = max(16, int(GPTConfig().aspect * n_max / _FREE_ASPECT))
        narrow = GPTConfig(
            n_layer=n_max,
            d_model=width,
            head_dim=opts.head_dim,
            seq_len=opts.seq_len,
            vocab_size=opts.vocab_size,
        )
        if count_params(narrow).total > max_params:
            break
        n_max *= 2
    n_max = min(n_max, _MAX_LAYERS)
    return _family(opts.shapes, opts.seq_len, opts.vocab_size, n_max, opts.head_dim)


@dataclass(frozen=True)
class Catalogue:
    """A shape family and the model keys that size its shapes (a :class:`ShapeOptions`)."""

    shapes: str
    seq_len: int
    vocab_size: int
    head_dim: int = GPTConfig.head_dim


def nearest_shape(
    params: float,
    seq_len: int,
    vocab_size: int,
    family: str = "aspect",
    head_dim: int = GPTConfig.head_dim,
) -> Shape:
    """The valid model shape ``scaling verify`` trains for a predicted size: among the shapes
    within :data:`SNAP_TOLERANCE` decades of the nearest to ``params`` (log space), the one whose
    aspect is closest to the model's default, as ``scaling plan`` picks a ladder's sizes (a free
    shape of another depth and width at the same size can differ in loss by more than the noise)."""
    candidates = shapes(Catalogue(family, seq_len, vocab_size, head_dim), max_params=params * 4)
    return snap(candidates, math.log10(params))


def snap(candidates: Sequence[Shape], log10_params: float) -> Shape:
    """Of ``candidates``, those within :data:`SNAP_TOLERANCE` decades of the nearest to
    ``10**log10_params``, the one whose aspect is closest to the model's default (then the
    nearest): how a planned size and a verified size become a shape."""
    dist = {s: abs(math.log10(s.params) - log10_params) for s in candidates}
    best = min(dist.values())
    near = [s for s in candidates if dist[s] <= best + SNAP_TOLERANCE]
    aspect = GPTConfig().aspect
    return min(near, key=lambda s: (abs(math.log2(s.aspect / aspect)), dist[s]))
