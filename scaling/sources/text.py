"""``data=text``: your own text files. ``data.path`` is a file, a folder (its files matching
``data.pattern``, hidden and binary files skipped) or a glob (``data.path="books/*.txt"``); a
document per file, sorted by path."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scaling.errors import ConfigError
from scaling.sources.base import DataSettings
from scaling.sources.files import FilesSource, safe_name


@dataclass(frozen=True)
class TextKeys:
    path: str | None = None  # a file, a folder or a glob
    pattern: str = "**/*"  # comma-separated globs inside a folder given as data.path


class TextSource(FilesSource):
    """The files ``data.path`` names."""

    name = "text"
    keys = TextKeys

    @classmethod
    def check(cls, cfg: DataSettings) -> None:
        if not cfg.path:
            raise ConfigError("data.path is not set: pass data.path=FILE|DIR|GLOB")

    @classmethod
    def identity(cls, cfg: DataSettings) -> dict[str, Any]:
        return {"path": os.path.abspath(os.path.expanduser(str(cfg.path))), "pattern": cfg.pattern}

    def __init__(self, cfg: DataSettings) -> None:
        raw = str(cfg.path)
        where = f"data.path={raw}"
        path = Path(raw).expanduser()
        if any(c in raw for c in "*?["):
            files = sorted(
                Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file()
            )
            if not files:
                raise ConfigError(f"{where} matches no file: check the glob")
            stem = Path(raw.split("*")[0].split("?")[0].split("[")[0] or "glob").name or "glob"
        elif path.is_dir():
            files = _folder_files(path, cfg.pattern)
            if not files:
                raise ConfigError(
                    f"{where} is a folder with no file matching data.pattern={cfg.pattern!r}"
                )
            stem = path.resolve().name
        elif path.is_file():
            files, stem = [path], path.stem
        else:
            raise ConfigError(f"{where} does not exist: pass an existing FILE, DIR or GLOB")
        files = [f.resolve() for f in files]
        root = path.resolve() if path.is_dir() else None
        super().__init__(f"text-{safe_name(stem)}", where, files, None, root=root)


def _folder_files(folder: Path, pattern: str) -> list[Path]:
    """The files below ``folder`` matching any of the comma-separated globs of ``pattern``,
    none inside a hidden folder or hidden itself, sorted."""
    found: set[Path] = set()
    for pat in (p.strip() for p in pattern.split(",") if p.strip()):
        for p in folder.glob(pat):
            rel = p.relative_to(folder).parts
            if p.is_file() and not any(part.startswith(".") for part in rel):
                found.add(p)
    return sorted(found)
