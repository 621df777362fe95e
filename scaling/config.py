"""The run configuration: schema, defaults, validation, horizon and identity.

This module is the pure core's view of a run and imports neither torch, lightning nor mlflow, so
the sweep driver, the CLI and the analysis side can size and name runs without the training stack.

- **Schema and defaults** live only in the group dataclasses (:class:`GPTConfig`,
  :class:`DataConfig`, :class:`TrainConfig`, :class:`TrackingConfig`, :class:`TrainerConfig`),
  defined in :mod:`scaling.schema` and re-exported here: import them from this module.
  :func:`register_configs` stores their defaults in Hydra's ``ConfigStore`` as ``<group>/base``;
  the YAML files in ``scaling/conf/`` pick a base and set only what differs from it.
- **Validation**: :func:`structured` merges a group's mapping onto its dataclass with OmegaConf
  (types, unknown keys) and ``__post_init__`` checks values; every failure is one
  :class:`~scaling.errors.ConfigError` line that names the key.
- **Horizon**: exactly one of ``train.tokens`` / ``train.flops``; tokens, steps and FLOPs derive
  from it (:class:`RunConfig`), with the FLOPs of :mod:`scaling.counting`.
- **Identity**: :func:`run_key` and :func:`run_name`, derived from what a run trains -- the
  canonical training config and the corpus's content and tokenizer (:class:`DataIdentity`) --
  never from a timestamp, a path or a cadence (:meth:`RunConfig.identity` has the rule).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from scaling.counting import compute_from, count_params, flops_for_tokens, tokens_for_flops
from scaling.errors import ConfigError
from scaling.schedule import cooldown_start
from scaling.schema import (
    DEFAULT_EXPERIMENT,
    DEFAULT_TRACKING_URI,
    MAX_EVAL_SEQ_LEN,
    MAX_SEED,
    MAX_TOKENS,
    MLP_CHOICES,
    NORM_CHOICES,
    POS_CHOICES,
    PRECISIONS,
    SCHEDULES,
    SOURCES,
    TOKENIZERS,
    DataConfig,
    GPTConfig,
    SweepConfig,
    TrackingConfig,
    TrainConfig,
    TrainerConfig,
    tracking_uri_problem,
)

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
    "CONF_DIR",
    "SWEEPS_DIR",
    "DEFAULT_EXPERIMENT",
    "DEFAULT_TRACKING_URI",
    "GROUPS",
    "MAX_EVAL_SEQ_LEN",
    "MLP_CHOICES",
    "NORM_CHOICES",
    "POS_CHOICES",
    "PRECISIONS",
    "SCHEDULES",
    "SOURCES",
    "TOKENIZERS",
    "TOP_LEVEL_KEYS",
    "DataConfig",
    "DataIdentity",
    "GPTConfig",
    "HparamsRule",
    "HparamsUse",
    "PowerLaw",
    "RunConfig",
    "SweepConfig",
    "TrackingConfig",
    "TrainConfig",
    "TrainerConfig",
    "build_run_config",
    "canonical",
    "find_hparams_rule",
    "plain_config",
    "register_configs",
    "run_key",
    "run_name",
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
    import typing

    try:
        hint = typing.get_type_hints(cls).get(name)
    except (NameError, TypeError):
        return None
    return hint if isinstance(hint, type) and is_dataclass(hint) else None


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
        merged = OmegaConf.merge(OmegaConf.structured(cls), _integral_floats(cls, values))
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


# ---- one run ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataIdentity:
    """What a run trains and validates on, by content: the data part of its key.

    Built by ``training.data.Corpus.identity`` from the token cache's ``meta.json`` (a content
    hash computed once when the entry was built, found again by the files' paths, sizes and
    mtimes), so reading it costs no pass over the text.
    """

    corpus: str  # hash of the corpus text (a synthetic corpus: of its tokens); no path, no label.
    # A processed corpus (data.process): the hash of the processed text and the processing
    # config together, so two processings of one source are two corpora even where they happen
    # to keep the same documents.
    tokenizer: str  # byte | bpe<V>-<hash of the trained tokenizer JSON> | markov<S>
    split: str  # the fixed split: "<validation pieces>x<validation tokens>"


@dataclass(frozen=True)
class RunConfig:
    """Everything one training run needs; built from Hydra's composed config."""

    model: GPTConfig
    data: DataConfig
    train: TrainConfig
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    seed: int = 0  # model init and data order
    threads: int = 0  # torch threads; 0 = every core (parallel launchers set fewer)
    progress: str = "auto"  # progress bar: auto (on a terminal) | true | false
    results_dir: str = "results"  # checkpoints and run tables
    data_identity: DataIdentity | None = None  # the corpus by content; set by training.run.prepare
    hparams: HparamsUse | None = None  # what train.lr=auto / batch_size=auto resolved from

    # ---- horizon -------------------------------------------------------------------------
    @property
    def tokens_per_step(self) -> int:
        return self.train.batch_size * self.model.seq_len

    @property
    def planned_tokens(self) -> int:
        """Tokens asked for: train.tokens, or derived from train.flops under the convention
        (with ``train.horizons``: the longest horizon's)."""
        if self.train.horizons is not None:
            return max(self._planned(v) for v in self.train.horizons)
        return self._planned(self.train.tokens)

    def _planned(self, value: float | None) -> int:
        """Tokens of a horizon given as a value of whichever of train.tokens / train.flops is
        set (``None``: train.flops' own)."""
        if self.train.tokens is not None:
            return int(value)  # type: ignore[arg-type]
        flops = self.train.flops if value is None else value
        return tokens_for_flops(self.model, flops, self.train.flops_convention)

    # ---- WSD cooldown branches (train.horizons) ------------------------------------------------
    def horizon_tokens(self) -> list[int]:
        """Tokens each of ``train.horizons`` trains (whole optimizer steps), in listed order."""
        assert self.train.horizons is not None
        tps = self.tokens_per_step
        return [self._planned(v) // tps * tps for v in self.train.horizons]

    @property
    def warmup_span(self) -> int:
        """The steps a warmup fraction is taken of: the run's, or with ``train.horizons`` the
        longest horizon's (the run whose start the stable phase is; one warmup every branch
        shares, at most :attr:`warmup_cap`)."""
        if self.train.horizons is None:
            return self.steps
        return max(self.horizon_tokens()) // self.tokens_per_step

    @property
    def warmup_cap(self) -> int | None:
        """With ``train.horizons``: the longest shared warmup a fraction (or ``auto``) gives,
        half of the shortest branch's steps before its cooldown, so that every branch keeps a
        phase at the peak LR; ``None`` for a single run."""
        if self.train.horizons is None:
            return None
        shortest = min(self.horizon_tokens()) // self.tokens_per_step
        return max(1, cooldown_start(shortest, self.train.cooldown) // 2)

    def branch_warmup(self) -> int:
        """Warmup steps every branch shares: ``warmup_steps``, else the ``warmup`` fraction of
        the longest horizon's steps, at most :attr:`warmup_cap`. (The shortest horizon's
        fraction, 12 steps in ``sweeps=horizons_wsd``, let 1 of 6 runs of the largest
        size diverge at its tuned LR; the longest's, 97 steps, 0 of 4.)"""
        t = self.train
        if t.warmup_steps is not None:
            return t.warmup_steps
        w = max(1, round(t.warmup * self.warmup_span)) if t.warmup > 0 else 0
        return self.capped_warmup(w)

    def capped_warmup(self, steps: int) -> int:
        """``steps`` of warmup, at most :attr:`warmup_cap` (unchanged for a single run)."""
        cap = self.warmup_cap
        return steps if cap is None else min(steps, cap)

    def branches(self) -> list[RunConfig]:
        """One plain ``wsd`` run per horizon, shortest first, the warmup fixed in steps: what a
        branch trains is exactly this run (its key too); it only starts from the stable run's
        checkpoint at its cooldown start instead of from step 0."""
        assert self.train.horizons is not None
        w = self.branch_warmup()
        out = []
        for value in sorted(self.train.horizons, key=self._planned):
            by_tokens = self.train.tokens is not None
            train = replace(
                self.train,
                horizons=None,
                warmup_steps=w,
                tokens=int(value) if by_tokens else None,
                flops=None if by_tokens else float(value),
            )
            out.append(replace(self, train=train))
        return out

    def branch_starts(self) -> list[int]:
        """Each branch's cooldown start (optimizer steps), in :meth:`branches` order."""
        return [cooldown_start(b.steps, b.train.cooldown) for b in self.branches()]

    def stable(self) -> RunConfig:
        """The shared stable phase: warmup then constant LR up to the last cooldown start."""
        last = max(self.branch_starts())
        train = replace(
            self.train,
            horizons=None,
            schedule="constant",
            warmup_steps=self.branch_warmup(),
            tokens=last * self.tokens_per_step,
            flops=None,
        )
        return replace(self, train=train)

    def spent_tokens(self) -> int:
        """Tokens a branched group trains: the stable phase plus every cooldown (without
        ``train.horizons``: the run's tokens)."""
        if self.train.horizons is None:
            return self.tokens
        cooldowns = sum(b.steps - s for b, s in zip(self.branches(), self.branch_starts()))
        return (max(self.branch_starts()) + cooldowns) * self.tokens_per_step

    @property
    def steps(self) -> int:
        return self.planned_tokens // self.tokens_per_step

    @property
    def tokens(self) -> int:
        """Tokens actually trained: whole optimizer steps of batch_size x seq_len."""
        return self.steps * self.tokens_per_step

    def flops(self, convention: str | None = None) -> float:
        return flops_for_tokens(self.model, self.tokens, convention or self.train.flops_convention)

    @property
    def micro_batch_size(self) -> int:
        """Sequences per forward pass on one device."""
        per_device = self.train.batch_size // self.trainer.world_size
        micro = self.train.micro_batch_size or per_device
        return min(micro, per_device)

    @property
    def accumulate(self) -> int:
        return self.train.batch_size // (self.micro_batch_size * self.trainer.world_size)

    def validate_horizon(self) -> None:
        """A horizon must hold at least one optimizer step (checked before anything starts);
        with ``train.horizons``, every branch's, and the shared warmup must end before the
        shortest branch's cooldown starts."""
        if self.train.horizons is not None:
            for branch in self.branches():
                branch.validate_horizon()
            w, first = self.branch_warmup(), min(self.branch_starts())
            if w >= first:
                raise ConfigError(
                    f"the shared warmup ({w} steps) does not end before the shortest horizon's "
                    f"cooldown starts (step {first}): lower train.warmup / train.warmup_steps "
                    "or lengthen the shortest of train.horizons"
                )
            return
        world = self.trainer.world_size
        if self.train.batch_size % world:
            raise ConfigError(
                f"train.batch_size={self.train.batch_size} is not divisible by the "
                f"{world} devices: pick a multiple of {world}"
            )
        if self.train.batch_size % (self.micro_batch_size * world):
            raise ConfigError(
                f"train.batch_size={self.train.batch_size} is not a multiple of "
                f"train.micro_batch_size x devices = {self.micro_batch_size * world}"
            )
        key = "train.tokens" if self.train.tokens is not None else "train.flops"
        if self.planned_tokens > MAX_TOKENS:
            value = self.train.tokens if self.train.tokens is not None else self.train.flops
            raise ConfigError(
                f"{key}={value:.3g} gives {self.planned_tokens:.3g} tokens, more than any run "
                f"can train (at most {MAX_TOKENS:.0e}): lower {key}"
            )
        if self.steps < 1:
            raise ConfigError(
                f"{key} gives {self.planned_tokens:,} tokens, less than one optimizer step of "
                f"{self.tokens_per_step:,} tokens (train.batch_size x model.seq_len): "
                f"raise {key} or lower train.batch_size"
            )

    def validate_combination(self) -> None:
        """Checks across groups, before anything starts: the context length against the fixed
        validation set, fp16 against gradient clipping with the fused optimizer."""
        if self.model.seq_len > MAX_EVAL_SEQ_LEN:
            raise ConfigError(
                f"model.seq_len={self.model.seq_len} is longer than the {MAX_EVAL_SEQ_LEN} tokens "
                f"the fixed validation set is cut for: use model.seq_len<={MAX_EVAL_SEQ_LEN}"
            )
        fused_adamw = self.trainer.accelerator not in ("mps", "tpu")  # module.build_optimizer
        if self.train.precision == "16-mixed" and self.train.grad_clip > 0 and fused_adamw:
            raise ConfigError(
                f"train.precision=16-mixed cannot clip gradients (train.grad_clip="
                f"{self.train.grad_clip:g}) on trainer.accelerator={self.trainer.accelerator}: "
                "the fused AdamW unscales fp16 gradients itself, so Lightning refuses to clip "
                "them; use train.precision=bf16-mixed or 32-true, or train.grad_clip=0"
            )

    def describe_horizon(self) -> dict[str, Any]:
        """Planned horizon figures, logged as params."""
        return {
            "planned.tokens": self.tokens,
            "planned.steps": self.steps,
            "planned.flops": self.flops("6N"),
            "planned.flops_convention": self.train.flops_convention,
            "planned.flops_in_convention": self.flops(),
            "planned.tokens_per_step": self.tokens_per_step,
            "planned.accumulate_grad_batches": self.accumulate,
            "planned.micro_batch_size": self.micro_batch_size,
            "planned.tokens_per_param": self.tokens / max(1, count_params(self.model).total),
        }

    # ---- identity ------------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """What decides the run's result, canonical: the mapping :func:`run_key` hashes.

        **In** (a change trains something else):

        - ``model``: the network as built -- ``vocab_size`` (the corpus's effective one), the
          shape (``n_layer``, ``d_model``, ``n_head``, ``seq_len``, ``d_ff`` as built) and
          ``pos``, ``norm``, ``mlp``, ``bias``, ``dropout``, ``tie_embeddings``;
        - ``data``: the corpus's *content* identity (a hash of the text, or of a synthetic
          corpus's tokens; under ``data.process``, of the processed text and the processing
          config, ``DataConfig.processing``), the tokenizer's identity (``byte``,
          ``bpe<V>-<hash of the trained tokenizer>``, ``markov<S>``) and the fixed split
          (validation pieces and tokens) -- :class:`DataIdentity`, set by
          ``training.run.prepare`` once the corpus is loaded;
        - ``train``: the horizon as trained (``tokens``: whole optimizer steps), ``batch_size``
          (global), the effective micro-batch (accumulation), ``lr``, ``min_lr_ratio``,
          ``warmup`` (or ``warmup_steps`` when set), ``schedule``, ``cooldown`` (``wsd`` only),
          ``horizons`` (a branched group, as trained tokens), ``weight_decay``, ``beta1``,
          ``beta2``, ``grad_clip``, ``precision``;
        - ``seed`` and the world size (devices x nodes: how the global batch is split).

        **Out** (same training, same key): how the horizon was asked for (``train.flops``,
        ``train.flops_convention``: the tokens they give are in), cadence and monitoring
        (``train.log_every``, ``train.checkpoint_every``, ``train.eval_points``, ``progress``,
        ``threads``), where things go (``tracking.*``, ``results_dir``, ``data.cache_dir``),
        the aspect rule's inputs (``model.aspect``, ``model.head_dim``), trainer settings that
        do not change the math (``trainer.accelerator``, ``trainer.strategy``; ``devices`` and
        ``num_nodes`` only as the world size), ``data.allow_repeat`` (an error or not), and
        every data key the content identity replaces (``data.path``, ``data.pattern``,
        ``data.name``, ..., ``data.vocab_size``, which the byte tokenizer ignores).

        Values are canonical: numbers that are whole are integers (``lr=1`` and ``1.0``,
        ``weight_decay=0`` and ``0.0`` are one value; ``1e-3`` and ``0.001`` parse to one
        float), ``micro_batch_size=null`` is the batch it stands for, ``d_ff=null`` the width
        built. Without a :class:`DataIdentity` (a config not yet prepared) the data part is the
        data config itself, normalised, with paths made absolute: a provisional key that runs
        and sweeps never record.
        """
        model = self.model.architecture()
        model["d_ff"] = self.model.mlp_dim
        t = self.train
        train: dict[str, Any] = {
            "tokens": self.tokens,
            "batch_size": t.batch_size,
            "micro_batch_size": self.micro_batch_size,
            "lr": t.lr,
            "min_lr_ratio": t.min_lr_ratio,
            "warmup": t.warmup,
            "schedule": t.schedule,
            "weight_decay": t.weight_decay,
            "beta1": t.beta1,
            "beta2": t.beta2,
            "grad_clip": t.grad_clip,
            "precision": t.precision,
        }
        if t.schedule == "wsd":
            train["cooldown"] = t.cooldown
        if t.warmup_steps is not None:  # replaces the fraction (unset: keys as before)
            del train["warmup"]
            train["warmup_steps"] = t.warmup_steps
        if t.horizons is not None:  # a group of branches, not one run: its members' horizons
            train["horizons"] = sorted(self.horizon_tokens())
        if self.data_identity is not None:
            data: dict[str, Any] = asdict(self.data_identity)
        else:
            data = _data_config_identity(self.data)
        return canonical(
            {
                "model": model,
                "data": data,
                "train": train,
                "seed": self.seed,
                "world_size": self.trainer.world_size,
            }
        )

    def flat_params(self) -> dict[str, Any]:
        """The resolved config flattened as ``group.key`` for MLflow params."""
        out: dict[str, Any] = {}
        for group in GROUPS:
            for key, value in asdict(getattr(self, group)).items():
                out[f"{group}.{key}"] = value
        out.update(seed=self.seed, threads=self.threads)
        if self.hparams is not None:  # train.lr / train.batch_size above are the resolved values
            out.update(self.hparams.params())
        return out


GROUPS: dict[str, type] = {
    "model": GPTConfig,
    "data": DataConfig,
    "train": TrainConfig,
    "tracking": TrackingConfig,
    "trainer": TrainerConfig,
}


def run_key(cfg: RunConfig) -> str:
    """Stable 16-hex-digit key of what a run trains: :meth:`RunConfig.identity`, hashed.

    Runs and sweeps key a prepared config (``training.run.prepare``), whose data part is the
    corpus's content identity; the key of an unprepared config is provisional.
    """
    blob = json.dumps(cfg.identity(), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def canonical(value: Any) -> Any:
    """``value`` with one spelling per value, JSON-able: a whole float is an int (``1.0`` ->
    ``1``), mapping keys are text, tuples are lists, anything else unknown is its text."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value)
        return value
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    return str(value)


def _data_config_identity(data: DataConfig) -> dict[str, Any]:
    """The data part of a provisional key: the keys the source reads, paths made absolute
    (``data.vocab_size`` only for BPE, which is the only tokenizer that reads it)."""
    out: dict[str, Any] = {"source": data.source, "val_tokens": data.val_tokens}
    if data.source == "markov":
        out.update(
            tokenizer=f"markov{data.states}",
            concentration=data.concentration,
            markov_seed=data.markov_seed,
            corpus_tokens=data.corpus_tokens,
        )
        return out
    out["tokenizer"] = f"bpe{data.vocab_size}" if data.tokenizer == "bpe" else "byte"
    if data.process:  # absent when empty: the keys of unprocessed corpora stay as they were
        out["process"] = data.processing()
    if data.source == "text":
        out.update(path=os.path.abspath(os.path.expanduser(str(data.path))), pattern=data.pattern)
    elif data.source == "hf":
        out.update(
            name=data.name,
            config=data.config,
            data_files=data.data_files,
            split=data.split,
            text_field=data.text_field,
        )
    return out


def _short(x: float) -> str:
    """``x`` to 3 significant digits with a K/M/G/T suffix (999,936 -> 1M, not 1e+03K)."""
    x = float(f"{x:.3g}")
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if x >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def run_name(cfg: RunConfig) -> str:
    """Human-readable run name derived from the config (never a timestamp), unique via the key."""
    m = cfg.model
    return (
        f"L{m.n_layer}-d{m.d_model}-h{m.n_head}-N{_short(count_params(m).total)}"
        f"-D{_short(cfg.tokens)}-lr{cfg.train.lr:g}-s{cfg.seed}-{run_key(cfg)[:6]}"
    )


# ---- hyperparameters from a rule of the compute budget (train.lr=auto, train.batch_size=auto) --

AUTO = "auto"
AUTO_KEYS = ("lr", "batch_size")  # train keys that take "auto" from the hparams rule
HPARAMS_FILE = "hparams.json"  # looked for in the working directory when train.hparams_rule is null
HPARAMS_FORMAT = (
    "scaling.hparams/1"  # the "format" of a rule file (scaling.analysis.design.hparams)
)
LR_RANGE = (1e-5, 0.1)  # an auto LR is clipped into this (a rule file's "lr_range" replaces it)
EXTRAPOLATION_WARN = 10.0  # warn when C lies more than this factor outside the fitted range
HPARAMS_CITATION = (
    "DeepSeek-AI 2024, DeepSeek LLM (arXiv 2401.02954), Sec. 3.1: eta_opt = a C^b, B_opt = c C^d"
)

# The shipped rule: what auto reads when neither train.hparams_rule nor ./hparams.json names one.
# Fitted by `scaling fit --law hparams` on the sweeps=hparams runs, the same document a fit writes
# trimmed to its rule and provenance (README, "Hyperparameters that scale"). Its exponents are not
# pinned down by three budgets one decade apart (95% intervals span zero); within and near its
# fitted range it gives the measured optima's level, beyond 10x of it a warning.
DEFAULT_HPARAMS_RULE: dict[str, Any] = {
    "format": HPARAMS_FORMAT,
    "lr": {"coef": 37.2, "exponent": -0.3285, "ci": {"exponent": [-5.03, 4.37]}},
    "batch_tokens": {"coef": 0.2321, "exponent": 0.2841, "ci": {"exponent": [-1.32, 1.89]}},
    "level": 0.95,
    "compute_convention": "C = 6 N D (N: total parameters, D: training tokens)",
    "fitted_compute": [3e10, 3e11],
    "lr_range": list(LR_RANGE),
    "source": {
        "date": "2026-11-29",
        "command": "cd /tmp/hp; python -m scaling.sweep -m sweeps=hparams "
        "results_dir=/tmp/hp/results tracking.uri=sqlite:////tmp/hp/results/mlflow.db "
        "hydra/launcher=joblib hydra.launcher.n_jobs=2; scaling collect --tracking-uri "
        "sqlite:////tmp/hp/results/mlflow.db --experiment hparams --out results/hparams.csv; "
        "scaling fit results/hparams.csv --law hparams --out analysis/hparams",
        "corpus": "stdlib (Python 3.11's standard library, byte tokenizer, corpus id "
        "stdlib-3.11-00365e939f88), seq_len 128",
        "runs": "72 (the 60 of the preset's grid and 12 at batch 16 from a first, narrower pass)",
        "fitted_compute": "3e10..3e11 FLOPs (models of 9.5K, 25K, 38K parameters)",
        "optima": "lr 0.0170, 0.0079, 0.0109 and batch 233, 248, 461 tokens at 3e10, 1e11, 3e11",
        "interval": "Student t with 1 dof: reduced chi-square of the optima about the line 3.98 "
        "(lr), 3.63 (batch)",
    },
    "citation": HPARAMS_CITATION,
}


@dataclass(frozen=True)
class PowerLaw:
    """``coef * C ** exponent``."""

    coef: float
    exponent: float

    def __call__(self, compute: float) -> float:
        return self.coef * compute**self.exponent

    def text(self) -> str:
        return f"{self.coef:.4g} x C^{self.exponent:.4g}"


@dataclass(frozen=True)
class HparamsRule:
    """A rule ``lr(C) = a C^b`` and ``batch_tokens(C) = c C^d`` (DeepSeek LLM 2024, Sec. 3.1),
    ``C = 6 N D``: what ``train.lr=auto`` / ``train.batch_size=auto`` read."""

    lr: PowerLaw
    batch_tokens: PowerLaw | None  # None: the fit's runs did not vary the batch
    compute_range: tuple[float, float]  # the budgets it was fitted on
    lr_range: tuple[float, float]  # auto LRs are clipped into it
    warn_factor: float  # C further than this factor outside compute_range: a warning
    provenance: str  # one line: what it was fitted on, when, how
    where: str  # the file it was read from, or "shipped default"
    digest: str  # sha256 (12 hex digits) of the document

    @classmethod
    def from_document(cls, doc: Any, where: str, label: str) -> HparamsRule:
        """Read a rule document (raises ConfigError naming ``label``)."""

        def bad(problem: str) -> ConfigError:
            return ConfigError(
                f"{label}: {problem}; pass a rule file written by `scaling fit --law hparams` "
                "(DIR/hparams.json)"
            )

        if not isinstance(doc, Mapping) or doc.get("format") != HPARAMS_FORMAT:
            raise bad(f'not a rule file (no "format": "{HPARAMS_FORMAT}")')

        def law(name: str, required: bool) -> PowerLaw | None:
            part = doc.get(name)
            if part is None and not required:
                return None
            try:
                coef, exponent = float(part["coef"]), float(part["exponent"])
            except (TypeError, KeyError, ValueError):
                raise bad(f"{name} needs numbers coef and exponent") from None
            if not (math.isfinite(coef) and coef > 0 and math.isfinite(exponent)):
                raise bad(f"{name} has coef={coef:g}, exponent={exponent:g}: need coef > 0")
            return PowerLaw(coef, exponent)

        def pair(name: str, default: tuple[float, float] | None) -> tuple[float, float]:
            value = doc.get(name, default)
            try:
                lo, hi = (float(v) for v in value)  # type: ignore[union-attr]
            except (TypeError, ValueError):
                raise bad(f"{name} must be [low, high]") from None
            if not (0 < lo <= hi < math.inf):
                raise bad(f"{name} must be [low, high] with 0 < low <= high")
            return lo, hi

        lr = law("lr", True)
        assert lr is not None
        factor = doc.get("extrapolation_warn", EXTRAPOLATION_WARN)
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor >= 1:
            raise bad(f"extrapolation_warn={factor!r} must be a number >= 1")
        blob = json.dumps(canonical(doc), sort_keys=True, separators=(",", ":"))
        return cls(
            lr=lr,
            batch_tokens=law("batch_tokens", False),
            compute_range=pair("fitted_compute", None),
            lr_range=pair("lr_range", LR_RANGE),
            warn_factor=factor,
            provenance=_provenance(doc),
            where=where,
            digest=hashlib.sha256(blob.encode()).hexdigest()[:12],
        )

    def extrapolation(self, compute: float) -> str | None:
        """A warning when ``compute`` lies more than ``warn_factor`` x (the rule's
        ``extrapolation_warn``, default :data:`EXTRAPOLATION_WARN`) outside the fitted range,
        else None."""
        lo, hi = self.compute_range
        if lo / self.warn_factor <= compute <= hi * self.warn_factor:
            return None
        side = "above" if compute > hi else "below"
        return (
            f"C = {compute:.3g} FLOPs is more than {self.warn_factor:g}x {side} the range the "
            f"hparams rule was fitted on ({lo:.3g}..{hi:.3g}; {self.where}): an extrapolation"
        )


def _provenance(doc: Mapping[str, Any]) -> str:
    source = doc.get("source")
    if not isinstance(source, Mapping):
        return str(source or "unknown")
    return "; ".join(f"{k}: {v}" for k, v in source.items() if v not in (None, "", [], {}))


@dataclass(frozen=True)
class HparamsUse:
    """What ``auto`` resolved from: recorded with the run (MLflow params ``hparams.*``), never in
    its key (the resolved numbers are)."""

    keys: tuple[str, ...]  # the train keys that were auto
    compute: float  # C = 6 N D the rule was evaluated at
    rule: HparamsRule
    lr_rule: float | None  # the rule's LR before clipping and rounding
    batch_tokens_rule: float | None  # the rule's batch in tokens before rounding
    warning: str | None  # extrapolation

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "hparams.auto": ",".join(self.keys),
            "hparams.compute": self.compute,
            "hparams.rule": self.rule.where,
            "hparams.rule_digest": self.rule.digest,
            "hparams.rule_provenance": self.rule.provenance,
            "hparams.lr_law": self.rule.lr.text(),
        }
        if self.rule.batch_tokens is not None:
            out["hparams.batch_tokens_law"] = self.rule.batch_tokens.text()
        if self.lr_rule is not None:
            out["hparams.lr_rule"] = self.lr_rule
        if self.batch_tokens_rule is not None:
            out["hparams.batch_tokens_rule"] = self.batch_tokens_rule
        if self.warning:
            out["hparams.warning"] = self.warning
        return out


