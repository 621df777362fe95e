"""Run-to-run noise, and the prediction interval of a new run that it makes.

A fit's bootstrap gives a *confidence* interval: where the expected loss (the law's mean curve)
lies.  A run a user is about to train lands off that curve by its own noise (seed, data order,
hardware), so the interval for *its* loss, the *prediction* interval, is wider.  The noise is
measured on the log loss, where the fits work:

* **seed replicates** when the table has them: runs that share every training setting but the
  seed (:data:`REPLICATE_KEYS`); the pooled within-configuration variance, with
  ``sum(n_g - 1)`` degrees of freedom (at least :data:`MIN_REPLICATE_DOF`);
* otherwise the **residuals** of the fit: the root mean square of the residuals with ``n - p``
  degrees of freedom for the ``p`` fitted parameters, over the residuals within
  :data:`OUTLIER_SCALES` robust scales of their median, so that a few broken runs do not inflate
  it.  The robust scale is ``1.4826 * MAD`` over all but the ``p`` smallest deviations: a Huber
  fit with a small ``delta`` passes almost exactly through ``p`` points, which biases a plain MAD
  low (about -9% at 40 runs and 5 parameters, measured on synthetic tables), while the trimmed
  RMS is unbiased for normal noise.  This is an upper bound on seed noise, since it also holds
  the law's misfit.

A new run's log loss is then ``log L_mean + sigma * t_dof``: each bootstrap replicate of the mean
is paired with Student-t draws (seeded), and the prediction interval is the percentile interval
of those sums (Davison & Hinkley 1997, §6.3.3, with a parametric noise term).  Without bootstrap
replicates it is ``L * exp(+-t_{dof, q} sigma)`` around the point estimate.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import stdtrit

from scaling.analysis.fitting.bootstrap import percentile_interval

Array = np.ndarray

# Columns that make two runs the same training when they differ only in `seed`.
REPLICATE_KEYS = (
    "params",
    "tokens",
    "planned_flops",
    "n_layer",
    "d_model",
    "n_head",
    "seq_len",
    "vocab_size",
    "lr",
    "batch_size",
    "corpus",
    "tokenizer",
)
MIN_REPLICATE_DOF = 3  # fewer degrees of freedom than this: estimate from residuals instead
MAD_TO_SIGMA = 1.4826  # MAD of a normal sample times this estimates its standard deviation
OUTLIER_SCALES = 4.0  # residuals farther than this many robust scales from the median are dropped
DRAWS_PER_SAMPLE = 16  # noise draws paired with each bootstrap replicate of the mean
SOURCE_REPLICATES = "seed replicates"
SOURCE_RESIDUALS = "residuals"


@dataclass(frozen=True)
class Noise:
    """Run-to-run noise of log loss: standard deviation, degrees of freedom, where it came from."""

    sigma_log: float
    dof: int
    source: str
    n_groups: int = 0  # configurations with replicates (source "seed replicates")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Noise:
        return cls(
            sigma_log=float(doc["sigma_log"]),
            dof=int(doc["dof"]),
            source=str(doc["source"]),
            n_groups=int(doc.get("n_groups", 0)),
        )

    def describe(self) -> str:
        """One phrase for reports: ``sigma = 0.012 in log loss (seed replicates, 9 dof)``."""
        return f"σ = {self.sigma_log:.3g} in log loss ({self.source}, {self.dof} dof)"


def replicate_groups(runs: pd.DataFrame) -> Array:
    """A configuration id per row: rows equal in every :data:`REPLICATE_KEYS` column share one.

    Only a table with a ``seed`` column has replicates; without it every row is its own group.
    """
    keys = [c for c in REPLICATE_KEYS if c in runs.columns]
    if not keys or "seed" not in runs.columns:
        return np.arange(len(runs))
    frame = runs[keys].astype(str)
    return frame.groupby(keys, sort=False, dropna=False).ngroup().to_numpy()


def replicate_noise(runs: pd.DataFrame) -> Noise | None:
    """Pooled within-configuration standard deviation of log loss over seed replicates.

    ``None`` when the table has no ``seed`` column or fewer than :data:`MIN_REPLICATE_DOF`
    degrees of freedom of replication.
    """
    if "seed" not in runs.columns or len(runs) < 2:
        return None
    groups = replicate_groups(runs)
    y = np.log(runs["loss"].to_numpy(dtype=float))
    return pooled_noise(y[groups == g] for g in np.unique(groups))


def pooled_noise(groups: Iterable[np.ndarray]) -> Noise | None:
    """Pooled within-group standard deviation of log loss (groups of seed replicates; a group
    of one adds nothing); ``None`` under :data:`MIN_REPLICATE_DOF` degrees of freedom."""
    ss, dof, n_groups = 0.0, 0, 0
    for members in groups:
        members = np.asarray(members, dtype=float)
        if members.size < 2:
            continue
        ss += float(np.sum((members - members.mean()) ** 2))
        dof += members.size - 1
        n_groups += 1
    if dof < MIN_REPLICATE_DOF:
        return None
    return Noise(math.sqrt(ss / dof), dof, SOURCE_REPLICATES, n_groups)


def residual_noise(log_residuals: Array, n_params: int) -> Noise | None:
    """Robust noise scale of a fit's log residuals (``None`` with no residual degree of freedom)."""
    r = np.asarray(log_residuals, dtype=float)
    r = r[np.isfinite(r)]
    if r.size == 0:
        return None
    # robust scale over all but the n_params smallest deviations: a fit passes (almost) exactly
    # through about n_params points, whose zero residuals would shrink the MAD
    deviations = np.sort(np.abs(r - np.median(r)))[min(n_params, r.size - 1) :]
    scale = MAD_TO_SIGMA * float(np.median(deviations))
    if scale > 0:
        r = r[np.abs(r - np.median(r)) <= OUTLIER_SCALES * scale]
    dof = r.size - n_params
    if dof < 1:
        return None
    sigma = math.sqrt(float(np.sum(r * r)) / dof)
    return Noise(sigma, dof, SOURCE_RESIDUALS)


def estimate_noise(runs: pd.DataFrame, log_residuals: Array, n_params: int) -> Noise | None:
    """Noise from seed replicates when the table has enough of them, else from the residuals."""
    return replicate_noise(runs) or residual_noise(log_residuals, n_params)


def prediction_interval(
    mean: float,
    noise: Noise,
    level: float,
    mean_samples: Array | None = None,
    seed: int = 0,
) -> tuple[float, float]:
    """Interval at ``level`` for the loss of one new run whose expected loss is ``mean``.

    With ``mean_samples`` (bootstrap replicates of the expected loss) the interval also holds the
    uncertainty of the fit; without them only the run-to-run noise.
    """
    samples = None if mean_samples is None else np.asarray(mean_samples, dtype=float)
    if samples is not None:
        samples = samples[np.isfinite(samples) & (samples > 0)]
    if samples is None or samples.size < 2:
        q = float(stdtrit(noise.dof, 0.5 + level / 2))
        return (mean * math.exp(-q * noise.sigma_log), mean * math.exp(q * noise.sigma_log))
    rng = np.random.default_rng(seed)
    t = rng.standard_t(noise.dof, size=(samples.size, DRAWS_PER_SAMPLE))
    draws = np.log(samples)[:, None] + noise.sigma_log * t
    lo, hi = percentile_interval(np.exp(draws.ravel()), level) or (math.nan, math.nan)
    return (lo, hi)
