"""One run per pipeline at a time, across processes, released by the operating system if a run dies.

PostgreSQL: a session advisory lock on a connection held for the run — the server drops it when the
connection goes, so a killed agent never leaves a stale lock behind. A SQLite file: ``flock`` on a lock
file beside the database — the kernel drops it when the process dies. In-memory SQLite (tests): a lock
in this process, the only one that can see the store.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

from connectors.base import LeadrelayError
from sync.store import Store, sqlite_file

_local_locks: dict[tuple[str, str], threading.Lock] = {}
_local_guard = threading.Lock()


class PipelineBusy(LeadrelayError):
    """Another run of this pipeline holds the lock; this trigger is skipped, not queued."""


def _advisory_key(pipeline: str) -> int:
    digest = hashlib.sha256(f"leadrelay:pipeline:{pipeline}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)  # PostgreSQL's bigint


def lock_file(db: Path, pipeline: str) -> Path:
    """Where the lock of ``pipeline`` lives for the SQLite database ``db`` (readable name + a hash)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]", "_", pipeline)[:40]
    tag = hashlib.sha256(pipeline.encode()).hexdigest()[:8]
    return db.with_name(f"{db.name}.{slug}-{tag}.lock")


@contextlib.contextmanager
def pipeline_lock(store: Store, pipeline: str) -> Iterator[None]:
    """Hold the lock of ``pipeline`` for the block; raise :class:`PipelineBusy` at once if it is taken."""
    busy = PipelineBusy(f"pipeline {pipeline!r} is already running (another process or trigger holds its lock)")
    if store.dialect == "postgresql":
        with _advisory(store, pipeline, busy):
            yield
        return
    db = sqlite_file(store.url)
    if db is None:
        with _in_process(store.url, pipeline, busy):
            yield
        return
    with _flock(lock_file(db, pipeline), busy):
        yield


@contextlib.contextmanager
def _advisory(store: Store, pipeline: str, busy: PipelineBusy) -> Iterator[None]:
    key = _advisory_key(pipeline)
    conn = store.engine.connect()
    try:
        got = conn.exec_driver_sql("SELECT pg_try_advisory_lock(%(k)s)", {"k": key}).scalar()
        conn.commit()  # a session lock outlives the transaction; end it so the connection holds no snapshot
        if not got:
            raise busy
        try:
            yield
        finally:
            try:
                conn.exec_driver_sql("SELECT pg_advisory_unlock(%(k)s)", {"k": key})
                conn.commit()
            except Exception:  # noqa: BLE001 - a broken connection must not go back to the pool holding the lock
                conn.invalidate()
    finally:
        conn.close()


@contextlib.contextmanager
def _flock(path: Path, busy: PipelineBusy) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise busy from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # who holds it, for a person looking at the file
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _in_process(url: str, pipeline: str, busy: PipelineBusy) -> Iterator[None]:
    with _local_guard:
        lock = _local_locks.setdefault((url, pipeline), threading.Lock())
    if not lock.acquire(blocking=False):
        raise busy
    try:
        yield
    finally:
        lock.release()


__all__ = ["PipelineBusy", "lock_file", "pipeline_lock"]
