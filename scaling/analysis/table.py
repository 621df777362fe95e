"""The run table: the one place its contract is defined, read, validated and written.

A run table (docs/ARCHITECTURE.md, "Run table") has one row per run with at least ``params``
(trainable parameters), ``tokens`` (training tokens) and ``loss`` (final validation loss);
``flops`` is optional (``C = 6 * params * tokens`` from :mod:`scaling.counting` when absent).  A
*curves* table (``scaling collect --curves``) has several rows per ``run_id``: tokens seen so far
and the loss at that point.

The columns ``scaling collect`` writes, and where each comes from in a run's MLflow record, are
defined here too (:data:`PARAM_COLUMNS`, :data:`METRIC_COLUMNS`, :func:`run_row`,
:func:`curve_rows`); :mod:`scaling.training.collect` only pages through MLflow and calls them.
This module needs neither torch nor mlflow: any table with ``params,tokens,loss`` (e.g. a
paper's points) can be read and fitted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scaling.counting import FLOPS_CONVENTIONS, compute_from, convention_slug
from scaling.errors import ConfigError, DataError, UserError
from scaling.files import atomic_write

REQUIRED = ("params", "tokens", "loss")
NUMERIC = ("params", "tokens", "loss", "flops")
# Collected tables start with these columns, in this order; every other column follows.
LEADING = ("params", "tokens", "loss", "params_nonembed", "flops", "flops_exact", "run_id")

_SLUGS = tuple(convention_slug(c) for c in FLOPS_CONVENTIONS)  # 6N, 6N_attn, chinchilla

# column -> the MLflow param of a run it is copied from (a missing param leaves no column)
PARAM_COLUMNS: dict[str, str] = {
    "params": "params",
    "params_nonembed": "params_nonembed",
    "params_embed": "params_embed",
    "tokens": "planned.tokens",
    "n_layer": "model.n_layer",
    "d_model": "model.d_model",
    "n_head": "model.n_head",
    "seq_len": "model.seq_len",
    "vocab_size": "model.vocab_size",
    "lr": "train.lr",
    "batch_size": "train.batch_size",
    "seed": "seed",
    **{f"flops_{slug}": f"flops.{slug}" for slug in _SLUGS},
    "flops_convention": "train.flops_convention",
    "planned_flops": "train.flops",
    "corpus": "data.corpus_id",
    "tokenizer": "data.tokenizer_id",
    "epochs": "data.epochs",
    # WSD cooldown branches (scaling.training.branches): role stable | branch, the group's key,
    # the step a branch started from (0: from scratch), FLOPs of its group's stable run
    "branch_role": "branch.role",
    "branch_group": "branch.group",
    "branch_start_step": "branch.start_step",
    "stable_flops": "branch.stable_flops",
}
STABLE = "stable"  # branch_role of a stable run: no final result (its LR never decays)
# column -> the MLflow param giving that column's FLOPs per token (curves rows scale it by tokens)
PER_TOKEN_PARAMS: dict[str, str] = {f"flops_{slug}": f"flops_per_token.{slug}" for slug in _SLUGS}
# column -> the MLflow metric it holds (the metric's last value; curves: its history)
METRIC_COLUMNS: dict[str, str] = {
    "loss": "val/loss",
    "tokens_per_s": "throughput/tokens_per_s",
    # loss spikes the run's detector saw and updates it skipped (train.spike.*); absent: off
    "spikes": "train/spikes",
    "skipped_steps": "train/skipped_steps",
    "rollbacks": "train/rollbacks",  # train.spike.action=rollback only
}
SPIKE_COLUMNS = ("spikes", "skipped_steps", "rollbacks")
# seconds from the run's MLflow start to its end (set-up, training, evaluations, tracking; a
# resumed run: from its first start): what the planner's throughput model is fitted to
WALL_S = "wall_s"
# curves rows of a run whose detector was on: the spikes it saw up to that point (metric
# spike/loss, one value at each spike's tokens)
SPIKES_SO_FAR = "spikes_so_far"
SPIKE_EVENT_METRIC = "spike/loss"
# True for a run that diverged (MLflow tag scaling.diverged: a non-finite loss, or stopped by
# the spike detector): FAILED, without a final loss; fits leave such rows out unless told
DIVERGED = "diverged"
CURVE_METRIC = METRIC_COLUMNS["loss"]
LR_METRIC = "lr"  # the LR a run logs (the next update's); curves rows carry it as column lr
# Every param under these prefixes is also a column under its own (Hydra) name.
CONFIG_PREFIXES = ("model.", "train.", "data.", "trainer.")
EXACT_FLOPS = "flops_chinchilla"  # copied into flops_exact: the term-by-term count


def _value(text: Any) -> Any:
    """An MLflow param (always a string) as the number it spells, else unchanged."""
    try:
        f = float(text)
    except (TypeError, ValueError):
        return text
    return int(f) if f.is_integer() and abs(f) < 2**53 else f


def run_row(
    params: Mapping[str, str], metrics: Mapping[str, float], **identity: Any
) -> dict[str, Any]:
    """One finished run's row: ``identity`` (run_id, run_name, status, run_key), the columns of
    :data:`PARAM_COLUMNS` and :data:`METRIC_COLUMNS`, every config param, and ``flops``
    (``C = 6ND`` of :mod:`scaling.counting`) and ``flops_exact``."""
    row: dict[str, Any] = dict(identity)
    for col, key in PARAM_COLUMNS.items():
        if key in params:
            row[col] = _value(params[key])
    for key, value in params.items():
        if key.startswith(CONFIG_PREFIXES):
            row.setdefault(key, _value(value))
    for col, key in METRIC_COLUMNS.items():
        row[col] = metrics.get(key)
    row["flops"] = compute_from(float(row.get("params", 0)), float(row.get("tokens", 0)))
    row["flops_exact"] = row.get(EXACT_FLOPS)
    return row


def curve_rows(
    row: Mapping[str, Any],
    params: Mapping[str, str],
    points: Iterable[tuple[int, float]],
    lrs: Mapping[int, float] | None = None,
    spikes: Iterable[int] | None = None,
) -> list[dict[str, Any]]:
    """``row`` (from :func:`run_row`) repeated at each ``(tokens, loss)`` point of its curve,
    FLOPs columns scaled to those tokens; ``final_tokens`` keeps the run's horizon; ``lr`` the
    LR logged at those tokens, when ``lrs`` has it; :data:`SPIKES_SO_FAR` the number of
    ``spikes`` (the tokens at which each was seen) at or before those tokens, when given."""
    seen = None if spikes is None else np.sort(np.asarray(list(spikes), dtype=float))
    per_token = {c: float(params[k]) for c, k in PER_TOKEN_PARAMS.items() if k in params}
    out = []
    for tokens, loss in sorted(points):
        point = dict(row, tokens=int(tokens), loss=loss, final_tokens=row.get("tokens"))
        point["flops"] = compute_from(float(row.get("params", 0)), float(tokens))
        for col, f in per_token.items():
            point[col] = f * tokens
        point["flops_exact"] = point.get(EXACT_FLOPS)
        if lrs is not None:
            point["lr"] = lrs.get(tokens)
        if seen is not None:
            point[SPIKES_SO_FAR] = int(np.searchsorted(seen, tokens, side="right"))
        out.append(point)
    return out


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a DataFrame, :data:`LEADING` columns first."""
    df = pd.DataFrame(rows)
    return df[[c for c in LEADING if c in df] + [c for c in df if c not in LEADING]]


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


