"""A sweep's grid: the points Hydra will launch, each composed, checked and keyed in the driver
before anything trains.

:func:`expand_grid` lists the job overrides in the basic sweeper's order; :func:`validate_grid`
composes and prepares every point as its job will (building the token cache once, here), keys
it, and folds a point whose run key an earlier point has into that point's duplicates. A
point's planned wall-clock (:func:`_planned_seconds`) weighs it in the sweep's ETA.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from scaling.errors import UserError


@dataclass(frozen=True)
class GridPoint:
    """One run of a grid: the first grid point with its run key (in its tracking experiment);
    later points with the same key are its ``duplicates``, launched but never trained."""

    overrides: tuple[str, ...]
    key: str
    name: str
    uri: str
    experiment: str
    params: int
    tokens: int
    flops: float
    seconds: float  # the planned wall-clock (throughput.Throughput): the ETA's weight
    job: int = 0  # Hydra's job number (hydra.job.num): the point's place in the grid
    members: tuple[str, ...] = ()  # train.horizons: the keys of the group's runs (else its key)
    duplicate_jobs: tuple[int, ...] = ()  # job numbers of later points with this key
    duplicate_labels: tuple[str, ...] = ()  # ...named by their varying overrides (train.lr=1.0)


def expand_grid(config: DictConfig) -> list[list[str]]:
    """The job overrides Hydra's basic sweeper will launch, in its order.

    As the basic sweeper does: ``hydra.sweeper.params`` then the command line's task overrides,
    one list of ``key=value`` per key (a key given again replaces its values but keeps its
    place), and their cartesian product with the last key varying fastest. Parsed with Hydra's
    public override parser, so choice, range and glob sweeps expand exactly as they launch.
    """
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    task = list(OmegaConf.to_container(config.hydra.overrides.task, resolve=False))
    params = config.hydra.sweeper.get("params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()] + task
    hydra = GlobalHydra.instance()
    loader = hydra.config_loader() if hydra.is_initialized() else None
    values: dict[str, list[str]] = {}
    for override in OverridesParser.create(config_loader=loader).parse_overrides(arguments):
        key = override.get_key_element()
        if not override.is_sweep_override():
            values[key] = [f"{key}={override.get_value_element_as_str()}"]
        elif override.is_discrete_sweep():
            values[key] = [f"{key}={v}" for v in override.sweep_string_iterator()]
        else:
            raise UserError(
                f"{override.input_line}: the basic sweeper enumerates value lists, range() and "
                f"glob(), not {override.value_type.name.lower()} sweeps"
            )
    return [list(job) for job in itertools.product(*values.values())]


def validate_grid(master: DictConfig, jobs: list[list[str]]) -> tuple[list[GridPoint], list[str]]:
    """Compose and check every grid point; returns (points, errors) without training anything.

    Points are composed exactly as the launchers will compose them. Loading each point's corpus
    here also builds the token cache (and trains a BPE tokenizer) once, in the driver, instead of
    in every parallel worker at once. Each point is keyed as its job will key it (the prepared
    run: canonical config, the corpus's content, the tokenizer); a point whose key an earlier
    point of the same experiment has is not returned but listed as that point's duplicate.
    """
    from dataclasses import replace

    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from scaling.counting import compute_from, count_params
    from scaling.training.branches import member_keys
    from scaling.training.hydra_errors import hydra_error_line
    from scaling.training.prepare import prepare

    loader = GlobalHydra.instance().config_loader()
    points: list[GridPoint] = []
    errors: list[str] = []
    first: dict[tuple[str, str, str], int] = {}  # (uri, experiment, key) -> index in points
    for num, job in enumerate(jobs):
        try:
            cfg = loader.load_sweep_config(master, job)
            prep = prepare(cfg, check_tracking=False)
        except UserError as err:
            errors.append(f"{point_label(job, jobs)}: {err}")
            continue
        except (HydraException, OmegaConfBaseException) as err:
            errors.append(f"{point_label(job, jobs)}: {hydra_error_line(err)}")
            continue
        c = prep.cfg
        where = (c.tracking.uri, c.tracking.experiment, prep.key)
        if where in first:
            owner = points[first[where]]
            points[first[where]] = replace(
                owner,
                duplicate_jobs=(*owner.duplicate_jobs, num),
                duplicate_labels=(*owner.duplicate_labels, point_label(job, jobs)),
            )
            continue
        first[where] = len(points)
        points.append(
            GridPoint(
                tuple(job),
                prep.key,
                prep.name,
                c.tracking.uri,
                c.tracking.experiment,
                count_params(c.model).total,
                c.tokens,
                compute_from(count_params(c.model).total, c.spent_tokens()),
                seconds=_planned_seconds(c),
                job=num,
                members=member_keys(c) if c.train.horizons is not None else (),
            )
        )
    return points, errors


def point_label(job: list[str], jobs: list[list[str]]) -> str:
    """A grid point named by the overrides that vary across the grid (``seed=abc``), not the
    dozen it shares with every other point."""
    varying = [o for i, o in enumerate(job) if len({j[i] for j in jobs if len(j) > i}) > 1]
    return " ".join(varying or job) or "(defaults)"


def _planned_seconds(cfg: Any) -> float:
    """A run's (or branch group's) wall-clock under the planner's default throughput model:
    its FLOPs' time plus a fixed cost per optimizer step and per run. Only the ratios between
    runs matter: the ETA scales them by the time the finished runs really took."""
    from scaling.analysis.design.throughput import Throughput
    from scaling.counting import count_params

    tokens = cfg.spent_tokens()
    steps = tokens // cfg.tokens_per_step
    return Throughput.default().seconds(count_params(cfg.model).total, tokens, steps)


# ---- what a dry run prints ---------------------------------------------------------------------


def plan_table(points: list[GridPoint]) -> str:
    """What a sweep would train (``sweep.dry_run=true``), one line per run."""
    lines = [f"{'run':<44} {'params':>10} {'tokens':>12} {'FLOPs (6ND)':>12}"]
    for p in points:
        lines.append(f"{p.name:<44} {p.params:>10,} {p.tokens:>12,} {p.flops:>12.3g}")
    total = sum(p.flops for p in points)
    lines.append(f"{len(points)} runs, {total:.3g} FLOPs in all")
    dropped = duplicates_line(points)
    if dropped:
        lines.append(dropped)
    return "\n".join(lines)


def duplicates_line(points: list[GridPoint]) -> str | None:
    """One line naming the grid points dropped as duplicates of another point's run, or None."""
    pairs = [f"{label} = {p.name}" for p in points for label in p.duplicate_labels]
    if not pairs:
        return None
    n = len(pairs)
    return (
        f"{n} duplicate grid point{'s' if n > 1 else ''} dropped (the same training as another "
        f"point, so the same run key; launched as SKIPPED): {'; '.join(pairs)}"
    )
