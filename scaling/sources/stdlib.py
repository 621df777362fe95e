"""``data=stdlib``, the embedded default corpus: every ``.py`` under
``sysconfig.get_paths()["stdlib"]`` minus ``site-packages`` (about 1,800 files, 31 MB of real text
that every Python has), a document per file, sorted by path."""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

from scaling.errors import DataError
from scaling.sources.base import DataSettings
from scaling.sources.files import FilesSource


def stdlib_files() -> list[Path]:
    """Every ``.py`` of this Python's standard library (site-packages excluded), sorted."""
    root = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [
            d for d in dirnames if d not in ("site-packages", "dist-packages", "__pycache__")
        ]
        out.extend(Path(dirpath) / f for f in filenames if f.endswith(".py"))
    return sorted(out)


class StdlibSource(FilesSource):
    """This Python's standard library; it reads no keys of its own."""

    name = "stdlib"

    def __init__(self, cfg: DataSettings) -> None:
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        files = stdlib_files()
        root = Path(sysconfig.get_paths()["stdlib"])
        if not files:
            raise DataError(f"no .py files under {root} (the stdlib corpus)")
        super().__init__(f"stdlib-{version}", "the stdlib corpus", files, version, root=root)