ORDER_COLUMNS = ("flops", "params", "tokens", "seed", "loss")


def canonical_order(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` sorted by :data:`ORDER_COLUMNS` (those present), stably: a table's rows in
    whatever order its runs finished give one fit, one bootstrap, one interval (``attrs``
    kept)."""
    keys = [c for c in ORDER_COLUMNS if c in runs.columns]
    out = runs.sort_values(keys, kind="mergesort").reset_index(drop=True) if keys else runs
    out.attrs = dict(runs.attrs)
    return out


def read_run_table(
    path: str | Path,
    params_column: str = "params",
    *,
    curves: bool = False,
    keep_diverged: bool = False,
) -> pd.DataFrame:
    """Read and validate a run table (CSV or Parquet).

    Returns a DataFrame with float columns ``params``, ``tokens``, ``loss``, ``flops`` (filled
    with ``6 * params * tokens`` where missing) and, when present, ``run_id``; other columns are
    kept. ``params_column`` names the parameter count to use (e.g. ``params_nonembed``), copied
    into ``params`` (the table's own ``params`` is kept as ``params_total``); compute then follows
    that same N: ``flops = 6 * N * tokens`` (:func:`scaling.counting.compute_from`), never the
    table's ``flops`` counted with another N.  A table whose ``flops_convention`` column holds
    more than one convention is refused.  Which N and which C the frame holds is in
    ``df.attrs["conventions"]`` (:func:`table_conventions`).  Raises :class:`DataError` with one
    line naming the offending column and row.

    With ``curves=True`` the table holds loss-vs-tokens curves: a ``run_id`` column is required
    and rows are sorted by run then tokens.  Without it, a table that repeats ``run_id`` is reduced
    to each run's last row (most tokens), its final loss.

    Rows of diverged runs (column ``diverged`` true) are left out, before any check (a diverged
    run has no final loss); with ``keep_diverged`` only those without a loss are. The names of
    the runs left out are in ``df.attrs["left_out_diverged"]``, their spike counts in
    ``df.attrs["left_out_spikes"]`` (:func:`spike_counts`).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a directory; pass a CSV or Parquet run table")
    df = _read_any(path)
    df.columns = [str(c).strip() for c in df.columns]
    flops_convention(df, f"{path}: ")
    if params_column != "params":
        if params_column not in df.columns:
            raise DataError(
                f"{path}: --params-column {params_column!r} is not a column "
                f"(columns: {', '.join(df.columns)})"
            )
        if "params" in df.columns and TOTAL_PARAMS not in df.columns:
            df[TOTAL_PARAMS] = df["params"]
        df["params"] = df[params_column]
        # C follows the N of the fit: the table's flops counted another N
        df = df.drop(columns="flops", errors="ignore")
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
    df, left_out, dropped = _leave_out_diverged(df, keep_diverged)
    if len(df) == 0:
        raise DataError(
            f"{path}: every run in the table diverged ({', '.join(left_out)}); nothing to fit"
        )
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
        df["flops"] = compute_from(df["params"], df["tokens"])
    if not curves:
        df = without_stable_runs(df)
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
    df.attrs["conventions"] = table_conventions(df, params_column)
    df.attrs["left_out_diverged"] = left_out
    df.attrs["left_out_spikes"] = spike_counts(dropped)
    return df


def spike_counts(rows: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Each run of ``rows`` by name -> its largest value of each :data:`SPIKE_COLUMNS` column
    the table has (a curves table repeats them on every row)."""
    cols = [c for c in SPIKE_COLUMNS if c in rows.columns]
    out: dict[str, dict[str, float]] = {}
    for name, row in zip(run_names_per_row(rows), rows[cols].to_dict("records")):
        counts = out.setdefault(name, {})
        for col, value in row.items():
            value = pd.to_numeric(value, errors="coerce")
            if value == value:  # not NaN
                counts[col] = max(float(value), counts.get(col, 0.0))
    return out


def run_names_per_row(rows: pd.DataFrame) -> list[str]:
    """The run name of each row (``run_name``, else ``run_id``, else its row number)."""
    for col in ("run_name", "run_id"):
        if col in rows.columns:
            return [str(v) for v in rows[col]]
    return [f"row {i + 1}" for i in rows.index]


def diverged_mask(df: pd.DataFrame) -> pd.Series:
    """Rows of diverged runs (column :data:`DIVERGED` true; a table without it has none)."""
    if DIVERGED not in df.columns:
        return pd.Series(False, index=df.index)
    text = df[DIVERGED].astype(str).str.strip().str.lower()
    return text.isin(("true", "1", "1.0", "yes"))


def run_names(rows: pd.DataFrame) -> list[str]:
    """Each distinct run of ``rows`` by name (``run_name``, else ``run_id``, else its row)."""
    return list(dict.fromkeys(run_names_per_row(rows)))


def _leave_out_diverged(
    df: pd.DataFrame, keep: bool
) -> tuple[pd.DataFrame, list[str], pd.DataFrame]:
    """``df`` without diverged runs (with ``keep``: without those that have no loss to fit),
    the names of the runs left out and their rows."""
    out = diverged_mask(df)
    if keep:
        out &= pd.to_numeric(df["loss"], errors="coerce").isna()
    if not out.any():
        return df, [], df.iloc[:0]
    return df[~out].reset_index(drop=True), run_names(df[out]), df[out]


def without_stable_runs(df: pd.DataFrame) -> pd.DataFrame:
    """The rows that are results: a WSD group's stable run (``branch_role`` stable) is not."""
    if "branch_role" not in df.columns:
        return df
    return df[df["branch_role"].astype(str) != STABLE].reset_index(drop=True)


def compute_spent(df: pd.DataFrame) -> tuple[float, float] | None:
    """(FLOPs the rows' points represent, FLOPs training them cost) when some rows are WSD
    cooldown branches: a branch costs its own cooldown (6N x tokens after its start step), each
    group its stable run once; None for a table without branches."""
    if "branch_role" not in df.columns or "branch_group" not in df.columns:
        return None
    branch = df["branch_role"].astype(str) == "branch"
    if not branch.any():
        return None
    represented = float(df["flops"].sum())
    rows = df[branch]
    start = pd.to_numeric(rows.get("branch_start_step", 0), errors="coerce").fillna(0)
    per_step = pd.to_numeric(rows["batch_size"], errors="coerce") * pd.to_numeric(
        rows["seq_len"], errors="coerce"
    )
    cooldowns = compute_from(rows["params"], rows["tokens"] - start * per_step).sum()
    stable = rows.groupby("branch_group")["stable_flops"].first().astype(float).sum()
    plain = float(df.loc[~branch, "flops"].sum())
    return represented, float(cooldowns + stable + plain)


TOTAL_PARAMS = "params_total"  # the table's own params, kept when --params-column picks another


def flops_convention(df: pd.DataFrame, where: str = "") -> str | None:
    """The one FLOPs convention the runs were planned under (column ``flops_convention``, as its
    slug), ``None`` without one; raises :class:`DataError` naming the values when they differ."""
    if "flops_convention" not in df.columns:
        return None
    raw = [
        str(v).strip()
        for v in df["flops_convention"].dropna().unique()
        if str(v).strip() not in ("", "None", "nan", "null")
    ]
    slugs: dict[str, list[str]] = {}
    for value in raw:
        try:
            slug = convention_slug(value)
        except ConfigError:
            slug = value
        slugs.setdefault(slug, []).append(value)
    if len(slugs) > 1:
        names = ", ".join(sorted(raw))
        raise DataError(
            f"{where}column 'flops_convention' mixes FLOPs conventions ({names}); fit runs "
            "of one convention (filter the table on that column)"
        )
    return next(iter(slugs), None)


def table_conventions(df: pd.DataFrame, params_column: str = "params") -> dict[str, str]:
    """Which N and which C a validated table holds: ``{"params": column, "flops": C}`` with
    ``C`` = ``"6ND"`` (6 * params * tokens), the slug of the ``flops_<slug>`` column ``flops``
    equals, or ``"table"``; plus ``"planned"``: the convention of ``flops_convention``."""
    conv = {"params": params_column, "flops": "6ND"}
    if "flops" in df.columns:
        C = pd.to_numeric(df["flops"], errors="coerce").to_numpy(dtype=float)
        N = pd.to_numeric(df["params"], errors="coerce").to_numpy(dtype=float)
        D = pd.to_numeric(df["tokens"], errors="coerce").to_numpy(dtype=float)
        if not np.allclose(C, compute_from(N, D), rtol=1e-6, atol=0.0):
            conv["flops"] = "table"
            for slug in _SLUGS:
                col = f"flops_{slug}"
                if col in df.columns:
                    other = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
                    if np.allclose(C, other, rtol=1e-6, atol=0.0):
                        conv["flops"] = slug
                        break
    planned = flops_convention(df)
    if planned:
        conv["planned"] = planned
    return conv


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write ``df`` as CSV or Parquet, chosen by the extension of ``path``, whole or not at all
    (two sweeps ending at once each leave one complete table)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise UserError(f"{path}: unknown table extension {suffix!r}; use .csv or .parquet")

    def write(tmp: Path) -> None:
        if suffix == ".csv":
            df.to_csv(tmp, index=False)
            return
        try:
            df.to_parquet(tmp, index=False)
        except ImportError as err:
            raise UserError(f"writing Parquet needs pyarrow ({err}); use a .csv path") from None

    return atomic_write(path, write)
