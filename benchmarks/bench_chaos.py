"""Benchmark: a sweep killed at random moments loses nothing and duplicates nothing.

    .venv/bin/python benchmarks/bench_chaos.py                  # ~4 minutes on 2 cores
    .venv/bin/python benchmarks/bench_chaos.py --quick          # ~3 minutes, shorter runs
    .venv/bin/python benchmarks/bench_chaos.py --seed 3 --kills 8

1. **Reference.** A 6-point grid (``model.n_layer=1,2,3 x seed=0,1``, tiny models with dropout
   0.1 so that the RNG state a checkpoint restores matters, a checkpoint every 5 steps, the
   final step included) runs uninterrupted into store A.
2. **Chaos.** The same grid runs into store B, started and killed ``--kills`` times, each time
   restarted (the same command), then run to completion. Kills alternate SIGKILL of the sweep's
   whole process group (the OOM killer, ``kill -9``, a lost node) and SIGTERM of the driver
   (SLURM preemption or time limit, ``docker stop``). Each kill is drawn with
   ``random.Random(--seed)`` over the attempt's expected duration (start-up plus the reference
   times of the points not yet finished), then aimed in turn at the next checkpoint write, the
   moment after a run's last step is checkpointed but before it is recorded FINISHED, nothing in
   particular, the start of a run (a process's first run spends seconds importing Lightning),
   or the moment between two runs. Where each kill landed is printed. With the default 5 kills:
   SIGKILL in a checkpoint write, SIGTERM after a last step, SIGKILL anywhere, SIGTERM in a
   run's set-up, SIGKILL between runs (10 kills meet every aim with both signals).
3. **Checks.** Store B holds exactly one FINISHED run per point (6), with 6 distinct run keys,
   no RUNNING orphan, and, key by key, the same final ``val/loss`` as store A bit for bit
   (``==`` on floats) and the same logged loss curves (every step once, the same floats). FAILED
   and KILLED attempts left behind are counted (informational: a killed attempt is closed, then
   continued or superseded). Every SIGTERM must end the sweep within 3 minutes with its summary
   and exit status 143 (or -15 when it lands in start-up, before the sweep's handler exists);
   the final attempt must exit 0. Exit status 1 if a check fails.
4. **Concurrent.** Two sweeps of the same grid started at once on a fresh store (and a fresh
   token cache): both exit 0, exactly 6 FINISHED runs (not 12), no RUNNING run
   (``--no-concurrent`` leaves this out).

Prints the chaos sweep's wall time (every attempt, restarts included) over the reference's.

Every sweep is the real CLI in a subprocess (``python -m scaling.sweep -m ...`` semantics), run
through this file as a thin wrapper (``--probe EVENTS``): it calls ``scaling.training.sweep.main``
after wrapping four functions so that they append a timestamped line to EVENTS (a run starts or
ends, a checkpoint write starts or ends, a run's record is closed, the store is opened). The
wrappers call the originals unchanged; the events are how kills are aimed and how their
landing is known. The token cache is built beforehand by a dry run, outside any timing.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve()
TEXT = Path(sysconfig.get_paths()["stdlib"]) / "json"  # real text every Python install has
TOKENS_PER_STEP = 8 * 32  # train.batch_size x model.seq_len below
CHECKPOINT_EVERY = 5
EXPERIMENT = "scaling"
SIGTERM_GRACE_S = 180.0

# Tiny runs of a few seconds on one thread; dropout makes RNG restore matter; a checkpoint
# every 5 steps and a step count divisible by 5 (the last step is checkpointed too).
BASE = [
    "model.d_model=32",
    "model.n_head=2",
    "model.seq_len=32",
    "model.dropout=0.1",
    "train.batch_size=8",
    "train.eval_points=6",
    "train.log_every=5",
    f"train.checkpoint_every={CHECKPOINT_EVERY}",
    "train.checkpoint_min_s=0",  # every checkpoint: the kills aim at their writes
    "data.val_tokens=4096",
    "data=text",
    f"data.path={TEXT}",
    "threads=1",
    "progress=false",
    "sweep.fit=false",
    f"tracking.experiment={EXPERIMENT}",
]
GRIDS = {
    2: ["model.n_layer=1,2", "seed=0"],
    3: ["model.n_layer=1,2,3", "seed=0"],
    4: ["model.n_layer=1,2", "seed=0,1"],
    6: ["model.n_layer=1,2,3", "seed=0,1"],
}

# What a kill is aimed at, in turn (kill i: AIMS[i % 5]; with signals alternating, 10 kills
# meet every aim with both); its moment is random, the aim then waits for its next event.
CHECKPOINT = "a checkpoint write"
LAST_STEP = "after a run's last step, before FINISHED"
ANYWHERE = "anywhere"
SETUP = "a run's set-up (Lightning's import, its MLflow record)"
BETWEEN = "between two runs"
AIMS = (CHECKPOINT, LAST_STEP, ANYWHERE, SETUP, BETWEEN)


def grid(points: int, steps: int) -> list[str]:
    """The sweep's overrides: ``points`` grid points of ``steps`` optimizer steps each."""
    if points not in GRIDS:
        raise ValueError(f"points must be one of {sorted(GRIDS)}")
    return [*BASE, *GRIDS[points], f"train.tokens={steps * TOKENS_PER_STEP}"]


