"""One run per key: a lease (an flock on a lock file beside the key's checkpoint folder) that a
second process waits for, that dies with its holder, and that tells a sweep driver which RUNNING
runs are orphans."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from scaling.training import leases, run, tracking
from scaling.training.leases import Lease, key_is_locked, lease_file, orphans
from scaling.training.prepare import prepare
from scaling.training.run import train


@pytest.fixture
def lock(tmp_path: Path) -> Path:
    return lease_file(tmp_path / "results", "sqlite:///x.db", "exp", "0123456789abcdef")


def test_a_held_lease_names_its_holder_and_is_gone_once_released(tmp_path, lock) -> None:
    where = (tmp_path / "results", "sqlite:///x.db", "exp", "0123456789abcdef")
    assert key_is_locked(*where) is None and not lock.exists()  # probing creates nothing
    with Lease.acquire(lock, "run") as lease:
        assert not lease.waited
        holder = key_is_locked(*where)
        assert holder == leases.Holder(socket.gethostname(), os.getpid())
        lease.note("abc123")
        assert key_is_locked(*where).run_id == "abc123"  # type: ignore[union-attr]
        assert Lease.acquire(lock, "run", wait=False) is None  # another descriptor: refused
    assert key_is_locked(*where) is None and not lock.exists()
    with Lease.acquire(lock, "run", wait=False) as again:  # free again
        assert again is not None


def test_a_second_acquirer_waits_for_the_holder_and_says_so(lock, capsys) -> None:
    first = Lease.acquire(lock, "L1-run")
    threading.Timer(0.5, first.release).start()
    started = time.monotonic()
    second = Lease.acquire(lock, "L1-run")
    waited = time.monotonic() - started
    try:
        assert second.waited and waited >= 0.4
        err = capsys.readouterr().err
        assert err == (
            f"L1-run: waiting for pid {os.getpid()} on host {socket.gethostname()}, "
            "which is training this key\n"
        )
    finally:
        second.release()


def test_a_file_system_without_locks_gives_a_warning_not_a_failure(
    lock, monkeypatch, capsys
) -> None:
    import errno

    def no_locks(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(leases.fcntl, "flock", no_locks)
    lease = Lease.acquire(lock, "run")
    assert lease is not None and not lease.locked
    lease.note("abc")
    lease.release()
    assert "run: warning: cannot lock" in capsys.readouterr().err
    assert leases.lease_holder(lock) is None


def test_a_run_waits_for_the_holder_then_skips_the_key_it_finished(
    compose, text_data, capsys
) -> None:
    prep = prepare(compose(*text_data))
    cfg = prep.cfg
    recorder = tracking.RunRecorder(cfg.tracking.uri, cfg.tracking.experiment)
    holder = Lease.acquire(run.lease_path(cfg), prep.name)
    done = recorder.start(prep.name, prep.key)
    results: list[run.RunResult] = []
    waiter = threading.Thread(target=lambda: results.append(train(prep)))
    waiter.start()
    err, deadline = "", time.monotonic() + 120
    while "which is training this key" not in err:
        assert waiter.is_alive() and time.monotonic() < deadline, err
        time.sleep(0.05)
        err += capsys.readouterr().err
    assert f"{prep.name}: waiting for pid {os.getpid()} on host" in err
    recorder.finish("FINISHED")  # the holder finishes the key while the run waits
    holder.release()
    waiter.join(timeout=120)
    (result,) = results
    assert result.status == "SKIPPED" and result.run_id == done
    client = tracking.mlflow_client(cfg.tracking.uri)
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    assert [r.info.run_id for r in client.search_runs([exp.experiment_id])] == [done]


def test_orphans_are_running_runs_no_live_process_holds(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    results = tmp_path / "results"
    recorder = tracking.RunRecorder(uri, "exp")
    path = lease_file(results, uri, "exp", "k1")
    orphan = recorder.start("a", "k1", tags={tracking.LEASE_TAG: str(path)})
    other = tracking.RunRecorder(uri, "exp")
    other.start("b", "k2")
    other.finish("FINISHED")  # finished runs are never orphans

    assert orphans(uri, "exp", ["k1", "k2"]) == [("k1", orphan)]
    assert orphans(uri, "exp", ["k2"]) == [] and orphans(uri, "nope", ["k1"]) == []
    with Lease.acquire(path, "a") as lease:  # a live holder: not an orphan
        assert orphans(uri, "exp", ["k1"]) == []
        assert orphans(uri, "exp", ["k1"], results_dir=results) == []
        lease.note("another-run")  # the holder trains another run of the key: this one is dead
        assert orphans(uri, "exp", ["k1"]) == [("k1", orphan)]
    assert orphans(uri, "exp", ["k1"], results_dir=results) == [("k1", orphan)]


def test_a_new_attempt_closes_older_orphans_of_its_key(compose, text_data) -> None:
    """Two RUNNING runs of one key (left by processes that died before leases existed): the next
    attempt continues the newest and closes the other FAILED; none stays RUNNING."""
    prep = prepare(compose(*text_data))
    cfg = prep.cfg
    older = tracking.RunRecorder(cfg.tracking.uri, cfg.tracking.experiment).start(
        prep.name, prep.key
    )
    time.sleep(0.01)
    newer = tracking.RunRecorder(cfg.tracking.uri, cfg.tracking.experiment).start(
        prep.name, prep.key
    )
    result = train(prep)
    assert result.run_id == newer and result.status == "FINISHED"
    client = tracking.mlflow_client(cfg.tracking.uri)
    closed = client.get_run(older)
    assert closed.info.status == "FAILED"
    assert closed.data.tags[tracking.REASON_TAG].startswith("orphaned: its process died")


# ---- real processes --------------------------------------------------------------------------


def _popen(cwd: Path, root: Path, *args: str) -> subprocess.Popen[str]:
    from tests.test_sweep import _train_args

    return subprocess.Popen(
        [sys.executable, "-m", *_train_args(root, *args)],
        cwd=cwd,
        env={**os.environ, "SCALING_CACHE": str(cwd / "cache"), "PYTHONWARNINGS": "ignore"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _store(root: Path) -> tuple[object, str]:
    uri = f"sqlite:///{root / 'results' / 'mlflow.db'}"
    return tracking.mlflow_client(uri), uri


def _all_runs(root: Path) -> list:  # type: ignore[type-arg]
    client, _ = _store(root)
    exp = client.get_experiment_by_name("scaling")  # type: ignore[attr-defined]
    return client.search_runs([exp.experiment_id]) if exp else []  # type: ignore[attr-defined]


@pytest.mark.slow
def test_two_processes_started_at_once_on_one_key_train_it_once(tmp_path) -> None:
    from tests.conftest import run_module
    from tests.test_sweep import _train_args

    # the token cache first, so that both processes reach the lease at about the same time
    warm = run_module(tmp_path, *_train_args(tmp_path / "warm", "train.tokens=2048"))
    assert warm.returncode == 0, warm.stderr[-3000:]
    procs = [_popen(tmp_path, tmp_path, "train.tokens=60000") for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outs]
    (only,) = _all_runs(tmp_path)
    assert only.info.status == "FINISHED"
    skipped = [out for out, _ in outs if "SKIPPED already FINISHED" in out]
    assert len(skipped) == 1, [out for out, _ in outs]
    waited = [err for _, err in outs if "which is training this key" in err]
    assert len(waited) == 1, [err[-2000:] for _, err in outs]


@pytest.mark.slow
def test_sigkill_before_the_first_checkpoint_then_rerun_leaves_one_finished_run(tmp_path) -> None:
    from tests.conftest import run_module
    from tests.test_sweep import _train_args

    horizon = ["train.tokens=300000", "train.checkpoint_every=0"]
    proc = _popen(tmp_path, tmp_path, *horizon)
    deadline = time.time() + 240
    while not (found := [r for r in _all_runs(tmp_path) if r.info.status == "RUNNING"]):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.time() < deadline, "no MLflow run within 240 s"
        time.sleep(0.2)
    (orphan,) = found
    key = orphan.data.tags[tracking.KEY_TAG]
    _, uri = _store(tmp_path)
    where = (tmp_path / "results", uri, "scaling", key)
    holder = key_is_locked(*where)
    assert holder is not None and holder.pid == proc.pid
    assert orphans(uri, "scaling", [key]) == []  # alive

    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert key_is_locked(*where) is None  # the kernel released the dead holder's lease
    assert orphans(uri, "scaling", [key]) == [(key, orphan.info.run_id)]

    rerun = run_module(tmp_path, *_train_args(tmp_path, *horizon))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    (only,) = _all_runs(tmp_path)
    assert only.info.run_id == orphan.info.run_id and only.info.status == "FINISHED"
    assert tracking.REASON_TAG not in only.data.tags
    assert orphans(uri, "scaling", [key]) == []
