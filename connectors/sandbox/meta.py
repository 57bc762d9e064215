"""A faithful fake of Meta's Marketing API for Custom Audiences, as an ASGI app (reference/apis.md §4).

:class:`MetaSandbox` holds ad accounts, their customer-file audiences, members, upload sessions and a set
of "known people" (Meta's users, so that uploads match realistically), and serves them at Graph's paths
(with or without a ``/v25.0`` version prefix):

==========================================  =========================================================
``GET /me``                                 the token's user
``GET /act_{id}``                           the ad account (``fields=``)
``GET|POST /act_{id}/customaudiences``      list / create (``subtype=CUSTOM``, ``customer_file_source``)
``GET /{audience_id}``                      the audience (``fields=``; ``operation_status`` 471 if flagged)
``POST|DELETE /{audience_id}/users``        add / remove people (``payload``, ``session``)
``GET /{audience_id}/sessions``             upload sessions (``session_id=``), counts as numeric strings
==========================================  =========================================================

The token is read from ``access_token`` (query, form or JSON body) or an ``Authorization: Bearer`` header;
bad and expired tokens get code 190. With ``app_secret`` set, ``appsecret_proof`` is required. Custom
audience calls spend a per-ad-account hourly budget (:class:`MetaLimits`) and carry
``X-Business-Use-Case-Usage``. Faults (:mod:`connectors.sandbox.faults`) apply as to every sandbox:
``storm_429`` answers the configured throttle (HTTP 400, code 80003 or 613, usage at 100 %), ``error_rate``
answers 500/503 with Graph's transient errors and 502/504 with an HTML page, ``timeout_rate`` drops the
connection before or after the effect, and ``partial_failure_rate`` silently loses single rows of an
upload (``num_received`` then falls short of the rows sent). Everything reads the injected clock.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from connectors.sandbox import _meta_handlers as handlers
from connectors.sandbox import _meta_wire as wire
from connectors.sandbox._meta_limits import BucLimiter, MetaLimits, storm
from connectors.sandbox._meta_store import Audience, KnownPeople
from connectors.sandbox.faults import Fate, FaultInjector, FaultSettings, InjectedDisconnect

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], datetime]
Reply = tuple[int, dict[str, Any]]
Handler = Callable[["MetaSandbox", str, dict[str, str], dict[str, Any]], Awaitable[Reply]]

_VERSION = re.compile(r"^/(?:v\d+\.\d+/)?")
_TRACE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
_FIRST_AUDIENCE_ID = 23_850_000_000_000_001  # Meta's audience ids are 17-digit numbers


@dataclass(slots=True)
class MetaStats:
    """What the sandbox saw, for assertions on outcomes (calls spent, rows received)."""

    requests: Counter[str] = field(default_factory=Counter)  # "POST /{audience_id}/users"
    status_codes: Counter[int] = field(default_factory=Counter)
    write_calls: int = 0  # add/remove/create requests received
    rows_received: int = 0  # rows counted in num_received, every attempt included
    dropped_connections: int = 0


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    template: str
    handler: Handler
    write: bool = False
    counted: bool = False  # spends the custom_audience budget


class _App:
    """The single raw-ASGI endpoint behind every path: Graph routing is by pattern, and the pipeline must
    be able to drop a connection after the status line."""

    def __init__(self, sandbox: MetaSandbox) -> None:
        self.sandbox = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.sandbox._serve(Request(scope, receive), send)


class MetaSandbox:
    """Meta ad accounts in memory, served by :attr:`app` (a Starlette ASGI app).

    ``token`` is the accepted access token (or several); ``expired_tokens`` answer 190/463. ``app_secret``
    makes ``appsecret_proof`` mandatory. ``ad_account_id`` names the account(s) the token can use.
    ``limits=None`` turns rate limiting off. ``known_people`` are mappings of strong identifier
    (``EMAIL``, ``PHONE``, ``MADID``, ``EXTERN_ID``, ``UID``, ``APPUID``) to the value a matching row carries
    (a SHA-256 digest for the hashed keys). ``invalid_sample_limit`` caps ``invalid_entry_samples``;
    ``max_rows`` is the per-request row cap. ``faults``/``seed`` inject deterministic misbehaviour; ``sleep``
    is awaited for injected latency and stalls.
    """

    def __init__(
        self,
        *,
        token: str | Collection[str] = "sandbox-meta-token",  # noqa: S107 - the fake's well-known demo token
        expired_tokens: Collection[str] = (),
        app_secret: str | None = None,
        ad_account_id: str | Collection[str] = "1000000000001",
        business_id: str = "2000000000001",
        clock: Clock | None = None,
        limits: MetaLimits | None = None,
        faults: FaultSettings | None = None,
        seed: int = 0,
        sleep: Sleep | None = None,
        known_people: Iterable[Mapping[str, str]] = (),
        invalid_sample_limit: int = 10,
        max_rows: int = 10_000,
    ) -> None:
        self.tokens: set[str] = {token} if isinstance(token, str) else set(token)
        self.expired_tokens: set[str] = set(expired_tokens)
        self.app_secret = app_secret
        accounts = [ad_account_id] if isinstance(ad_account_id, str) else list(ad_account_id)
        self.accounts: set[str] = {account.removeprefix("act_") for account in accounts}
        self.business_id = business_id
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self.limits = limits
        self.faults = faults
        self.invalid_sample_limit = invalid_sample_limit
        self.max_rows = max_rows
        self.audiences: dict[str, Audience] = {}
        self.known = KnownPeople()
        self.known.add(known_people)
        self.stats = MetaStats()
        self._sleep: Sleep = sleep or asyncio.sleep
        self._injector = FaultInjector(faults, seed) if faults is not None else None
        self._limiter = BucLimiter(limits) if limits is not None else None
        self._ids = random.Random(f"{seed}:meta-ids")
        self._next_audience = _FIRST_AUDIENCE_ID
        self.app = Starlette(routes=[Route("/{path:path}", _App(self), methods=["GET", "POST", "DELETE"])])

    # ------------------------------------------------------------------------------------------------
    # For tests and the demo: set-up and inspection without HTTP

    def now_ms(self) -> int:
        return int(self.clock().timestamp() * 1000)

    def create_audience(self, name: str, *, account_id: str | None = None, description: str = "",
                        customer_file_source: str = "USER_PROVIDED_ONLY", flagged: bool = False) -> str:
        """Create an empty customer-file audience (in the first ad account unless told); returns its id."""
        account = (account_id or min(self.accounts)).removeprefix("act_")
        audience_id = str(self._next_audience)
        self._next_audience += 1
        now = self.now_ms()
        self.audiences[audience_id] = Audience(audience_id, account, name, description, customer_file_source,
                                               now, now, flagged=flagged)
        return audience_id

    def flag_audience(self, audience_id: str, flagged: bool = True) -> None:
        """Put the audience under integrity restrictions (operation_status 471): edits are refused."""
        self.audiences[audience_id].flagged = flagged

    def add_known_people(self, people: Iterable[Mapping[str, str]]) -> None:
        self.known.add(people)

    def members(self, audience_id: str) -> list[dict[str, str]]:
        """The audience's members, each as schema key → value (copies)."""
        return [dict(values) for values in self.audiences[audience_id].membership.members.values()]

    def member_values(self, audience_id: str, key: str = "EMAIL") -> set[str]:
        """Every member's value under ``key`` (``EMAIL``: the e-mail hashes)."""
        return {m[key] for m in self.audiences[audience_id].membership.members.values() if key in m}

    def matched_people(self, audience_id: str) -> int:
        """How many distinct known people the audience's members match: the audience's real size."""
        found = (self.known.match(m) for m in self.audiences[audience_id].membership.members.values())
        return len({person for person in found if person is not None})

    def session(self, audience_id: str, session_id: int) -> dict[str, str]:
        """A session as ``GET /{audience_id}/sessions`` shows it."""
        return self.audiences[audience_id].sessions[session_id].view()

    def reset_stats(self) -> None:
        self.stats = MetaStats()

    def row_lost(self) -> bool:
        """Whether the fault injector loses the next uploaded row (``partial_failure_rate``)."""
        return self._injector is not None and self._injector.input_fails()

    def new_session_id(self) -> int:
        """A session id of the sandbox's choosing, for uploads sent without one."""
        return self._ids.getrandbits(53) or 1

    # ------------------------------------------------------------------------------------------------
    # The request pipeline

    async def _serve(self, request: Request, send: Send) -> None:
        method = request.method
        path = _VERSION.sub("/", request.url.path, count=1)
        route, params = _match(method, path)
        self.stats.requests[f"{method} {route.template if route else path}"] += 1
        if route is not None and route.write:
            self.stats.write_calls += 1
        headers: dict[str, str] = {}
        html = False
        try:
            if route is None:
                raise wire.unknown_path(path)
            args = await wire.read_params(request)
            self._authenticate(request, args)
            fault = self._injector.for_request() if self._injector is not None else None
            account = self._account_of(params) if route.counted else None
            if fault is not None and fault.fate is Fate.STORM_429:
                retry_after = self.faults.retry_after if self.faults is not None else None
                raise storm(self.limits or MetaLimits(), self.business_id, retry_after)
            if self._limiter is not None and account is not None:
                audiences = sum(1 for a in self.audiences.values() if a.account_id == account)
                headers = self._limiter.spend(account, self.business_id, self.now_ms(), audiences)
            if self.faults is not None and self.faults.latency_seconds > 0:
                await self._sleep(self.faults.latency_seconds)
            # A slow tail and a stall-free reset, where the fault module offers them (read defensively: both
            # knobs are newer than the sandbox's other faults).
            delay = float(getattr(fault, "delay", 0.0) or 0.0)
            if delay > 0:
                await self._sleep(delay)
            if fault is not None and fault.fate is Fate.SERVER_ERROR:
                raise wire.server_error(fault.status)
            if fault is not None and fault.fate is Fate.DROP_BEFORE:
                await self._drop(send, getattr(fault, "stall", None))
            status, body = await route.handler(self, method, params, args)
            if fault is not None and fault.fate is Fate.DROP_AFTER:
                await self._drop(send, getattr(fault, "stall", None))
        except wire.GraphError as error:
            status, body, html = error.status, error.body(self._trace_id()), error.html
            headers.update(error.headers)
        self.stats.status_codes[status] += 1
        if html:
            payload, kind = wire.html_page(status), b"text/html; charset=utf-8"
        else:
            payload, kind = json.dumps(body, separators=(",", ":")).encode(), b"application/json; charset=UTF-8"
        raw_headers = [(b"content-type", kind), (b"content-length", str(len(payload)).encode()),
                       (b"x-fb-trace-id", self._trace_id().encode())]
        raw_headers += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": payload})

    def _trace_id(self) -> str:
        return "".join(self._ids.choice(_TRACE_ALPHABET) for _ in range(11))

    def _authenticate(self, request: Request, args: dict[str, Any]) -> None:
        token = args.get("access_token")
        if not token:
            scheme, _, value = request.headers.get("authorization", "").partition(" ")
            token = value.strip() if scheme.lower() in ("bearer", "oauth") else None
        if not token:
            raise wire.missing_token()
        if token in self.expired_tokens:
            now = self.clock()
            raise wire.expired_token(now - timedelta(hours=1), now)
        if token not in self.tokens:
            raise wire.invalid_token()  # the token itself is never echoed: error bodies end up in logs
        if self.app_secret is not None:
            proof = args.get("appsecret_proof")
            if not proof:
                raise wire.proof_missing()
            expected = hmac.new(self.app_secret.encode(), str(token).encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(str(proof), expected):
                raise wire.proof_invalid()

    def _account_of(self, params: dict[str, str]) -> str | None:
        if "account" in params:
            return params["account"] if params["account"] in self.accounts else None
        audience = self.audiences.get(params.get("audience", ""))
        return audience.account_id if audience is not None else None

    async def _drop(self, send: Send, stall: float | None) -> None:
        assert self.faults is not None
        wait = self.faults.timeout_stall_seconds if stall is None else stall
        if wait > 0:
            await self._sleep(wait)
        self.stats.dropped_connections += 1
        # Start a response, then fail: the client sees the connection close with no answer.
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"64")]})
        raise InjectedDisconnect

