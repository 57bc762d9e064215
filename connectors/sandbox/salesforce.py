"""A faithful fake of Salesforce's REST API as an ASGI app (reference/apis.md §2 and §7.2).

:class:`SalesforceSandbox` holds an org (see :mod:`connectors.sandbox._salesforce_store`) and serves it:

=================================================  ==================================================
``POST /services/oauth2/token``                    refresh-token and client-credentials grants; the
                                                   answer has no ``expires_in``; OAuth error bodies
``GET /services/data/``                            API versions (not counted, no limit header)
``GET /services/data/vXX.X/limits``                ``DailyApiRequests``
``GET …/query?q=``, ``…/queryAll?q=``              the SOQL subset of :mod:`._salesforce_soql`, up to
                                                   ``batchSize`` (``Sforce-Query-Options``, 200-2000,
                                                   default 2000) rows a page
``GET …/query/<locator>-<offset>``                 the next page (``nextRecordsUrl``, relative)
``POST|PATCH …/composite/sobjects``                create / update up to 200 records, ``allOrNone``,
                                                   a result per record in input order
``POST …/sobjects/{type}/``, ``GET|PATCH …/{id}``  single-record create (201), read, update (204)
=================================================  ==================================================

Every API answer carries ``Sforce-Limit-Info: api-usage=N/M``; over the daily limit the answer is 403
``REQUEST_LIMIT_EXCEEDED``. Tokens expire ``session_seconds`` after issue on the injected clock (or at once
with :meth:`SalesforceSandbox.expire_tokens`) and are then refused with 401 ``INVALID_SESSION_ID``. Lead
updates run the org's assignment rule (``assignment_rule_owner``) unless ``Sforce-Auto-Assign: FALSE``
(the header's default is TRUE). Faults (:mod:`connectors.sandbox.faults`) apply as to every sandbox:
``storm_429`` answers Salesforce's throttle (403 ``REQUEST_LIMIT_EXCEEDED``, "ConcurrentPerOrgLongTxn Limit
exceeded."), ``error_rate`` a 500 ``UNKNOWN_EXCEPTION`` / 503 ``SERVER_UNAVAILABLE`` or a gateway page,
``timeout_rate``/``reset_rate`` drop the connection before or after the effect, ``partial_failure_rate``
fails single records with ``UNABLE_TO_LOCK_ROW``, ``batch_rejection_share`` refuses a collection holding a
poisoned record whole (400 ``JSON_PARSER_ERROR``), ``daily_quota`` lowers the daily limit and
``other_app_share`` spends it from another app.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from connectors.sandbox import _salesforce_handlers as handlers
from connectors.sandbox._salesforce_dataset import Loaded, load_dataset
from connectors.sandbox._salesforce_limits import DailyCounter, SalesforceLimits
from connectors.sandbox._salesforce_store import Clock, SalesforceState, ValidationRule
from connectors.sandbox._salesforce_wire import SalesforceError, html_page, normalise_id, not_found, session_expired
from connectors.sandbox.faults import Fate, FaultInjector, FaultSettings, InjectedDisconnect, OtherApp
from connectors.sandbox.generator import Dataset

Sleep = Callable[[float], Awaitable[None]]
Handler = Callable[["SalesforceSandbox", Request, dict[str, str], bytes], Awaitable[handlers.Reply]]

_TOKEN_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._"
_V = r"/services/data/v(?P<version>\d+\.\d)"


@dataclass(slots=True)
class SalesforceStats:
    """What the sandbox saw, for assertions on outcomes."""

    requests: Counter[str] = field(default_factory=Counter)  # "GET /query", "PATCH /composite/sobjects"
    status_codes: Counter[int] = field(default_factory=Counter)
    write_calls: int = 0
    records_written: Counter[str] = field(default_factory=Counter)  # by sObject type
    tokens_issued: int = 0
    dropped_connections: int = 0
    rejected_batches: int = 0
    other_app_requests: int = 0
    auto_assign: list[str | None] = field(default_factory=list)  # Sforce-Auto-Assign of each write


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    name: str
    handler: Handler
    auth: bool = True
    counted: bool = True  # counts against the daily API limit and carries the limit header
    write: bool = False


class _App:
    """One raw ASGI endpoint behind every path, so the pipeline can drop a connection mid-answer."""

    def __init__(self, sandbox: SalesforceSandbox) -> None:
        self.sandbox = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.sandbox._serve(Request(scope, receive), send)


class SalesforceSandbox(SalesforceState):
    """A Salesforce org in memory, served by :attr:`app` (a Starlette ASGI app).

    The connected app is ``client_id``/``client_secret``; ``refresh_token`` is the accepted refresh token
    (or several). ``limits=None`` turns the daily API limit off. ``instance_url`` is what the token
    endpoint hands out (default: the URL the request came to). ``faults``/``seed`` inject deterministic
    misbehaviour; ``sleep`` is awaited for injected latency and stalls.
    """

    def __init__(
        self,
        *,
        client_id: str = "sandbox-client-id",
        client_secret: str = "sandbox-client-secret",  # noqa: S107 - the fake's well-known demo secret
        refresh_token: str | Collection[str] = "sandbox-refresh-token",  # noqa: S107 - likewise
        clock: Clock | None = None,
        limits: SalesforceLimits | None = None,
        faults: FaultSettings | None = None,
        seed: int = 0,
        sleep: Sleep | None = None,
        session_seconds: float = 7_200.0,
        instance_url: str | None = None,
        api_version: str = "60.0",
        assignment_rule_owner: str | None = None,
        locator_ttl_seconds: float = 900.0,
    ) -> None:
        super().__init__(clock, locator_ttl_seconds=locator_ttl_seconds)
        self.client_id = client_id
        self.client_secret = client_secret
        self.refresh_tokens: set[str] = {refresh_token} if isinstance(refresh_token, str) else set(refresh_token)
        self.session_ms = int(session_seconds * 1000)
        self.instance_url = instance_url.rstrip("/") if instance_url else None
        self.api_version = api_version
        self.assignment_rule_owner = assignment_rule_owner
        self.org_id = "00D5g000004SANDBOX"
        self.faults = faults
        self.stats = SalesforceStats()
        self._tokens: dict[str, int] = {}  # access token → issued at (ms)
        self._sleep: Sleep = sleep or asyncio.sleep
        self._injector = FaultInjector(faults, seed) if faults is not None else None
        self._rng = random.Random(f"{seed}:salesforce-tokens")
        enforced = limits
        if faults is not None and faults.daily_quota is not None:
            base = limits or SalesforceLimits()
            enforced = SalesforceLimits(min(base.daily_requests, faults.daily_quota), base.window_seconds)
        self.limits = enforced
        self._counter = DailyCounter(enforced) if enforced is not None else None
        self._other_app: OtherApp | None = None
        if faults is not None and faults.other_app_share > 0 and enforced is not None:
            self._other_app = OtherApp(faults.other_app_share, enforced.daily_requests,
                                       enforced.window_seconds * 1000)
        self.app = Starlette(routes=[Route("/{path:path}", _App(self), methods=["GET", "POST", "PATCH"])])

    # ------------------------------------------------------------------------------------------------
    # Set-up and inspection, without HTTP

    def load(self, data: Dataset) -> Loaded:
        """Pour a generated dataset into the org (see :mod:`connectors.sandbox._salesforce_dataset`)."""
        return load_dataset(self, data)

    def add_validation_rule(self, sobject: str, fails: Callable[[Mapping[str, Any]], bool], message: str,
                            fields: tuple[str, ...] = ()) -> None:
        """Refuse writes of ``sobject`` records for which ``fails(row)`` holds (``FIELD_CUSTOM_VALIDATION_
        EXCEPTION`` with ``message``)."""
        self.validation_rules.append(ValidationRule(sobject, fails, message, fields))

    def issue_token(self) -> tuple[str, int]:
        now = self.now_ms()
        token = f"{self.org_id}!AQ" + "".join(self._rng.choice(_TOKEN_ALPHABET) for _ in range(96))
        self._tokens[token] = now
        self.stats.tokens_issued += 1
        return token, now

    def expire_tokens(self) -> None:
        """Every access token issued so far is expired from now on (a session timeout, a revoked session)."""
        self._tokens.clear()

    def set_limits(self, limits: SalesforceLimits | None) -> None:
        """Change the org's API limit (what was counted stays counted); ``None`` turns it off."""
        self.limits = limits
        if limits is None:
            self._counter = None
        elif self._counter is None:
            self._counter = DailyCounter(limits)
        else:
            self._counter.limits = limits

    def api_usage(self) -> tuple[int, int]:
        """(requests counted in the rolling window, the limit); (0, 0) with no limit."""
        if self._counter is None or self.limits is None:
            return 0, 0
        return self._counter.used(self.now_ms()), self.limits.daily_requests

    def reset_stats(self) -> None:
        self.stats = SalesforceStats()

    def sobject(self, name: str) -> str:
        found = next((n for n in self.schemas if n.lower() == name.lower()), None)
        if found is None:
            raise not_found()
        return found

    def normal_id(self, value: str) -> str:
        return normalise_id(value) or value

    def input_fails(self) -> bool:
        return self._injector is not None and self._injector.input_fails()

    def refuse_poisoned(self, records: list[dict[str, Any]], creating: bool) -> None:
        """Refuse a collection holding a poisoned record whole (``batch_rejection_share``)."""
        if self._injector is None:
            return
        for index, record in enumerate(records):
            key = str(record.get("id") or record.get("Id") or json.dumps(record, sort_keys=True, default=str))
            if self._injector.poisoned(key):
                self.stats.rejected_batches += 1
                raise SalesforceError(400, "JSON_PARSER_ERROR",
                                      f"Cannot deserialize instance of {'insert' if creating else 'update'} "
                                      f"record at [line:1, column:{index + 1}] (records[{index}]: {key[:18]})")

    def commit(self, sobject: str, row: dict[str, Any], *, auto_assign: str | None = None) -> None:
        """Store an updated row; a Lead's assignment rule runs unless the request said ``FALSE``."""
        if (sobject == "Lead" and self.assignment_rule_owner is not None
                and (auto_assign or "TRUE").strip().upper() != "FALSE"):
            row["OwnerId"] = self.assignment_rule_owner
        super().commit(sobject, row)
        self.stats.records_written[sobject] += 1

    # ------------------------------------------------------------------------------------------------
    # The request pipeline

    async def _serve(self, request: Request, send: Send) -> None:
        method = request.method
        route, params = _match(method, request.url.path)
        self.stats.requests[f"{method} {route.name if route else request.url.path}"] += 1
        if route is not None and route.write:
            self.stats.write_calls += 1
        headers: dict[str, str] = {}
        status: int
        body: Any
        html = False
        try:
            try:
                if route is None:
                    raise not_found()
                raw = await request.body()
                if route.auth:
                    self._authenticate(request)
                fault = self._injector.for_request() if self._injector is not None else None
                if fault is not None and fault.fate is Fate.STORM_429:
                    raise self._storm()
                if route.counted and self._counter is not None:
                    headers = self._spend()
                if self.faults is not None and self.faults.latency_seconds > 0:
                    await self._sleep(self.faults.latency_seconds)
                if fault is not None and fault.delay > 0:
                    await self._sleep(fault.delay)
                if fault is not None and fault.fate is Fate.SERVER_ERROR:
                    raise _server_error(fault.status)
                if fault is not None and fault.fate is Fate.DROP_BEFORE:
                    await self._drop(send, fault.stall)
                status, body = await route.handler(self, request, params, raw)
                if fault is not None and fault.fate is Fate.DROP_AFTER:
                    await self._drop(send, fault.stall)
            except SalesforceError as error:
                status, body, html = error.status, error.body(), error.html
                headers.update(error.headers)
        except handlers.OAuthError as error:
            status, body = error.status, {"error": error.error, "error_description": error.description}
        self.stats.status_codes[status] += 1
        if html:
            payload, kind = html_page(status), b"text/html;charset=UTF-8"
        elif body is None:
            payload, kind = b"", b""
        else:
            payload, kind = json.dumps(body, separators=(",", ":")).encode(), b"application/json;charset=UTF-8"
        raw_headers = [(b"content-length", str(len(payload)).encode())]
        if kind:
            raw_headers.append((b"content-type", kind))
        raw_headers += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": payload})

    def _authenticate(self, request: Request) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        issued = self._tokens.get(token.strip()) if scheme.lower() in ("bearer", "oauth") else None
        if issued is None or self.now_ms() - issued >= self.session_ms:
            raise session_expired()  # the token itself is never echoed: error bodies end up in logs

    def _spend(self) -> dict[str, str]:
        assert self._counter is not None
        now = self.now_ms()
        if self._other_app is not None:
            for at in self._other_app.due(now):
                if self._counter.other(at):
                    self.stats.other_app_requests += 1
        hide = bool(self.faults is not None and self.faults.other_app_hidden)
        try:
            return self._counter.spend(now, hide_others=hide)
        except SalesforceError as error:
            error.headers.update(self._counter.header(now, hide_others=hide))
            raise

    def _storm(self) -> SalesforceError:
        error = SalesforceError(403, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded.")
        if self.faults is not None and self.faults.retry_after is not None:
            error.headers["Retry-After"] = self.faults.retry_after
        return error

    async def _drop(self, send: Send, stall: float | None) -> None:
        assert self.faults is not None
        wait = self.faults.timeout_stall_seconds if stall is None else stall
        if wait > 0:
            await self._sleep(wait)
        self.stats.dropped_connections += 1
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"64")]})
        raise InjectedDisconnect


