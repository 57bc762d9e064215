"""A sandbox served from its own process, for benchmarks that must measure the agent's CPU and memory alone."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator


@contextlib.contextmanager
def serving(script: str, *args: str, ready_path: str = "/_bench/stats", wait: float = 120) -> Iterator[str]:
    """Run ``script`` (a Python program serving HTTP on the port given as its first argument) in its own
    process; yield its base URL once ``ready_path`` answers, and stop the process afterwards."""
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-c", script, str(port), *args])
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + wait
        while True:  # seeding a large dataset takes a while: poll until the port answers
            try:
                httpx.get(f"{base_url}{ready_path}", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the sandbox process did not start") from None
                time.sleep(0.2)
        yield base_url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
