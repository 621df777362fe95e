"""The commands that read what training leaves behind: ``scaling collect`` (tracked runs ->
a run table) and ``scaling process`` (a corpus's data.process into the processing cache). The
training stack is imported only when a command runs."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from scaling.cli.common import Commands
from scaling.config import DEFAULT_EXPERIMENT, DEFAULT_TRACKING_URI
from scaling.errors import UserError

EPILOG_PROCESS = """\
examples:
  scaling process data=sitepackages                                # its default: exact + near dedup
  scaling process data=stdlib 'data.process=[dedup_exact,dedup_near]'
  scaling process data=text data.path=notes/ 'data.process=[dedup_exact,filter_quality]'
  scaling process data=text data.path=src/ 'data.process=[dedup_near]' data.dedup_near.threshold=0.9

The stages run once into data.cache_dir/processed/ (with progress bars on a terminal); a
second call with the same source and config reads that entry back ("cached") without reading
any text, and so does every training run on it. exit status: 0 processed or cached, 2 a bad
input (one line; nothing written).
"""


def add_collect(commands: Commands) -> None:
    """The parser of ``scaling collect``."""
    p = commands.add_parser(
        "collect",
        help="export tracked runs (MLflow) to a run table",
        description="Read finished runs from the tracking store and write the run table "
        "(CSV or Parquet by the extension of --out).",
    )
    p.add_argument(
        "--tracking-uri",
        default=DEFAULT_TRACKING_URI,
        help=f"MLflow tracking URI (default: {DEFAULT_TRACKING_URI})",
    )
    p.add_argument(
        "--experiment",
        default=DEFAULT_EXPERIMENT,
        help=f"experiment name (default: {DEFAULT_EXPERIMENT})",
    )
    p.add_argument(
        "--curves",
        action="store_true",
        help="write loss-vs-tokens curves (one row per logged point) for approach 1",
    )
    p.add_argument("--out", required=True, type=Path, help="output table, .csv or .parquet")
    p.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keep only runs whose MLflow param KEY equals VALUE, e.g. 'data.process=[]' or "
        "data.processed_id=ab12cd34ef56 (repeatable: all must hold; lists compare without "
        "quotes and spaces, numbers as numbers)",
    )
    p.set_defaults(handler=cmd_collect)


def cmd_collect(args: argparse.Namespace) -> int:
    """``scaling collect``: tracked runs -> run table."""
    from scaling.analysis.table import write_table
    from scaling.training.collect import collect_runs

    suffix = args.out.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise UserError(f"--out {args.out}: use a .csv or .parquet file name")
    df = collect_runs(
        args.tracking_uri, args.experiment, curves=args.curves, where=_where(args.where)
    )
    path = write_table(df, args.out)
    print(f"wrote {len(df):,} rows to {path}", file=sys.stderr)
    diverged = df.loc[df["diverged"].astype(bool), "run_name"].unique() if "diverged" in df else []
    if len(diverged):
        print(
            f"{len(diverged)} run(s) diverged (FAILED, tag scaling.diverged; column diverged, "
            f"left out of fits): {', '.join(map(str, diverged))}",
            file=sys.stderr,
        )
    if df.attrs.get("dropped_duplicates"):
        n = df.attrs["dropped_duplicates"]
        print(f"kept the newest FINISHED run of each run key: dropped {n} older", file=sys.stderr)
    return 0


def _where(conditions: Sequence[str]) -> dict[str, str]:
    """``--where KEY=VALUE`` options as a mapping (each KEY once)."""
    out: dict[str, str] = {}
    for cond in conditions:
        key, eq, value = cond.partition("=")
        if not eq or not key.strip():
            raise UserError(f"--where takes KEY=VALUE, e.g. 'data.process=[]'; got {cond!r}")
        if key.strip() in out:
            raise UserError(f"--where names {key.strip()} twice: give each key once")
        out[key.strip()] = value.strip()
    return out


def add_process(commands: Commands) -> None:
    """The parser of ``scaling process``."""
    p = commands.add_parser(
        "process",
        help="run a corpus's data.process (dedup, filters) without training; print its report",
        description="Process a corpus as a training run would (data.process: dedup_exact, "
        "dedup_near, filter_length, filter_quality), into the processing cache, and print the "
        "per-stage report: documents in, out and removed, bytes removed, shares removed; the "
        "processed_id and where report.json lives.",
        epilog=EPILOG_PROCESS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="data.KEY=VALUE",
        help="data overrides as for python -m scaling.train: data=NAME, data.path=..., "
        "'data.process=[...]', data.<stage>.<parameter>=...",
    )
    p.set_defaults(handler=cmd_process)


def cmd_process(args: argparse.Namespace) -> int:
    """``scaling process``: run (or read from the cache) a corpus's data.process; print it."""
    from scaling.training.hydra_errors import hydra_config_errors
    from scaling.training.process_corpus import data_config, process_corpus, summary

    with hydra_config_errors():
        data = data_config(args.overrides)
    outcome = process_corpus(data, announce=lambda text: print(text, file=sys.stderr))
    print(json.dumps(outcome.to_json(), indent=2) if args.json else summary(outcome))
    return 0
