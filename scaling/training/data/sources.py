"""Where a corpus's text comes from (``data.source``): stdlib, text files, HF datasets, markov.

- ``stdlib``: every ``.py`` under ``sysconfig.get_paths()["stdlib"]`` minus ``site-packages``
  (about 1,800 files, 31 MB of real text that every Python has), sorted by path.
- ``sitepackages``: every ``.py`` under ``sysconfig.get_paths()["purelib"]``, the running
  environment's installed packages (this project's ``.venv``: ~16,000 files, ~260 MB), sorted by
  path below that folder; vendored copies recur, so ``data=sitepackages`` deduplicates by default.
- ``text``: a file, a folder (files matching ``data.pattern``, hidden and binary files skipped)
  or a glob (``data.path="books/*.txt"``), sorted by path.
- ``hf``: ``datasets.load_dataset(data.name, data.config, data_files=..., split=...)``, one
  document per row of ``data.text_field``.
- ``markov``: a seeded Markov chain (:mod:`.markov`); its source only names and fingerprints it.

Each source has a cheap :meth:`Source.fingerprint` (file paths, sizes and mtimes, or the dataset /
chain parameters) that keys the token cache without reading any text. Its documents (a file each
for file sources, a row each for HF datasets) are what ``data.process`` (:mod:`.process`) dedups
and filters; :meth:`Source.named_documents` names them for its report.
"""

from __future__ import annotations

import glob
import logging
import os
import sys
import sysconfig
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from scaling.config import DataConfig
from scaling.errors import ConfigError, DataError
from scaling.training.data.files import progress, safe_name

log = logging.getLogger(__name__)


class Source:
    label: str  # file-name-safe prefix of corpus_id, e.g. "stdlib-3.11"
    where: str  # how errors name it, e.g. "data.path=notes/"

    def fingerprint(self) -> Any:
        """Cheap, JSON-able identity of the content (no reading of the text)."""
        raise NotImplementedError

    def documents(self) -> Iterator[str]:
        raise NotImplementedError

    def named_documents(self) -> Iterator[tuple[str, str]]:
        """``(name, text)`` of each document, in :meth:`documents` order (names for reports)."""
        for i, text in enumerate(self.documents()):
            yield f"#{i}", text


def file_stats(paths: Iterable[Path]) -> list[tuple[str, int, int]]:
    out = []
    for p in paths:
        st = p.stat()
        out.append((str(p), st.st_size, st.st_mtime_ns))
    return out


def read_text(path: Path) -> str | None:
    """File text (UTF-8, bad bytes replaced, CRLF -> LF), or None for a binary file."""
    raw = path.read_bytes()
    if b"\x00" in raw[:8192]:
        return None
    return raw.decode("utf-8", errors="replace").replace("\r\n", "\n")


class FilesSource(Source):
    def __init__(
        self, label: str, where: str, files: list[Path], extra: Any, root: Path | None = None
    ) -> None:
        self.label, self.where, self.files, self.extra = label, where, files, extra
        self.root = root  # documents are named by their path below it (reports only)

    def fingerprint(self) -> Any:
        return [self.label, self.extra, file_stats(self.files)]

    def documents(self) -> Iterator[str]:
        for _, text in self.named_documents():
            yield text

    def named_documents(self) -> Iterator[tuple[str, str]]:
        skipped = 0
        for path in progress(self.files, desc=f"reading {self.label}", unit="file"):
            text = read_text(path)
            if text is None:
                skipped += 1
                continue
            yield self._name(path), text
        if skipped:
            log.warning("%s: skipped %d binary files", self.where, skipped)

    def _name(self, path: Path) -> str:
        if self.root is not None:
            try:
                return str(path.relative_to(self.root))
            except ValueError:
                pass
        return str(path)


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


def stdlib_source() -> Source:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    files = stdlib_files()
    root = Path(sysconfig.get_paths()["stdlib"])
    if not files:
        raise DataError(f"no .py files under {root} (the stdlib corpus)")
    return FilesSource(f"stdlib-{version}", "the stdlib corpus", files, version, root=root)


def sitepackages_files(root: Path | None = None) -> list[Path]:
    """Every ``.py`` under ``root`` (default: this environment's site-packages,
    ``sysconfig.get_paths()["purelib"]``), ``__pycache__`` skipped, sorted by path below it."""
    root = Path(sysconfig.get_paths()["purelib"]) if root is None else root
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        out.extend(Path(dirpath) / f for f in filenames if f.endswith(".py"))
    return sorted(out, key=lambda p: p.relative_to(root).parts)


