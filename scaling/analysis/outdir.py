"""Output folders written whole or not at all (``scaling fit``, ``--law curve``, ``compare``)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from scaling.errors import UserError


@contextmanager
def staged_dir(out: Path) -> Iterator[tuple[Path, list[Path]]]:
    """Yield ``(stage, written)``: write the folder's files into ``stage``, a private folder
    beside ``out``; when the block ends without an error they are moved into ``out`` (created if
    needed; other files there are kept) and listed in ``written``. An error leaves ``out`` as it
    was: no half-written output."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: exists and is not a directory; choose another output folder")
    parent = out.parent if str(out.parent) else Path(".")
    parent.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory(dir=parent, prefix=f".{out.name}.") as tmp:
        stage = Path(tmp)
        yield stage, written
        out.mkdir(parents=True, exist_ok=True)
        for item in sorted(stage.iterdir()):
            target = out / item.name
            item.replace(target)
            written.append(target)
