"""A corpus of files, a document each (the stdlib, sitepackages and text sources), and the
helpers of reading one: file stats for fingerprints, file text, file-name-safe labels and
progress bars (the processing stages and the tokenizer show theirs with :func:`progress` too).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from scaling.sources.base import Source

log = logging.getLogger(__name__)


def file_stats(paths: Iterable[Path]) -> list[tuple[str, int, int]]:
    out = []
    for p in paths:
        st = p.stat()
        out.append((str(p), st.st_size, st.st_mtime_ns))
    return out


def read_text(path: Path) -> str | None:
    """File text (UTF-8, bad bytes replaced, CRLF -> LF), or None for a binary file."""
    raw = path.read_bytes()
    if b"\x00" in raw[:8192]:
        return None
    return raw.decode("utf-8", errors="replace").replace("\r\n", "\n")


def safe_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "._-" else "_" for c in name).strip("._")
    return cleaned[:40] or "corpus"


def progress(it: Iterable[Any], **kwargs: Any) -> Iterable[Any]:
    """A tqdm bar on an interactive terminal, the bare iterable otherwise."""
    if not sys.stderr.isatty():
        return it
    from tqdm.auto import tqdm

    return tqdm(it, leave=False, **kwargs)


class FilesSource(Source):
    """A list of files read in order, a document each; binary files are skipped."""

    def __init__(
        self, label: str, where: str, files: list[Path], extra: Any, root: Path | None = None
    ) -> None:
        self.label, self.where, self.files, self.extra = label, where, files, extra
        self.root = root  # documents are named by their path below it (reports only)

    def fingerprint(self) -> Any:
        return [self.label, self.extra, file_stats(self.files)]

    def documents(self) -> Iterator[str]:
        for _, text in self.named_documents():
            yield text

    def named_documents(self) -> Iterator[tuple[str, str]]:
        skipped = 0
        for path in progress(self.files, desc=f"reading {self.label}", unit="file"):
            text = read_text(path)
            if text is None:
                skipped += 1
                continue
            yield self._name(path), text
        if skipped:
            log.warning("%s: skipped %d binary files", self.where, skipped)

    def _name(self, path: Path) -> str:
        if self.root is not None:
            try:
                return str(path.relative_to(self.root))
            except ValueError:
                pass
        return str(path)