_ROUTES: tuple[_Route, ...] = (
    _Route("GET", re.compile(r"/me"), "/me", handlers.me),
    _Route("GET", re.compile(r"/act_(?P<account>\d+)"), "/act_{ad_account_id}", handlers.get_account),
    _Route("GET", re.compile(r"/act_(?P<account>\d+)/customaudiences"), "/act_{ad_account_id}/customaudiences",
           handlers.list_audiences, counted=True),
    _Route("POST", re.compile(r"/act_(?P<account>\d+)/customaudiences"), "/act_{ad_account_id}/customaudiences",
           handlers.create_audience, write=True, counted=True),
    _Route("GET", re.compile(r"/(?P<audience>\d+)"), "/{audience_id}", handlers.get_audience, counted=True),
    _Route("POST", re.compile(r"/(?P<audience>\d+)/users"), "/{audience_id}/users", handlers.users,
           write=True, counted=True),
    _Route("DELETE", re.compile(r"/(?P<audience>\d+)/users"), "/{audience_id}/users", handlers.users,
           write=True, counted=True),
    _Route("GET", re.compile(r"/(?P<audience>\d+)/sessions"), "/{audience_id}/sessions", handlers.sessions,
           counted=True),
)


def _match(method: str, path: str) -> tuple[_Route | None, dict[str, str]]:
    for route in _ROUTES:
        found = route.pattern.fullmatch(path.rstrip("/") or "/")
        if found is not None and route.method == method:
            return route, found.groupdict()
    return None, {}


__all__ = ["MetaLimits", "MetaSandbox", "MetaStats"]