# ---- the probe: runs inside the sweep's process ----------------------------------------------


def _probe(events: str, sweep_args: list[str]) -> None:
    """Run the sweep CLI (``scaling.training.sweep.main``) with ``sweep_args``, noting events.

    Each event is one line ``<CLOCK_MONOTONIC ns> <pid> <kind> [args]`` appended to ``events``
    with one ``write`` (never buffered, so a SIGKILL loses none that happened). Lightning is
    hooked only once a run trains, so the skip path imports no more than it does without the
    probe.
    """
    fd = os.open(events, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def note(*words: object) -> None:
        line = " ".join([str(time.monotonic_ns()), str(os.getpid()), *map(str, words)])
        os.write(fd, (line + "\n").encode())

    note("start")
    import scaling.sweep
    import scaling.training.run as run_mod
    import scaling.training.tracking as tracking

    train = run_mod.train

    def traced_train(prep: Any, *args: Any, **kwargs: Any) -> Any:
        note("train-begin", prep.name)
        status = "raised"
        try:
            _hook_checkpoints(note)  # imports Lightning, as train() would
            result = train(prep, *args, **kwargs)
            status = result.status
            return result
        finally:
            note("train-end", prep.name, status)

    finish = tracking.RunRecorder.finish

    def traced_finish(self: Any, status: str = "FINISHED", reason: str | None = None) -> None:
        note("finish-begin", status)
        finish(self, status, reason)
        note("finish-end", status)

    ensure = tracking.ensure_experiment

    def traced_ensure(uri: str, experiment: str) -> str:
        note("store-begin")
        out = ensure(uri, experiment)
        note("store-end")
        return out

    run_mod.train = traced_train  # the sweep's job imports it by name when it runs
    tracking.RunRecorder.finish = traced_finish  # type: ignore[method-assign]
    tracking.ensure_experiment = traced_ensure
    sys.argv = [scaling.sweep.__file__, *sweep_args]
    code: object = 0
    try:
        from scaling.training.sweep import main

        main()
    except SystemExit as err:
        code = err.code
        raise
    except BaseException:
        code = "raised"
        raise
    finally:
        note("end", 0 if code is None else code)


def _hook_checkpoints(note: Callable[..., None]) -> None:
    """Note the start and end of every checkpoint Lightning saves (ModelCheckpoint calls
    ``trainer.save_checkpoint``: state, RNG, the MLflow flush before it, the atomic write)."""
    from lightning.pytorch import Trainer

    if getattr(Trainer.save_checkpoint, "_chaos_probe", False):
        return
    save = Trainer.save_checkpoint

    def traced_save(self: Any, *args: Any, **kwargs: Any) -> Any:
        where = f"{self.global_step}/{self.max_steps}"
        note("ckpt-begin", where)
        out = save(self, *args, **kwargs)
        note("ckpt-end", where)
        return out

    traced_save._chaos_probe = True  # type: ignore[attr-defined]
    Trainer.save_checkpoint = traced_save  # type: ignore[method-assign]


# ---- events, attempts ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    t: float  # seconds, CLOCK_MONOTONIC (the same clock in every process of this machine)
    pid: int
    kind: str
    args: tuple[str, ...]


class EventTail:
    """The events file of one attempt, read as it grows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.events: list[Event] = []
        self._fh: Any = None
        self._rest = ""

    def poll(self) -> list[Event]:
        """Events appended since the last poll."""
        if self._fh is None:
            if not self.path.exists():
                return []
            self._fh = self.path.open("r", encoding="utf-8")
        text = self._rest + self._fh.read()
        lines = text.split("\n")
        self._rest = lines.pop()
        new = []
        for line in lines:
            words = line.split()
            if len(words) >= 3:
                new.append(Event(int(words[0]) / 1e9, int(words[1]), words[2], tuple(words[3:])))
        self.events += new
        return new

    def close(self) -> None:
        self.poll()
        if self._fh is not None:
            self._fh.close()


@dataclass
class Kill:
    signal: int  # SIGKILL (to the process group) or SIGTERM (to the driver)
    aim: str
    at: float  # seconds after the attempt started: the aim waits for its next event from here


@dataclass
class Attempt:
    number: int
    kill: Kill | None
    exit: int | None = None
    wall: float = 0.0
    sent_at: float | None = None  # seconds after start, None when the kill was not sent
    landing: str = ""
    summary: str = ""
    events: list[Event] = field(default_factory=list)
    output: str = ""


def sweep_env(cache: Path) -> dict[str, str]:
    """This checkout's package first (whatever the environment's editable install points at)."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {
        **os.environ,
        "PYTHONPATH": path,
        "SCALING_CACHE": str(cache),
        "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "false",
        "PYTHONWARNINGS": "ignore",
    }


