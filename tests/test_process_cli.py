"""`scaling process` (scaling/training/process_corpus.py): a corpus's data.process without
training -- the per-stage table, the cache reused on a second call, bad input as one line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_process import Planted

from scaling.cli import main
from scaling.errors import EXIT_USER_ERROR
from scaling.sources.files import FilesSource
from scaling.training.data import process
from scaling.training.process_corpus import report_table

DEDUP = "data.process=[dedup_exact,dedup_near]"


@pytest.fixture(scope="module")
def planted() -> Planted:
    return Planted(n=80, exact=12, near=12, seed=3)


@pytest.fixture
def corpus(planted: Planted, tmp_path: Path) -> list[str]:
    folder = planted.write(tmp_path / "notes")
    return ["data=text", f"data.path={folder}", f"data.cache_dir={tmp_path / 'cache'}"]


def _table_row(out: str, stage: str) -> list[str]:
    (line,) = [ln for ln in out.splitlines() if ln.startswith(stage + " ")]
    return line.split()


def test_process_prints_each_stage_with_its_counts(corpus, capsys) -> None:
    assert main(["process", *corpus, DEDUP]) == 0
    captured = capsys.readouterr()
    assert "processing data.path=" in captured.err  # said before the stages ran
    out = captured.out
    # stage, docs in, docs out, removed, % docs, MB removed, % bytes, seconds
    exact = _table_row(out, "dedup_exact")
    near = _table_row(out, "dedup_near")
    total = _table_row(out, "total")
    assert exact[1:4] == ["104", "92", "12"] and exact[4] == "11.5%"
    assert near[1:4] == ["92", "80", "12"]
    assert total[1:4] == ["104", "80", "24"]
    assert "processed in" in out and "cached" not in out
    (pid,) = re.findall(r"processed_id: (\w+)", out)
    (report,) = re.findall(r"report: (\S+)", out)
    doc = json.loads(Path(report).read_text())
    assert doc["processed_id"] == pid and [s["stage"] for s in doc["stages"]] == [
        "dedup_exact",
        "dedup_near",
    ]


def test_a_second_call_reads_the_cache_and_no_text(corpus, capsys, monkeypatch) -> None:
    assert main(["process", "--json", *corpus, DEDUP]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["cached"] is False and first["docs_in"] == 104 and first["docs_out"] == 80

    def boom(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("read text or ran a stage on a cached corpus")

    monkeypatch.setattr(process, "process_documents", boom)
    monkeypatch.setattr(FilesSource, "documents", boom)
    monkeypatch.setattr(FilesSource, "named_documents", boom)
    assert main(["process", "--json", *corpus, DEDUP]) == 0
    captured = capsys.readouterr()
    again = json.loads(captured.out)
    assert again["cached"] is True and captured.err == ""
    assert again["processed_id"] == first["processed_id"] and again["entry"] == first["entry"]
    assert again["seconds"] < first["seconds"]
    assert [s["docs_removed"] for s in again["stages"]] == [12, 12]
    assert "examples" not in again["stages"][0]
    assert main(["process", *corpus, DEDUP]) == 0
    assert "cached: read " in capsys.readouterr().out


def test_the_table_names_filter_rules_and_aligns_columns() -> None:
    report = {
        "docs_in": 10,
        "docs_out": 7,
        "bytes_in": 2_000_000,
        "bytes_out": 1_500_000,
        "seconds": 1.25,
        "stages": [
            {
                "stage": "filter_quality",
                "docs_in": 10,
                "docs_out": 7,
                "docs_removed": 3,
                "bytes_in": 2_000_000,
                "bytes_removed": 500_000,
                "seconds": 1.2,
            }
        ],
    }
    lines = report_table(report).splitlines()
    assert len({len(line) for line in lines}) == 1  # every line as wide: aligned
    assert lines[2].split() == ["filter_quality", "10", "7", "3", "30.0%", "0.50", "25.0%", "1.2"]
    assert lines[-1].split()[0] == "total"


BAD = [
    pytest.param([DEDUP, "data.dedup_near.threshold=2"], "dedup_near.threshold", id="threshold"),
    pytest.param(["data.process=[dedup_exact,dedup_fuzzy]"], "data.process", id="unknown-stage"),
    pytest.param(["data.process=[dedup_exact,dedup_exact]"], "data.process", id="stage-twice"),
    pytest.param([DEDUP, "data.dedup_near.thresh=0.9"], "data.dedup_near.thresh", id="typo-key"),
    pytest.param([DEDUP, "data.path={tmp}/nope"], "data.path", id="missing-path"),
    pytest.param([DEDUP, "model.n_layer=2"], "model.n_layer=2", id="not-a-data-key"),
    pytest.param(["data.process=[]"], "data.process", id="nothing-to-process"),
    pytest.param(["data=markov", DEDUP], "data.process", id="markov"),
    pytest.param([DEDUP, "data=nope"], "data/nope", id="option-missing"),
]  # fmt: skip


@pytest.mark.parametrize(("extra", "key"), BAD)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    corpus, tmp_path, capsys, extra, key
) -> None:
    before = set(tmp_path.rglob("*"))
    args = [*corpus, *(e.format(tmp=tmp_path) for e in extra)]
    with pytest.raises(SystemExit) as exit_:
        main(["process", *args])
    assert exit_.value.code == EXIT_USER_ERROR
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and key in lines[0], lines
    assert captured.out == ""
    assert set(tmp_path.rglob("*")) == before
