"""Serve a sandbox app on a real loopback socket, for tests and benchmarks that need real HTTP.

``httpx.ASGITransport`` is enough for most tests; a socket adds what it leaves out — connection pooling,
real disconnects, the cost of HTTP parsing — which the connector's integration tests and the benchmarks
must see.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp

_STARTUP_TIMEOUT = 10.0


@contextmanager
def serve_on_loopback(app: ASGIApp, *, log_level: str = "warning", port: int = 0) -> Iterator[str]:
    """Run ``app`` with uvicorn on 127.0.0.1 in a background thread; yield its base URL.

    ``port`` 0 (the default) takes a free port. The server is stopped (and its thread joined) when the
    block exits.
    """
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level=log_level, lifespan="off", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="sandbox-server", daemon=True)
    thread.start()
    try:
        stopped = threading.Event()
        waited = 0.0
        while not server.started:
            # uvicorn offers no startup callback; poll its flag (not a test sleep: this is set-up)
            if not thread.is_alive() or waited > _STARTUP_TIMEOUT:
                raise RuntimeError("the sandbox server did not start")
            stopped.wait(0.01)
            waited += 0.01
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=_STARTUP_TIMEOUT)
