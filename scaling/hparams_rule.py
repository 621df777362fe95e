"""The hyperparameter rule: ``lr(C)`` and ``batch_tokens(C)``, power laws of the compute budget.

A rule file (``hparams.json``, format :data:`HPARAMS_FORMAT`) is what ``scaling fit --law
hparams`` writes and what ``train.lr=auto`` / ``train.batch_size=auto`` read: the fitted laws
(DeepSeek LLM 2024, Sec. 3.1: ``eta_opt = a C^b``, ``B_opt = c C^d``, ``C = 6 N D``), the compute
range they were fitted on, the range an auto LR is clipped into, and where they came from.
:class:`HparamsRule` reads such a document (one :class:`~scaling.errors.ConfigError` line for a
bad one); :func:`read_rule` reads a file once per version; :class:`HparamsUse` is what a run
records of the rule it resolved from. Which rule a run reads (``train.hparams_rule``,
``./hparams.json``, the shipped one) is :func:`scaling.config.find_hparams_rule`; the numbers it
resolves to, :mod:`scaling.auto`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scaling.errors import ConfigError
from scaling.identity import canonical

HPARAMS_FILE = "hparams.json"  # looked for in the working directory when train.hparams_rule is null
HPARAMS_FORMAT = "scaling.hparams/1"  # the "format" of a rule file (`scaling fit --law hparams`)
LR_RANGE = (1e-5, 0.1)  # an auto LR is clipped into this (a rule file's "lr_range" replaces it)
EXTRAPOLATION_WARN = 10.0  # warn when C lies more than this factor outside the fitted range
HPARAMS_CITATION = (
    "DeepSeek-AI 2024, DeepSeek LLM (arXiv 2401.02954), Sec. 3.1: eta_opt = a C^b, B_opt = c C^d"
)


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


def read_rule(file: Path, label: str) -> HparamsRule:
    """The rule in ``file``, read once per version of the file (its path, mtime and size);
    raises ConfigError naming ``label``."""
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