_RULES: dict[tuple[str, int, int], HparamsRule] = {}  # rule files read, by path, mtime and size


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
        return _read_rule(file, f"train.hparams_rule={path}")
    local = Path(HPARAMS_FILE)
    if local.is_file():
        return _read_rule(local, f"./{HPARAMS_FILE} (read by train.lr/batch_size=auto)")
    return HparamsRule.from_document(DEFAULT_HPARAMS_RULE, "shipped default", "the shipped rule")


def _read_rule(file: Path, label: str) -> HparamsRule:
    where = str(file.resolve())
    stat = file.stat()
    key = (where, stat.st_mtime_ns, stat.st_size)
    if key not in _RULES:
        try:
            doc = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ConfigError(f"{label}: cannot read it as JSON ({first})") from None
        _RULES[key] = HparamsRule.from_document(doc, where, label)
    return _RULES[key]


def _auto_keys(train_raw: Mapping[str, Any]) -> tuple[str, ...]:
    """The train keys set to ``auto``; a word that is neither a number nor auto is refused here
    (OmegaConf would say only "a number")."""
    out = []
    for key in AUTO_KEYS:
        value = train_raw.get(key)
        if not isinstance(value, str):
            continue
        if value.strip().lower() == AUTO:
            out.append(key)
            continue
        try:
            float(value)
        except ValueError:
            kind, example = (
                ("a positive number", "train.lr=3e-3")
                if key == "lr"
                else ("a whole number of sequences", "train.batch_size=32")
            )
            raise ConfigError(
                f"train.{key}={value!r} must be {kind} or auto (e.g. {example}, or train.{key}"
                "=auto: from the hparams rule of the run's compute budget)"
            ) from None
    return tuple(out)