def sweep_command(results: Path, overrides: list[str], events: Path | None) -> list[str]:
    """The sweep CLI on ``overrides`` into ``results``; through the probe when ``events``."""
    args = ["-m", *overrides, f"results_dir={results}"]
    if events is None:
        return [sys.executable, "-m", "scaling.sweep", *args]
    return [sys.executable, str(HERE), "--probe", str(events), *args]


def start_sweep(
    results: Path, overrides: list[str], cache: Path, log: Path, events: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start one sweep in its own process group (SIGKILL of the group reaches every process)."""
    with log.open("wb") as out:
        return subprocess.Popen(
            sweep_command(results, overrides, events),
            cwd=results.parent,
            env=sweep_env(cache),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def summary_line(output: str) -> str:
    found = re.findall(r"(?:sweep interrupted by \w+; )?sweep summary: .*", output)
    return found[-1] if found else "(no summary line)"


def run_attempt(
    number: int,
    results: Path,
    overrides: list[str],
    cache: Path,
    kill: Kill | None,
    timeout: float,
) -> Attempt:
    """One start of the sweep; with ``kill``, killed as planned (unless it ends first)."""
    work = results.parent
    events_path = work / f"events-{results.name}-{number}.txt"
    log = work / f"output-{results.name}-{number}.txt"
    events_path.unlink(missing_ok=True)
    tail = EventTail(events_path)
    attempt = Attempt(number, kill)
    t0 = time.monotonic()
    proc = start_sweep(results, overrides, cache, log, events_path)
    try:
        while proc.poll() is None:
            now = time.monotonic()
            new = tail.poll()
            if now - t0 > timeout:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise RuntimeError(f"attempt {number} still running after {timeout:.0f} s (hung?)")
            if kill is not None and attempt.sent_at is None and now - t0 >= kill.at:
                if _aim_reached(kill.aim, [e for e in new if e.t >= t0 + kill.at]):
                    if proc.poll() is not None:  # ended just now: the kill would hit a zombie
                        break
                    if kill.signal == signal.SIGKILL:
                        os.killpg(proc.pid, signal.SIGKILL)
                    else:
                        os.kill(proc.pid, signal.SIGTERM)
                    attempt.sent_at = time.monotonic() - t0
                    if kill.signal == signal.SIGTERM:
                        _wait_after_sigterm(proc, attempt)
                    break
            armed = kill is not None and attempt.sent_at is None and now - t0 >= kill.at
            time.sleep(0.001 if armed else 0.02)
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    attempt.wall = time.monotonic() - t0
    attempt.exit = proc.returncode
    tail.close()
    attempt.events = tail.events
    attempt.output = log.read_text(encoding="utf-8", errors="replace")
    attempt.summary = summary_line(attempt.output)
    if attempt.sent_at is not None:
        attempt.landing = landing(attempt.events, t0 + attempt.sent_at)
    elif kill is not None:
        attempt.landing = "not sent: the sweep ended first"
    return attempt


def _aim_reached(aim: str, new: list[Event]) -> bool:
    """Whether ``new`` events (those after the kill's moment) hold what the kill waits for."""
    if aim == ANYWHERE:
        return True
    for e in new:
        if aim == CHECKPOINT and e.kind == "ckpt-begin":
            return True
        if aim == LAST_STEP and e.kind == "ckpt-end" and _step(e)[0] == _step(e)[1]:
            return True
        if aim == BETWEEN and e.kind == "train-end":
            return True
        if aim == SETUP and e.kind == "train-begin":
            return True
    return False


def _step(e: Event) -> tuple[int, int]:
    done, total = e.args[0].split("/")
    return int(done), int(total)


def _wait_after_sigterm(proc: subprocess.Popen[bytes], attempt: Attempt) -> None:
    try:
        proc.wait(timeout=SIGTERM_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        attempt.landing = f"SIGTERM did not stop the sweep within {SIGTERM_GRACE_S:.0f} s"


def landing(events: list[Event], t_kill: float) -> str:
    """Where a kill sent at ``t_kill`` (CLOCK_MONOTONIC seconds) found the sweep."""
    run: str | None = None
    last_done: tuple[str, str] | None = None
    in_store = store_ready = False
    ckpt_open: tuple[int, int] | None = None
    last_ckpt: tuple[int, int] | None = None
    finishing: str | None = None
    ended: str | None = None
    for e in events:
        if e.t > t_kill:
            break
        if e.kind == "store-begin":
            in_store = True
        elif e.kind == "store-end":
            in_store, store_ready = False, True
        elif e.kind == "train-begin":
            run, ckpt_open, last_ckpt, finishing = e.args[0], None, None, None
        elif e.kind == "ckpt-begin":
            ckpt_open = _step(e)
        elif e.kind == "ckpt-end":
            ckpt_open, last_ckpt = None, _step(e)
        elif e.kind == "finish-begin":
            finishing = e.args[0]
        elif e.kind == "finish-end":
            finishing = None
        elif e.kind == "train-end":
            last_done, run = (e.args[0], e.args[1]), None
        elif e.kind == "end":
            ended = e.args[0] if e.args else "?"
    if ended is not None:
        return f"after the sweep ended (exit {ended})"
    if run is None:
        if last_done is not None:
            return f"between runs (after {last_done[0]} returned {last_done[1]})"
        if in_store and not store_ready:
            return "start-up, while the MLflow store was being opened or created"
        return "start-up, before the first run" + (" (store ready)" if store_ready else "")
    if finishing is not None:
        return f"while {run} was being recorded {finishing}"
    if ckpt_open is not None:
        return f"during a checkpoint write of {run} (step {ckpt_open[0]} of {ckpt_open[1]})"
    if last_ckpt is not None and last_ckpt[0] == last_ckpt[1]:
        return f"after the last step of {run} (checkpointed), before it was recorded FINISHED"
    if last_ckpt is not None:
        return f"training {run} (last checkpoint at step {last_ckpt[0]} of {last_ckpt[1]})"
    if in_store:
        return f"setting up {run}: opening the MLflow store"
    return f"setting up {run} or training it before its first checkpoint"


def run_durations(events: list[Event]) -> tuple[float, dict[str, float]]:
    """(seconds from process start to the first run, {run name: seconds it trained})."""
    start = next(e.t for e in events if e.kind == "start")
    begins: dict[str, float] = {}
    took: dict[str, float] = {}
    first = None
    for e in events:
        if e.kind == "train-begin":
            begins[e.args[0]] = e.t
            first = e.t if first is None else first
        elif e.kind == "train-end" and e.args[0] in begins:
            took[e.args[0]] = e.t - begins.pop(e.args[0])
    return (first if first is not None else start) - start, took


def done_runs(events: list[Event]) -> set[str]:
    """Names of runs these events show recorded FINISHED (or found FINISHED)."""
    done, current = set(), None
    for e in events:
        if e.kind == "train-begin":
            current = e.args[0]
        elif e.kind == "finish-end" and e.args[0] == "FINISHED" and current:
            done.add(current)
        elif e.kind == "train-end" and e.args[1] in ("FINISHED", "SKIPPED"):
            done.add(e.args[0])
    return done


# ---- the store -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    run_id: str
    status: str
    key: str
    name: str
    final: float | None  # val/loss at the largest step
    curves: tuple[tuple[str, tuple[tuple[int, float], ...]], ...]  # (metric, ((step, value)...))


def store_records(results: Path, experiment: str = EXPERIMENT) -> list[Record]:
    """Every run of ``experiment`` in the SQLite store under ``results`` (none without one).

    Open a store only once it exists and no process is creating it."""
    from scaling.training.tracking import KEY_TAG, mlflow_client

    db = results / "mlflow.db"
    if not db.exists():
        return []
    client = mlflow_client(f"sqlite:///{db}")
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    records, token = [], None
    while True:
        page = client.search_runs([exp.experiment_id], max_results=1000, page_token=token)
        for r in page:
            curves = []
            for metric in ("train/loss", "val/loss"):
                hist = client.get_metric_history(r.info.run_id, metric)
                curves.append((metric, tuple(sorted((m.step, m.value) for m in hist))))
            val = dict(curves)["val/loss"]
            records.append(
                Record(
                    r.info.run_id,
                    r.info.status,
                    r.data.tags.get(KEY_TAG, ""),
                    r.info.run_name or "",
                    val[-1][1] if val else None,
                    tuple(curves),
                )
            )
        token = page.token
        if not token:
            return records


@dataclass
class Verdict:
    """What the chaos benchmark measured; ``problems`` empty when every check passed."""

    points: int
    finished: int = 0
    distinct_keys: int = 0
    running: int = 0
    failed_or_killed: int = 0
    identical: int = 0
    curves_identical: int = 0
    kills_planned: int = 0
    kills_landed: int = 0
    reference_wall: float = 0.0
    chaos_wall: float = 0.0
    attempts: list[Attempt] = field(default_factory=list)
    per_key: list[tuple[str, float | None, float | None]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def compare(reference: list[Record], chaos: list[Record], verdict: Verdict) -> None:
    """Fill ``verdict``'s store checks: B (``chaos``) against A (``reference``)."""
    fin = [r for r in chaos if r.status == "FINISHED"]
    verdict.finished = len(fin)
    verdict.distinct_keys = len({r.key for r in fin})
    verdict.running = sum(r.status == "RUNNING" for r in chaos)
    verdict.failed_or_killed = sum(r.status in ("FAILED", "KILLED") for r in chaos)
    ref = {r.key: r for r in reference if r.status == "FINISHED"}
    if len(ref) != verdict.points:
        verdict.problems.append(f"reference store: {len(ref)} FINISHED keys, not {verdict.points}")
    by_key = {r.key: r for r in fin}
    for key, a in sorted(ref.items(), key=lambda kv: kv[1].name):
        b = by_key.get(key)
        b_final = b.final if b is not None else None
        verdict.per_key.append((a.name, a.final, b_final))
        if b is not None and a.final is not None and b_final == a.final:
            verdict.identical += 1
        if b is not None and b.curves == a.curves:
            verdict.curves_identical += 1
    n = verdict.points
    for label, got, want in (
        ("FINISHED runs in B", verdict.finished, n),
        ("distinct keys among them", verdict.distinct_keys, n),
        ("RUNNING orphans", verdict.running, 0),
        ("final val/loss identical to A", verdict.identical, n),
        ("loss curves identical to A", verdict.curves_identical, n),
    ):
        if got != want:
            verdict.problems.append(f"{label}: {got}, expected {want}")


# ---- the benchmark ------------------------------------------------------------------------------


def kill_plan(kills: int, rng: random.Random) -> list[tuple[int, str, float]]:
    """(signal, aim, u) of each kill: SIGKILL / SIGTERM alternating, aims in turn, u in [0, 1)
    the fraction of the attempt's expected duration at which it is armed."""
    plan = []
    for i in range(kills):
        sig = signal.SIGKILL if i % 2 == 0 else signal.SIGTERM
        plan.append((sig, AIMS[i % len(AIMS)], rng.random()))
    return plan


def sigterm_problem(attempt: Attempt) -> str | None:
    """What is wrong with how a SIGTERM'd attempt ended, if anything: it must stop within the
    grace time with the summary and 143 (or die of the signal, -15, in its start-up, before the
    sweep's handler is installed); exit 0 or 1 means the signal was lost or broke a run."""
    if attempt.landing.startswith("SIGTERM did not stop"):
        return attempt.landing
    if attempt.landing.startswith("after the sweep ended") or attempt.exit == 143:
        return None
    if attempt.exit == -signal.SIGTERM and attempt.landing.startswith("start-up"):
        return None
    return f"exit {attempt.exit} after SIGTERM {attempt.landing}: {attempt.summary}"


def signal_label(sig: int) -> str:
    return "SIGKILL (process group)" if sig == signal.SIGKILL else "SIGTERM (driver)"


def chaos(
    work: Path,
    points: int = 6,
    kills: int = 5,
    steps: int = 240,
    seed: int = 0,
    cache: Path | None = None,
    plan: list[tuple[int, str, float]] | None = None,
    log: Callable[[str], None] = print,
) -> Verdict:
    """The reference sweep into ``work``/A, the killed and restarted one into ``work``/B, and
    their comparison. ``plan`` overrides the seeded kill plan (:func:`kill_plan`)."""
    overrides = grid(points, steps)
    cache = cache or work / "cache"
    verdict = Verdict(points=points)
    plan = plan if plan is not None else kill_plan(kills, random.Random(seed))
    verdict.kills_planned = len(plan)

    # the token cache, outside any timing
    warm = subprocess.run(
        sweep_command(work / "warm", [*overrides, "sweep.dry_run=true"], None),
        cwd=work,
        env=sweep_env(cache),
        capture_output=True,
        text=True,
        check=False,
    )
    if warm.returncode != 0:
        raise RuntimeError(f"dry run failed ({warm.returncode}): {warm.stderr[-3000:]}")

    timeout = 600.0 + 60.0 * points * steps / 100
    ref = run_attempt(0, work / "A", overrides, cache, None, timeout)
    verdict.reference_wall = ref.wall
    log(f"  reference (store A): {ref.wall:.1f} s, exit {ref.exit}, {ref.summary}")
    if ref.exit != 0:
        verdict.problems.append(f"reference sweep exit {ref.exit}: {ref.output[-2000:]}")
        return verdict
    startup, took = run_durations(ref.events)

    done: set[str] = set()
    for i, (sig, aim, u) in enumerate(plan, start=1):
        left = [t for name, t in took.items() if name not in done]
        expected = startup + sum(left)
        # an aimed kill is armed early enough that its event still lies ahead
        at = u * expected * (0.9 if aim == ANYWHERE else 0.6)
        attempt = run_attempt(i, work / "B", overrides, cache, Kill(sig, aim, at), timeout)
        verdict.attempts.append(attempt)
        done |= done_runs(attempt.events)
        sent = f"sent at {attempt.sent_at:.2f} s" if attempt.sent_at is not None else "not sent"
        log(
            f"  attempt {i}: {signal_label(sig)} aimed at {aim}, armed at {at:.1f} s, {sent}: "
            f"{attempt.landing}; exit {attempt.exit}"
        )
        if attempt.sent_at is not None:
            verdict.kills_landed += 1
        if sig == signal.SIGTERM and attempt.sent_at is not None:
            problem = sigterm_problem(attempt)
            if problem:
                verdict.problems.append(f"attempt {i}: {problem}")

    final = run_attempt(len(plan) + 1, work / "B", overrides, cache, None, timeout)
    verdict.attempts.append(final)
    log(f"  attempt {final.number} (to completion): exit {final.exit}, {final.summary}")
    if final.exit != 0:
        verdict.problems.append(f"final attempt exit {final.exit}: {final.output[-2000:]}")
    verdict.chaos_wall = sum(a.wall for a in verdict.attempts)
    compare(store_records(work / "A"), store_records(work / "B"), verdict)
    return verdict


def concurrent(
    work: Path, points: int = 6, steps: int = 240, cache: Path | None = None, n: int = 2
) -> tuple[list[int], list[Record], list[str], float]:
    """``n`` sweeps of the same grid started at once on a fresh store (and a fresh token cache
    unless ``cache``). Returns (exit statuses, the store's runs, the outputs, wall seconds)."""
    overrides = grid(points, steps)
    results = work / "shared"
    results.mkdir(parents=True, exist_ok=True)
    cache = cache or work / "cache-concurrent"
    logs = [work / f"output-concurrent-{i}.txt" for i in range(n)]
    t0 = time.monotonic()
    procs = [start_sweep(results, overrides, cache, log) for log in logs]
    deadline = t0 + 600.0 + 60.0 * points * steps / 100
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=max(1.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            codes.append(p.wait())
    wall = time.monotonic() - t0
    outputs = [log.read_text(encoding="utf-8", errors="replace") for log in logs]
    return codes, store_records(results), outputs, wall


def print_verdict(v: Verdict, seed: int, steps: int) -> None:
    n = v.points
    print()
    print(
        f"Chaos benchmark: {n}-point sweep ({' x '.join(GRIDS[n])}, {steps} steps of "
        f"{TOKENS_PER_STEP} tokens, checkpoint every {CHECKPOINT_EVERY} steps, dropout 0.1), "
        f"{v.kills_planned} kills (seed {seed}), then run to completion"
    )
    all_n = f"{n}/{n}"
    rows = [
        ("kills that landed (before the sweep ended)", f"{v.kills_landed}/{v.kills_planned}", ""),
        ("FINISHED runs in B", str(v.finished), str(n)),
        ("distinct run keys among them", str(v.distinct_keys), str(n)),
        ("RUNNING orphans", str(v.running), "0"),
        ("FAILED/KILLED attempts left (informational)", str(v.failed_or_killed), "-"),
        ("final val/loss == uninterrupted, bit for bit", f"{v.identical}/{n} identical", all_n),
        ("loss curves == uninterrupted, every step", f"{v.curves_identical}/{n} identical", all_n),
    ]
    header = f"{'check':<50} {'value':>16}  expected"
    print(header)
    print("-" * (len(header) + 8))
    for label, value, want in rows:
        print(f"{label:<50} {value:>16}  {want}")
    print()
    print(f"{'run':<44} {'val/loss A':>20} {'val/loss B':>20}  equal")
    for name, a, b in v.per_key:
        print(f"{name:<44} {a!r:>20} {b!r:>20}  {'yes' if a is not None and a == b else 'NO'}")
    print()
    print(f"{v.identical}/{n} identical")
    ratio = v.chaos_wall / v.reference_wall if v.reference_wall else float("nan")
    print(
        f"wall: reference (uninterrupted) {v.reference_wall:.1f} s; chaos "
        f"({len(v.attempts)} attempts, {v.kills_landed} killed) {v.chaos_wall:.1f} s; "
        f"chaos/reference {ratio:.2f}"
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--probe"]:
        _probe(argv[1], argv[2:])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill plan (default 0)")
    ap.add_argument("--kills", type=int, default=5, help="kills before the last attempt (5)")
    ap.add_argument("--quick", action="store_true", help="shorter runs (80 steps, ~3 min)")
    ap.add_argument(
        "--steps", type=int, default=None, help="optimizer steps per run (default 240, quick 80)"
    )
    ap.add_argument(
        "--no-concurrent",
        dest="concurrent",
        action="store_false",
        help="leave out the two-sweeps-at-once check",
    )
    ap.add_argument(
        "--points", type=int, choices=sorted(GRIDS), default=6, help="grid points (default 6)"
    )
    ap.add_argument("--keep", metavar="DIR", default=None, help="work in DIR and keep it")
    args = ap.parse_args(argv)
    steps = args.steps or (80 if args.quick else 240)
    if steps % CHECKPOINT_EVERY:
        ap.error(f"--steps must be a multiple of {CHECKPOINT_EVERY} (the last step checkpointed)")
    load0 = os.getloadavg()[0]
    print(
        f"bench_chaos: {os.cpu_count()} cores, load average {load0:.2f}, seed {args.seed}, "
        f"{args.kills} kills, {steps} steps per run",
        flush=True,
    )
    t_begin = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_chaos-") as tmp:
        work = Path(args.keep).resolve() if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        verdict = chaos(
            work,
            points=args.points,
            kills=args.kills,
            steps=steps,
            seed=args.seed,
            cache=work / "cache",
            log=lambda line: print(line, flush=True),
        )
        print_verdict(verdict, args.seed, steps)
        problems = list(verdict.problems)
        if args.concurrent:
            n = args.points
            codes, runs, outputs, wall = concurrent(work / "concurrent", points=n, steps=steps)
            fin = [r for r in runs if r.status == "FINISHED"]
            running = sum(r.status == "RUNNING" for r in runs)
            print(
                f"concurrent: 2 sweeps of the same {n}-point grid started at once on a fresh "
                f"store: exit {codes[0]} and {codes[1]}, {len(fin)} FINISHED runs "
                f"({len({r.key for r in fin})} keys; expected {n}, not {2 * n}), {running} "
                f"RUNNING, {wall:.1f} s"
            )
            if codes != [0, 0] or len(fin) != n or len({r.key for r in fin}) != n or running:
                tails = " | ".join(summary_line(o) for o in outputs)
                problems.append(f"concurrent sweeps: exit {codes}, {len(fin)} FINISHED; {tails}")
    for p in problems:
        print(f"PROBLEM: {p}")
    print(
        f"load average (1 min) at start {load0:.2f}, at end {os.getloadavg()[0]:.2f}; "
        f"total {time.perf_counter() - t_begin:.0f} s"
    )
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
