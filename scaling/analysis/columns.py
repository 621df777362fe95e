"""The arrays an estimator reads from a validated run table, the ranges it records, which N and
which C they hold, and a law's predictions for the rows of a table."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from scaling.analysis.fitting.laws import Law
from scaling.analysis.table import table_conventions
from scaling.counting import compute_from
from scaling.errors import DataError

Array = np.ndarray


def columns(runs: pd.DataFrame) -> tuple[Array, Array, Array, Array]:
    """``(N, D, C, loss)`` as float arrays; ``C = 6ND`` where the table has no ``flops``."""
    N = runs["params"].to_numpy(dtype=float)
    D = runs["tokens"].to_numpy(dtype=float)
    C = runs["flops"].to_numpy(dtype=float) if "flops" in runs else compute_from(N, D)
    loss = runs["loss"].to_numpy(dtype=float)
    return N, D, C, loss


def conventions(runs: pd.DataFrame) -> dict[str, str]:
    """Which N and which C ``runs`` hold: ``{"params": column, "flops": "6ND" | slug | "table"}``
    (and ``"planned"``), as :func:`scaling.analysis.table.read_run_table` recorded them, else
    read off the columns (:func:`scaling.analysis.table.table_conventions`; N is ``params``).
    Raises :class:`DataError` when ``flops_convention`` mixes conventions."""
    recorded = runs.attrs.get("conventions")
    if recorded:
        return dict(recorded)
    return table_conventions(runs, "params")


def ranges(N: Array, D: Array, C: Array, loss: Array) -> dict[str, tuple[float, float]]:
    """``{"N": (min, max), "D": ..., "C": ..., "loss": ...}``: the ``ranges`` of ``fit.json``."""
    return {
        "N": (float(N.min()), float(N.max())),
        "D": (float(D.min()), float(D.max())),
        "C": (float(C.min()), float(C.max())),
        "loss": (float(loss.min()), float(loss.max())),
    }


def epochs(runs: pd.DataFrame) -> Array | None:
    """The ``epochs`` column (tokens / unique training tokens) as floats, NaN where unknown;
    ``None`` when the table has no such column."""
    if "epochs" not in runs:
        return None
    return pd.to_numeric(runs["epochs"], errors="coerce").to_numpy(dtype=float)


def optional_inputs(law: Law, runs: pd.DataFrame) -> dict[str, Array | None]:
    """The optional inputs ``law`` reads from ``runs`` (``{"epochs": ...}`` or ``{}``), as
    keyword arguments of :meth:`Law.design` and :meth:`Law.predict`."""
    return {"epochs": epochs(runs)} if "epochs" in law.optional_inputs else {}


def require_repeats(law: Law, runs: pd.DataFrame) -> None:
    """Refuse, in one line, a table a law of repeated data cannot be fitted to: no ``epochs``
    column, or no run with ``epochs`` > 1."""
    if "epochs" not in law.optional_inputs:
        return
    ep = epochs(runs)
    if ep is None:
        raise DataError(
            f"the {law.name} law needs the `epochs` column (tokens / unique training tokens, "
            "written by `scaling collect`) and this table has none; fit chinchilla"
        )
    if not np.any(ep > 1):
        raise DataError(
            f"the {law.name} law needs repeated data: no run has epochs > 1; fit chinchilla"
        )


def predict_table(law: Law, params: Mapping[str, float], runs: pd.DataFrame) -> Array:
    """The loss ``law`` with ``params`` predicts for each run of ``runs`` (with their ``epochs``
    where the law reads them)."""
    N, D, C, _ = columns(runs)
    given = {"N": N, "D": D, "C": C}
    return law.predict(params, **{k: given[k] for k in law.inputs}, **optional_inputs(law, runs))
