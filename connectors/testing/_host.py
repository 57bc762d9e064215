"""One loopback server per test process, shared by every check: each check's fake is mounted under its
own path prefix (``http://127.0.0.1:<port>/kit-7``) and unmounted afterwards.

Starting a uvicorn server is quick, stopping one takes a fifth of a second (its main loop ticks at
100 ms); fifty checks each with their own server spent ten seconds doing nothing. The fakes still talk
real HTTP over a real socket, and each check still gets a fresh fake.
"""

from __future__ import annotations

import atexit
import itertools
import threading
from contextlib import ExitStack

from starlette.types import ASGIApp, Receive, Scope, Send

from connectors.sandbox import serve_on_loopback


class _Switch:
    """Routes ``/kit-<n>/rest`` to the app mounted as ``kit-<n>``, with the prefix taken off the path and
    given as the ``root_path``."""

    def __init__(self) -> None:
        self.apps: dict[str, ASGIApp] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        prefix, _, rest = scope.get("path", "/")[1:].partition("/")
        app = self.apps.get(prefix)
        if app is None or scope["type"] != "http":
            body = f"nothing is mounted at /{prefix}".encode()
            await send({"type": "http.response.start", "status": 404,
                        "headers": [(b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        path = "/" + rest
        # The prefix is the app's mount point (ASGI ``root_path``): a fake that hands out absolute URLs
        # built from ``request.base_url`` (Salesforce's ``instance_url``) then points back under it.
        root = f"{scope.get('root_path', '')}/{prefix}"
        await app({**scope, "path": path, "raw_path": path.encode(), "root_path": root}, receive, send)


class _Host:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._switch = _Switch()
        self._stack: ExitStack | None = None
        self._url = ""
        self._numbers = itertools.count(1)

    def mount(self, app: ASGIApp) -> tuple[str, str]:
        """Serve ``app``; returns (its base URL, the name to unmount it by)."""
        with self._lock:
            if self._stack is None:
                stack = ExitStack()
                self._url = stack.enter_context(serve_on_loopback(self._switch))
                self._stack = stack
                atexit.register(stack.close)
            name = f"kit-{next(self._numbers)}"
            self._switch.apps[name] = app
            return f"{self._url}/{name}", name

    def unmount(self, name: str) -> None:
        self._switch.apps.pop(name, None)


HOST = _Host()

__all__ = ["HOST"]
