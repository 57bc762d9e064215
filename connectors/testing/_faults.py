"""The kit's fault-injecting ASGI middleware, put in front of the plugin author's fake.

The author's fake only has to be a faithful fake of the vendor; the kit adds the misbehaviour. Every
request is recorded (:class:`RecordedCall`: when on the kit's clock, what was sent, what came back), and a
:class:`FaultPlan` decides, request by request, whether the fake answers or the kit does instead:

* ``respond`` — the kit answers with a canned response (a 429 with ``Retry-After``, a 503, …) and the
  fake never sees the request: it has no effect;
* ``drop_after`` — the fake handles the request (its effect persists), then the connection drops before
  the answer: the "sent, no answer" case that duplicates a non-idempotent write if the connector resends;
* ``echo`` — the kit answers 400 with a body that quotes every header of the request, as a careless
  proxy might: whatever the connector raises must still not show a credential.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connectors.sandbox.faults import InjectedDisconnect

Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class FakeResponse:
    """A response the kit sends in the fake's place."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    @classmethod
    def json(cls, status: int, body: Any, headers: Mapping[str, str] | None = None) -> FakeResponse:
        merged = {"content-type": "application/json", **(headers or {})}
        return cls(status, merged, json.dumps(body).encode())


@dataclass(slots=True)
class RecordedCall:
    """One request as the middleware saw it, and what was done with it."""

    number: int                 # 1-based, in arrival order
    at: datetime                # the kit's clock when the request arrived
    method: str
    path: str                   # without the query string (which may hold a credential)
    query: str
    headers: dict[str, str]
    body: bytes
    status: int | None = None   # None: the connection was dropped
    response_body: bytes = b""
    fault: str | None = None    # which fault the kit applied, if any

    @property
    def where(self) -> str:
        return f"{self.method} {self.path}"

    def json_body(self) -> Any:
        """The request body as JSON, or ``None`` when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


Match = Callable[[RecordedCall], bool]


def _any(call: RecordedCall) -> bool:
    return True


@dataclass(slots=True)
class _Rule:
    kind: str                   # respond | drop_after | echo
    response: FakeResponse | None
    times: int | None           # None: every matching request from now on
    match: Match


class FaultPlan:
    """What the kit does to the next requests; rules apply in the order they were added."""

    def __init__(self) -> None:
        self._rules: list[_Rule] = []

    def respond(self, response: FakeResponse, *, times: int | None = 1, match: Match = _any) -> None:
        """Answer the next ``times`` matching requests (``None``: all of them) with ``response``."""
        self._rules.append(_Rule("respond", response, times, match))

    def drop_after(self, *, times: int | None = 1, match: Match = _any) -> None:
        """Let the fake handle the next matching requests, then drop the connection without an answer."""
        self._rules.append(_Rule("drop_after", None, times, match))

    def echo(self, *, times: int | None = 1, match: Match = _any) -> None:
        """Answer 400 with a body quoting the request's headers (a credential included)."""
        self._rules.append(_Rule("echo", None, times, match))

    def clear(self) -> None:
        self._rules.clear()

    def take(self, call: RecordedCall) -> _Rule | None:
        for rule in self._rules:
            if rule.match(call):
                if rule.times is not None:
                    rule.times -= 1
                    if rule.times <= 0:
                        self._rules.remove(rule)
                return rule
        return None


def _echo(call: RecordedCall) -> FakeResponse:
    quoted = "; ".join(f"{name}={value}" for name, value in call.headers.items())
    message = f"Bad request (the kit's proxy echoes what it got: {quoted} ?{call.query})"
    # Both common envelope shapes, so that every classifier finds "its" message to quote.
    body = {"status": "error", "message": message, "error": {"message": message, "code": 100, "type": "Echo"}}
    return FakeResponse.json(400, body)


class FaultyApp:
    """ASGI middleware: records every request, applies the :class:`FaultPlan`, else lets the fake answer."""

    def __init__(self, app: ASGIApp, clock: Clock) -> None:
        self.app = app
        self.clock = clock
        self.plan = FaultPlan()
        self.calls: list[RecordedCall] = []

    def mark(self) -> int:
        """How many calls were recorded so far: pass it to :meth:`since` to get the calls after it."""
        return len(self.calls)

    def since(self, mark: int) -> list[RecordedCall]:
        return self.calls[mark:]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        call = RecordedCall(
            number=len(self.calls) + 1, at=self.clock(), method=scope["method"], path=scope["path"],
            query=scope.get("query_string", b"").decode("latin-1"), headers=headers, body=body,
        )
        self.calls.append(call)
        rule = self.plan.take(call)
        if rule is not None and rule.kind in ("respond", "echo"):
            response = rule.response if rule.response is not None else _echo(call)
            call.fault = rule.kind
            await self._send(call, response, send)
            return
        status, out_headers, out_body = await self._ask_fake(scope, body)
        if rule is not None and rule.kind == "drop_after":
            call.fault = "drop_after"
            # Start the answer, then fail: the client sees the connection close with no complete response.
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", b"64")]})
            raise InjectedDisconnect
        await self._send(call, FakeResponse(status, out_headers, out_body), send)

    async def _ask_fake(self, scope: Scope, body: bytes) -> tuple[int, dict[str, str], bytes]:
        sent = False
        status = 500
        headers: dict[str, str] = {}
        chunks: list[bytes] = []

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                for key, value in message.get("headers", []):
                    headers[key.decode("latin-1").lower()] = value.decode("latin-1")
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, replay, capture)
        return status, headers, b"".join(chunks)

    @staticmethod
    async def _send(call: RecordedCall, response: FakeResponse, send: Send) -> None:
        call.status = response.status
        call.response_body = response.body
        headers = {k.lower(): v for k, v in response.headers.items() if k.lower() != "content-length"}
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        raw.append((b"content-length", str(len(response.body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": raw})
        await send({"type": "http.response.body", "body": response.body})


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


__all__ = ["FakeResponse", "FaultPlan", "FaultyApp", "Match", "RecordedCall"]
