"""The fit report's "Loss spikes" section: one line per run whose detector saw a spike, skipped
or rolled back a step, or that diverged (the run table's ``spikes``, ``skipped_steps``,
``rollbacks`` and ``diverged`` columns, ``train.spike.*``)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from scaling.analysis.table import SPIKE_COLUMNS, diverged_mask, run_names_per_row, spike_counts


def affected_runs(runs: pd.DataFrame) -> list[dict[str, Any]]:
    """One record per affected run: ``run``, ``spikes``, ``skipped_steps``, ``rollbacks`` (None
    where the table has no such column), ``diverged`` and ``fitted``; the fitted runs first,
    then the diverged runs the fit left out (``runs.attrs["left_out_spikes"]``)."""
    diverged = dict(zip(run_names_per_row(runs), diverged_mask(runs)))
    fitted = [(name, counts, True) for name, counts in spike_counts(runs).items()]
    left_out = runs.attrs.get("left_out_spikes") or {}
    names = list(runs.attrs.get("left_out_diverged") or [])
    out = []
    for name, counts, in_fit in [*fitted, *((n, left_out.get(n, {}), False) for n in names)]:
        is_diverged = not in_fit or bool(diverged.get(name, False))
        if not (is_diverged or any(counts.get(c, 0) > 0 for c in SPIKE_COLUMNS)):
            continue
        record: dict[str, Any] = {"run": name}
        record.update({c: counts.get(c) for c in SPIKE_COLUMNS})
        out.append({**record, "diverged": is_diverged, "fitted": in_fit})
    return out


def spikes_section(runs: pd.DataFrame) -> str:
    """The section's markdown; empty when no run was affected."""
    rows = affected_runs(runs)
    if not rows:
        return ""

    def cell(value: float | None) -> str:
        return "–" if value is None else f"{value:,.0f}"

    lines = [
        "## Loss spikes\n",
        "Runs whose loss-spike detector fired (`train.spike.*`): spikes seen, optimizer updates "
        "skipped (a rollback's undone updates count), rollbacks, and whether the run diverged "
        "and whether it is in the fit.\n",
        "| run | spikes | skipped steps | rollbacks | diverged | in the fit |",
        "|---|---:|---:|---:|---|---|",
    ]
    for r in rows:
        counts = " | ".join(cell(r[c]) for c in SPIKE_COLUMNS)
        diverged = "yes" if r["diverged"] else "no"
        lines.append(f"| {r['run']} | {counts} | {diverged} | {'yes' if r['fitted'] else 'no'} |")
    return "\n".join(lines) + "\n"
