"""The operators' HTTP endpoint of `leadrelay run`: liveness, readiness, Prometheus metrics, webhooks.

* ``GET /livez`` — 200 while the process's event loop answers (nothing else is asked).
* ``GET /readyz`` — 200 when the store answers and every source's check passes, else 503; the body names
  what failed. Source checks cost the vendor a call, so their result is kept for ``ready_cache`` seconds.
* ``GET /metrics`` — Prometheus text format (``sync.metrics``).
* ``POST /webhooks/...`` — the change notifications of ``sync.webhooks``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from sync.metrics import Metrics

ReadyCheck = Callable[[], Awaitable[dict[str, str]]]  # component -> "ok" or what is wrong


def build_app(metrics: Metrics, *, ready: ReadyCheck, refresh: Callable[[], None],
              extra_routes: Sequence[BaseRoute] = (), ready_cache: float = 10.0,
              monotonic: Callable[[], float] = time.monotonic) -> Starlette:
    """The endpoint's ASGI app. ``refresh`` (blocking; run in a thread) updates store-backed gauges before a
    scrape; ``ready`` checks the store and the sources."""
    cached: dict[str, Any] = {"at": None, "result": None}
    lock = asyncio.Lock()

    async def livez(_: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(_: Request) -> Response:
        async with lock:
            at = cached["at"]
            if at is None or monotonic() - at > ready_cache:
                cached["result"], cached["at"] = await ready(), monotonic()
            result: dict[str, str] = cached["result"]
        ok = all(v == "ok" for v in result.values())
        return JSONResponse({"ready": ok, "checks": result}, status_code=200 if ok else 503)

    async def scrape(_: Request) -> Response:
        await asyncio.to_thread(refresh)
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    routes: list[BaseRoute] = [Route("/livez", livez), Route("/readyz", readyz), Route("/metrics", scrape),
                               *extra_routes]
    return Starlette(routes=routes)


__all__ = ["ReadyCheck", "build_app"]
