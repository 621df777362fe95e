"""The report's training-curves figure: each run's validation loss against tokens seen (a curves
table, ``scaling collect --curves``), coloured by the run's compute, with the loss spikes its
detector saw (column ``spikes_so_far``, ``train.spike.*``) and the point where a diverged run
stopped marked, so a ladder's damaged runs stand out among the healthy ones."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scaling.analysis.table import DIVERGED, SPIKES_SO_FAR, diverged_mask, run_names_per_row

SPIKE = "spike"  # the run trained on through it (train.spike.action=warn)
CONTAINED = "contained"  # its update was skipped or rolled back (skip, rollback)
STOPPED = "diverged"  # the last validation of a run that diverged
CONTAINING_ACTIONS = ("skip", "rollback")
ACTION_COLUMN = "train.spike.action"

CAPTION = (
    "Training curves: each run's validation loss against tokens seen, coloured by its compute. "
    "Marks sit at the first validation after a loss spike: x a spike the run trained through "
    "(`train.spike.action=warn`), o one whose update was skipped or rolled back; a black X "
    "where a diverged run stopped."
)


@dataclass(frozen=True)
class Mark:
    """A mark on a run's curve: ``count`` spikes (of ``kind``) since its previous validation, or
    (``kind`` :data:`STOPPED`) the last validation of a run that diverged."""

    run: str
    tokens: float
    loss: float
    kind: str
    count: int = 1


def _by_run(curves: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Each run's rows of a curves table, in tokens order."""
    if curves.empty:
        return {}
    df = curves.assign(_run=run_names_per_row(curves)).sort_values(["_run", "tokens"])
    return {str(run): rows for run, rows in df.groupby("_run", sort=False)}


def marks(curves: pd.DataFrame) -> list[Mark]:
    """The marks of a curves table's runs, run by run in tokens order: a spike mark at each
    validation point where the run's spike count rose (counted from zero before its first
    point), and a stop mark at a diverged run's last point."""
    out: list[Mark] = []
    for run, rows in _by_run(curves).items():
        tokens = rows["tokens"].to_numpy(float)
        loss = rows["loss"].to_numpy(float)
        if SPIKES_SO_FAR in rows:
            counts = pd.to_numeric(rows[SPIKES_SO_FAR], errors="coerce").fillna(0).to_numpy()
            action = str(rows[ACTION_COLUMN].iloc[0]) if ACTION_COLUMN in rows else "warn"
            kind = CONTAINED if action in CONTAINING_ACTIONS else SPIKE
            rises = np.diff(np.concatenate([[0.0], counts]))
            for i in np.flatnonzero(rises > 0):
                out.append(Mark(run, tokens[i], loss[i], kind, int(rises[i])))
        if DIVERGED in rows and diverged_mask(rows).any():
            out.append(Mark(run, tokens[-1], loss[-1], STOPPED))
    return out


def _compute(rows: pd.DataFrame) -> float:
    """A run's compute: its planned budget, else 6 N D at its horizon, else at its last point."""
    if "planned_flops" in rows and pd.notna(rows["planned_flops"].iloc[0]):
        return float(rows["planned_flops"].iloc[0])
    horizon = rows["final_tokens"].iloc[0] if "final_tokens" in rows else rows["tokens"].max()
    return 6.0 * float(rows["params"].iloc[0]) * float(horizon)


def _spiked(rows: pd.DataFrame) -> bool:
    """Whether a run counts a spike (column ``spikes``), e.g. a cooldown branch of a stable run
    that spiked before the branch began: drawn bold, though its own curve holds no mark."""
    if "spikes" not in rows:
        return False
    return bool((pd.to_numeric(rows["spikes"], errors="coerce").fillna(0) > 0).any())


def plot_training_curves(curves: pd.DataFrame, path: Path) -> bool:
    """Draw the figure into ``path``; False (nothing drawn) when the table has no curve of two
    points or more."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    runs = _by_run(curves)
    if not any(len(rows) > 1 for rows in runs.values()):
        return False
    budgets = {run: _compute(rows) for run, rows in runs.items()}
    norm = LogNorm(min(budgets.values()), max(budgets.values()) * 1.0001)
    cmap = plt.get_cmap("viridis")
    found = marks(curves)
    marked = {m.run for m in found}
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for run, rows in runs.items():
        hit = run in marked or _spiked(rows)
        ax.plot(
            rows["tokens"],
            rows["loss"],
            color=cmap(norm(budgets[run])),
            lw=1.8 if hit else 0.9,
            alpha=1.0 if hit else 0.55,
            zorder=3 if hit else 2,
        )
    style = {
        SPIKE: dict(marker="x", color="crimson", s=70, linewidths=2, label="spike (trained on)"),
        CONTAINED: dict(
            marker="o",
            facecolors="none",
            edgecolors="darkorange",
            s=80,
            linewidths=2,
            label="spike (skipped / rolled back)",
        ),
        STOPPED: dict(marker="X", color="black", s=90, label="diverged: stopped"),
    }
    for kind, kw in style.items():
        chosen = [m for m in found if m.kind == kind]
        if chosen:
            ax.scatter([m.tokens for m in chosen], [m.loss for m in chosen], zorder=4, **kw)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tokens seen")
    ax.set_ylabel("validation loss (nats/token)")
    title = f"Training curves of {len(runs)} runs"
    ax.set_title(title + (f"; {len(marked)} marked" if marked else "; no spike seen"))
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="compute (FLOPs)")
    if found:
        ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
