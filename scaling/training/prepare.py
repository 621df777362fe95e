"""Preparing a run: every input checked before anything is written.

Order of work, so that bad input costs nothing: validate the config, check the tracking store,
load (or build and cache) the token data and check the horizon against it. Only a
:class:`PreparedRun` is trained (:func:`scaling.training.run.train`), which creates the MLflow
run and starts Lightning.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from scaling.config import GROUPS, TOP_LEVEL_KEYS, build_run_config
from scaling.errors import ConfigError
from scaling.identity import run_key, run_name
from scaling.run_config import RunConfig
from scaling.training.data import Corpus, load_corpus, train_epochs
from scaling.training.tracking import check_reachable


@dataclass(frozen=True)
class PreparedRun:
    """A run whose every input has been checked; nothing has been written yet.

    ``cfg`` carries the loaded corpus's :class:`~scaling.identity.DataIdentity`, so :attr:`key`
    (and :attr:`name`, the checkpoint folder, the MLflow tag) identify the data by content.
    """

    cfg: RunConfig
    corpus: Corpus
    epochs: float

    @property
    def key(self) -> str:
        return run_key(self.cfg)

    @property
    def name(self) -> str:
        return run_name(self.cfg)

    @property
    def resolved(self) -> dict[str, Any]:
        """The config this run trains with, as ``config.yaml`` records it: every group and
        top-level key of :attr:`cfg`, ``auto`` values and derived shapes resolved."""
        out: dict[str, Any] = {group: asdict(getattr(self.cfg, group)) for group in GROUPS}
        out.update({key: getattr(self.cfg, key) for key in TOP_LEVEL_KEYS})
        return out


def prepare(raw: DictConfig | dict[str, Any], check_tracking: bool = True) -> PreparedRun:
    """Validate a composed config, the tracking store and the data (raises UserError).

    Nothing is written before every check has passed except the token cache of a valid data
    config (and its BPE tokenizer): not the tracking store, its folder, a checkpoint or a run.
    """
    cfg = build_run_config(raw)
    check_results_dir(cfg.results_dir)
    if check_tracking:
        check_reachable(cfg.tracking.uri, create=False)
    corpus = load_corpus(cfg.data, seq_len=cfg.model.seq_len)
    # Again with the corpus's real vocabulary and its content identity, which the key hashes
    # instead of the data config's text (paths, names, ignored keys).
    cfg = build_run_config(raw, vocab_size=corpus.vocab_size, data_identity=corpus.identity())
    epochs = train_epochs(corpus, cfg.tokens, cfg.data.allow_repeat)
    return PreparedRun(cfg=cfg, corpus=corpus, epochs=epochs)


def check_results_dir(path: str) -> None:
    """``results_dir`` (checkpoints, run tables, Hydra's folders) must be a folder or creatable
    as one; checked without creating it."""
    folder = Path(path).expanduser()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise ConfigError(
            f"results_dir={path} cannot be a folder: {folder} is a file; pass a folder, e.g. "
            "results_dir=results"
        )
