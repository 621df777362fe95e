"""A curves table in, ``curve_fit.json`` and ``curve_fit.png`` out: ``scaling fit --law curve``.

:func:`fit_curves_to_dir` reads a curves table (``scaling collect --curves``), fits the loss-curve
law of :mod:`.curve` per model size, scores every run's final loss (predicted by
its size's law, the run itself included in the fit) and predicts the final loss of requested
horizons, then writes both files into ``out`` through a temporary folder beside it, so a failed
fit leaves nothing half-written.  :func:`summary` is the text ``scaling fit`` prints.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scaling.analysis.curves.curve import CurveFit, CurveOptions, fit_curves
from scaling.analysis.curves.forms import form_of
from scaling.analysis.curves.size_fit import used_mask
from scaling.analysis.curves.size_law import CurvePrediction, resolve_schedule
from scaling.analysis.curves.traces import LR_COLUMN
from scaling.analysis.outdir import staged_dir
from scaling.analysis.table import _read_any, read_run_table
from scaling.errors import DataError, UserError
from scaling.numbers import fmt_g, jsonable

CURVE_JSON = "curve_fit.json"
CURVE_PNG = "curve_fit.png"


@dataclass(frozen=True)
class CurveOutput:
    """A finished curve fit: the fit, the predictions asked for, the document written and the
    files."""

    fit: CurveFit
    predictions: tuple[CurvePrediction, ...]
    doc: dict[str, Any]
    written: tuple[Path, ...]


def read_curves(path: str | Path) -> pd.DataFrame:
    """A curves table (CSV or Parquet): ``run, step, lr, loss`` as it is (:mod:`.traces`
    checks it), else (``scaling collect --curves``, with or without ``lr``) validated by
    :func:`scaling.analysis.table.read_run_table` (``run_id, params, tokens, loss``), rows by
    run then tokens."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    df = _read_any(path)
    df.columns = [str(c).strip() for c in df.columns]
    collected = {"run_id", "params", "tokens", "loss"} <= set(df.columns)
    if LR_COLUMN in df.columns and not collected:
        return df  # another trainer's run, step, lr, loss: traces.py checks it
    try:
        return read_run_table(path, curves=True)
    except DataError as err:
        if "run_id" in str(err) and "curves table" in str(err):
            raise DataError(
                f"{path}: --law curve needs a curves table with a run_id column "
                "(`scaling collect --curves --out FILE`)"
            ) from None
        raise


def parse_tokens(text: str | Sequence[float] | None) -> list[float]:
    """``"1e6,2e6"`` (or numbers) as positive token counts; raises :class:`UserError`."""
    if text is None:
        return []
    items = [t for t in text.split(",") if t.strip()] if isinstance(text, str) else list(text)
    out = []
    for item in items:
        try:
            value = float(item)
        except (TypeError, ValueError):
            raise UserError(f"--predict-tokens: {item!r} is not a number (e.g. 1e6,2e6)") from None
        if not (math.isfinite(value) and value > 0):
            raise UserError(f"--predict-tokens: {item!r} must be a positive token count")
        out.append(value)
    return out


def parse_lambda(text: str | float | None) -> float | str | None:
    """``--curve-lambda``: a number in (0, 1), ``fit``, or None (the default)."""
    if text is None or isinstance(text, float):
        return text
    if text.strip().lower() == "fit":
        return "fit"
    try:
        return float(text)
    except ValueError:
        raise UserError(
            f"--curve-lambda must be a number such as 0.999 or 'fit', got {text!r}"
        ) from None