def _server_error(status: int) -> SalesforceError:
    if status == 500:
        return SalesforceError(500, "UNKNOWN_EXCEPTION", "An unexpected error occurred. Please include this "
                               "ErrorId if you contact support: 1384671590-54711 (-1170528236)")
    if status == 503:
        return SalesforceError(503, "SERVER_UNAVAILABLE", "Server temporarily unavailable, please try again")
    return SalesforceError(status, "GATEWAY", "gateway error", html=True)


_ROUTES: tuple[_Route, ...] = (
    _Route("POST", re.compile(r"/services/oauth2/token"), "/oauth2/token", handlers.token, auth=False,
           counted=False),
    _Route("GET", re.compile(r"/services/data"), "/services/data", handlers.versions, auth=False, counted=False),
    _Route("GET", re.compile(_V + r"/limits"), "/limits", handlers.limits),
    _Route("GET", re.compile(_V + r"/(?P<kind>query|queryAll)"), "/query", handlers.query),
    _Route("GET", re.compile(_V + r"/(?P<kind>query|queryAll)/(?P<locator>\w+-\d+)"), "/query/{locator}",
           handlers.query_more),
    _Route("POST", re.compile(_V + r"/composite/sobjects"), "/composite/sobjects", handlers.collections,
           write=True),
    _Route("PATCH", re.compile(_V + r"/composite/sobjects"), "/composite/sobjects", handlers.collections,
           write=True),
    _Route("POST", re.compile(_V + r"/sobjects/(?P<sobject>\w+)"), "/sobjects/{type}", handlers.create_one,
           write=True),
    _Route("GET", re.compile(_V + r"/sobjects/(?P<sobject>\w+)/(?P<id>\w+)"), "/sobjects/{type}/{id}",
           handlers.get_one),
    _Route("PATCH", re.compile(_V + r"/sobjects/(?P<sobject>\w+)/(?P<id>\w+)"), "/sobjects/{type}/{id}",
           handlers.update_one, write=True),
)


def _match(method: str, path: str) -> tuple[_Route | None, dict[str, str]]:
    trimmed = path.rstrip("/") or "/"
    for route in _ROUTES:
        found = route.pattern.fullmatch(trimmed)
        if found is not None and route.method == method:
            return route, found.groupdict()
    return None, {}


__all__ = ["SalesforceLimits", "SalesforceSandbox", "SalesforceStats"]
