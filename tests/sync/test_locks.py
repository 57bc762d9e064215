"""One run per pipeline at a time — within a process, across processes, and after a holder is killed."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sync.locks import PipelineBusy, pipeline_lock
from sync.store import Store

ROOT = Path(__file__).resolve().parents[2]

HOLDER = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[2])
    from sync.locks import pipeline_lock
    from sync.store import Store
    with pipeline_lock(Store(sys.argv[1]), "nightly"):
        print("held", flush=True)
        sys.stdin.read()  # hold until killed or told to stop
""")


def test_second_holder_is_refused_until_the_first_leaves(store: Store) -> None:
    """While a run holds a pipeline, another is refused at once; other pipelines are free; then it is free."""
    with pipeline_lock(store, "nightly"):
        with pytest.raises(PipelineBusy, match="nightly"), pipeline_lock(store, "nightly"):
            pass
        with pipeline_lock(store, "hourly"):
            pass
    with pipeline_lock(store, "nightly"):
        pass


def test_lock_holds_across_processes_and_dies_with_its_holder(store: Store) -> None:
    """A lock held by another process refuses us; SIGKILL on that process frees it (no stale lock)."""
    with subprocess.Popen([sys.executable, "-c", HOLDER, store.url, str(ROOT)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "held"
            with pytest.raises(PipelineBusy), pipeline_lock(store, "nightly"):
                pass
        finally:
            holder.send_signal(signal.SIGKILL)
            holder.wait(timeout=30)
    with pipeline_lock(store, "nightly"):
        pass


def test_lock_file_sits_beside_the_sqlite_database(tmp_path: Path) -> None:
    """On SQLite the lock is a file next to the database, named after the pipeline, even an odd name."""
    store = Store(f"sqlite:///{tmp_path / 'data' / 'store.db'}")
    with pipeline_lock(store, "eu / nightly"):
        files = [p.name for p in (tmp_path / "data").iterdir() if p.suffix == ".lock"]
    assert len(files) == 1
    assert files[0].startswith("store.db.eu___nightly-")
    store.close()
