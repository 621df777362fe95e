"""The study section of ``analysis/<study>/report.md`` and the study's record ``study.json``.

``scaling study`` runs in stages (pilot, LR check, ladder, fit, verification); each stage's
design and cost is a :class:`StageRecord`. :func:`study_section` is the section put at the top
of the fit's report: what each stage trained, what it cost, what the pilot found, what the LR
check decided and what the study predicts.

Pure: the standard library and the planner's text forms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from scaling.analysis.design.preset import duration

STUDY_HEAD = "## The study\n"


@dataclass
class StageRecord:
    """One stage: how many runs it asked for and trained, their FLOPs, its wall-clock and
    what the throughput model estimated it would take (None: no estimate)."""

    name: str
    runs: int = 0
    flops: float = 0.0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    estimate: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def stage_table(stages: Sequence[StageRecord]) -> list[str]:
    """Markdown rows: stage, runs, FLOPs, share of the study's FLOPs, wall-clock, the
    estimate the stage started with and the estimate's error."""
    total = sum(s.flops for s in stages) or math.nan
    rows = [
        "| stage | runs | FLOPs | share of FLOPs | wall-clock | estimated | estimate's error |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in stages:
        rows.append(
            f"| {s.name} | {s.runs} | {s.flops:.3g} | {100 * s.flops / total:.1f}% | "
            f"{duration(s.seconds)} | {_estimate(s.estimate, s.seconds)} |"
        )
    estimated = [s for s in stages if s.estimate is not None]
    rows.append(
        f"| total | {sum(s.runs for s in stages)} | {sum(s.flops for s in stages):.3g} | 100% | "
        f"{duration(sum(s.seconds for s in stages))} | "
        + (
            _estimate(sum(s.estimate or 0.0 for s in estimated), sum(s.seconds for s in estimated))
            + " (the estimated stages) |"
            if estimated
            else "- | - |"
        )
    )
    return rows


def _estimate(estimate: float | None, seconds: float) -> str:
    """The estimate's cells: the estimate and its error relative to the measured seconds."""
    if estimate is None or seconds <= 0:
        return "- | -"
    return f"{duration(estimate)} | {100 * (estimate / seconds - 1):+.0f}%"


def study_section(
    target: float,
    command: str,
    stages: Sequence[StageRecord],
    prediction: Sequence[str],
) -> str:
    """The report's study section: the command, each stage's notes, the cost table, and the
    prediction lines."""
    lines = [
        STUDY_HEAD,
        f"`{command}`: a prediction of the compute-optimal run at C = {target:.3g} FLOPs, in "
        "stages. Each stage's runs are MLflow runs of this study's experiment; a rerun skips the "
        "finished ones.",
        "",
    ]
    for s in stages:
        if s.notes:
            lines.append(f"- **{s.name}**: " + " ".join(s.notes))
    lines += ["", *stage_table(stages), ""]
    if prediction:
        lines += ["**Prediction.**", "", *(f"- {p}" for p in prediction), ""]
    return "\n".join(lines) + "\n"


def with_study_section(report: str, section: str) -> str:
    """``report`` with ``section`` after its title (replacing an earlier study section)."""
    if STUDY_HEAD in report:
        start = report.index(STUDY_HEAD)
        end = report.find("\n## ", start + len(STUDY_HEAD))
        report = report[:start] + (report[end + 1 :] if end >= 0 else "")
    first = report.find("\n## ")
    if first < 0:
        return report.rstrip("\n") + "\n\n" + section
    return report[: first + 1] + section + "\n" + report[first + 1 :]