def auto_warmup_steps(params: int, tokens_per_step: int, steps: int, fraction: float) -> int:
    """``train.warmup_steps=auto``: a warmup of N tokens (one per parameter) in whole optimizer
    steps, at least one and at most the ``fraction`` (``train.warmup``) of ``steps``.

    Kaplan et al.'s fixed 3,000-step warmup is far too long for small models and biases the
    fitted exponents (Porian et al. 2024); tying it to the size keeps it a small share of a
    compute-optimal run (D/N = 20: 5%) and never more than the fraction a run would get anyway.
    """
    by_size = -(-int(params) // int(tokens_per_step))
    cap = max(1, round(fraction * steps))
    return max(1, min(by_size, cap))


def _warmup_is_auto(train_raw: Mapping[str, Any]) -> bool:
    value = train_raw.get("warmup_steps")
    if not isinstance(value, str):
        return False
    if value.strip().lower() == AUTO:
        return True
    try:
        int(value)
    except ValueError:
        raise ConfigError(
            f"train.warmup_steps={value!r} must be a whole number of optimizer steps, null (then "
            "train.warmup, a fraction of the steps, applies) or auto (N tokens, at most "
            "train.warmup of the run)"
        ) from None
    return False


def resolve_warmup(run: RunConfig) -> RunConfig:
    """``run`` with ``train.warmup_steps`` from :func:`auto_warmup_steps` (with
    ``train.horizons``: of the longest horizon, at most ``warmup_cap``: the warmup every
    branch shares)."""
    w = auto_warmup_steps(
        count_params(run.model).total, run.tokens_per_step, run.warmup_span, run.train.warmup
    )
    return replace(run, train=replace(run.train, warmup_steps=run.capped_warmup(w)))


def _placeholders(train_raw: Mapping[str, Any], auto: tuple[str, ...]) -> dict[str, Any]:
    """``train_raw`` with valid stand-ins for the auto keys, so that every other train key is
    validated as usual before the rule is read (the stand-ins are replaced by resolve_auto)."""
    out = dict(train_raw)
    if "lr" in auto:
        out["lr"] = TrainConfig.lr
    if "batch_size" in auto:
        micro = train_raw.get("micro_batch_size")
        valid = isinstance(micro, int) and not isinstance(micro, bool) and micro >= 1
        out["batch_size"] = micro if valid else TrainConfig.batch_size
    return out


_WARNED: set[object] = set()


BATCH_MISMATCH = 2.0  # lr=auto with a given batch this many times the rule's (or 1/x): warn


def _warn_batch_mismatch(batch_tokens: int, rule_tokens: float) -> None:
    """``train.lr=auto`` with ``train.batch_size`` given: the rule's LR is the best at the rule's
    own batch; at a batch :data:`BATCH_MISMATCH` times larger or smaller it is not (tuned per
    schedule at 1.6-3.2x the rule's batch, the best LR was 1.7-2.9x the rule's:
    ``benchmarks/bench_horizons.py``). Printed once per batch."""
    ratio = batch_tokens / rule_tokens
    if 1 / BATCH_MISMATCH <= ratio <= BATCH_MISMATCH or ("batch", batch_tokens) in _WARNED:
        return
    _WARNED.add(("batch", batch_tokens))
    print(
        f"warning: train.lr=auto with train.batch_size given ({batch_tokens:,} tokens a step, "
        f"{ratio:.2g}x the rule's {rule_tokens:,.0f} at this compute): the rule's LR is the best "
        "at its own batch, not at this one; set train.batch_size=auto too, or tune train.lr",
        file=sys.stderr,
    )


def resolve_auto(
    model: GPTConfig,
    data: DataConfig,
    train: TrainConfig,
    trainer: TrainerConfig,
    keys: tuple[str, ...],
    warn: bool = True,
) -> tuple[TrainConfig, HparamsUse]:
    """``train`` with the ``keys`` (``lr``, ``batch_size``) from the hparams rule at the run's
    compute ``C = 6 N D`` (N: total parameters of ``model``; D: the planned tokens, which depend
    on neither the LR nor the batch).

    The LR is the rule's, clipped to its ``lr_range`` and rounded to 4 significant digits; the
    batch is ``batch_tokens(C) / seq_len`` sequences rounded to a multiple of the world size (x
    ``micro_batch_size`` when set), at least one such multiple. With ``train.horizons`` the
    longest horizon's compute is used (one LR and batch for the whole group).
    """
    rule = find_hparams_rule(train.hparams_rule)
    probe = RunConfig(model=model, data=data, train=train, trainer=trainer)
    compute = float(compute_from(count_params(model).total, probe.planned_tokens))
    changes: dict[str, Any] = {}
    lr_rule = batch_rule = None
    if "lr" in keys:
        lr_rule = rule.lr(compute)
        lo, hi = rule.lr_range
        changes["lr"] = float(f"{min(max(lr_rule, lo), hi):.4g}")
    if "batch_size" in keys:
        if rule.batch_tokens is None:
            raise ConfigError(
                f"train.batch_size=auto: the hparams rule ({rule.where}) has no batch law (the "
                "runs it was fitted on did not vary train.batch_size): give train.batch_size"
            )
        batch_rule = rule.batch_tokens(compute)
        unit = trainer.world_size * (train.micro_batch_size or 1)
        sequences = batch_rule / model.seq_len
        changes["batch_size"] = int(max(1, math.floor(sequences / unit + 0.5)) * unit)
    if warn and "lr" in keys and "batch_size" not in keys and rule.batch_tokens is not None:
        _warn_batch_mismatch(probe.tokens_per_step, rule.batch_tokens(compute))
    warning = rule.extrapolation(compute)
    if warn and warning and warning not in _WARNED:
        _WARNED.add(warning)
        given = ", ".join(f"train.{k}=auto" for k in keys)
        print(f"warning: {given}: {warning}", file=sys.stderr)
    use = HparamsUse(
        keys=keys,
        compute=compute,
        rule=rule,
        lr_rule=lr_rule,
        batch_tokens_rule=batch_rule,
        warning=warning,
    )
    return replace(train, **changes), use


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
    auto = _auto_keys(train_raw)
    warmup_auto = _warmup_is_auto(train_raw)
    if warmup_auto:
        train_raw["warmup_steps"] = None  # resolved below, once batch and horizon are known
    hparams = None
    if auto:
        train, hparams = resolve_auto(
            model, data, structured(TrainConfig, "train", _placeholders(train_raw, auto)),
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
