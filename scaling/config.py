"""Building a run's configuration: from Hydra's composed config to a validated RunConfig.

This module is the pure core's view of a run and imports neither torch, lightning nor mlflow, so
the sweep driver, the CLI and the analysis side can size and name runs without the training stack.

- **Schema and defaults** live only in the group dataclasses (:class:`GPTConfig`,
  :class:`TrainConfig`, :class:`TrackingConfig` and :class:`SweepConfig` in
  :mod:`scaling.schema`, :class:`DataConfig` in :mod:`scaling.data_config`,
  :class:`TrainerConfig` in :mod:`scaling.devices`), re-exported here: import them from this
  module. :func:`register_configs` stores their defaults in Hydra's ``ConfigStore`` as
  ``<group>/base``; the YAML files in ``conf/`` pick a base and set only what differs from it.
- **Validation**: :func:`structured` merges a group's mapping onto its dataclass with OmegaConf
  (types, unknown keys) and ``__post_init__`` checks values; every failure is one
  :class:`~scaling.errors.ConfigError` line that names the key.
- **A whole run**: :func:`build_run_config` validates every group into a
  :class:`~scaling.run_config.RunConfig` (horizon, WSD branches, checks across groups). The
  ``auto`` values of ``train.lr`` / ``train.batch_size`` / ``train.warmup_steps`` are resolved
  first (:mod:`scaling.auto`), from the hparams rule :func:`find_hparams_rule` picks, so that the
  run's key (:mod:`scaling.identity`) holds the numbers.
"""

from __future__ import annotations

import difflib
import functools
import json
import os
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from scaling.auto import (
    apply_hparams_rule,
    auto_keys,
    resolve_warmup,
    warmup_is_auto,
    with_placeholders,
)
from scaling.data_config import MAX_EVAL_SEQ_LEN, TOKENIZERS, DataConfig
from scaling.devices import TrainerConfig
from scaling.errors import ConfigError
from scaling.hparams_rule import HPARAMS_FILE, HparamsRule, HparamsUse, read_rule
from scaling.identity import DataIdentity
from scaling.run_config import GROUPS, RunConfig
from scaling.schema import (
    COMPILE_MODES,
    DEFAULT_EXPERIMENT,
    DEFAULT_TRACKING_URI,
    MAX_SEED,
    MLP_CHOICES,
    NORM_CHOICES,
    POS_CHOICES,
    PRECISIONS,
    SCHEDULES,
    SPIKE_ACTIONS,
    GPTConfig,
    SpikeConfig,
    SweepConfig,
    TrackingConfig,
    TrainConfig,
    tracking_uri_problem,
)
from scaling.sources import SOURCES

# The Hydra configs (conf/) and the sweep presets (sweeps/) sit at the top of a source checkout;
# a wheel carries them inside the package as scaling/conf/ and scaling/conf/sweeps/.
_HERE = Path(__file__).resolve().parent
CONF_DIR = _HERE / "conf" if (_HERE / "conf").is_dir() else _HERE.parent / "conf"
SWEEPS_DIR = CONF_DIR / "sweeps" if (CONF_DIR / "sweeps").is_dir() else _HERE.parent / "sweeps"

# ${scaling.cwd:} is the process's working directory: sweep.yaml puts it on Hydra's search path
# so that presets written by `scaling plan` into ./sweeps/ are found. (${oc.env:PWD} is the
# shell's variable, which a program that starts the sweep in another folder does not update.)
# ${scaling.presets:} is the folder holding the shipped sweeps/, on the search path after it.
if not OmegaConf.has_resolver("scaling.cwd"):
    OmegaConf.register_new_resolver("scaling.cwd", os.getcwd)
if not OmegaConf.has_resolver("scaling.presets"):
    OmegaConf.register_new_resolver("scaling.presets", lambda: str(SWEEPS_DIR.parent))

C = TypeVar("C")

__all__ = [
    "COMPILE_MODES",
    "CONF_DIR",
    "SWEEPS_DIR",
    "DEFAULT_EXPERIMENT",
    "DEFAULT_HPARAMS_RULE",
    "DEFAULT_TRACKING_URI",
    "GROUPS",
    "MAX_EVAL_SEQ_LEN",
    "MLP_CHOICES",
    "NORM_CHOICES",
    "POS_CHOICES",
    "PRECISIONS",
    "SCHEDULES",
    "SOURCES",
    "SPIKE_ACTIONS",
    "TOKENIZERS",
    "TOP_LEVEL_KEYS",
    "DataConfig",
    "GPTConfig",
    "SpikeConfig",
    "SweepConfig",
    "TrackingConfig",
    "TrainConfig",
    "TrainerConfig",
    "build_run_config",
    "find_hparams_rule",
    "plain_config",
    "register_configs",
    "resolve_auto",
    "structured",
    "tracking_uri_problem",
    "unknown_key_message",
    "fields_at",
]


# ---- from mappings to dataclasses -------------------------------------------------------------


