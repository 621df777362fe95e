"""Chaos: sweeps killed at random moments, and sweeps started twice at once, through the real CLI.

The shorter version of ``benchmarks/bench_chaos.py`` (its functions, not copies of them).
"""

from __future__ import annotations

import random
import signal

import pytest
from bench_modules import load_benchmark


def _bench():  # type: ignore[no-untyped-def]
    return load_benchmark("bench_chaos")


def test_a_kill_lands_where_the_events_say() -> None:
    """The landing of a kill is read from the probe's events (no sweep needed)."""
    b = _bench()

    def ev(t: float, kind: str, *args: str) -> object:
        return b.Event(t, 1, kind, args)

    events = [
        ev(0.0, "start"),
        ev(1.0, "store-begin"),
        ev(2.0, "store-end"),
        ev(3.0, "train-begin", "L1"),
        ev(4.0, "ckpt-begin", "5/10"),
        ev(4.1, "ckpt-end", "5/10"),
        ev(5.0, "ckpt-begin", "10/10"),
        ev(5.1, "ckpt-end", "10/10"),
        ev(5.5, "finish-begin", "FINISHED"),
        ev(5.6, "finish-end", "FINISHED"),
        ev(5.7, "train-end", "L1", "FINISHED"),
        ev(9.0, "end", "0"),
    ]
    assert b.landing(events, 1.5) == "start-up, while the MLflow store was being opened or created"
    assert b.landing(events, 2.5) == "start-up, before the first run (store ready)"
    assert b.landing(events, 3.5) == "setting up L1 or training it before its first checkpoint"
    assert b.landing(events, 4.05) == "during a checkpoint write of L1 (step 5 of 10)"
    assert b.landing(events, 4.5) == "training L1 (last checkpoint at step 5 of 10)"
    assert b.landing(events, 5.2).startswith("after the last step of L1 (checkpointed)")
    assert b.landing(events, 5.55) == "while L1 was being recorded FINISHED"
    assert b.landing(events, 6.0) == "between runs (after L1 returned FINISHED)"
    assert b.landing(events, 9.5) == "after the sweep ended (exit 0)"
    assert b.done_runs(events) == {"L1"}
    plan = b.kill_plan(5, random.Random(0))
    assert [sig for sig, _, _ in plan] == [signal.SIGKILL, signal.SIGTERM] * 2 + [signal.SIGKILL]
    assert {aim for _, aim, _ in plan} == set(b.AIMS)
    assert plan == b.kill_plan(5, random.Random(0))  # seeded


@pytest.mark.slow
def test_a_sweep_killed_four_times_then_finished_equals_the_uninterrupted_sweep(tmp_path) -> None:
    """3 points, killed at moments drawn from a seed and aimed at: a checkpoint write (SIGKILL
    of the process group), a run's set-up while it imports Lightning (SIGTERM of the driver),
    right after a run's last step is checkpointed, before it is recorded FINISHED (SIGKILL, then
    SIGTERM); then the same command to completion. One FINISHED run per key, no RUNNING orphan,
    the same final val/loss floats and loss curves as the uninterrupted sweep, every SIGTERM
    ended by the summary and 143."""
    b = _bench()
    rng = random.Random(0)
    plan = [
        (signal.SIGKILL, b.CHECKPOINT, rng.random()),
        (signal.SIGTERM, b.SETUP, rng.random()),
        (signal.SIGKILL, b.LAST_STEP, rng.random()),
        (signal.SIGTERM, b.LAST_STEP, rng.random()),
    ]
    lines: list[str] = []
    verdict = b.chaos(tmp_path, points=3, steps=80, plan=plan, log=lines.append)
    report = "\n".join(lines + verdict.problems)
    assert verdict.problems == [], report
    assert verdict.kills_landed == 4, report
    assert (verdict.finished, verdict.distinct_keys, verdict.running) == (3, 3, 0), report
    assert verdict.identical == 3 and verdict.curves_identical == 3, report
    *killed, final = verdict.attempts
    assert [a.exit for a in killed] == [-signal.SIGKILL, 143, -signal.SIGKILL, 143], report
    for termed in killed[1::2]:
        assert "sweep interrupted by SIGTERM; sweep summary:" in termed.output, report
    assert final.exit == 0, report
    assert all(a == bb for _, a, bb in verdict.per_key), report


@pytest.mark.slow
def test_two_sweeps_of_one_grid_started_at_once_on_a_fresh_store_train_each_point_once(
    tmp_path,
) -> None:
    """Both create the store and the token cache at once, then meet at the keys' leases: the
    later one waits, then skips. 4 FINISHED runs, not 8; both exit 0; nothing left RUNNING."""
    b = _bench()
    codes, runs, outputs, _ = b.concurrent(tmp_path, points=4, steps=80)
    tails = "\n".join(o[-3000:] for o in outputs)
    assert codes == [0, 0], tails
    assert [r.status for r in runs] == ["FINISHED"] * 4, tails  # no other run either
    assert len({r.key for r in runs}) == 4, tails
