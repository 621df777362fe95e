"""``data=hf``: a Hugging Face dataset, ``datasets.load_dataset(data.name, data.config,
data_files=..., split=...)``, one document per row of ``data.text_field``. ``data.name`` is a hub
dataset or a loader (text, json, csv, parquet, arrow) reading ``data.data_files``; the HF cache
goes under ``<data.cache_dir>/hf``. ``datasets`` is imported only when the rows are read."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scaling.errors import ConfigError, DataError
from scaling.sources.base import DataSettings, Source
from scaling.sources.files import file_stats, progress, safe_name

HF_LOADERS = ("text", "json", "csv", "parquet", "arrow")


@dataclass(frozen=True)
class HFKeys:
    name: str | None = None  # hub dataset, or a loader: text | json | csv | parquet
    config: str | None = None
    data_files: Any = None  # str, list of str, or {split: files}
    split: str = "train"
    text_field: str = "text"


class HFSource(Source):
    """The rows of ``data.name`` (with ``data.config``, ``data.data_files``, ``data.split``)."""

    name = "hf"
    keys = HFKeys

    @classmethod
    def check(cls, cfg: DataSettings) -> None:
        if not cfg.name:
            raise ConfigError(
                "data.name is not set: pass data.name=HUB_DATASET, or a loader "
                "(text, json, csv, parquet) with data.data_files=FILES"
            )

    @classmethod
    def identity(cls, cfg: DataSettings) -> dict[str, Any]:
        return {
            "name": cfg.name,
            "config": cfg.config,
            "data_files": cfg.data_files,
            "split": cfg.split,
            "text_field": cfg.text_field,
        }

    def __init__(self, cfg: DataSettings) -> None:
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