def _integral_floats(cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """YAML and Hydra read ``4e6`` as a float: give int fields the whole number it spells (in
    nested dataclasses too, e.g. ``data.dedup_near.num_perm=1e2``)."""
    ints = {f.name for f in fields(cls) if str(f.type).startswith("int")}
    out = {}
    for k, v in values.items():
        nested = _nested_dataclass(cls, k)
        if nested is not None and isinstance(v, Mapping):
            out[k] = _integral_floats(nested, v)
        elif k in ints and isinstance(v, float) and v.is_integer():
            out[k] = int(v)
        else:
            out[k] = v
    return out


def _nested_dataclass(cls: type, name: str) -> type | None:
    """The dataclass type of field ``name`` of ``cls``, if it is one."""
    hint = _type_hints(cls).get(name)
    return hint if isinstance(hint, type) and is_dataclass(hint) else None


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """``typing.get_type_hints(cls)`` (empty when they cannot be resolved), once per class."""
    import typing

    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError):
        return {}


@functools.cache
def _schema(cls: type) -> Any:
    """``OmegaConf.structured(cls)``, once per class (``OmegaConf.merge`` copies it)."""
    return OmegaConf.structured(cls)


def fields_at(cls: type, path: str) -> tuple[type, str]:
    """The dataclass that owns the last part of a dotted ``path`` and that part's name."""
    *parents, name = path.split(".")
    for part in parents:
        nested = _nested_dataclass(cls, part)
        if nested is None:
            break
        cls = nested
    return cls, name


def structured(cls: type[C], group: str, values: Mapping[str, Any]) -> C:
    """``cls`` built from ``values`` (a config group), typed by OmegaConf and validated.

    Raises :class:`ConfigError` with one line naming ``group.key`` for an unknown key, a value of
    the wrong type, or a value ``cls.__post_init__`` rejects.
    """
    try:
        merged = OmegaConf.merge(_schema(cls), _integral_floats(cls, values))
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        name = str(getattr(err, "full_key", "") or getattr(err, "key", "") or "")
        key = f"{group}.{name}" if group else name
        if isinstance(err, ConfigKeyError):
            owner, _ = fields_at(cls, name)
            raise ConfigError(unknown_key_message(key, [f.name for f in fields(owner)])) from None
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"{key}: {first}{_type_hint(cls, name, key)}") from None


def unknown_key_message(key: str, known: list[str]) -> str:
    """``key is not a known key; known: ...`` with the closest known key, if one is close."""
    prefix, _, name = key.rpartition(".")
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {prefix + '.' if prefix else ''}{close[0]}?" if close else ""
    return f"{key} is not a known key; known: {', '.join(known)}{hint}"


_KINDS = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "text"}


def _type_hint(cls: type, name: str, key: str) -> str:
    """``; pass a whole number, e.g. train.tokens=1000000`` for a value of the wrong type."""
    field_ = next((f for f in fields(cls) if f.name == name), None)
    if field_ is None:
        return ""
    kind = _KINDS.get(str(field_.type).split(" ")[0].split("|")[0].strip())
    if kind is None:
        return ""
    default = field_.default
    if default is not MISSING and default is not None:
        shown = str(default).lower() if isinstance(default, bool) else default
        return f"; pass {kind}, e.g. {key}={shown}"
    return f"; pass {kind}"


def register_configs() -> None:
    """Store each group's defaults in Hydra's ConfigStore as ``<group>/base`` (the top-level keys
    as ``run_base``, the sweep driver's as ``sweep/base``).

    The YAML options (``model/gpt.yaml``, ``data/text.yaml``, ...) extend their group's base and
    set only what differs. Nodes are plain mappings, not typed schemas, so a wrong type reaches
    :func:`structured` and gets the project's one-line error instead of Hydra's.
    """
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for group, cls in GROUPS.items():
        store.store(group=group, name="base", node=_field_defaults(cls))
    store.store(name="run_base", node=_field_defaults(_TopLevel))  # seed, threads, ...
    store.store(group="sweep", name="base", node=_field_defaults(SweepConfig))


def _field_defaults(cls: type) -> dict[str, Any]:
    """A dataclass's field defaults as a plain mapping (``__post_init__`` not run)."""
    return OmegaConf.to_container(OmegaConf.structured(cls))  # type: ignore[return-value]


# ---- which hparams rule train.lr=auto / train.batch_size=auto read ----------------------------

# The shipped rule, with its provenance in the document's "source": what auto reads when neither
# train.hparams_rule nor ./hparams.json names one.
DEFAULT_HPARAMS_RULE: dict[str, Any] = json.loads(
    (CONF_DIR / "hparams.json").read_text(encoding="utf-8")
)


def find_hparams_rule(path: str | None) -> HparamsRule:
    """The rule auto reads: ``path`` (``train.hparams_rule``), else ``./hparams.json`` in the
    working directory if it exists, else :data:`DEFAULT_HPARAMS_RULE` (raises ConfigError)."""
    if path is not None:
        file = Path(path).expanduser()
        if not file.is_file():
            raise ConfigError(
                f"train.hparams_rule={path}: no such file; pass a rule file written by "
                "`scaling fit --law hparams` (DIR/hparams.json), or train.hparams_rule=null"
            )
        return read_rule(file, f"train.hparams_rule={path}")
    local = Path(HPARAMS_FILE)
    if local.is_file():
        return read_rule(local, f"./{HPARAMS_FILE} (read by train.lr/batch_size=auto)")
    return HparamsRule.from_document(DEFAULT_HPARAMS_RULE, "shipped default", "the shipped rule")


