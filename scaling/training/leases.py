"""One run per key: where a key's checkpoint folder and lock file live, the lease on it, and
the RUNNING runs whose holder died (orphans).

A run key's checkpoint folder (:func:`checkpoint_folder`, the one derivation of it) has a lock
file beside it, held with ``fcntl.flock`` by the process training that key (:class:`Lease`).
The kernel drops the lock when its holder dies, even by SIGKILL, so a lease is never stale. A
second process for the key waits for it, then finds the key FINISHED (and skips) or takes the
dead holder's RUNNING MLflow run over. A lease covers the processes that share one
``results_dir`` on a file system whose locks work across machines: a local disk, NFSv4, Lustre
mounted with ``flock``, GPFS. On SLURM, put ``results_dir`` on such a file system (and record to
an MLflow server, not SQLite over NFS); where locks do not work across nodes, give each job its
own ``results_dir`` and store and never launch one key in two jobs. :func:`key_is_locked` and
:func:`orphans` let a sweep driver look at the leases.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import socket
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from scaling.training.tracking import KEY_TAG, LEASE_TAG, mlflow_client, sqlite_path

# ---- where a key's checkpoint and lease live ---------------------------------------------------


def store_id(uri: str) -> str:
    """8 hex digits naming a tracking store: a SQLite URI by its database's absolute path (the
    same relative URI from two folders is two stores), any other URI by its text."""
    db = sqlite_path(uri)
    text = f"sqlite:///{db.expanduser().resolve()}" if db is not None else uri.rstrip("/")
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def checkpoint_folder(results_dir: str | Path, uri: str, experiment: str, run_key: str) -> Path:
    """The checkpoint folder of ``run_key`` recorded in ``experiment`` of the store ``uri``: the
    one derivation of it (a run of another experiment or store never resumes from it). Its lease
    is the lock file beside it, :func:`lease_file`."""
    return Path(results_dir) / "checkpoints" / f"{experiment}.{store_id(uri)}.{run_key}"


def lease_file(results_dir: str | Path, uri: str, experiment: str, run_key: str) -> Path:
    """The lock file of a key's lease, next to its checkpoint folder."""
    folder = checkpoint_folder(results_dir, uri, experiment, run_key)
    return folder.with_name(folder.name + ".lock")


@dataclass(frozen=True)
class Holder:
    """The process holding a key's lease, as its lock file says (``run_id`` once it has one)."""

    host: str
    pid: int
    run_id: str | None = None

    def __str__(self) -> str:
        if not self.pid:
            return "another process"
        return f"pid {self.pid} on host {self.host}"


def _read_holder(fd: int) -> Holder:
    try:
        words = os.pread(fd, 512, 0).decode(errors="replace").split()
    except OSError:
        words = []
    try:
        return Holder(words[0], int(words[1]), words[2] if len(words) > 2 else None)
    except (IndexError, ValueError):  # being written, or not written yet
        return Holder("?", 0)


_BUSY = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)  # a file system without locks


class Lease:
    """An exclusive ``flock`` on a key's lock file, held while the key trains.

    :meth:`acquire` waits for a live holder (printing one line that names it). The lock file is
    removed on release while still locked; an acquirer that locked a file removed meanwhile
    sees that its inode is no longer the path's and tries again, so two processes never both
    hold a key. On a file system without working locks the lease is a warning line and
    guarantees nothing (``locked`` is False).
    """

    def __init__(self, path: Path, fd: int, waited_for: Holder | None) -> None:
        self.path, self._fd, self.waited_for = path, fd, waited_for

    @property
    def locked(self) -> bool:
        return self._fd >= 0

    @property
    def waited(self) -> bool:
        """Whether another process held the key when this one asked for it."""
        return self.waited_for is not None

    @classmethod
    def acquire(cls, path: Path, label: str, wait: bool = True) -> Lease | None:
        """Lock ``path`` (created with its folder). With ``wait=False`` return None instead of
        waiting for a holder. ``label`` (the run's name) starts the waiting line."""
        path.parent.mkdir(parents=True, exist_ok=True)
        waited_for: Holder | None = None
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as err:
                    if err.errno in _NO_LOCKS:
                        os.close(fd)
                        print(
                            f"{label}: warning: cannot lock {path} ({err.strerror}): this file "
                            "system has no working locks, so nothing stops another process "
                            "from training this key at the same time; put results_dir on a "
                            "local disk or a file system with locks",
                            file=sys.stderr,
                            flush=True,
                        )
                        return cls(path, -1, None)
                    if err.errno not in _BUSY:
                        raise
                    if not wait:
                        os.close(fd)
                        return None
                    if waited_for is None:
                        waited_for = _read_holder(fd)
                        print(
                            f"{label}: waiting for {waited_for}, which is training this key",
                            file=sys.stderr,
                            flush=True,
                        )
                    fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    same = os.stat(path).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    same = False
            except BaseException:
                os.close(fd)
                raise
            if same:
                break
            os.close(fd)  # locked a file its holder removed on release: lock the new one
        lease = cls(path, fd, waited_for)
        lease.note()
        return lease

    def note(self, run_id: str | None = None) -> None:
        """Write this process (and the MLflow run it trains) into the lock file, for messages."""
        if self._fd < 0:
            return
        text = f"{socket.gethostname()} {os.getpid()} {run_id or ''}".strip() + "\n"
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, text.encode(), 0)

    def release(self) -> None:
        if self._fd < 0:
            return
        try:
            if os.stat(self.path).st_ino == os.fstat(self._fd).st_ino:
                self.path.unlink()
        except OSError:
            pass
        finally:
            os.close(self._fd)  # closing the last descriptor drops the lock
            self._fd = -1

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lease_holder(path: str | Path) -> Holder | None:
    """Who holds the lock file ``path`` now (None: nobody, or no such file). Creates nothing."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in _NO_LOCKS:
                return None  # nothing can be known without locks
            if err.errno not in _BUSY:
                raise
            return _read_holder(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def key_is_locked(
    results_dir: str | Path, uri: str, experiment: str, run_key: str
) -> Holder | None:
    """The live process training ``run_key`` (in ``experiment`` of ``uri`` under
    ``results_dir``), or None when no process holds its lease."""
    return lease_holder(lease_file(results_dir, uri, experiment, run_key))


def orphans(
    uri: str, experiment: str, keys: Iterable[str], results_dir: str | Path | None = None
) -> list[tuple[str, str]]:
    """``(run_key, run_id)`` of RUNNING runs of ``keys`` that no live process trains: their
    holder died (SIGKILL, OOM killer, a lost node) before it could record the end. The next
    attempt at the key takes such a run over. The lease is looked up under ``results_dir``
    when given, else at the path the run recorded in its ``scaling.lease`` tag."""
    wanted = set(keys)
    client = mlflow_client(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None or not wanted:
        return []
    found: list[tuple[str, str]] = []
    token = None
    while True:
        page = client.search_runs(
            [exp.experiment_id],
            filter_string="attributes.status = 'RUNNING'",
            max_results=1000,
            page_token=token,
        )
        for run in page:
            key = run.data.tags.get(KEY_TAG)
            if key not in wanted:
                continue
            if results_dir is not None:
                path: str | Path | None = lease_file(results_dir, uri, experiment, key)
            else:
                path = run.data.tags.get(LEASE_TAG)
            holder = lease_holder(path) if path else None
            if holder is None or (holder.run_id and holder.run_id != run.info.run_id):
                found.append((key, run.info.run_id))
        token = page.token
        if not token:
            return sorted(found)
