"""``data=sitepackages``: every ``.py`` under ``sysconfig.get_paths()["purelib"]``, the running
environment's installed packages (this project's ``.venv``: ~16,000 files, ~260 MB), a document
per file, sorted by path below that folder. Vendored copies recur, so
``conf/data/sitepackages.yaml`` deduplicates by default."""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

from scaling.errors import DataError
from scaling.sources.base import DataSettings
from scaling.sources.files import FilesSource


def sitepackages_files(root: Path | None = None) -> list[Path]:
    """Every ``.py`` under ``root`` (default: this environment's site-packages,
    ``sysconfig.get_paths()["purelib"]``), ``__pycache__`` skipped, sorted by path below it."""
    root = Path(sysconfig.get_paths()["purelib"]) if root is None else root
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        out.extend(Path(dirpath) / f for f in filenames if f.endswith(".py"))
    return sorted(out, key=lambda p: p.relative_to(root).parts)


class SitepackagesSource(FilesSource):
    """The environment's installed Python packages as a corpus (a document per ``.py`` file).

    Its content identity is the text of its files in order of their path below site-packages
    (the run key hashes the processed text, see ``training/data/process.py``), never where the
    environment lives: the same packages installed elsewhere are the same corpus.
    """

    name = "sitepackages"

    def __init__(self, cfg: DataSettings) -> None:
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        root = Path(sysconfig.get_paths()["purelib"])
        files = sitepackages_files(root)
        if not files:
            raise DataError(f"no .py files under {root} (the sitepackages corpus)")
        super().__init__(
            f"sitepackages-{version}",
            f"the sitepackages corpus ({root})",
            files,
            version,
            root=root,
        )
