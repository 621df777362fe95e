"""``scaling process``: run a corpus's ``data.process`` without training.

The same data overrides as a run (``data=NAME``, ``data.KEY=VALUE``; Hydra composes them from
``conf/`` exactly as ``python -m scaling.train`` does) select a source and its stages; the
stages run once into the processing cache (:mod:`scaling.training.data.process`), with its
progress bars, and every later call with the same source and config reads that entry back
without reading any text. What comes out is the entry's per-stage report as a table (documents in,
out and removed, bytes removed, shares removed), the ``processed_id`` that runs on this corpus
record as ``data.processed_id``, and where ``report.json`` lives.

Bad input (an unknown stage, a parameter out of range, a missing path, an override that is not a
data key, an empty ``data.process``) raises :class:`~scaling.errors.UserError` before anything is
written.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from scaling.config import CONF_DIR, DataConfig, plain_config, register_configs, structured
from scaling.errors import ConfigError


@dataclass(frozen=True)
class ProcessOutcome:
    """A processed corpus as ``scaling process`` shows it."""

    cached: bool  # True: read from the cache entry, no stage ran and no text was read
    seconds: float  # this call's wall-clock
    entry: str  # the cache entry's folder
    report_path: str  # its report.json
    report: dict[str, Any]  # report.json as written when the stages ran

    @property
    def processed_id(self) -> str:
        return str(self.report["processed_id"])

    def to_json(self) -> dict[str, Any]:
        """The ``scaling process --json`` document: the report without its removed-text examples,
        plus ``cached``, ``seconds`` (this call), ``processing_seconds`` (when the stages ran),
        ``entry`` and ``report_path``."""
        stages = [{k: v for k, v in s.items() if k != "examples"} for s in self.report["stages"]]
        report = {k: v for k, v in self.report.items() if k not in ("stages", "seconds")}
        return {
            **report,
            "cached": self.cached,
            "seconds": round(self.seconds, 3),
            "processing_seconds": self.report.get("seconds"),
            "entry": self.entry,
            "report_path": self.report_path,
            "stages": stages,
        }


def check_overrides(overrides: Sequence[str]) -> None:
    """Only data keys make sense here: ``data=NAME``, ``data.KEY=VALUE`` (``+``/``~`` allowed)."""
    for o in overrides:
        key, eq, _ = o.partition("=")
        name = key.lstrip("+~")
        if not eq and not key.startswith("~"):
            raise ConfigError(f"overrides are key=value, got {o!r}")
        if name != "data" and not name.startswith("data."):
            raise ConfigError(
                f"{o!r} is not a data key: scaling process takes data=NAME and data.KEY=VALUE "
                "overrides only (e.g. data=text data.path=notes/ 'data.process=[dedup_exact]')"
            )


def data_config(overrides: Sequence[str]) -> DataConfig:
    """The ``data`` group composed from ``overrides`` as a run composes it, validated (raises
    :class:`ConfigError`; Hydra's own composition errors propagate for the caller to word)."""
    from hydra import compose, initialize_config_dir

    check_overrides(overrides)
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        raw = plain_config(compose("config", overrides=list(overrides)))
    data = structured(DataConfig, "data", raw["data"])
    if not data.process:
        raise ConfigError(
            f"data.process is empty for data.source={data.source}: nothing to process; list "
            "stages, e.g. 'data.process=[dedup_exact,dedup_near]'"
        )
    return data


def process_corpus(
    data: DataConfig, announce: Callable[[str], None] | None = None
) -> ProcessOutcome:
    """Run ``data.process`` over ``data``'s source into the cache, or read the cached entry;
    ``announce`` is told, before the stages run, that they are about to (not when cached)."""
    from scaling.sources import make_source
    from scaling.training.data.process import cache_entry, load_processed, read_entry

    t0 = time.perf_counter()
    source = make_source(data)
    if announce is not None and read_entry(cache_entry(data, source)) is None:
        announce(f"processing {source.where} with {', '.join(data.process)} (cached afterwards)")
    processed = load_processed(data, source)
    return ProcessOutcome(
        cached=not processed.built,
        seconds=time.perf_counter() - t0,
        entry=str(processed.entry),
        report_path=str(processed.report_path),
        report=processed.report(),
    )


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _mb(n: int) -> str:
    return f"{n / 1e6:,.2f}"


def report_table(report: dict[str, Any]) -> str:
    """The per-stage report as an aligned text table with a total row."""
    header = ["stage", "docs in", "docs out", "removed", "% docs", "MB removed", "% bytes", "s"]
    rows = [
        [
            s["stage"],
            f"{s['docs_in']:,}",
            f"{s['docs_out']:,}",
            f"{s['docs_removed']:,}",
            _pct(s["docs_removed"], s["docs_in"]),
            _mb(s["bytes_removed"]),
            _pct(s["bytes_removed"], s["bytes_in"]),
            f"{s.get('seconds', 0):.1f}",
        ]
        for s in report["stages"]
    ]
    docs_removed = report["docs_in"] - report["docs_out"]
    bytes_removed = report["bytes_in"] - report["bytes_out"]
    rows.append(
        [
            "total",
            f"{report['docs_in']:,}",
            f"{report['docs_out']:,}",
            f"{docs_removed:,}",
            _pct(docs_removed, report["docs_in"]),
            _mb(bytes_removed),
            _pct(bytes_removed, report["bytes_in"]),
            f"{report.get('seconds', 0):.1f}",
        ]
    )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))])

    rule = "-" * len(line(header))
    return "\n".join([line(header), rule, *map(line, rows[:-1]), rule, line(rows[-1])])


def reasons_lines(report: dict[str, Any]) -> list[str]:
    """``filter_quality``'s documents per rule, one line per stage that records reasons."""
    out = []
    for s in report["stages"]:
        if s.get("reasons"):
            parts = ", ".join(f"{rule} {n:,}" for rule, n in s["reasons"].items())
            out.append(f"{s['stage']} by rule: {parts}")
    return out


def summary(outcome: ProcessOutcome) -> str:
    """What ``scaling process`` prints: where, cached or built, the table, the id and report."""
    r = outcome.report
    stages = ",".join(s["stage"] for s in r["stages"])
    how = (
        f"cached: read {outcome.entry} in {outcome.seconds:.2f} s (no text read, no stage run)"
        if outcome.cached
        else f"processed in {outcome.seconds:.1f} s -> {outcome.entry}"
    )
    lines = [
        f"{r['source']}, data.process=[{stages}]",
        how,
        "",
        report_table(r),
        *reasons_lines(r),
        "",
        f"kept {r['docs_out']:,} of {r['docs_in']:,} documents, "
        f"{_mb(r['bytes_out'])} of {_mb(r['bytes_in'])} MB",
        f"processed_id: {outcome.processed_id}  (data.processed_id of runs on this corpus)",
        f"report: {outcome.report_path}  (with examples of removed documents)",
    ]
    return "\n".join(lines)
