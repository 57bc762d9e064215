"""A faithful fake of HubSpot's CRM API as an ASGI app, for the demo, integration tests and benchmarks.

:class:`HubSpotSandbox` holds a portal's state (see :mod:`connectors.sandbox._hubspot_store`) and serves it
at HubSpot's paths with HubSpot's wire formats, limits and error shapes (``reference/apis.md`` §1): bearer
auth with HubSpot's 401 bodies; the burst (10 s rolling), daily and search (per second) rate limits with
their headers and 429 bodies; the 100-input batch cap; 207 partial results; the 10,000-result search cap.
Everything time-dependent reads the injected clock, so tests move time instead of sleeping.

Each request goes through one pipeline: count it, authenticate, apply injected faults
(:mod:`connectors.sandbox.faults`), spend rate budget (after the injected other app's, if any), run the
handler (which refuses a batch holding a poisoned input whole), count the outcome.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from connectors.sandbox import _hubspot_handlers as handlers
from connectors.sandbox import _hubspot_related as related
from connectors.sandbox._hubspot_schema import SINGULAR, TYPE_ALIASES
from connectors.sandbox._hubspot_search import FilterLimits
from connectors.sandbox._hubspot_store import Clock, HubSpotState
from connectors.sandbox._rate_limits import HubSpotLimits, RateLimiter, rate_limit_error
from connectors.sandbox._wire import HubSpotError, iso_ms, validation_error
from connectors.sandbox.faults import Fate, FaultInjector, FaultSettings, InjectedDisconnect, OtherApp, RequestFault

Sleep = Callable[[float], Awaitable[None]]
Handler = Callable[["HubSpotSandbox", Request, dict[str, str]], Awaitable["handlers.Reply"]]

_AUTH_MESSAGE = (
    "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find "
    "more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"
)
_UNLIMITED = 1_000_000_000  # burst and search limits when only an injected daily quota applies
# The official SDK calls these two with a trailing slash, and HubSpot answers that path itself (no redirect).
_SLASHED = frozenset({"/crm/v3/owners", "/events/v3/events"})
_SERVER_ERROR_MESSAGES = {
    500: "internal error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass(slots=True)
class SandboxStats:
    """What the sandbox saw, for assertions on outcomes (calls spent, records written)."""

    requests: Counter[str] = field(default_factory=Counter)  # "POST /crm/v3/objects/contacts/search"
    status_codes: Counter[int] = field(default_factory=Counter)
    write_calls: int = 0  # write requests received
    records_written: Counter[str] = field(default_factory=Counter)  # records changed, by object type
    dropped_connections: int = 0
    rejected_batches: int = 0  # batch writes refused whole for a poisoned input
    other_app_requests: int = 0  # requests the injected other app got through


class _Endpoint:
    """One route as a raw ASGI app, so the pipeline can drop a connection after the status line."""

    def __init__(
        self,
        sandbox: HubSpotSandbox,
        method: str,
        template: str,
        handler: Handler,
        *,
        search: bool,
        write: bool,
    ) -> None:
        self.sandbox, self.method, self.template, self.handler = sandbox, method, template, handler
        self.search, self.write = search, write

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.sandbox._serve(self, Request(scope, receive), send)


class HubSpotSandbox(HubSpotState):
    """A HubSpot portal in memory, served by :attr:`app` (a Starlette ASGI app).

    ``token`` is the accepted bearer token (or several); ``expired_tokens`` answer 401
    ``EXPIRED_AUTHENTICATION``. ``limits=None`` turns rate limiting off. ``faults`` and ``seed`` inject
    deterministic misbehaviour. ``sleep`` is awaited for injected latency and stalls.
    ``shuffle_batch_results`` returns batch results in a seeded order other than the inputs', because
    HubSpot does not promise input order (clients must match results by id). ``events_require_object_id``
    makes the events API refuse requests without ``objectId``, as the v3 docs describe.
    """

    def __init__(
        self,
        *,
        token: str | Collection[str] = "sandbox-token",  # noqa: S107 - the fake's well-known demo token
        expired_tokens: Collection[str] = (),
        clock: Clock | None = None,
        limits: HubSpotLimits | None = None,
        faults: FaultSettings | None = None,
        seed: int = 0,
        sleep: Sleep | None = None,
        filter_limits: FilterLimits | None = None,
        shuffle_batch_results: bool = True,
        events_require_object_id: bool = False,
    ) -> None:
        super().__init__(clock)
        self.tokens: set[str] = {token} if isinstance(token, str) else set(token)
        self.expired_tokens: set[str] = set(expired_tokens)
        self.limits = limits
        self.faults = faults
        self.filter_limits = filter_limits or FilterLimits()
        self.shuffle_batch_results = shuffle_batch_results
        self.events_require_object_id = events_require_object_id
        self.stats = SandboxStats()
        self._sleep: Sleep = sleep or asyncio.sleep
        self._injector = FaultInjector(faults, seed) if faults is not None else None
        self._order_rng = random.Random(f"{seed}:order")
        enforced = limits
        if faults is not None and faults.daily_quota is not None:
            base = limits or HubSpotLimits(burst=_UNLIMITED, search_per_second=_UNLIMITED)
            enforced = replace(base, daily=min(base.daily, faults.daily_quota))
        self._limiter = RateLimiter(enforced) if enforced is not None else None
        self._other_app: OtherApp | None = None
        self._other_seen: deque[int] = deque()  # the other app's requests in the burst window
        if faults is not None and faults.other_app_share > 0 and enforced is not None:
            self._other_app = OtherApp(faults.other_app_share, enforced.burst, enforced.window_ms)
        self.app = Starlette(routes=self._routes())

    def reset_stats(self) -> None:
        self.stats = SandboxStats()

    def input_fails(self) -> bool:
        """Whether the fault injector fails the next batch input (a 207 entry)."""
        return self._injector is not None and self._injector.input_fails()

    def refuse_poisoned(self, kind: str, keys: Iterable[str]) -> None:
        """Refuse the whole batch when an input is poisoned (``batch_rejection_share``): HubSpot's 400
        ``VALIDATION_ERROR`` for the batch, naming the input by its position and id. Nothing is written."""
        if self._injector is None:
            return
        for index, key in enumerate(keys):
            if self._injector.poisoned(key):
                self.stats.rejected_batches += 1
                detail = {
                    "isValid": False,
                    "message": f"Property values of input {key} were not accepted",
                    "error": "INVALID_PROPERTY_VALUE",
                    "name": "properties",
                    "localizedErrorMessage": f"Property values of input {key} were not accepted",
                }
                raise validation_error(
                    f"Property values were not valid: {json.dumps([detail])}",
                    errors=[{
                        "message": f"Property values of {SINGULAR.get(kind, kind)} {key} were not accepted",
                        "in": f"inputs[{index}]",
                        "code": "INVALID_PROPERTY_VALUE",
                        "context": {"ids": [key]},
                    }],
                    context={"ids": [key]},
                )

    def order(self, results: list[Any]) -> list[Any]:
        if self.shuffle_batch_results and len(results) > 1:
            self._order_rng.shuffle(results)
        return results

    # ------------------------------------------------------------------------------------------------
    # Routing

    def _routes(self) -> list[Route]:
        objects = ("/crm/v3/objects", "/crm/objects/2026-03")
        table: list[tuple[str, str, Handler, bool, bool]] = []  # method, path, handler, search, write
        for base in objects:
            table += [
                ("GET", f"{base}/{{object_type}}", handlers.list_objects, False, False),
                ("POST", f"{base}/{{object_type}}", handlers.create_one, False, True),
                ("POST", f"{base}/{{object_type}}/search", handlers.search, True, False),
                ("POST", f"{base}/{{object_type}}/batch/read", handlers.batch_read, False, False),
                ("POST", f"{base}/{{object_type}}/batch/create", handlers.batch_create, False, True),
                ("POST", f"{base}/{{object_type}}/batch/update", handlers.batch_update, False, True),
                ("POST", f"{base}/{{object_type}}/batch/upsert", handlers.batch_upsert, False, True),
                ("POST", f"{base}/{{object_type}}/batch/archive", handlers.batch_archive, False, True),
                ("GET", f"{base}/{{object_type}}/{{object_id}}", handlers.get_one, False, False),
                ("PATCH", f"{base}/{{object_type}}/{{object_id}}", handlers.update_one, False, True),
            ]
        table += [
            ("GET", "/crm/v3/properties/{object_type}", related.list_properties, False, False),
            ("POST", "/crm/v3/properties/{object_type}", related.create_property, False, True),
            ("GET", "/crm/v3/properties/{object_type}/{name}", related.get_property, False, False),
            ("GET", "/crm/v3/owners", related.list_owners, False, False),
            ("GET", "/crm/v3/owners/{owner_id}", related.get_owner, False, False),
            (
                "POST",
                "/crm/v4/associations/{from_type}/{to_type}/batch/create",
                related.associations_batch_create,
                False,
                True,
            ),
            (
                "POST",
                "/crm/v4/associations/{from_type}/{to_type}/batch/read",
                related.associations_batch_read,
                False,
                False,
            ),
            (
                "PUT",
                "/crm/v4/objects/{from_type}/{object_id}/associations/default/{to_type}/{to_id}",
                related.associate_default,
                False,
                True,
            ),
            (
                "PUT",
                "/crm/v4/objects/{from_type}/{object_id}/associations/{to_type}/{to_id}",
                related.associate_labelled,
                False,
                True,
            ),
            (
                "GET",
                "/crm/v4/objects/{from_type}/{object_id}/associations/{to_type}",
                related.list_associations,
                False,
                False,
            ),
            ("GET", "/events/v3/events", related.list_events, False, False),
            ("GET", "/events/event-occurrences/2026-03", related.list_events, False, False),
        ]
        routes = []
        for method, path, handler, search, write in table:
            endpoint = _Endpoint(self, method, path, handler, search=search, write=write)
            routes.append(Route(path, endpoint, methods=[method]))
            if path in _SLASHED:
                routes.append(Route(f"{path}/", endpoint, methods=[method]))
        return routes

    # ------------------------------------------------------------------------------------------------
    # The request pipeline

    async def _serve(self, endpoint: _Endpoint, request: Request, send: Send) -> None:
        params = dict(request.path_params)
        for name in ("object_type", "from_type", "to_type"):
            if name in params:
                params[name] = TYPE_ALIASES.get(params[name].lower(), params[name])
        key = f"{endpoint.method} {endpoint.template.format_map(_KeepMissing(params))}"
        self.stats.requests[key] += 1
        if endpoint.write:
            self.stats.write_calls += 1
        headers: dict[str, str] = {}
        try:
            self._authenticate(request)
            fault = self._injector.for_request() if self._injector is not None else None
            if fault is not None and fault.fate is Fate.STORM_429:
                raise self._storm()
            if self._limiter is not None:
                headers = self._spend(endpoint.search)
            assert self.faults is not None or fault is None
            if self.faults is not None and self.faults.latency_seconds > 0:
                await self._sleep(self.faults.latency_seconds)
            if fault is not None and fault.delay > 0:
                await self._sleep(fault.delay)
            if fault is not None and fault.fate is Fate.SERVER_ERROR:
                raise HubSpotError(
                    fault.status,
                    "INTERNAL_ERROR" if fault.status == 500 else "SERVICE_UNAVAILABLE",
                    _SERVER_ERROR_MESSAGES[fault.status],
                )
            if fault is not None and fault.fate is Fate.DROP_BEFORE:
                await self._drop(send, fault)
            for name in ("object_type", "from_type", "to_type"):
                if name in params and params[name] not in self.objects:
                    raise HubSpotError(
                        400, "VALIDATION_ERROR", f"Unable to infer object type from: {params[name]}"
                    )
            status, body = await endpoint.handler(self, request, params)
            if fault is not None and fault.fate is Fate.DROP_AFTER:
                await self._drop(send, fault)
        except HubSpotError as error:
            status, body = error.status, error.body()
            headers.update(error.headers)
        self.stats.status_codes[status] += 1
        payload = b"" if body is None else orjson.dumps(body)
        raw_headers = [(b"content-type", b"application/json;charset=utf-8")] if body is not None else []
        raw_headers.append((b"content-length", str(len(payload)).encode()))
        raw_headers += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": payload})

    def _spend(self, search: bool) -> dict[str, str]:
        """Spend one request of budget (after the other app's, when one is injected); the answer's headers."""
        assert self._limiter is not None
        now = self.now_ms()
        if self._other_app is None or search:
            return self._limiter.spend(now, search=search)
        for at in self._other_app.due(now):
            try:
                self._limiter.spend(at, search=False)
            except HubSpotError:
                continue  # the other app was refused too: a 429 spends nothing
            self._other_seen.append(at)
            self.stats.other_app_requests += 1
        window = self._limiter.limits.window_ms
        while self._other_seen and self._other_seen[0] <= now - window:
            self._other_seen.popleft()
        try:
            return self._hide_other_app(self._limiter.spend(now, search=False))
        except HubSpotError as error:
            error.headers = self._hide_other_app(error.headers)
            raise

    def _hide_other_app(self, headers: dict[str, str]) -> dict[str, str]:
        # Under-reporting headers count only this client's requests: the other app's are left out.
        assert self.faults is not None
        name = "X-HubSpot-RateLimit-Remaining"
        if not self.faults.other_app_hidden or name not in headers:
            return headers
        burst = self._limiter.limits.burst if self._limiter is not None else 0
        return {**headers, name: str(min(burst, int(headers[name]) + len(self._other_seen)))}

    def _authenticate(self, request: Request) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() == "bearer" and token in self.expired_tokens:
            expired = self.clock() - timedelta(seconds=1)
            raise HubSpotError(
                401,
                "EXPIRED_AUTHENTICATION",
                "The OAuth token used to make this call expired 1 second(s) ago.",
                context={"expire time": [iso_ms(int(expired.timestamp() * 1000))]},
            )
        if scheme.lower() != "bearer" or token not in self.tokens:
            # the token itself is never echoed: error bodies end up in logs
            raise HubSpotError(401, "INVALID_AUTHENTICATION", _AUTH_MESSAGE)

    def _storm(self) -> HubSpotError:
        assert self.faults is not None
        headers = {"Retry-After": self.faults.retry_after} if self.faults.retry_after is not None else {}
        return rate_limit_error("TEN_SECONDLY_ROLLING", headers)

    async def _drop(self, send: Send, fault: RequestFault) -> None:
        assert self.faults is not None
        stall = self.faults.timeout_stall_seconds if fault.stall is None else fault.stall
        if stall > 0:
            await self._sleep(stall)
        self.stats.dropped_connections += 1
        # Start a response, then fail: servers close the connection mid-response, clients see no answer.
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"64")],
            }
        )
        raise InjectedDisconnect


class _KeepMissing(dict[str, str]):
    """Fills the route template's type parameters and keeps the other placeholders as they are."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"

    def __getitem__(self, key: str) -> str:
        if key in ("object_type", "from_type", "to_type"):
            return super().__getitem__(key)
        return "{" + key + "}"


__all__ = ["HubSpotLimits", "HubSpotSandbox", "SandboxStats"]
