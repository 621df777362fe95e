"""The run table: the one place its contract is read, validated and written.

A run table (DESIGN.md, "Run table") has one row per run with at least ``params`` (trainable
parameters), ``tokens`` (training tokens) and ``loss`` (final validation loss, nats/token);
``flops`` is optional (``6 * params * tokens`` when absent).  A *curves* table (``scaling collect
--curves``) has several rows per ``run_id``: tokens seen so far and the loss at that point.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from scaling.errors import DataError, UserError

REQUIRED = ("params", "tokens", "loss")
NUMERIC = ("params", "tokens", "loss", "flops")


def _read_any(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataError(f"{path}: cannot parse as a table ({first})") from None
    except ImportError as err:
        raise DataError(f"{path}: reading Parquet needs pyarrow ({err}); use a CSV") from None
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: cannot read ({err})") from None


def read_run_table(
    path: str | Path,
    params_column: str = "params",
    *,
    curves: bool = False,
) -> pd.DataFrame:
    """Read and validate a run table (CSV or Parquet).

    Returns a DataFrame with float columns ``params``, ``tokens``, ``loss``, ``flops`` (filled
    with ``6 * params * tokens`` where missing) and, when present, ``run_id``; other columns are
    kept. ``params_column`` names the parameter count to use (e.g. ``params_nonembed``), copied
    into ``params``.  Raises :class:`DataError` with one line naming the offending column and row.

    With ``curves=True`` the table holds loss-vs-tokens curves: a ``run_id`` column is required
    and rows are sorted by run then tokens.  Without it, a table that repeats ``run_id`` is reduced
    to each run's last row (most tokens), its final loss.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory; pass a CSV or Parquet run table")
    df = _read_any(path)
    df.columns = [str(c).strip() for c in df.columns]
    if params_column != "params":
        if params_column not in df.columns:
            raise DataError(
                f"{path}: --params-column {params_column!r} is not a column "
                f"(columns: {', '.join(df.columns)})"
            )
        df["params"] = df[params_column]
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)}; a run table needs "
            f"{', '.join(REQUIRED)} (found: {', '.join(df.columns) or 'none'})"
        )
    if curves and "run_id" not in df.columns:
        raise DataError(f"{path}: a curves table (--approach 1) needs a run_id column")
    if len(df) == 0:
        raise DataError(f"{path}: the table has no rows")
    for col in NUMERIC:
        if col not in df.columns:
            continue
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna() & df[col].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(
                f"{path}: column {col!r} has a non-numeric value {df[col].iloc[row]!r} "
                f"(row {row + 1})"
            )
        arr = values.to_numpy(dtype=float)
        if col == "flops" and np.isnan(arr).all():
            df = df.drop(columns="flops")
            continue
        nonfinite = ~np.isfinite(arr)
        if nonfinite.any():
            row = int(np.flatnonzero(nonfinite)[0])
            raise DataError(f"{path}: column {col!r} has a missing/NaN/inf value (row {row + 1})")
        if (arr <= 0).any():
            row = int(np.flatnonzero(arr <= 0)[0])
            raise DataError(
                f"{path}: column {col!r} must be positive; row {row + 1} has {arr[row]:g}"
            )
        df[col] = arr
    if "flops" not in df.columns:
        df["flops"] = 6.0 * df["params"] * df["tokens"]
    if "run_id" in df.columns:
        df["run_id"] = df["run_id"].astype(str)
        if curves:
            df = df.sort_values(["run_id", "tokens"], kind="stable").reset_index(drop=True)
        elif df["run_id"].duplicated().any():
            df = (
                df.sort_values(["run_id", "tokens"], kind="stable")
                .groupby("run_id", sort=False)
                .tail(1)
                .reset_index(drop=True)
            )
    return df


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` as CSV or Parquet, chosen by the extension of ``path`` (atomic rename)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise UserError(f"{path}: unknown table extension {suffix!r}; use .csv or .parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        if suffix == ".csv":
            df.to_csv(tmp, index=False)
        else:
            try:
                df.to_parquet(tmp, index=False)
            except ImportError as err:
                raise UserError(f"writing Parquet needs pyarrow ({err}); use a .csv path") from None
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
