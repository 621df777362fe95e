"""Files written whole or not at all.

Every file the project writes for others to read (a token-cache entry, a run table, a rule file,
a sweep preset, a checkpoint kept for branches) goes to a temporary name beside its target and is
``os.replace``-d into place: a reader never sees half a file, a kill leaves at most a stray
``.tmp`` file, and two processes writing the same file at once both succeed and leave one valid
copy.  Whole folders go through :func:`scaling.analysis.outdir.staged_dir`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a fresh temporary path beside ``path``, then move it onto ``path``
    (parents created); on any error the temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: Path, parts: Sequence[bytes | memoryview]) -> Path:
    """``parts`` concatenated into ``path``, atomically."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            for part in parts:
                f.write(part)

    return atomic_write(path, write)


def atomic_write_text(path: Path, text: str) -> Path:
    """``text`` (UTF-8) into ``path``, atomically."""
    return atomic_write_bytes(path, [text.encode("utf-8")])
