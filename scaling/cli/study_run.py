"""The stages of ``scaling study`` (:class:`Study`): pilot, LR check, ladder, fit, verification.

Each stage that trains writes a sweep preset (``sweeps/<name>_pilot.yaml``, ``<name>_lr.yaml``,
``<name>.yaml``) and runs the sweep ``python -m scaling.sweep -m sweeps=<preset>`` would, with
the user's overrides (the corpus) after it, in this process (:func:`~scaling.training.sweep.
run_sweep`): the stages share the joblib launcher's workers, which import torch and Lightning
once. Every run lands in the study's experiment. The sweep skips a run whose key already
FINISHED, so a rerun after a kill trains only what is missing, and the designs that follow a
stage are computed again from the same losses: the same runs, never one trained twice. A signal
(Ctrl-C, SIGTERM) ends the sweep as it ends ``python -m scaling.sweep`` (its run recorded
KILLED); the study then exits with the sweep's status.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pandas as pd

from scaling.analysis.design.options import PlanOptions
from scaling.analysis.design.plan import (
    Plan,
    PlannedRun,
    design_budget,
    plan_ladder,
    planned_run,
)
from scaling.analysis.design.preset import (
    WRITTEN_BY,
    _yaml_float,
    duration,
    grid_lines,
    point_run_keys,
)
from scaling.analysis.design.prior import Prior
from scaling.analysis.design.study import (
    DENSER_ROUNDS,
    PILOT_ROUNDS,
    LrCheck,
    Measured,
    candidate_shapes,
    design_pilot,
    edge_runs,
    lr_check,
    lr_probe_lrs,
    midpoint_budgets,
    pilot_prior,
    pilot_vertex,
    within_guards,
)
from scaling.analysis.design.throughput import (
    IN_PROCESS_COSTS,
    WORKER_START_S,
    Throughput,
    throughput_from_wall,
)
from scaling.analysis.report.study_report import StageRecord
from scaling.errors import EXIT_SIGINT, EXIT_SIGTERM, UserError
from scaling.files import atomic_write_text

LADDER_RATIOS = (3.0, 2.0, 1.5)  # between a study ladder's budgets, tried in turn
WORKERS = os.cpu_count() or 1  # runs a stage trains at once: the joblib launcher, n_jobs=-1
_REL = 1e-6  # two planned budgets or LRs this close (relative) are the same


def _same(a: float, b: float) -> bool:
    return abs(a - b) <= _REL * max(abs(a), abs(b))


def _point(r: PlannedRun, lr: bool) -> str:
    extra = f", lr: {float(r.lr):.17e}" if lr else ""  # exact: the key holds the LR
    return (
        f"{{n_layer: {r.shape.n_layer}, d_model: {r.shape.d_model}, "
        f"flops: {_yaml_float(r.budget)}, seed: {r.seed}{extra}}}"
    )


def _ident(r: PlannedRun) -> tuple[int, int, float, int, float]:
    return (r.shape.n_layer, r.shape.d_model, r.budget, r.seed, float(f"{float(r.lr):.9g}"))


def preset_text(
    experiment: str, runs: Sequence[PlannedRun], opts: PlanOptions, stage: str, lr_per_point: bool
) -> str:
    """A sweep preset training ``runs`` into ``experiment`` (no end-of-sweep fit: the study
    fits), one worker per core with one torch thread each."""
    keys = opts.train_keys()
    if lr_per_point:
        keys["lr"] = "${sweep.point.lr}"
    lines = [
        "# @package _global_",
        f"{WRITTEN_BY}scaling study (the {stage} stage of study {experiment}, {len(runs)} runs; "
        "the study runs it)",
        "defaults:",
        "  - override /hydra/launcher: joblib",
        "threads: 1",
        *point_run_keys(experiment, keys, opts.seq_len, opts.head_dim),
        "sweep:",
        "  collect: false",
        "  fit: false",
        f"  point: {_point(runs[0], lr_per_point)}",
        *grid_lines([_point(r, lr_per_point) for r in runs]),
    ]
    return "\n".join(lines)


class Study:
    """One study: its options, the user's overrides, where its files go, its stage records."""

    def __init__(
        self,
        name: str,
        opts: PlanOptions,
        overrides: Sequence[str],
        start_prior: Prior,
        throughput: Throughput,
        tracking_uri: str,
        corpus_id: str,
        bracket: bool = False,
    ) -> None:
        self.name = name
        self.opts = opts
        self.overrides = list(overrides)
        self.start_prior = start_prior
        self.throughput = throughput
        self.uri = tracking_uri
        self.corpus_id = corpus_id
        self.out = Path("analysis") / name
        self.stages: list[StageRecord] = []
        self.failed = 0  # runs a sweep reported FAILED (the sweep's exit status 1)
        self.lr: LrCheck | None = None
        self.rule_path: str | None = opts.hparams_rule
        self._seen: set[tuple[int, int, float, int, float]] = set()
        self.bracket = bracket  # the verification trains 3 runs at C, not 1
        self.pilot_budgets: list[float] = []
        self.ladder_runs: list[PlannedRun] = []
        self.ladder_centre: Prior = start_prior  # the prior the ladder was centred on
        self.denser_rounds = 0
        self.workers_started = False  # a stage has trained: the launcher's workers are up

    # ---- running sweeps -------------------------------------------------------------------

    def _sweep(
        self,
        preset: str,
        runs: Sequence[PlannedRun],
        opts: PlanOptions,
        stage: str,
        lr_per_point: bool = False,
    ) -> tuple[float, float]:
        """Write ``sweeps/<preset>.yaml`` and train it; the wall-clock it took and the one the
        throughput model estimated for the runs not yet finished."""
        from scaling.training.sweep import run_sweep

        path = Path("sweeps") / f"{preset}.yaml"
        atomic_write_text(path, preset_text(self.name, runs, opts, stage, lr_per_point))
        done = {_ident(r) for r in self.finished(runs)}
        jobs = [0.0 if _ident(r) in done else r.seconds for r in runs]  # the preset's order
        estimate = self.stage_costs().wall_seconds(jobs, workers=WORKERS)
        if not self.workers_started and any(jobs):
            estimate += WORKER_START_S
            self.workers_started = True
        todo = len(runs) - len(done)
        progress(f"{stage}: {todo} of {len(runs)} runs to train, about {duration(estimate)}")
        started = time.monotonic()
        status = run_sweep([f"sweeps={preset}", *self.overrides])
        seconds = time.monotonic() - started
        if status in (EXIT_SIGINT, EXIT_SIGTERM):
            raise SystemExit(status)
        if status == 1:
            self.failed += 1
        elif status != 0:
            raise SystemExit(status)
        return seconds, estimate

    def stage_costs(self) -> Throughput:
        """The throughput model with a stage's costs: a sweep in this process
        (:data:`~scaling.analysis.design.throughput.IN_PROCESS_COSTS`)."""
        return replace(self.throughput, **IN_PROCESS_COSTS)

    def finished(self, runs: Sequence[PlannedRun]) -> list[PlannedRun]:
        """The runs of ``runs`` this study's experiment has FINISHED on this corpus."""
        df = self.table()
        if df.empty:
            return []
        return [r for r in runs if not self.rows_of(df, [r]).empty]

    def refit_throughput(self) -> None:
        """The throughput model fitted to the wall-clock of this study's finished runs (this
        machine, this corpus, the study's launcher), when enough of them span enough sizes."""
        fitted = throughput_from_wall(self.table(), f"study {self.name}")
        if fitted is not None:
            self.throughput = fitted
            progress(f"throughput: {self.throughput.describe()}")

    def table(self, curves: bool = False) -> pd.DataFrame:
        """The finished runs of this study's experiment on this corpus (``curves``: their
        curves table, diverged runs' curves included)."""
        from scaling.training.collect import collect_runs

        try:
            df = collect_runs(self.uri, self.name, curves=curves)
        except UserError:
            return pd.DataFrame()
        if "corpus" in df:
            df = df[df["corpus"].astype(str) == self.corpus_id]
        if "diverged" in df and not curves:
            df = df[~df["diverged"].astype(bool)]
        return df

    @staticmethod
    def rows_of(df: pd.DataFrame, runs: Sequence[PlannedRun]) -> pd.DataFrame:
        """The rows of ``df`` that are ``runs`` (shape, budget, seed and LR)."""
        if df.empty:
            return df
        keep = []
        for i, row in df.iterrows():
            for r in runs:
                if (
                    int(row["n_layer"]) == r.shape.n_layer
                    and int(row["d_model"]) == r.shape.d_model
                    and int(row["seed"]) == r.seed
                    and _same(float(row["planned_flops"]), r.budget)
                    and _same(float(row["lr"]), float(r.lr))
                ):
                    keep.append(i)
                    break
        return df.loc[keep]

    def _record(
        self,
        name: str,
        runs: Sequence[PlannedRun],
        seconds: float,
        notes: list[str],
        estimate: float | None = None,
    ) -> None:
        """A stage's record: the runs it added (a run an earlier stage trained is reused and
        counted there)."""
        new = [r for r in runs if _ident(r) not in self._seen]
        self._seen |= {_ident(r) for r in runs}
        if len(new) < len(runs):
            notes = [*notes, f"{len(runs) - len(new)} of its runs were an earlier stage's, reused."]
        self.stages.append(
            StageRecord(name, len(new), float(sum(r.flops for r in new)), seconds, notes, estimate)
        )

    # ---- stages -----------------------------------------------------------------------------

    def pilot(self) -> Prior:
        """Stage 1: the pilot and its edge extensions; the prior it gives the ladder."""
        budgets, runs = design_pilot(self.opts, self.start_prior, self.throughput)
        self.pilot_budgets = budgets
        notes = [
            f"{len(runs)} runs at {', '.join(f'{b:.3g}' for b in budgets)} FLOPs, sizes "
            f"{min(r.params for r in runs):,}..{max(r.params for r in runs):,} centred on "
            f"{self.start_prior.source}."
        ]
        runs, seconds, estimate, more, measured = self._train_with_edges(
            f"{self.name}_pilot", "pilot", runs, budgets, self.opts
        )
        notes += more
        vertices = [pilot_vertex(b, measured[b]) for b in budgets if len(measured[b]) >= 3]
        prior = pilot_prior(vertices)
        notes.append(f"Centre for the ladder: {prior.source}.")
        self._record("pilot", runs, seconds, notes, estimate)
        self.refit_throughput()
        return prior

    def _train_with_edges(
        self,
        preset: str,
        stage: str,
        runs: list[PlannedRun],
        budgets: Sequence[float],
        opts: PlanOptions,
    ) -> tuple[list[PlannedRun], float, float, list[str], dict[float, list[Measured]]]:
        """Train ``runs``, then up to :data:`PILOT_ROUNDS` rounds of sizes beyond a budget whose
        lowest loss sits at its smallest or largest size (an edge vertex makes a fit
        unhealthy); the runs, the wall-clock, its estimate, the notes and the last losses
        measured."""
        progress(f"{stage}: {len(runs)} runs at {', '.join(f'{b:.3g}' for b in budgets)} FLOPs")
        seconds, estimate = self._sweep(preset, runs, opts, stage)
        notes: list[str] = []
        for round_ in range(1, PILOT_ROUNDS + 2):
            measured = self._measured(runs, budgets)
            extra = [r for b in budgets for r in edge_runs(b, measured[b], opts, self.throughput)]
            if not extra:
                break
            if round_ > PILOT_ROUNDS:
                notes.append(f"a minimum still at an edge after {PILOT_ROUNDS} rounds (the limit).")
                break
            notes.append(
                f"edge round {round_}: {len(extra)} sizes added beyond a budget's edge minimum "
                f"({', '.join(f'{r.params:,} at {r.budget:.3g}' for r in extra)})."
            )
            progress(f"{stage} (edge round {round_}): {len(extra)} runs")
            runs = runs + extra
            more_seconds, more_estimate = self._sweep(preset, runs, opts, stage)
            seconds, estimate = seconds + more_seconds, estimate + more_estimate
        return runs, seconds, estimate, notes, measured

    def _measured(self, runs: Sequence[PlannedRun], budgets: Sequence[float]) -> dict:
        df = self.rows_of(self.table(), runs)
        out: dict[float, list[Measured]] = {b: [] for b in budgets}
        for _, row in df.iterrows():
            for b in budgets:
                if _same(float(row["planned_flops"]), b):
                    out[b].append(Measured(int(row["params"]), float(row["loss"])))
        return out

    def lr_stage(self, prior: Prior) -> None:
        """Stage 2: the LR check at the pilot's top budget; shifts the rule if it is off."""
        from scaling.analysis.design.shapes import nearest_shape

        budget = self.pilot_budgets[0]
        shape = nearest_shape(
            prior.n_opt(budget),
            self.opts.seq_len,
            self.opts.vocab_size,
            "free",
            self.opts.head_dim,
        )
        base = planned_run(shape, budget, 0, self.opts, self.throughput)
        runs = [
            planned_run(shape, budget, 0, replace(self.opts, lr=lr), self.throughput)
            for lr in lr_probe_lrs(float(base.lr))
        ]
        progress(f"LR check: {len(runs)} runs of {shape.params:,} params at {budget:.3g} FLOPs")
        seconds, estimate = self._sweep(
            f"{self.name}_lr", runs, self.opts, "LR check", lr_per_point=True
        )
        df = self.rows_of(self.table(), runs)
        if len(df) < 3:
            self._record(
                "LR check", runs, seconds, ["too few runs finished: the rule stands."], estimate
            )
            return
        check = lr_check(float(base.lr), df["lr"].astype(float), df["loss"].astype(float))
        self.lr = check
        verdict = (
            f"the shipped rule's LR {check.rule_lr:.3g} is within {math.sqrt(2):.3g}x of the "
            f"best, {check.best_lr:.3g}: the rule stands."
            if check.shift == 1.0
            else f"the best LR {check.best_lr:.3g} is {check.ratio:.2g}x the rule's "
            f"{check.rule_lr:.3g}{' (at the end of the probe)' if check.at_edge else ''}: the "
            f"rule's LR is multiplied by {check.shift:.3g} for this study "
            f"({self.out / 'hparams.json'})."
        )
        if check.shift != 1.0:
            self.rule_path = str((self.out / "hparams.json").resolve())
            write_shifted_rule(self.opts.hparams_rule, check.shift, Path(self.rule_path))
        self._record(
            "LR check",
            runs,
            seconds,
            [
                f"{len(runs)} runs of {shape.params:,} params at {budget:.3g} FLOPs, LR x "
                "0.5..2 of the rule's;",
                verdict,
            ],
            estimate,
        )

    def ladder_plan(self, prior: Prior) -> Plan:
        """The ladder centred on ``prior``; when the pilot's optimum leaves the lowest budgets
        without sizes that bracket it (small targets: the smallest sizes are fixed), budgets
        closer together (x2, then x1.5), then the centre kept inside the sizes the guards allow
        (:func:`within_guards`), before giving up with the planner's line."""
        opts = replace(self.opts, hparams_rule=self.rule_path)
        opts = replace(opts, budget_flops=self._ladder_budget(opts))
        error: UserError | None = None
        for centre in (prior, within_guards(prior, opts)):
            for ratio in LADDER_RATIOS:
                try:
                    plan = plan_ladder(
                        replace(opts, ratio=min(ratio, opts.ratio)), centre, self.throughput
                    )
                except UserError as err:
                    error = error or err
                    continue
                self.ladder_centre = centre
                return plan
        assert error is not None
        raise error

    def _ladder_budget(self, opts: PlanOptions) -> float | None:
        if opts.budget_flops is None:
            return None
        spent = sum(s.flops for s in self.stages)
        verify = opts.target_flops * (3.5 if self.bracket else 1.0)
        left = opts.budget_flops - spent - verify
        if left <= 0:
            raise UserError(
                f"--budget-flops {opts.budget_flops:.3g} is spent by the pilot and the "
                f"verification ({spent + verify:.3g} FLOPs): raise it"
            )
        return left

    def ladder(self, plan: Plan) -> None:
        """Stage 3: the ladder (runs the pilot already trained are skipped by their key), then
        up to :data:`PILOT_ROUNDS` rounds of sizes beyond a budget whose lowest loss sits at
        its smallest or largest size (an edge vertex makes the fit unhealthy)."""
        budgets = [b.flops for b in plan.budgets]
        runs, seconds, estimate, more, _ = self._train_with_edges(
            self.name, "ladder", list(plan.runs), budgets, plan.options
        )
        notes = [
            f"{len(plan.budgets)} budgets {', '.join(f'{b:.3g}' for b in budgets)}"
            f" FLOPs (up to C/{plan.options.extrapolation:g}), {plan.options.sizes} sizes "
            f"each centred on {plan.prior}, {plan.options.replicates} seed replicate(s) of "
            "each centre size.",
            *more,
        ]
        self.ladder_runs = runs
        self._record("ladder", runs, seconds, notes, estimate)

    def denser(self, plan: Plan, held_out: int) -> bool:
        """Stage 3b, when the ladder's fit failed its backtest only (at most
        :data:`DENSER_ROUNDS` times): budgets at the midpoints between the top ``held_out + 1``
        budgets, sized as the ladder's (with a seed replicate of each centre size), trained
        with edge rounds; whether any was added."""
        if self.denser_rounds >= DENSER_ROUNDS:
            return False
        self.denser_rounds += 1
        opts = plan.options
        have = {r.budget for r in self.ladder_runs}
        budgets = [b for b in midpoint_budgets(sorted(have), held_out) if b not in have]
        new: list[PlannedRun] = []
        for b in budgets:
            design = design_budget(
                b, self.ladder_centre.n_opt(b), candidate_shapes(opts, b), opts, self.throughput
            )
            if isinstance(design, str):
                progress(f"denser ladder: {design}")
                continue
            new += design.runs
            new += [
                replace(planned_run(design.centre.shape, b, seed, opts, self.throughput),
                        replicate=True)
                for seed in range(1, opts.replicates + 1)
            ]  # fmt: skip
        if not new:
            return False
        added = sorted({r.budget for r in new}, reverse=True)
        runs, seconds, estimate, more, _ = self._train_with_edges(
            self.name, "denser ladder", self.ladder_runs + new, added, opts
        )
        self.ladder_runs = runs
        self._record(
            "denser ladder",
            runs,
            seconds,
            [
                f"the ladder's fit missed its backtest: {len(added)} budgets "
                f"{', '.join(f'{b:.3g}' for b in added)} FLOPs added between its top "
                f"{held_out + 1}, so the backtest refits more budgets and holds out budgets "
                "nearer them, as the prediction at C does.",
                *more,
            ],
            estimate,
        )
        return True

    def write_table(self) -> Path:
        from scaling.analysis.table import write_table

        df = self.rows_of(self.table(), self.ladder_runs)
        return write_table(df, Path("results") / f"{self.name}.csv")

    def write_curves(self) -> Path | None:
        """The ladder's curves table, ``results/NAME_curves.csv`` (the report's figure); None
        when no run has a curve."""
        from scaling.analysis.table import write_table

        curves = self.table(curves=True)
        if not curves.empty:
            firsts = curves.drop_duplicates("run_id")  # a curve's lr is the schedule's
            firsts = firsts.assign(lr=pd.to_numeric(firsts["train.lr"], errors="coerce"))
            ids = set(self.rows_of(firsts, self.ladder_runs)["run_id"].astype(str))
            curves = curves[curves["run_id"].astype(str).isin(ids)]
        if curves.empty:
            return None
        return write_table(curves, Path("results") / f"{self.name}_curves.csv")

    def save(self) -> None:
        record = {"stages": [s.to_json() for s in self.stages]}
        if self.lr is not None:
            record["lr_check"] = {
                "rule_lr": self.lr.rule_lr,
                "best_lr": self.lr.best_lr,
                "shift": self.lr.shift,
                "at_edge": self.lr.at_edge,
            }
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.out / "study.json", json.dumps(record, indent=2) + "\n")


def write_shifted_rule(source: str | None, shift: float, out: Path) -> None:
    """The rule ``source`` (or ./hparams.json, or the shipped one) with its LR times ``shift``."""
    from scaling.config import DEFAULT_HPARAMS_RULE
    from scaling.hparams_rule import HPARAMS_FILE

    if source is not None:
        doc = json.loads(Path(source).read_text())
    elif Path(HPARAMS_FILE).exists():
        doc = json.loads(Path(HPARAMS_FILE).read_text())
    else:
        doc = json.loads(json.dumps(DEFAULT_HPARAMS_RULE))
    doc["lr"] = {"coef": doc["lr"]["coef"] * shift, "exponent": doc["lr"]["exponent"]}
    src = doc.get("source")
    note = f"scaling study: the LR check moved the LR by x{shift:.4g} on this corpus"
    doc["source"] = (
        {**src, "study": note} if isinstance(src, dict) else {"note": src, "study": note}
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(doc, indent=2) + "\n")


def progress(line: str) -> None:
    print(f"study: {line}", flush=True)