def sitepackages_source() -> Source:
    """The environment's installed Python packages as a corpus (a document per ``.py`` file).

    Its content identity is the text of its files in order of their path below site-packages
    (the run key hashes the processed text, see :mod:`.process`), never where the environment
    lives: the same packages installed elsewhere are the same corpus.
    """
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    root = Path(sysconfig.get_paths()["purelib"])
    files = sitepackages_files(root)
    if not files:
        raise DataError(f"no .py files under {root} (the sitepackages corpus)")
    return FilesSource(
        f"sitepackages-{version}", f"the sitepackages corpus ({root})", files, version, root=root
    )


def text_source(cfg: DataConfig) -> Source:
    raw = str(cfg.path)
    where = f"data.path={raw}"
    path = Path(raw).expanduser()
    if any(c in raw for c in "*?["):
        files = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        if not files:
            raise ConfigError(f"{where} matches no file: check the glob")
        stem = Path(raw.split("*")[0].split("?")[0].split("[")[0] or "glob").name or "glob"
    elif path.is_dir():
        patterns = [p.strip() for p in cfg.pattern.split(",") if p.strip()]
        found: set[Path] = set()
        for pat in patterns:
            for p in path.glob(pat):
                rel = p.relative_to(path).parts
                if p.is_file() and not any(part.startswith(".") for part in rel):
                    found.add(p)
        files = sorted(found)
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
    return FilesSource(f"text-{safe_name(stem)}", where, files, None, root=root)


class HFSource(Source):
    def __init__(self, cfg: DataConfig) -> None:
        self.cfg = cfg
        self.label = f"hf-{safe_name(Path(str(cfg.name)).name)}"
        files = cfg.data_files
        self.where = f"data.name={cfg.name}" + (f" data.data_files={files}" if files else "")

    def _local_paths(self) -> list[str]:
        files = self.cfg.data_files
        if files is None:
            items: list[str] = []
        elif isinstance(files, str):
            items = [files]
        elif isinstance(files, Mapping):
            items = [f for v in files.values() for f in ([v] if isinstance(v, str) else v)]
        else:
            items = list(files)
        out = []
        for item in [str(self.cfg.name), *items]:
            out.extend(sorted(glob.glob(os.path.expanduser(item), recursive=True)))
        return out

    def fingerprint(self) -> Any:
        c = self.cfg
        local = [Path(p) for p in self._local_paths()]
        stats = file_stats(p for p in local if p.is_file())
        return [c.name, c.config, c.data_files, c.split, c.text_field, stats]

    def documents(self) -> Iterator[str]:
        import datasets  # heavy: only for this source

        c = self.cfg
        if c.data_files is not None and not self._local_paths() and c.name in HF_LOADERS:
            raise ConfigError(f"data.data_files={c.data_files} matches no file")
        kwargs: dict[str, Any] = {}
        if c.name == "text":
            kwargs["keep_linebreaks"] = True  # else the loader strips every newline
        try:
            ds = datasets.load_dataset(
                c.name,
                c.config,
                data_files=c.data_files,
                split=c.split,
                cache_dir=str(Path(c.cache_dir).expanduser() / "hf"),
                **kwargs,
            )
        except (OSError, ValueError, datasets.exceptions.DatasetsError) as err:
            cause = f" ({err.__cause__})" if err.__cause__ else ""
            msg = " ".join(f"{err}{cause}".split())
            raise DataError(f"{self.where} could not be loaded: {msg}") from None
        if c.text_field not in ds.column_names:
            raise ConfigError(
                f"data.text_field={c.text_field!r} is not a column of {self.where}: "
                f"columns are {', '.join(ds.column_names)}"
            )
        for batch in progress(ds.iter(batch_size=1024), desc=f"reading {self.label}", unit="batch"):
            for text in batch[c.text_field]:
                if text:
                    yield str(text)


HF_LOADERS = ("text", "json", "csv", "parquet", "arrow")


def make_source(cfg: DataConfig) -> Source:
    if cfg.source == "stdlib":
        return stdlib_source()
    if cfg.source == "sitepackages":
        return sitepackages_source()
    if cfg.source == "text":
        return text_source(cfg)
    if cfg.source == "hf":
        return HFSource(cfg)
    return MarkovSource(cfg)


class MarkovSource(Source):
    def __init__(self, cfg: DataConfig) -> None:
        self.cfg = cfg
        self.label = f"markov-s{cfg.states}-c{cfg.concentration:g}-seed{cfg.markov_seed}"
        self.where = f"the markov source ({self.label})"

    def fingerprint(self) -> Any:
        c = self.cfg
        return [self.label, c.states, c.concentration, c.markov_seed, c.corpus_tokens]
