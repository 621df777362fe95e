"""``auto`` in the train group: the numbers ``train.lr``, ``train.batch_size`` and
``train.warmup_steps`` resolve to, before anything keys the run.

``train.lr=auto`` / ``train.batch_size=auto`` take the hparams rule's value at the run's compute
``C = 6 N D`` (:func:`apply_hparams_rule`; which rule: :func:`scaling.config.find_hparams_rule`);
``train.warmup_steps=auto`` is a warmup of N tokens (:func:`auto_warmup_steps`). A run resolved
from ``auto`` has the key of the same run with the numbers given; what it resolved from is
recorded with it (:class:`~scaling.hparams_rule.HparamsUse`), not in its key.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from scaling.counting import compute_from, count_params
from scaling.data_config import DataConfig
from scaling.devices import TrainerConfig
from scaling.errors import ConfigError
from scaling.hparams_rule import HparamsRule, HparamsUse
from scaling.run_config import RunConfig
from scaling.schema import GPTConfig, TrainConfig

AUTO = "auto"
AUTO_KEYS = ("lr", "batch_size")  # train keys that take "auto" from the hparams rule
BATCH_MISMATCH = 2.0  # lr=auto with a given batch this many times the rule's (or 1/x): warn

_WARNED: set[object] = set()  # warnings printed (each once per process)


def auto_keys(train_raw: Mapping[str, Any]) -> tuple[str, ...]:
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


def with_placeholders(train_raw: Mapping[str, Any], auto: tuple[str, ...]) -> dict[str, Any]:
    """``train_raw`` with valid stand-ins for the auto keys, so that every other train key is
    validated as usual before the rule is read (:func:`apply_hparams_rule` replaces them)."""
    out = dict(train_raw)
    if "lr" in auto:
        out["lr"] = TrainConfig.lr
    if "batch_size" in auto:
        micro = train_raw.get("micro_batch_size")
        valid = isinstance(micro, int) and not isinstance(micro, bool) and micro >= 1
        out["batch_size"] = micro if valid else TrainConfig.batch_size
    return out


def _warn_batch_mismatch(batch_tokens: int, rule_tokens: float) -> None:
    """``train.lr=auto`` with ``train.batch_size`` given: the rule's LR is the best at the rule's
    own batch, not at one :data:`BATCH_MISMATCH` times larger or smaller. Printed once per
    batch."""
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


def apply_hparams_rule(
    rule: HparamsRule,
    model: GPTConfig,
    data: DataConfig,
    train: TrainConfig,
    trainer: TrainerConfig,
    keys: tuple[str, ...],
    warn: bool = True,
) -> tuple[TrainConfig, HparamsUse]:
    """``train`` with the ``keys`` (``lr``, ``batch_size``) from the hparams ``rule`` at the run's
    compute ``C = 6 N D`` (N: total parameters of ``model``; D: the planned tokens, which depend
    on neither the LR nor the batch).

    The LR is the rule's, clipped to its ``lr_range`` and rounded to 4 significant digits; the
    batch is ``batch_tokens(C) / seq_len`` sequences rounded to a multiple of the world size (x
    ``micro_batch_size`` when set), at least one such multiple. With ``train.horizons`` the
    longest horizon's compute is used (one LR and batch for the whole group).
    """
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


def warmup_is_auto(train_raw: Mapping[str, Any]) -> bool:
    """Whether ``train.warmup_steps`` is ``auto``; a word that is neither a whole number nor
    auto is refused here."""
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
