"""``scaling verify``: train the run a fit predicts and score the prediction.

The closed loop of a scaling study: a ladder of small runs is fitted, the fit predicts the loss of
the compute-optimal run at a larger budget, and this module trains that run (snapped to the
nearest valid model shape) and compares.  Each verification is

* recorded on the trained MLflow run itself (tags ``scaling.verify.*``: the fit, the prediction,
  both intervals, the error and whether the measurement fell inside the prediction interval), so
  prediction and outcome sit side by side in the tracking store;
* appended to ``verifications.csv`` beside the fit's ``fit.json``, which the fit's report shows
  as a table (``scaling report DIR``), so accuracy is tracked over time;
* printed as one line: ``predicted P [lo, hi], measured M, error E%, inside: yes|no``.

The prediction for the trained run is the law's loss at the *snapped* shape and its tokens
(approach 3), or the loss frontier at the budget (approaches 1-2).  ``--bracket`` also trains the
shapes nearest 0.5x and 2x the predicted N at the same compute: the allocation is then checked,
not only the loss.
"""

from __future__ import annotations

import csv
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from scaling.analysis.design.shapes import Shape, nearest_shape
from scaling.analysis.fitting.results import FitResult, load_fit
from scaling.analysis.prediction.health import problem_line
from scaling.analysis.prediction.predict import Prediction, Predictor
from scaling.analysis.prediction.question import judge
from scaling.config import CONF_DIR, register_configs
from scaling.errors import UnhealthyFitError, UserError

DEFAULT_EXPERIMENT = "verify"  # verification runs stay out of the ladder's experiment
HISTORY = "verifications.csv"
TAG = "scaling.verify."
ROLES = {"optimum": 1.0, "0.5x": 0.5, "2x": 2.0}


@dataclass(frozen=True)
class Verification:
    """One trained run against its prediction."""

    role: str  # optimum | 0.5x | 2x
    flops: float
    n_layer: int
    d_model: int
    params: int
    tokens: int
    predicted: float
    loss_ci: tuple[float, float] | None
    loss_pi: tuple[float, float] | None
    level: float | None
    measured: float
    run_id: str | None
    run_name: str

    @property
    def error_pct(self) -> float:
        return 100.0 * (self.measured / self.predicted - 1.0)

    @property
    def interval(self) -> tuple[float, float] | None:
        """The interval the measurement is judged by: the prediction interval of a new run."""
        return self.loss_pi or self.loss_ci

    @property
    def inside(self) -> bool | None:
        if self.interval is None:
            return None
        lo, hi = self.interval
        return bool(lo <= self.measured <= hi)

    def line(self) -> str:
        """``predicted P [lo, hi], measured M, error E%, inside: yes|no``."""
        iv = self.interval
        bracket = f" [{iv[0]:.4g}, {iv[1]:.4g}]" if iv else ""
        inside = {True: "yes", False: "no", None: "n/a"}[self.inside]
        return (
            f"predicted {self.predicted:.4g}{bracket}, measured {self.measured:.4g}, "
            f"error {self.error_pct:+.2f}%, inside: {inside}"
        )

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["loss_ci"] = list(self.loss_ci) if self.loss_ci else None
        doc["loss_pi"] = list(self.loss_pi) if self.loss_pi else None
        return {**doc, "error_pct": self.error_pct, "inside": self.inside}


def predicted_for(predictor: Predictor, flops: float, shape: Shape, tokens: int) -> Prediction:
    """The fit's prediction for the run that will train, at its own shape and tokens: the law
    there (approach 3), the frontier plus the IsoFLOP parabola's cost of the snapped size's
    distance from the optimum (approach 2); else the compute-optimal loss frontier."""
    if (predictor.approach == 3 and predictor.law.inputs == ("N", "D")) or (
        predictor.approach == 2 and predictor.curvature(flops) is not None
    ):
        return predictor.at_size(float(shape.params), float(tokens))
    return predictor.at_budget(flops)


