"""What every data source is: one class that describes its config and reads its corpus.

A source (``data.source``, ``data=<name>``) is a subclass of :class:`Source` registered in
:mod:`scaling.sources`. Its class holds what the config side needs without reading anything:
its name, the dataclass of the ``data.*`` keys it reads (``keys``, which
:class:`scaling.data_config.DataConfig` composes), the checks of their values, its part of a
provisional run key, and, for a source that makes token ids itself, their vocabulary. An
instance, built from the data config, is its reader: a cheap fingerprint of the content, and
its documents (or, for a token source, its token ids).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

# The ``data`` config a source reads: a :class:`scaling.data_config.DataConfig`. It is composed
# of every source's ``keys``, so this package cannot import it (that would be a cycle); a source
# reads its own keys and the shared ones (``cache_dir``, ...) from it.
DataSettings = Any


class Source:
    """A corpus source: the config's description of it (class level) and its reader (instance).

    A registered source sets ``name`` and, if it reads keys of its own, ``keys``; it overrides
    :meth:`check` and :meth:`identity` for those keys, and is built as ``cls(cfg)``. A source of
    text yields documents; a source that makes token ids itself (no documents, no tokenizer)
    answers :meth:`token_vocab` and :meth:`tokens` instead.
    """

    name: ClassVar[str] = ""  # the data.source value, and conf/data/<name>.yaml
    keys: ClassVar[type | None] = None  # frozen dataclass of its own data.* keys, with defaults
    tokens_are: ClassVar[str] = "made by the source"  # a token source: how (for its errors)

    label: str  # file-name-safe prefix of corpus_id, e.g. "stdlib-3.11"
    where: str  # how errors name it, e.g. "data.path=notes/"

    # ---- the config side: no reading --------------------------------------------------------

    @classmethod
    def check(cls, cfg: DataSettings) -> None:
        """Raise :class:`~scaling.errors.ConfigError` (one line naming the key) for a value of
        the source's own keys it cannot use."""

    @classmethod
    def identity(cls, cfg: DataSettings) -> dict[str, Any]:
        """The source's own keys in a provisional run key (paths made absolute)."""
        return {}

    @classmethod
    def token_vocab(cls, cfg: DataSettings) -> int | None:
        """How many token ids a source that makes them itself has (no documents for
        ``data.process``, no tokenizer; its tokenizer id is ``<name><vocab>``); None for a
        source of text."""
        return None

    # ---- the reader -------------------------------------------------------------------------

    def fingerprint(self) -> Any:
        """Cheap, JSON-able identity of the content (no reading of the text)."""
        raise NotImplementedError

    def documents(self) -> Iterator[str]:
        raise NotImplementedError

    def named_documents(self) -> Iterator[tuple[str, str]]:
        """``(name, text)`` of each document, in :meth:`documents` order (names for reports)."""
        for i, text in enumerate(self.documents()):
            yield f"#{i}", text

    def tokens(self) -> tuple[np.ndarray, dict[str, Any]]:
        """A token source's ids (``0 <= id < token_vocab``) and the facts its cache entry's
        ``meta.json`` records beside them."""
        raise NotImplementedError
