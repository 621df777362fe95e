"""Helpers of the token cache: content hashes and the check of a cache entry's meta (its files
are written through :mod:`scaling.files`, whole or not at all)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any


def hash_json(obj: Any) -> str:
    return hash_bytes(json.dumps(obj, sort_keys=True, default=str).encode("utf-8"))


def hash_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def has_typed_keys(meta: object, keys: Mapping[str, type]) -> bool:
    """Whether ``meta`` (a parsed JSON document) is a mapping holding every key of ``keys`` with
    its type (a bool never counts as an int): a torn or hand-edited cache entry is stale."""
    return isinstance(meta, dict) and all(
        isinstance(meta.get(k), t) and not isinstance(meta.get(k), bool) for k, t in keys.items()
    )
