"""Suspect runs: finished runs whose final loss lies far above where the rest of the ladder puts it.

A run that spiked and recovered badly, or drifted up and plateaued, finishes with a finite loss
that enters the fit as a point of the law. Two tests find such a run, both one-sided (a training
failure only raises a loss, and a spoiled run pulls its budget's parabola up, so its neighbours'
residuals fall: a two-sided test would flag them too):

* **its IsoFLOP budget**: the parabola of loss in ``ln N`` (:mod:`.isoflop`) fitted to the
  budget's *other* runs predicts the run's loss ``L̂``; the excess ``d = ln(L / L̂)`` is divided
  by ``sqrt(1 + g)``, ``g = xᵀ(XᵀX)⁻¹x`` of the run's size on that parabola, so that for every run
  it has the standard deviation of one run's noise (an edge run, which the others' parabola
  extrapolates to, needs a larger excess). A budget needs four distinct sizes for this (three for
  the others' parabola, one to test);
* **its seed replicates** (three or more runs that differ only in ``seed``,
  :func:`~.noise.replicate_groups`): ``d = ln L`` minus the mean of the others' ``ln L``, divided
  by ``sqrt(1 + 1/(m − 1))``.

A run is *suspect* when ``d`` exceeds the median of the ladder's ``d`` by more than :data:`K`
scales. The test is repeated without it (a forward search): the run with the largest ``d`` is
judged, and if suspect left out of every other run's parabola, seed group and scale, so that a
spoiled run does not make its neighbours look spoiled too. The scale is the largest of the
robust one, ``1.4826 x MAD`` of those ``d``
(Iglewicz & Hoaglin 1993; K = 3.5 is their cut-off for such a modified z-score: 2.3e-4 of normal
runs one-sided if the scale were known), the seed-replicate noise of the table measured robustly
(:func:`_replicate_sigma`: a clean ladder whose parabolas happen to fit tightly flags nothing its
seeds would not scatter; a spoiled run with a replicate does not raise it), and
:data:`MIN_SCALE`. A budget of five runs leaves its parabola two degrees of freedom, so the MAD
of a small ladder is a noisy scale: the floor is what keeps clean ladders quiet (README, "Loss
spikes and divergence", has the rates measured).

A suspect *decides a vertex* when it is its budget's least loss, or its size is the budget's
nearest to the vertex of the other runs' parabola (the run a spoiled vertex hides behind), or
when the parabola of the budget without it puts the vertex more than one standard error away
(the delta-method error of that vertex under the scale above) or has none: such a run is a
problem of the fit's health
(:mod:`scaling.analysis.prediction.health`), other suspects are warnings.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from scaling.analysis.columns import columns
from scaling.analysis.fitting.isoflop import budget_labels, fit_parabola
from scaling.analysis.fitting.noise import MAD_TO_SIGMA, MIN_REPLICATE_DOF, replicate_groups

Array = np.ndarray

K = 3.5  # robust scales above the ladder's median excess (Iglewicz & Hoaglin's modified z)
MIN_SCALE = 1e-3  # the scale is never below 0.1% of loss (noise-free synthetic ladders)
MIN_REPLICATES = 3  # a seed group tests its runs from this many replicates on
MAX_SHARE = 4  # no more than a quarter of the runs are suspects: beyond that the ladder is broken
BUDGET_TEST = "its IsoFLOP budget's other runs"
SEED_TEST = "its seed replicates"


def find_suspects(runs: pd.DataFrame, tolerance: float) -> dict[str, Any]:
    """The tests of the module docstring on the final rows ``runs`` (budgets as the IsoFLOP fit
    forms them, within ``tolerance`` decades when not by ``planned_flops``).

    Returns ``{"k", "scale", "robust_scale", "floor", "tested", "suspects": [...]}``, one dict
    per suspect run: ``run``, ``params``, ``flops`` (its budget's), ``loss``, ``expected``,
    ``excess`` (``d``, log loss), ``scales`` (``(d − median) / scale``), ``against`` (which
    test), ``decides_vertex`` and ``why`` (a phrase, or None).
    """
    N, _, C, loss = columns(runs)
    names = _names(runs)
    labels, _ = budget_labels(runs, C, tolerance)
    groups = replicate_groups(runs)
    active = np.ones(len(runs), dtype=bool)
    summary: dict[str, Any] = {"k": K, "scale": None, "robust_scale": None, "floor": None}
    found: list[dict[str, Any]] = []
    rows: list[int] = []
    while len(found) <= len(runs) // MAX_SHARE:
        excess = _excess(active, labels, groups, np.log(N), loss)
        if not excess:
            break
        d = np.array([e[1] for e in excess])
        centre = float(np.median(d))
        robust = MAD_TO_SIGMA * float(np.median(np.abs(d - centre)))
        floor = _replicate_sigma(runs[active], loss[active], groups[active])
        scale = max(robust, floor or 0.0, MIN_SCALE)
        summary.update(scale=scale, robust_scale=robust, floor=floor)
        summary.setdefault("tested", len({e[0] for e in excess}))
        row, dev, expected, against = max(excess, key=lambda e: e[1])
        z = (dev - centre) / scale
        if z <= K:
            break
        found.append(
            {
                "run": names[row],
                "params": float(N[row]),
                "flops": float(np.exp(np.mean(np.log(C[labels == labels[row]])))),
                "loss": float(loss[row]),
                "expected": expected,
                "excess": dev,
                "scales": z,
                "against": against,
            }
        )
        rows.append(row)
        active[row] = False
    summary.setdefault("tested", 0)
    for row, suspect in zip(rows, found, strict=True):
        members = np.flatnonzero((labels == labels[row]) & (active | (np.arange(len(runs)) == row)))
        why = _decides_vertex(row, members, np.log(N), loss, summary["scale"])
        suspect.update(decides_vertex=why is not None, why=why)
    summary["suspects"] = found
    return summary


def _excess(
    active: Array, labels: Array, groups: Array, u: Array, loss: Array
) -> list[tuple[int, float, float, str]]:
    """``(row, d, expected, against)`` of every test of every active run, against the other
    active runs."""
    out: list[tuple[int, float, float, str]] = []
    for lab in np.unique(labels):
        members = np.flatnonzero((labels == lab) & active)
        out += _budget_excess(members, u[members], loss[members])
    for g in np.unique(groups):
        members = np.flatnonzero((groups == g) & active)
        if members.size >= MIN_REPLICATES:
            out += _seed_excess(members, loss[members])
    return out


def _replicate_sigma(runs: pd.DataFrame, loss: Array, groups: Array) -> float | None:
    """The seed noise of log loss, robustly: ``1.4826 x`` the median over replicated runs of
    ``|ln L − its group's mean| x sqrt(m / (m − 1))`` (each ~ |N(0, σ²)|), so that one spoiled
    run does not inflate it as it would a pooled variance; None under
    :data:`~.noise.MIN_REPLICATE_DOF` degrees of freedom of replication."""
    if "seed" not in runs.columns:
        return None
    y = np.log(loss)
    devs, dof = [], 0
    for g in np.unique(groups):
        members = y[groups == g]
        m = members.size
        if m >= 2:
            devs += list(np.abs(members - members.mean()) * math.sqrt(m / (m - 1)))
            dof += m - 1
    if dof < MIN_REPLICATE_DOF:
        return None
    return MAD_TO_SIGMA * float(np.median(devs))


def _names(runs: pd.DataFrame) -> list[str]:
    for col in ("run_name", "run_id"):
        if col in runs.columns:
            return [str(v) for v in runs[col]]
    return [f"row {i + 1}" for i in range(len(runs))]


def _budget_excess(members: Array, u: Array, loss: Array) -> list[tuple[int, float, float, str]]:
    if np.unique(u).size < 4:
        return []
    out = []
    for i in range(members.size):
        others = np.arange(members.size) != i
        parabola = fit_parabola(u[others], loss[others])
        if parabola is None:
            continue
        v = u[i] - parabola.center
        x = np.array([v * v, v, 1.0])
        expected = float(x @ parabola.q)
        if not expected > 0:
            continue
        g = float(x @ parabola.pinv @ parabola.pinv.T @ x)  # pinv pinvᵀ = (XᵀX)⁻¹
        d = math.log(loss[i] / expected) / math.sqrt(1.0 + g)
        out.append((int(members[i]), d, expected, BUDGET_TEST))
    return out


def _seed_excess(members: Array, loss: Array) -> list[tuple[int, float, float, str]]:
    y = np.log(loss)
    m = members.size
    out = []
    for i in range(m):
        rest = float(np.mean(np.delete(y, i)))
        d = (y[i] - rest) / math.sqrt(1.0 + 1.0 / (m - 1))
        out.append((int(members[i]), d, math.exp(rest), SEED_TEST))
    return out


def _decides_vertex(row: int, members: Array, u: Array, loss: Array, scale: float) -> str | None:
    """Why the suspect ``row`` decides its budget's vertex (module docstring), or None."""
    if members.size > 1 and loss[row] <= loss[members].min():
        return "the least loss of its budget"
    full = fit_parabola(u[members], loss[members])
    rest = members[members != row]
    without = fit_parabola(u[rest], loss[rest])
    if full is None or not math.isfinite(full.vertex):
        return None
    if without is None or not math.isfinite(without.vertex):
        return "without it its budget's parabola has no vertex"
    if np.argmin(np.abs(u[members] - without.vertex)) == np.flatnonzero(members == row)[0]:
        return "its size is its budget's nearest to the vertex of the others' parabola"
    s2 = (scale * float(np.mean(loss[rest]))) ** 2  # the scale in loss units
    se = math.sqrt(without.vertex_variance(s2))
    shift = full.vertex - without.vertex
    if abs(shift) > se:
        return (
            f"without it its budget's vertex moves {abs(shift):.2f} in ln N "
            f"({abs(shift) / se:.1f} standard errors)"
        )
    return None


def suspect_line(suspect: dict[str, Any]) -> str:
    """One line for the report and the health verdict."""
    pct = 100 * (suspect["loss"] / suspect["expected"] - 1)
    line = (
        f"suspect run {suspect['run']} (N={suspect['params']:.3g}, C={suspect['flops']:.3g}): "
        f"final loss {suspect['loss']:.4g} is {pct:+.1f}% off the {suspect['expected']:.4g} "
        f"that {suspect['against']} put it at ({suspect['scales']:.1f} robust scales > {K:g})"
    )
    if suspect.get("decides_vertex"):
        line += f"; it decides a vertex: {suspect['why']}"
    return line