def predictions_for(
    fit: CurveFit, tokens: Sequence[float], schedule: Mapping[str, Any] | None = None
) -> list[CurvePrediction]:
    """Final loss of every size at each horizon in ``tokens`` (whole optimizer steps of the
    size's batch), under the size's typical schedule with ``schedule``'s keys replaced."""
    out = []
    for law in fit.sizes:
        for value in tokens:
            if law.tokens_per_step is None:
                raise UserError(
                    "--predict-tokens needs the runs' tokens per step: a curves table with a "
                    "tokens column (or train.batch_size and model.seq_len)"
                )
            steps = int(value // law.tokens_per_step)
            if steps < 1:
                raise UserError(
                    f"--predict-tokens {value:g} is less than one optimizer step of size "
                    f"{law.params:.4g} ({law.tokens_per_step} tokens per step)"
                )
            sched = resolve_schedule(law, schedule)
            out.append(law.predict_final(sched, steps, seed=fit.options.seed))
    return out


def curve_doc(
    fit: CurveFit,
    predictions: Sequence[CurvePrediction],
    source: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``curve_fit.json`` document (docs/ARCHITECTURE.md, "curve_fit.json")."""
    doc = fit.to_dict()
    scores = fit.score()
    doc["runs"] = [
        {
            "run_id": r["run_id"],
            "params": r["params"],
            "role": r["role"],
            "schedule": r["schedule"],
            "total_steps": int(r["total_steps"]),
            "step": int(r["step"]),
            "tokens": None if r["tokens"] is None or pd.isna(r["tokens"]) else int(r["tokens"]),
            "measured": r["measured"],
            "predicted": r["predicted"],
            "loss_ci": [r["ci_lo"], r["ci_hi"]],
            "loss_pi": [r["pi_lo"], r["pi_hi"]],
            "error_pct": r["error_pct"],
            "inside": bool(r["inside"]),
        }
        for r in scores.to_dict("records")
    ]
    doc["predictions"] = []
    for p in predictions:
        item = p.to_dict()
        law = fit.size(p.params)
        item["extrapolation"] = p.total_steps / law.max_steps
        doc["predictions"].append(item)
    doc["level"] = fit.options.level
    doc["data"] = dict(source or {})
    return jsonable(doc)


def fit_curves_to_dir(
    table: str | Path,
    out: str | Path,
    options: CurveOptions | None = None,
    *,
    predict_tokens: Sequence[float] = (),
    schedule: Mapping[str, Any] | None = None,
    plot: bool = True,
    score: str | Path | None = None,
) -> CurveOutput:
    """Fit the curves table at ``table`` and write ``curve_fit.json`` (and ``curve_fit.png``)
    into ``out``; with ``score`` (a curves table of held-out runs), each of its runs predicted
    at its last row from its own LR (the document's ``"score"``).  Raises :class:`UserError`
    before writing anything."""
    table, out = Path(table), Path(out)
    options = options or CurveOptions()
    options.check()
    df = read_curves(table)
    held = read_curves(score) if score is not None else None
    fit = fit_curves(df, options)
    predictions = predictions_for(fit, predict_tokens, schedule)
    doc = curve_doc(fit, predictions, {"path": str(table), "rows": len(df)})
    if held is not None:
        doc["score"] = score_doc(fit, held)
        doc["data"]["score"] = str(score)
    with staged_dir(out) as (stage, written):
        (stage / CURVE_JSON).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        if plot:
            plot_curves(fit, predictions, stage / CURVE_PNG)
    return CurveOutput(fit, tuple(predictions), doc, tuple(written))


def score_doc(fit: CurveFit, held: pd.DataFrame) -> list[dict[str, Any]]:
    """Each held-out run's last row predicted from its own LR: ``{"run", "params", "step",
    "predicted", "measured", "error_pct", "pi"}`` (the contract of ``--score``)."""
    rows = fit.score(held)
    return jsonable(
        [
            {
                "run": r["run_id"],
                "params": r["params"],
                "step": int(r["step"]),
                "predicted": r["predicted"],
                "measured": r["measured"],
                "error_pct": r["error_pct"],
                "pi": [r["pi_lo"], r["pi_hi"]],
            }
            for r in rows.to_dict("records")
        ]
    )


def score_text(score: Sequence[Mapping[str, Any]]) -> str:
    """The ``--score`` table: ``run, predicted, measured, error %`` per held-out run."""
    width = max([len("run")] + [len(str(r["run"])) for r in score])
    lines = [f"{'run':<{width}}  {'predicted':>10}  {'measured':>10}  {'error %':>8}"]
    for r in score:
        lines.append(
            f"{str(r['run']):<{width}}  {r['predicted']:>10.5g}  {r['measured']:>10.5g}  "
            f"{r['error_pct']:>+8.3f}"
        )
    return "\n".join(lines)


def _interval(values: Sequence[float | None] | None) -> str:
    if not values or any(v is None for v in values):
        return ""
    return f"[{fmt_g(values[0])}, {fmt_g(values[1])}]"


def summary(doc: Mapping[str, Any]) -> str:
    """What ``scaling fit --law curve`` prints: each size's parameters with their intervals,
    each run's final loss predicted vs measured, and the predictions asked for."""
    level = doc.get("level") or doc["options"]["level"]
    opts = doc["options"]
    kind = {"blocks": "block bootstrap of residuals", "runs": "bootstrap over runs"}
    how = (
        f"{level:.0%} intervals: {kind.get(opts['resample'], opts['resample'])}, "
        f"{opts['bootstrap']} resamples"
        if opts["bootstrap"]
        else "no bootstrap (--bootstrap 0): prediction intervals from the noise only"
    )
    form = form_of(doc.get("form", "tissue"))
    lam = (
        f"lambda {doc['lam']:g}" + (" (fitted)" if doc.get("lam_scores") else "") + "; "
        if doc.get("lam") is not None
        else ""
    )
    lines = [f"curve law ({form.name}) {form.equation}", f"  {form.citation}", f"  {lam}{how}"]
    for size in doc["sizes"]:
        noise = size.get("noise") or {}
        said = f", noise {fmt_g(noise.get('sigma_log'), 3)} ({noise.get('source')})"
        lines.append(
            f"size N={fmt_g(size['params'])}: {size['n_runs']} run(s), {size['n_points']} points, "
            f"rms log residual {fmt_g(size['rms_log'], 3)}" + (said if noise else "")
        )
        for name in form.params:
            lines.append(f"  {name:>6} = {fmt_g(size[name])}  {_interval(size['ci'].get(name))}")
    runs = doc.get("runs") or []
    if runs:
        lines.append("final loss per run, predicted by its size's law (fitted with the run):")
        width = max(len(str(r["run_id"])) for r in runs)
        for r in runs:
            role = f" {r['role']}" if r.get("role") else ""
            lines.append(
                f"  {str(r['run_id']):<{width}}  N={fmt_g(r['params'])} {r['schedule']}{role} "
                f"step {r['step']}: measured {fmt_g(r['measured'])}, predicted "
                f"{fmt_g(r['predicted'])} {_interval(r['loss_pi'])}, error "
                f"{fmt_g(r['error_pct'], 2)}%"
            )
    if doc.get("score"):
        lines.append(f"held-out runs ({doc['data'].get('score')}), each at its last row:")
        lines.extend("  " + line for line in score_text(doc["score"]).splitlines())
    for p in doc.get("predictions") or []:
        sched = p["schedule"]
        label = sched["schedule"] + (
            f" cooldown {sched['cooldown']:g}" if sched["schedule"] == "wsd" else ""
        )
        lines.append(
            f"predicted N={fmt_g(p['params'])}, {fmt_g(p['tokens'])} tokens ({p['steps']} steps, "
            f"{label}, {fmt_g(p['extrapolation'], 3)}x the longest run): loss "
            f"{fmt_g(p['loss'])}  CI {_interval(p['loss_ci'])}  new run {_interval(p['loss_pi'])}"
        )
    return "\n".join(lines)


def plot_curves(fit: CurveFit, predictions: Sequence[CurvePrediction], path: Path) -> Path:
    """Loss against tokens, one panel per size: measured points (hollow: not fitted), the
    law's curve of each run, and the predicted horizons (dashed, final loss with its CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(fit.sizes)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.8 * rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    for ax, law in zip(axes.ravel(), fit.sizes, strict=False):
        runs = [r for r in fit.runs if r.params == law.params]
        per = law.tokens_per_step or 1  # x: tokens, else steps
        for k, r in enumerate(runs):
            color = f"C{k % 10}"
            used = used_mask(r, runs, fit.options)
            tokens = r.steps * per
            ax.plot(tokens[used], r.loss[used], "o", color=color, ms=3.5, label=r.run_id)
            ax.plot(tokens[~used], r.loss[~used], "o", mfc="none", color=color, ms=3.5)
            first = int(r.steps[used][0]) if used.any() else int(r.steps[-1])
            steps = np.unique(np.geomspace(max(first, 1), r.total_steps, 200).astype(int))
            ax.plot(
                steps * per,
                law.curve(r.lr_source, r.total_steps, steps),
                "-",
                color=color,
                lw=1.2,
            )
        for p in (p for p in predictions if p.params == law.params):
            first = max(1, int(0.1 * p.total_steps))
            steps = np.unique(np.geomspace(first, p.total_steps, 200).astype(int))
            ax.plot(
                steps * per,
                law.curve(p.schedule, p.total_steps, steps),
                "--",
                color="0.4",
                lw=1,
            )
            err = None
            if p.loss_ci is not None:
                err = [[max(0.0, p.loss - p.loss_ci[0])], [max(0.0, p.loss_ci[1] - p.loss)]]
            ax.errorbar([p.steps * per], [p.loss], yerr=err, fmt="s", color="0.2", ms=4, capsize=3)
        shown = [r.loss[used_mask(r, runs, fit.options)] for r in runs]
        shown += [np.array([p.loss]) for p in predictions if p.params == law.params]
        values = np.concatenate(shown) if shown else np.array([])
        if values.size:  # the fitted range, not the early points the law leaves out
            lo, hi = float(values.min()), float(values.max())
            pad = 0.08 * max(hi - lo, 0.02 * hi)
            ax.set_ylim(lo - pad, hi + 2 * pad)
        ax.set_xscale("log")
        ax.set_xlabel("tokens" if law.tokens_per_step else "optimizer steps")
        ax.set_ylabel("validation loss (nats/token)")
        shown_values = ", ".join(f"{k}={fmt_g(v, 3)}" for k, v in law.values().items())
        ax.set_title(f"N={fmt_g(law.params, 3)}: {shown_values}", fontsize=7)
        ax.grid(True, alpha=0.3)
        if len(runs) <= 8:
            ax.legend(fontsize=7)
    form = form_of(fit.options.form)
    fig.suptitle(f"{form.name}: {form.equation}  (dashed: predicted horizons)", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
