"""The data sources (``data.source``, chosen as ``data=<name>``), one module each, registered here.

Each source is one class (:class:`~scaling.sources.base.Source`) that holds the ``data.*`` keys
it reads, their checks, its part of a provisional run key, and its reader:

- :mod:`.stdlib`: every ``.py`` of this Python's standard library (the default).
- :mod:`.text`: your files (``data.path``, ``data.pattern``).
- :mod:`.hf`: a Hugging Face dataset (``data.name``, ``data.config``, ``data.data_files``,
  ``data.split``, ``data.text_field``).
- :mod:`.markov`: a seeded Markov chain with its exact entropy rate (``data.states``,
  ``data.concentration``, ``data.markov_seed``, ``data.corpus_tokens``).
- :mod:`.sitepackages`: every ``.py`` of the running environment's installed packages.
- :mod:`.files`: the reader of a list of files the file sources share, and its helpers.

The package imports no torch and nothing of the training stack: the core validates a data config
and keys a run through it; the training stack reads corpora through :func:`make_source`.

Adding a source: write ``scaling/sources/<name>.py`` with its class (``name``, ``keys`` as a
frozen dataclass of its keys with their defaults, ``check``, ``identity``, the reader), add the
class to :data:`SOURCES` below, and give Hydra ``conf/data/<name>.yaml`` (``source: <name>``).
:class:`~scaling.data_config.DataConfig` composes the new keys as ``data.<key>``.
"""

from __future__ import annotations

from scaling.sources.base import DataSettings, Source
from scaling.sources.hf import HFSource
from scaling.sources.markov import MarkovSource
from scaling.sources.sitepackages import SitepackagesSource
from scaling.sources.stdlib import StdlibSource
from scaling.sources.text import TextSource

# name -> class, in the order errors list them ("choose one of stdlib, text, ...") and
# DataConfig holds their keys
SOURCES: dict[str, type[Source]] = {
    cls.name: cls for cls in (StdlibSource, TextSource, HFSource, MarkovSource, SitepackagesSource)
}


def make_source(cfg: DataSettings) -> Source:
    """The reader of the data config ``cfg``'s source (``data.source``)."""
    return SOURCES[cfg.source](cfg)


__all__ = ["SOURCES", "make_source"]