def resolve_auto(
    model: GPTConfig,
    data: DataConfig,
    train: TrainConfig,
    trainer: TrainerConfig,
    keys: tuple[str, ...],
    warn: bool = True,
) -> tuple[TrainConfig, HparamsUse]:
    """``train`` with the ``keys`` (``lr``, ``batch_size``) from the rule
    :func:`find_hparams_rule` picks for ``train.hparams_rule``, at the run's compute
    (:func:`scaling.auto.apply_hparams_rule` has how)."""
    rule = find_hparams_rule(train.hparams_rule)
    return apply_hparams_rule(rule, model, data, train, trainer, keys, warn)


# ---- building from Hydra ----------------------------------------------------------------------


def plain_config(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The resolved config as plain containers, without Hydra's own ``hydra`` node."""
    if isinstance(cfg, DictConfig):
        keys = [k for k in cfg.keys() if k != "hydra"]
        try:
            return OmegaConf.to_container(  # type: ignore[return-value]
                OmegaConf.masked_copy(cfg, keys), resolve=True
            )
        except OmegaConfBaseException as err:
            raise ConfigError(f"cannot resolve the config: {str(err).splitlines()[0]}") from None
    return {k: v for k, v in cfg.items() if k != "hydra"}


def build_run_config(
    cfg: DictConfig | Mapping[str, Any],
    vocab_size: int | None = None,
    data_identity: DataIdentity | None = None,
) -> RunConfig:
    """Validate a composed Hydra config into a :class:`RunConfig` (raises ConfigError).

    ``vocab_size`` is the corpus's real vocabulary once loaded; before that the nominal one from
    the data config is used, so every config error surfaces before any data is touched.
    ``data_identity`` is the loaded corpus's (its content, tokenizer and split), which the run
    key then uses instead of the data config's text.
    """
    raw = plain_config(cfg)
    for group in ("model", "data", "train"):
        if not isinstance(raw.get(group), Mapping):
            raise ConfigError(f"config group {group!r} is missing: pass {group}=<name>")
    known_top = [*TOP_LEVEL_KEYS, *GROUPS, "sweep"]
    for key in raw:
        if key not in known_top:
            raise ConfigError(unknown_key_message(str(key), known_top))
    data = structured(DataConfig, "data", raw["data"])
    model_raw = {**raw["model"], "vocab_size": vocab_size or data.nominal_vocab_size}
    top = structured(_TopLevel, "", {k: raw[k] for k in _TOP_LEVEL if k in raw})
    model = structured(GPTConfig, "model", model_raw)
    trainer = structured(TrainerConfig, "trainer", raw.get("trainer", {}))
    # train.lr=auto / train.batch_size=auto: resolved here, before anything keys the run, so the
    # key holds the numbers (the same training as those numbers given explicitly: the same key)
    train_raw = dict(raw["train"])
    auto = auto_keys(train_raw)
    warmup_auto = warmup_is_auto(train_raw)
    if warmup_auto:
        train_raw["warmup_steps"] = None  # resolved below, once batch and horizon are known
    hparams = None
    if auto:
        train, hparams = resolve_auto(
            model, data, structured(TrainConfig, "train", with_placeholders(train_raw, auto)),
            trainer, auto,
        )  # fmt: skip
    else:
        train = structured(TrainConfig, "train", train_raw)
    run = RunConfig(
        model=model,
        data=data,
        train=train,
        tracking=structured(TrackingConfig, "tracking", raw.get("tracking", {})),
        trainer=trainer,
        data_identity=data_identity,
        hparams=hparams,
        **asdict(top),
    )
    if warmup_auto:
        run.validate_horizon()  # the steps it is a share of must exist first
        run = resolve_warmup(run)
    run.validate_combination()
    run.validate_horizon()
    return run


@dataclass(frozen=True)
class _TopLevel:
    """The top-level keys of a run, with RunConfig's defaults."""

    seed: int = RunConfig.seed
    threads: int = RunConfig.threads
    progress: str = RunConfig.progress
    results_dir: str = RunConfig.results_dir

    def __post_init__(self) -> None:
        if self.progress.lower() not in ("auto", "true", "false"):
            raise ConfigError(f"progress={self.progress!r} must be auto, true or false")
        object.__setattr__(self, "progress", self.progress.lower())
        if self.threads < 0:
            raise ConfigError(f"threads={self.threads} must be 0 (all cores) or positive")
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(
                f"seed={self.seed} must be in [0, {MAX_SEED}] (Lightning replaces other seeds "
                "with 0): e.g. seed=1"
            )


_TOP_LEVEL = tuple(f.name for f in fields(_TopLevel))
TOP_LEVEL_KEYS = _TOP_LEVEL  # seed, threads, progress, results_dir
