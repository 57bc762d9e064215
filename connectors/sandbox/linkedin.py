"""A faithful fake of LinkedIn's Matched Audiences (DMP segments) API, as an ASGI app (reference/apis.md §6).

:class:`LinkedInSandbox` holds ad accounts, their DMP segments and members, and a set of "known people"
(LinkedIn members, by e-mail hash, so that uploads match realistically), served under ``/rest``:

==========================================  =======================================================
``GET /rest/dmpSegments?q=account&account=``  the account's segments (finder)
``POST /rest/dmpSegments``                    create a segment: 201, id in ``x-restli-id``
``GET /rest/dmpSegments/{id}``                one segment (with ``matchedCount``)
``POST /rest/dmpSegments/{id}/users``         BATCH_CREATE of ADD/REMOVE elements, one status each
==========================================  =======================================================

Every call needs ``Authorization: Bearer`` (401 INVALID_ACCESS_TOKEN / EXPIRED_ACCESS_TOKEN), a
``LinkedIn-Version`` header (400 VERSION_MISSING; 426 NONEXISTENT_VERSION for a month not served: by
default any of the last twelve months of the sandbox clock) and ``X-Restli-Protocol-Version: 2.0.0``.
A POST to ``/users`` without ``X-RestLi-Method: BATCH_CREATE`` is a plain CREATE of one element, which a
batch body fails as LinkedIn's validation would. Each element's status comes back in input order: 201
for an add or remove (also of someone already in, or not in, the segment), 400 with an ``error`` for an
element breaking the rules (:func:`~connectors.sandbox._linkedin_wire.check_element`).

Limits (:class:`LinkedInLimits`): ``max_elements`` per batch (the commonly cited 5,000, [U]); 600
``/users`` calls a minute per member (token) and an optional daily count, both refused with a bare 429 —
no ``Retry-After``, no rate headers, as LinkedIn documents. Faults (:mod:`connectors.sandbox.faults`):
``storm_429`` (the same bare 429), ``error_rate`` (5xx), ``timeout_rate``/``reset_rate`` (drops before
or after the effect), ``latency_seconds``/``slow_rate``, ``partial_failure_rate`` (single elements
answered 500, not applied) and ``batch_rejection_share`` (the same elements, by first id, 400 every time).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from connectors.sandbox import _linkedin_wire as wire
from connectors.sandbox.faults import Fate, FaultInjector, FaultSettings, InjectedDisconnect

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], datetime]
Reply = tuple[int, Any, dict[str, str]]
Key = tuple[str, str]

_USERS = re.compile(r"^/rest/dmpSegments/(?P<id>\d+)/users$")
_SEGMENT = re.compile(r"^/rest/dmpSegments/(?P<id>\d+)$")
_ACCOUNT_URN = re.compile(r"^urn:li:sponsoredAccount:(?P<id>\d+)$")


@dataclass(frozen=True, slots=True)
class LinkedInLimits:
    """The member's budgets for the streaming endpoints (apis.md §6.3)."""

    users_per_minute: int = 600
    daily: int | None = None  # not published by LinkedIn; reset at midnight UTC
    max_elements: int = 5_000


@dataclass(slots=True)
class Segment:
    id: str
    account_id: str
    name: str
    type: str = "USER"
    members: dict[Key, int] = field(default_factory=dict)  # identity key -> person number
    next_person: int = 0

    def add(self, keys: list[Key]) -> None:
        found = {self.members[k] for k in keys if k in self.members}
        person = min(found) if found else self.next_person
        self.next_person += not found
        if len(found) > 1:  # this person joins members known apart until now: merge them
            for key, owner in list(self.members.items()):
                if owner in found:
                    self.members[key] = person
        for key in keys:
            self.members[key] = person

    def remove(self, keys: list[Key]) -> None:
        found = {self.members[k] for k in keys if k in self.members}
        for key in [k for k, owner in self.members.items() if owner in found]:
            del self.members[key]


@dataclass(slots=True)
class LinkedInStats:
    requests: Counter[str] = field(default_factory=Counter)
    status_codes: Counter[int] = field(default_factory=Counter)
    elements_received: int = 0
    largest_batch: int = 0
    dropped_connections: int = 0
    headers_seen: list[dict[str, str]] = field(default_factory=list)  # of each /users call


class _App:
    def __init__(self, sandbox: LinkedInSandbox) -> None:
        self.sandbox = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.sandbox._serve(Request(scope, receive), send)


