"""The curve forms ``scaling fit --law curve`` fits (``--curve-form``), one definition each.

A form says what the fit and the predictions need of a law of the loss curve: its parameter
names, equation and citation; its points (what it reads of a run's LR at the evaluated steps);
its loss and Jacobian there; its fit (with a ``start``: one refit from there, what the bootstrap
asks).  Adding a form is one :class:`CurveForm` here.

- ``mpl`` (default): the multi-power law of Luo et al. 2025 (:mod:`.mpl`).
- ``tissue``: Tissue et al. 2024's law with a linear annealing term (:mod:`.law`,
  :mod:`.tissue`), kept for comparison.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from scaling.analysis.curves import law as tissue_law
from scaling.analysis.curves import mpl
from scaling.analysis.curves.law import FORM_NAMES, schedule_areas
from scaling.analysis.curves.tissue import (
    ALPHA_GRID_SIZE,
    BOOT_GRID_SIZE,
    TissuePoints,
    fit_points,
    tissue_jacobian,
    tissue_loss,
)
from scaling.errors import UserError

Array = np.ndarray


@dataclass(frozen=True)
class CurveForm:
    """One law of the loss curve: what the fit, the bootstrap and predictions call."""

    name: str
    equation: str
    citation: str
    params: tuple[str, ...]
    definitions: dict[str, str]
    # points(eta, steps, lam, max_blocks): the form's points at steps of a run with LRs eta
    points: Callable[[Array, Array, float, int], Any]
    concat: Callable[[Sequence[Any]], Any]
    loss: Callable[[Sequence[float] | Array, Any], Array]
    jacobian: Callable[[Sequence[float] | Array, Any], Array]
    # fit(points, loss, weights, start) -> (theta, objective)
    fit: Callable[..., tuple[Array, float]]
    # the parameter that needs an LR drop to be identified (warned about without one)
    annealing_param: str
    uses_lambda: bool = False

    def anneals(self, pts: Any) -> bool:
        """Whether any point sees an LR drop after warmup."""
        if isinstance(pts, TissuePoints):
            return bool(np.any(pts.S2 != 0))
        return bool(np.any(pts.drop != 0))


def _tissue_points(eta: Array, steps: Array, lam: float, max_blocks: int) -> TissuePoints:
    S1, S2 = schedule_areas(eta, 1.0, lam)
    return TissuePoints(S1[steps], S2[steps])


def _tissue_fit(
    pts: TissuePoints, loss: Array, weights: Array | None = None, start: Array | None = None
) -> tuple[Array, float]:
    """Tissue's profile fit: the full alpha grid, fewer starts for a refit (``start``)."""
    grid = ALPHA_GRID_SIZE if start is None else BOOT_GRID_SIZE
    return fit_points(pts.S1, pts.S2, loss, weights, grid)


def _mpl_points(eta: Array, steps: Array, lam: float, max_blocks: int) -> mpl.MPLPoints:
    return mpl.mpl_points(eta, steps, max_blocks)


def _mpl_fit(
    pts: mpl.MPLPoints, loss: Array, weights: Array | None = None, start: Array | None = None
) -> tuple[Array, float]:
    return mpl.fit_mpl(pts, loss, weights, start, max_nfev=200 if start is None else 60)


MPL = CurveForm(
    name=mpl.NAME,
    equation=mpl.EQUATION,
    citation=mpl.CITATION,
    params=mpl.PARAMS,
    definitions=mpl.DEFINITIONS,
    points=_mpl_points,
    concat=mpl.MPLPoints.concat,
    loss=mpl.mpl_loss,
    jacobian=mpl.mpl_jacobian,
    fit=_mpl_fit,
    annealing_param="B",
)
TISSUE = CurveForm(
    name="tissue",
    equation=tissue_law.EQUATION,
    citation=tissue_law.CITATION,
    params=tissue_law.PARAMS,
    definitions={
        "S1": "sum_{i<s} eta_i",
        "S2": "sum_{i<s} m_i, m_0 = 0, m_i = lam*m_{i-1} + (eta_{i-1} - eta_i)",
        "objective": "sum of squared relative residuals ((L - L_hat)/L)^2, L0, A, C >= 0",
    },
    points=_tissue_points,
    concat=TissuePoints.concat,
    loss=tissue_loss,
    jacobian=tissue_jacobian,
    fit=_tissue_fit,
    annealing_param="C",
    uses_lambda=True,
)
FORMS = {f.name: f for f in (MPL, TISSUE)}
assert tuple(FORMS) == FORM_NAMES


def form_of(name: str) -> CurveForm:
    """The form called ``name``; raises :class:`UserError` for another name."""
    try:
        return FORMS[name]
    except KeyError:
        raise UserError(f"curve form {name!r} is not one of {', '.join(FORMS)}") from None