def check_health(result: FitResult, fit_path: Path, allow_unhealthy: bool) -> None:
    """Refuse an unhealthy fit as ``scaling predict`` does (exit status 3)."""
    health = Predictor(result).health
    if not health["ok"] and not allow_unhealthy:
        raise UnhealthyFitError(
            f"{fit_path}: the fit cannot support a prediction: {problem_line(health)}; add runs "
            "and refit, or pass --allow-unhealthy"
        )


def compose_run(overrides: Sequence[str], base: Any = None) -> Any:
    """The run config of ``overrides``: on the shipped config.yaml, or on ``base`` (a composed
    run config, e.g. a sweep's first grid point: its data, tokenizer and hyperparameters)."""
    if base is not None:
        from omegaconf import OmegaConf

        cfg = OmegaConf.create(OmegaConf.to_container(base, resolve=False))
        return OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
    from hydra import compose, initialize_config_dir

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def _train(overrides: Sequence[str], base: Any = None) -> tuple[Any, float, str | None, str]:
    """Train one run from overrides; ``(cfg, measured val/loss, run id, run name)``."""
    from scaling.training.prepare import prepare
    from scaling.training.run import train
    from scaling.training.tracking import ensure_experiment, mlflow_client
    from scaling.training.trainer import quiet_libraries

    quiet_libraries()  # the verification's own line, not Lightning's banners
    prep = prepare(compose_run(overrides, base))
    cfg = prep.cfg
    ensure_experiment(cfg.tracking.uri, cfg.tracking.experiment)
    result = train(prep)
    if result.status == "FAILED":
        raise UserError(f"the verification run {prep.name} failed: {result.reason}")
    measured = result.val_loss
    if measured is None and result.run_id:  # already trained: read its result
        run = mlflow_client(cfg.tracking.uri).get_run(result.run_id)
        measured = run.data.metrics.get("val/loss")
    if measured is None:
        raise UserError(f"the verification run {prep.name} has no val/loss")
    return cfg, float(measured), result.run_id, prep.name


def _record(cfg: Any, v: Verification, fit_path: Path) -> None:
    """The prediction and its outcome as tags of the trained MLflow run."""
    from mlflow.entities import RunTag

    from scaling.training.tracking import mlflow_client

    if v.run_id is None:
        return
    tags = {
        "fit": str(fit_path),
        "role": v.role,
        "predicted": f"{v.predicted:.6g}",
        "loss_ci": ",".join(f"{x:.6g}" for x in v.loss_ci) if v.loss_ci else "",
        "loss_pi": ",".join(f"{x:.6g}" for x in v.loss_pi) if v.loss_pi else "",
        "level": f"{v.level:g}" if v.level else "",
        "error_pct": f"{v.error_pct:.4f}",
        "inside": {True: "yes", False: "no", None: "n/a"}[v.inside],
    }
    client = mlflow_client(cfg.tracking.uri)
    client.log_batch(v.run_id, tags=[RunTag(TAG + k, value) for k, value in tags.items()])