class LinkedInSandbox:
    """LinkedIn ad accounts' DMP segments in memory, served by :attr:`app`.

    ``token`` is the accepted access token (or several; each is one member with its own per-minute budget);
    ``expired_tokens`` answer EXPIRED_ACCESS_TOKEN. ``ad_account_id`` names the accounts the member manages.
    ``known_people`` are SHA-256 e-mail hashes of LinkedIn members.
    """

    def __init__(
        self,
        *,
        token: str | Collection[str] = "sandbox-linkedin-token",  # noqa: S107 - the fake's demo token
        expired_tokens: Collection[str] = (),
        ad_account_id: str | Collection[str] = "500000001",
        clock: Clock | None = None,
        limits: LinkedInLimits | None = None,
        faults: FaultSettings | None = None,
        seed: int = 0,
        sleep: Sleep | None = None,
        known_people: Iterable[str] = (),
        active_versions: Collection[str] | None = None,
    ) -> None:
        self.tokens: set[str] = {token} if isinstance(token, str) else set(token)
        self.expired_tokens = set(expired_tokens)
        self.accounts: set[str] = {ad_account_id} if isinstance(ad_account_id, str) else set(ad_account_id)
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self.limits = limits or LinkedInLimits()
        self.faults = faults
        self.known: set[str] = set(known_people)
        self.active_versions = set(active_versions) if active_versions is not None else None
        self.segments: dict[str, Segment] = {}
        self.stats = LinkedInStats()
        self._sleep: Sleep = sleep or asyncio.sleep
        self._injector = FaultInjector(faults, seed) if faults is not None else None
        self._minute: dict[str, deque[float]] = {}
        self._daily: dict[str, tuple[str, int]] = {}
        self._next_id = 7_000_000
        self.app = Starlette(routes=[Route("/{path:path}", _App(self), methods=["GET", "POST"])])

    # ------------------------------------------------------------------------------------------------
    # Set-up and inspection without HTTP

    def create_segment(self, name: str, *, account_id: str | None = None, kind: str = "USER") -> str:
        self._next_id += 1
        segment_id = str(self._next_id)
        self.segments[segment_id] = Segment(segment_id, account_id or min(self.accounts), name, kind)
        return segment_id

    def member_values(self, segment_id: str, id_type: str = "SHA256_EMAIL") -> set[str]:
        return {value for (kind, value) in self.segments[segment_id].members if kind == id_type}

    def member_count(self, segment_id: str) -> int:
        return len(set(self.segments[segment_id].members.values()))

    def matched_count(self, segment_id: str) -> int:
        return len(self.member_values(segment_id) & self.known)

    # ------------------------------------------------------------------------------------------------
    # The request pipeline

    async def _serve(self, request: Request, send: Send) -> None:
        path, method = request.url.path.rstrip("/"), request.method
        users = _USERS.match(path)
        template = "/rest/dmpSegments/{id}/users" if users else ("/rest/dmpSegments/{id}" if _SEGMENT.match(path)
                                                                 else path)
        self.stats.requests[f"{method} {template}"] += 1
        headers: dict[str, str] = {}
        try:
            token = self._authenticate(request)
            if users is not None:
                self.stats.headers_seen.append(dict(request.headers))
            fault = self._injector.for_request() if self._injector is not None else None
            if fault is not None and fault.fate is Fate.STORM_429:
                raise wire.throttled()
            if users is not None and method == "POST":
                self._spend(token)
            if self.faults is not None and self.faults.latency_seconds > 0:
                await self._sleep(self.faults.latency_seconds)
            if fault is not None and fault.delay > 0:
                await self._sleep(fault.delay)
            if fault is not None and fault.fate is Fate.SERVER_ERROR:
                raise wire.server_error(fault.status)
            if fault is not None and fault.fate is Fate.DROP_BEFORE:
                await self._drop(send, fault.stall)
            status, body, headers = await self._handle(request, method, path, users)
            if fault is not None and fault.fate is Fate.DROP_AFTER:
                await self._drop(send, fault.stall)
        except wire.LinkedInError as error:
            status, body = error.status, error.body()
        self.stats.status_codes[status] += 1
        payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        raw = [(b"content-length", str(len(payload)).encode()), (b"x-restli-protocol-version", b"2.0.0")]
        if body is not None:
            raw.append((b"content-type", b"application/json"))
        raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": payload})

    def _authenticate(self, request: Request) -> str:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise wire.invalid_token()
        if token in self.expired_tokens:
            raise wire.expired_token()
        if token not in self.tokens:
            raise wire.invalid_token()  # never echoed: error bodies end up in logs
        version = request.headers.get("linkedin-version")
        if not version:
            raise wire.version_missing()
        if not self._version_active(version):
            raise wire.version_inactive(version)
        if request.headers.get("x-restli-protocol-version") != "2.0.0":
            raise wire.protocol_required()
        return token

    def _version_active(self, version: str) -> bool:
        if self.active_versions is not None:
            return version in self.active_versions
        found = re.fullmatch(r"(\d{4})(\d{2})(?:\.\d{2})?", version)
        if found is None or not 1 <= int(found.group(2)) <= 12:
            return False
        now = self.clock()
        months = (now.year * 12 + now.month) - (int(found.group(1)) * 12 + int(found.group(2)))
        return 0 <= months < 12

    def _spend(self, token: str) -> None:
        now = self.clock()
        seconds = now.timestamp()
        window = self._minute.setdefault(token, deque())
        while window and window[0] <= seconds - 60:
            window.popleft()
        day = now.date().isoformat()
        used = self._daily.get(token, (day, 0))
        used = used if used[0] == day else (day, 0)
        if self.limits.daily is not None and used[1] >= self.limits.daily:
            raise wire.throttled()
        if len(window) >= self.limits.users_per_minute:
            raise wire.throttled()
        window.append(seconds)
        self._daily[token] = (day, used[1] + 1)

    async def _drop(self, send: Send, stall: float | None) -> None:
        assert self.faults is not None
        wait = self.faults.timeout_stall_seconds if stall is None else stall
        if wait > 0:
            await self._sleep(wait)
        self.stats.dropped_connections += 1
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"64")]})
        raise InjectedDisconnect

    # ------------------------------------------------------------------------------------------------
    # Handlers

    async def _handle(self, request: Request, method: str, path: str, users: re.Match[str] | None) -> Reply:
        if users is not None and method == "POST":
            return self._users(self._segment(users.group("id"), "dmpSegmentsUsers.BATCH_CREATE"),
                               request.headers.get("x-restli-method", ""), await _json(request))
        segment = _SEGMENT.match(path)
        if segment is not None and method == "GET":
            return 200, self._view(self._segment(segment.group("id"), "dmpSegments.GET")), {}
        if path == "/rest/dmpSegments" and method == "GET":
            found = _ACCOUNT_URN.match(request.query_params.get("account", ""))
            if request.query_params.get("q") != "account" or found is None:
                raise wire.invalid("q=account&account=urn:li:sponsoredAccount:N is required")
            if found.group("id") not in self.accounts:
                raise wire.access_denied("dmpSegments.FINDER-account")
            views = [self._view(s) for s in self.segments.values() if s.account_id == found.group("id")]
            return 200, {"elements": views, "paging": {"start": 0, "count": len(views), "total": len(views)}}, {}
        if path == "/rest/dmpSegments" and method == "POST":
            body = await _json(request)
            account = _ACCOUNT_URN.match(str(body.get("account") or ""))
            if not body.get("name") or account is None:
                raise wire.invalid("name and account (urn:li:sponsoredAccount:N) are required")
            if account.group("id") not in self.accounts:
                raise wire.access_denied("dmpSegments.CREATE")
            new = self.create_segment(str(body["name"]), account_id=account.group("id"),
                                      kind=str(body.get("type") or "USER"))
            return 201, None, {"x-restli-id": new, "location": f"/dmpSegments/{new}"}
        raise wire.not_found()

    def _segment(self, segment_id: str, resource: str) -> Segment:
        segment = self.segments.get(segment_id)
        if segment is None:
            raise wire.not_found()
        if segment.account_id not in self.accounts:
            raise wire.access_denied(resource)
        return segment

    def _view(self, segment: Segment) -> dict[str, Any]:
        return {"id": int(segment.id), "name": segment.name, "type": segment.type,
                "account": f"urn:li:sponsoredAccount:{segment.account_id}", "status": "READY",
                "matchedCount": self.matched_count(segment.id), "destinations": [{"destination": "LINKEDIN"}]}

    def _users(self, segment: Segment, restli_method: str, body: dict[str, Any]) -> Reply:
        if restli_method != "BATCH_CREATE":
            # A plain CREATE takes one element as the body: a batch body has no "action" at its top.
            if "action" not in body:
                raise wire.invalid("Input field validation failure, reason: ERROR :: /action :: field is "
                                   "required but not found and has no default value")
            body = {"elements": [body]}
        elements = body.get("elements")
        if not isinstance(elements, list) or not elements:
            raise wire.invalid("Input field validation failure, reason: ERROR :: /elements :: must not be empty")
        if len(elements) > self.limits.max_elements:
            raise wire.invalid(f"Batch size {len(elements)} exceeds the maximum of {self.limits.max_elements}")
        self.stats.elements_received += len(elements)
        self.stats.largest_batch = max(self.stats.largest_batch, len(elements))
        answers = []
        for element in elements:
            checked = wire.check_element(element)
            if isinstance(checked, str):
                answers.append(wire.element_error(400, checked))
                continue
            action, keys = checked
            if self._injector is not None and self._injector.poisoned(keys[0][1]):
                answers.append(wire.element_error(400, "Input field validation failure, reason: ERROR :: "
                                                       "/userIds/0/idValue :: the value was refused"))
                continue
            if self._injector is not None and self._injector.input_fails():
                answers.append(wire.element_error(500, "Internal Server Error", "INTERNAL_SERVER_ERROR"))
                continue
            if action == "ADD":
                segment.add(keys)
            else:
                segment.remove(keys)
            answers.append({"status": 201})
        if restli_method != "BATCH_CREATE":
            only = answers[0]
            if only["status"] != 201:
                raise wire.invalid(only["error"]["message"])
            return 201, None, {}
        return 200, {"elements": answers}, {}


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        raise wire.invalid("Request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise wire.invalid("Request body must be a JSON object")
    return body


__all__ = ["LinkedInLimits", "LinkedInSandbox", "LinkedInStats"]
