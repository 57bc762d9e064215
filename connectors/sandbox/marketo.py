"""A faithful fake of Marketo Engage's REST API as an ASGI app (reference/apis.md §3).

:class:`MarketoSandbox` holds one instance's leads, activity log and static lists
(:mod:`connectors.sandbox._marketo_store`) and serves them at Marketo's paths:

=================================================  ===================================================
``GET|POST /identity/oauth/token``                 client credentials → a bearer token (expiring)
``GET /rest/v1/leads.json``                        leads by filter (``filterType``/``filterValues``)
``POST /rest/v1/leads.json``                       sync leads (createOrUpdate/createOnly/updateOnly)
``GET /rest/v1/lead/{id}.json``, ``leads/describe.json``
``GET /rest/v1/activities/pagingtoken.json``       a date paging token (``sinceDatetime``)
``GET /rest/v1/activities.json``                   activities by type from a token (``moreResult``)
``GET /rest/v1/activities/leadchanges.json``       New Lead and Change Data Value activities
``GET /rest/v1/activities/types.json``
``POST|DELETE /rest/v1/lists/{id}/leads.json``     static list add / remove (per-record status)
``GET /rest/v1/lists/{id}/leads.json``, ``.../leads/ismember.json``
=================================================  ===================================================

Marketo's ways of failing are all here: tokens expire on the injected clock (the identity endpoint hands
out the same token until then, with what is left of its life) and answer 601/602 afterwards; the rate limit
(606), daily quota (607) and concurrency limit (615) arrive as HTTP 200 with ``success: false``; an URL
over 8 KB is HTTP 414 (a POST with ``_method=GET`` and the query in a form body is the cure); a body over
1 MB is HTTP 413. Faults (:mod:`connectors.sandbox.faults`): ``storm_429`` (and its length) answers 606,
``daily_quota`` 607 after that many calls a day, ``error_rate`` answers 611 inside HTTP 200 or a 502/503/504
page from the edge, ``timeout_rate``/``reset_rate`` drop the connection before or after the effect,
``latency_seconds``/``slow_rate`` delay answers (through the injected ``sleep``), ``other_app_share`` spends
the shared 100/20 s window as another integration would. ``partial_failure_rate`` and
``batch_rejection_share`` are not modelled: Marketo has no documented per-record transient failure.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from connectors.sandbox import _marketo_handlers as handlers
from connectors.sandbox._marketo_limits import InstanceBudget, MarketoLimits
from connectors.sandbox._marketo_store import MarketoState
from connectors.sandbox._marketo_wire import (
    HttpError,
    MarketoError,
    Params,
    html_page,
    read_params,
    request_id,
)
from connectors.sandbox.faults import Fate, FaultInjector, FaultSettings, InjectedDisconnect, OtherApp

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], datetime]
Handler = Callable[["MarketoSandbox", Params, Any, dict[str, str]], Awaitable[dict[str, Any]]]

MAX_URL_BYTES = 8 * 1024
MAX_BODY_BYTES = 1024 * 1024
TOKEN_SECONDS = 3600


@dataclass(slots=True)
class MarketoStats:
    """What the sandbox saw, for assertions on outcomes."""

    requests: Counter[str] = field(default_factory=Counter)  # "GET /rest/v1/activities.json"
    errors: Counter[str] = field(default_factory=Counter)  # response-level codes answered, "606"
    status_codes: Counter[int] = field(default_factory=Counter)
    tokens_issued: int = 0  # identity calls that handed out a token (a new one or the same again)
    new_tokens: int = 0  # distinct tokens created
    query_tokens: int = 0  # REST calls that carried access_token in the query string
    max_in_flight: int = 0
    dropped_connections: int = 0
    method_get_posts: int = 0  # POSTs with _method=GET (the 414 cure)
    other_app_calls: int = 0


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    template: str
    handler: Handler


_ROUTES: tuple[_Route, ...] = tuple(
    _Route(method, re.compile(pattern), template, handler)
    for method, pattern, template, handler in (
        ("GET", r"/rest/v1/leads\.json", "/rest/v1/leads.json", handlers.leads_get),
        ("POST", r"/rest/v1/leads\.json", "/rest/v1/leads.json", handlers.leads_sync),
        ("GET", r"/rest/v1/leads/describe\.json", "/rest/v1/leads/describe.json", handlers.describe),
        ("GET", r"/rest/v1/lead/(?P<id>\d+)\.json", "/rest/v1/lead/{id}.json", handlers.lead_by_id),
        ("GET", r"/rest/v1/activities/pagingtoken\.json", "/rest/v1/activities/pagingtoken.json",
         handlers.paging_token),
        ("GET", r"/rest/v1/activities\.json", "/rest/v1/activities.json", handlers.activities),
        ("GET", r"/rest/v1/activities/leadchanges\.json", "/rest/v1/activities/leadchanges.json",
         handlers.lead_changes),
        ("GET", r"/rest/v1/activities/types\.json", "/rest/v1/activities/types.json", handlers.activity_types),
        ("POST", r"/rest/v1/lists/(?P<list_id>\w+)/leads\.json", "/rest/v1/lists/{id}/leads.json",
         handlers.list_add),
        ("DELETE", r"/rest/v1/lists/(?P<list_id>\w+)/leads\.json", "/rest/v1/lists/{id}/leads.json",
         handlers.list_remove),
        ("GET", r"/rest/v1/lists/(?P<list_id>\w+)/leads\.json", "/rest/v1/lists/{id}/leads.json",
         handlers.list_members),
        ("GET", r"/rest/v1/lists/(?P<list_id>\w+)/leads/ismember\.json", "/rest/v1/lists/{id}/leads/ismember.json",
         handlers.list_ismember),
    )
)


class _App:
    """The raw-ASGI endpoint behind every path, so the pipeline can drop a connection mid-answer."""

    def __init__(self, sandbox: MarketoSandbox) -> None:
        self.sandbox = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.sandbox._serve(Request(scope, receive), send)


class MarketoSandbox:
    """One Marketo instance in memory, served by :attr:`app` (a Starlette ASGI app).

    ``client_id``/``client_secret`` are the custom service's credentials (several pairs: a mapping).
    ``limits=None`` turns the rate, daily and concurrency limits off. ``token_seconds`` is a new token's
    life; ``max_url_bytes``/``max_body_bytes`` trigger 414/413; ``activity_scan`` is how many log entries
    one activities call walks (so pages can be short with ``moreResult: true``). ``faults``/``seed``
    inject deterministic misbehaviour; ``sleep`` is awaited for injected latency and stalls.
    """

    def __init__(
        self,
        *,
        client_id: str = "sandbox-marketo-client",
        client_secret: str = "sandbox-marketo-secret",  # noqa: S107 - the fake's well-known demo secret
        credentials: dict[str, str] | None = None,
        clock: Clock | None = None,
        limits: MarketoLimits | None = None,
        faults: FaultSettings | None = None,
        seed: int = 0,
        sleep: Sleep | None = None,
        token_seconds: int = TOKEN_SECONDS,
        max_url_bytes: int = MAX_URL_BYTES,
        max_body_bytes: int = MAX_BODY_BYTES,
        activity_scan: int = 1000,
        scope_user: str = "apis@leadrelay-demo.com",
    ) -> None:
        self.credentials: dict[str, str] = dict(credentials or {client_id: client_secret})
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self.limits = limits
        self.faults = faults
        self.token_seconds = token_seconds
        self.max_url_bytes = max_url_bytes
        self.max_body_bytes = max_body_bytes
        self.activity_scan = activity_scan
        self.scope_user = scope_user
        self.state = MarketoState()
        self.stats = MarketoStats()
        self._sleep: Sleep = sleep or asyncio.sleep
        self._injector = FaultInjector(faults, seed) if faults is not None else None
        self._rng = random.Random(f"{seed}:marketo")
        self._tokens: dict[str, tuple[str, int]] = {}  # token → (client id, expiry ms)
        self._current: dict[str, str] = {}  # client id → its live token
        self._in_flight = 0
        enforced = limits
        if faults is not None and faults.daily_quota is not None:
            enforced = replace(limits or _UNLIMITED, daily=min((limits or _UNLIMITED).daily, faults.daily_quota))
        self._budget = InstanceBudget(enforced) if enforced is not None else None
        self._other_app: OtherApp | None = None
        if faults is not None and faults.other_app_share > 0 and self._budget is not None:
            window_ms = int(self._budget.limits.window_seconds * 1000)
            self._other_app = OtherApp(faults.other_app_share, self._budget.limits.calls, window_ms)
        self.app = Starlette(routes=[Route("/{path:path}", _App(self), methods=["GET", "POST", "DELETE"])])

    # ------------------------------------------------------------------------------------------------
    # Set-up and inspection without HTTP

    def now_ms(self) -> int:
        return int(self.clock().timestamp() * 1000)

    def add_field(self, name: str, data_type: str = "string") -> None:
        self.state.fields[name] = data_type

    def add_lead(self, **values: Any) -> int:
        """Create a lead now (a New Lead activity is logged); returns its id."""
        return self.state.create_lead(values, self.now_ms())

    def update_lead(self, lead_id: int, **values: Any) -> None:
        """Change fields now, logging a Change Data Value activity per changed field."""
        self.state.update_lead(lead_id, values, self.now_ms())

    def lead(self, lead_id: int) -> dict[str, Any]:
        return dict(self.state.leads[lead_id])

    def add_activity(self, lead_id: int, type_id: int, *, at: datetime | None = None, primary: str | None = None,
                     attributes: dict[str, Any] | None = None) -> str:
        """Log an activity (now unless ``at``); returns its marketoGUID."""
        at_ms = int(at.timestamp() * 1000) if at is not None else self.now_ms()
        attrs = [{"name": k, "value": v} for k, v in (attributes or {}).items()]
        return self.state.append(lead_id, at_ms, type_id, primary=primary, attributes=attrs).guid

    def create_list(self, name: str) -> str:
        """Create an empty static list; returns its id (as text, the way audiences are configured)."""
        return str(self.state.create_list(name))

    def members(self, list_id: str | int) -> set[int]:
        return set(self.state.lists[int(list_id)][1])

    def load(self, dataset: Any) -> dict[str, int]:
        """Load a generated dataset (contacts → leads, events → activities); returns contact id → lead id."""
        return self.state.load(dataset)

    def issued_tokens(self) -> list[str]:
        """Every token handed out and not revoked (for tests that check no token leaks)."""
        return list(self._tokens)

    def revoke_tokens(self) -> None:
        """Forget every issued token (a rotated secret, say): they answer 601 from now on."""
        self._tokens.clear()
        self._current.clear()

    def reset_stats(self) -> None:
        self.stats = MarketoStats()

    # ------------------------------------------------------------------------------------------------
    # The request pipeline

    async def _serve(self, request: Request, send: Send) -> None:
        method, path = request.method, request.url.path
        self.stats.requests[f"{method} {path}"] += 1
        status, payload, kind = 200, b"", b"application/json;charset=UTF-8"
        entered = False
        try:
            body = await request.body()
            raw_url = path + ("?" + request.url.query if request.url.query else "")
            if len(raw_url.encode()) > self.max_url_bytes:
                raise HttpError(414, html=True)
            if len(body) > self.max_body_bytes:
                raise HttpError(413, html=True)
            if path.rstrip("/") == "/identity/oauth/token":
                status, data = self._identity(request, body)
                payload = json.dumps(data).encode()
            else:
                params, data_in, effective = await read_params(request, body)
                if effective != method:
                    self.stats.method_get_posts += 1
                route, args = _match(effective, path)
                self._authenticate(request, params)
                entered = self._enter()
                result = await self._run(route, path, params, data_in, args, send)
                payload = json.dumps({"requestId": request_id(self._rng), **result, "success": True}).encode()
        except MarketoError as error:
            self.stats.errors[str(error.code)] += 1
            payload = json.dumps(error.body(request_id(self._rng))).encode()
        except HttpError as error:
            status = error.status
            if error.html:
                payload, kind = html_page(status), b"text/html"
            else:
                payload = json.dumps(error.body or {}).encode()
        finally:
            if entered:
                self._in_flight -= 1
        self.stats.status_codes[status] += 1
        headers = [(b"content-type", kind), (b"content-length", str(len(payload)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    def _enter(self) -> bool:
        limits = self.limits
        if limits is not None and self._in_flight >= limits.concurrent:
            raise MarketoError(615)
        self._in_flight += 1
        self.stats.max_in_flight = max(self.stats.max_in_flight, self._in_flight)
        return True

    async def _run(self, route: _Route | None, path: str, params: Params, data: Any, args: dict[str, str],
                   send: Send) -> dict[str, Any]:
        fault = self._injector.for_request() if self._injector is not None else None
        if fault is not None and fault.fate is Fate.STORM_429:
            raise MarketoError(606)
        if route is None:
            raise MarketoError(610, f"Requested resource not found: {path}")
        if fault is not None and fault.fate is Fate.SERVER_ERROR and fault.status == 500:
            raise MarketoError(611)  # a (*) code: Marketo does not count it against the limits
        self._spend()
        if self.faults is not None and self.faults.latency_seconds > 0:
            await self._sleep(self.faults.latency_seconds)
        if fault is not None and fault.delay > 0:
            await self._sleep(fault.delay)
        if fault is not None and fault.fate is Fate.SERVER_ERROR:
            raise HttpError(fault.status, html=True)  # the edge's page: 502/503/504
        if fault is not None and fault.fate is Fate.DROP_BEFORE:
            await self._drop(send, fault.stall)
        result = await route.handler(self, params, data, args)
        if fault is not None and fault.fate is Fate.DROP_AFTER:
            await self._drop(send, fault.stall)
        return result

    def _spend(self) -> None:
        budget = self._budget
        if budget is None:
            return
        now = self.now_ms()
        if self._other_app is not None:
            budget.roll(now)
            for at in self._other_app.due(now):
                budget.note(at)
                self.stats.other_app_calls += 1
        budget.spend(now)

    def _identity(self, request: Request, body: bytes) -> tuple[int, dict[str, Any]]:
        pairs = dict(parse_qsl(request.url.query))
        if body:
            pairs.update(parse_qsl(body.decode("utf-8", "replace")))
        if pairs.get("grant_type") != "client_credentials":
            return 400, {"error": "invalid_request", "error_description": "Missing grant type"}
        client_id, secret = pairs.get("client_id", ""), pairs.get("client_secret", "")
        if client_id not in self.credentials or self.credentials[client_id] != secret:
            raise HttpError(401, {"error": "unauthorized", "error_description": "Bad client credentials"})
        now = self.now_ms()
        token = self._current.get(client_id)
        if token is None or self._tokens[token][1] <= now:
            token = f"{self._rng.getrandbits(128):032x}:sj"
            self._tokens[token] = (client_id, now + self.token_seconds * 1000)
            self._current[client_id] = token
            self.stats.new_tokens += 1
        self.stats.tokens_issued += 1
        left = max((self._tokens[token][1] - now) // 1000, 0)
        return 200, {"access_token": token, "token_type": "bearer", "expires_in": left, "scope": self.scope_user}

    def _authenticate(self, request: Request, params: Params) -> None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        token = value.strip() if scheme.lower() == "bearer" else ""
        query_token = params.get("access_token")
        if query_token:
            self.stats.query_tokens += 1
            token = token or query_token
        if not token:
            raise MarketoError(600)
        known = self._tokens.get(token)
        if known is None:
            raise MarketoError(601)  # the token itself is never echoed: error bodies end up in logs
        if known[1] <= self.now_ms():
            raise MarketoError(602)

    async def _drop(self, send: Send, stall: float | None) -> None:
        assert self.faults is not None
        wait = self.faults.timeout_stall_seconds if stall is None else stall
        if wait > 0:
            await self._sleep(wait)
        self.stats.dropped_connections += 1
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"64")]})
        raise InjectedDisconnect


_UNLIMITED = MarketoLimits(calls=1_000_000_000, daily=1_000_000_000, concurrent=1_000_000)


def _match(method: str, path: str) -> tuple[_Route | None, dict[str, str]]:
    for route in _ROUTES:
        found = route.pattern.fullmatch(path)
        if found is not None and route.method == method:
            return route, found.groupdict()
    return None, {}


# A connector config's activity type map for everything the sandbox generates from a dataset
# (connectors.sandbox._marketo_store.EVENT_TYPE_IDS).
SANDBOX_ACTIVITY_TYPES: dict[int, str] = {
    1: "page_view", 2: "form_submit", 10: "email_open", 11: "email_click", 104: "webinar", 100_001: "content_download",
}

__all__ = ["SANDBOX_ACTIVITY_TYPES", "MarketoLimits", "MarketoSandbox", "MarketoStats"]
