"""File and naming helpers of the token cache: atomic writes, content hashes, progress bars.

Writes go to a temporary name and are ``os.replace``-d into place, so two processes building the
same cache entry at once both succeed and leave one valid file.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: Path, parts: Sequence[bytes | memoryview]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            for part in parts:
                f.write(part)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, [text.encode("utf-8")])


def hash_json(obj: Any) -> str:
    return hash_bytes(json.dumps(obj, sort_keys=True, default=str).encode("utf-8"))


def hash_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def safe_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "._-" else "_" for c in name).strip("._")
    return cleaned[:40] or "corpus"


def progress(it: Iterable[Any], **kwargs: Any) -> Iterable[Any]:
    """A tqdm bar on an interactive terminal, the bare iterable otherwise."""
    if not sys.stderr.isatty():
        return it
    from tqdm.auto import tqdm

    return tqdm(it, leave=False, **kwargs)


def has_typed_keys(meta: object, keys: Mapping[str, type]) -> bool:
    """Whether ``meta`` (a parsed JSON document) is a mapping holding every key of ``keys`` with
    its type (a bool never counts as an int): a torn or hand-edited cache entry is stale."""
    return isinstance(meta, dict) and all(
        isinstance(meta.get(k), t) and not isinstance(meta.get(k), bool) for k, t in keys.items()
    )
