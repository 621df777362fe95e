"""Corpora, tokenizers, the token cache and the batches a run trains on.

A run sees its data as one stream of token ids, split once into a training part and a fixed
validation part. Everything here is deterministic in the config: the same corpus and tokenizer
give byte-identical token files on every machine, and the validation tokens never depend on the
seed, the model or ``seq_len``, so final losses of a sweep are comparable.

One job per module, in the order data flows:

- :mod:`scaling.sources` (in the core): where the text comes from (``data.source``: stdlib,
  sitepackages, text, hf, markov), a module per source.
- :mod:`.process`: ``data.process``, between source and tokenizer: the stages of :mod:`.stages`
  (exact and near dedup, length and quality filters; MinHash signatures from :mod:`.minhash`)
  run in order, cached under ``<cache_dir>/processed/`` with a report.
- :mod:`.tokenizer`: documents -> token ids (``byte`` or ``bpe``).
- :mod:`.cache`: tokenize once into ``<cache_dir>/tokens/``, split (a processed corpus's split
  with no training duplicate of a validation document), load as a :class:`Corpus`.
- :mod:`.batches`: seeded, resumable training windows and the fixed validation windows.
- :mod:`.files`: content hashes shared by the cache, the processing and the tokenizer.

This package imports numpy and tokenizers, not torch: the sweep driver validates a grid and builds
the token cache without loading the training libraries. The torch side, :mod:`.batches`
(``TokenBatches``, ``TokenDataModule``, ``val_windows``), is imported from its module.
"""

from scaling.training.data.cache import (
    CACHE_FORMAT,
    VAL_PIECES,
    Corpus,
    load_corpus,
    split_tokens,
    train_epochs,
)
from scaling.training.data.process import (
    Processed,
    ProcessedSource,
    load_processed,
    process_documents,
)
from scaling.training.data.tokenizer import load_tokenizer, train_bpe

__all__ = [
    "CACHE_FORMAT",
    "VAL_PIECES",
    "Corpus",
    "Processed",
    "ProcessedSource",
    "load_corpus",
    "load_tokenizer",
    "load_processed",
    "process_documents",
    "split_tokens",
    "train_bpe",
    "train_epochs",
]