def append_history(path: Path, fit_path: Path, v: Verification) -> None:
    """One row per verification in ``verifications.csv`` (created with its header)."""
    row = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "fit": str(fit_path),
        **{k: val for k, val in asdict(v).items() if k not in ("loss_ci", "loss_pi")},
        "ci_lo": v.loss_ci[0] if v.loss_ci else "",
        "ci_hi": v.loss_ci[1] if v.loss_ci else "",
        "pi_lo": v.loss_pi[0] if v.loss_pi else "",
        "pi_hi": v.loss_pi[1] if v.loss_pi else "",
        "error_pct": v.error_pct,
        "inside": v.inside,
    }
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def verify(
    fit_path: str | Path,
    flops: float,
    overrides: Sequence[str] = (),
    *,
    bracket: bool = False,
    allow_unhealthy: bool = False,
    base_config: Any = None,
) -> list[Verification]:
    """Train the predicted optimum at ``flops`` (and with ``bracket`` its 0.5x and 2x
    neighbours), record and return each verification. ``base_config``: the run config the
    overrides apply to (default: the shipped config.yaml)."""
    fit_path = Path(fit_path)
    result = load_fit(fit_path)
    check_health(result, fit_path, allow_unhealthy)
    predictor = Predictor(result)
    optimum = predictor.at_budget(flops)
    if optimum.params is None:
        raise UserError(f"{fit_path}: this fit has no compute-optimal size to verify")
    for note in judge(predictor, optimum, fit_path, allow_unhealthy, allocation=True):
        print(f"warning: {note}", file=sys.stderr)
    base = list(overrides)
    if not any(o.startswith("tracking.experiment=") for o in base):
        base.append(f"tracking.experiment={DEFAULT_EXPERIMENT}")
    probe = compose_run(base, base_config).model  # the shape family's seq_len and vocabulary
    vocab = int(probe.vocab_size)
    roles = ROLES if bracket else {"optimum": 1.0}
    done: list[Verification] = []
    seen: set[tuple[int, int]] = set()
    history = (fit_path if fit_path.is_dir() else fit_path.parent) / HISTORY
    for role, factor in roles.items():
        # the free family (d_model any multiple of head_dim near the aspect rule) holds the
        # aspect shapes and the sizes between them: the nearest valid model to the prediction
        shape = nearest_shape(
            optimum.params * factor, int(probe.seq_len), vocab, "free", int(probe.head_dim)
        )
        if (shape.n_layer, shape.d_model) in seen:
            continue  # too few shapes nearby: the neighbour is the optimum itself
        seen.add((shape.n_layer, shape.d_model))
        run_overrides = [
            *base,
            f"model.n_layer={shape.n_layer}",
            f"model.d_model={shape.d_model}",
            "train.tokens=null",
            "train.horizons=null",  # a branched ladder's grid point: the run at C is one run
            f"train.flops={flops:g}",
        ]
        cfg, measured, run_id, name = _train(run_overrides, base_config)
        pred = predicted_for(predictor, flops, shape, cfg.tokens)
        v = Verification(
            role=role,
            flops=flops,
            n_layer=shape.n_layer,
            d_model=shape.d_model,
            params=shape.params,
            tokens=cfg.tokens,
            predicted=float(pred.loss),
            loss_ci=pred.loss_ci,
            loss_pi=pred.loss_pi,
            level=pred.level,
            measured=measured,
            run_id=run_id,
            run_name=name,
        )
        _record(cfg, v, fit_path)
        append_history(history, fit_path, v)
        done.append(v)
    from scaling.analysis.report.markdown import refresh_verifications  # matplotlib: lazily

    refresh_verifications(history.parent / "report.md", history)
    return done


def allocation_verdict(results: Sequence[Verification], sigma_log: float | None) -> str | None:
    """With neighbours trained: is the predicted optimum no worse than them beyond the noise?"""
    optimum = [v for v in results if v.role == "optimum"]
    others = [v for v in results if v.role != "optimum"]
    if not optimum or not others:
        return None
    best = min(others, key=lambda v: v.measured)
    margin = optimum[0].measured * (math.exp(sigma_log) - 1) if sigma_log else 0.0
    gap = optimum[0].measured - best.measured
    if gap <= margin:
        return (
            f"allocation: the predicted optimum ({optimum[0].params:,} params) is no worse than "
            f"its neighbours beyond the noise ({gap:+.4g} nats against {best.role}, noise "
            f"{margin:.2g})"
        )
    return (
        f"allocation: the {best.role} neighbour ({best.params:,} params) beat the predicted "
        f"optimum by {gap:.4g} nats, beyond the noise ({margin:.2g}): the fit's N_opt is off"
    )


def summary_lines(results: Sequence[Verification], fit_path: str | Path) -> list[str]:
    """What a verification prints: a line per trained run, then the allocation verdict (with
    ``--bracket``) against the fit's run-to-run noise."""
    lines = [f"{v.role} ({v.params:,} params, {v.tokens:,} tokens): {v.line()}" for v in results]
    verdict = allocation_verdict(results, (load_fit(Path(fit_path)).noise or {}).get("sigma_log"))
    return lines + ([verdict] if verdict else [])
