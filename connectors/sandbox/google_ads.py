"""A faithful fake of the Google Ads API's Customer Match upload path, as an ASGI app (reference/apis.md §5).

:class:`GoogleAdsSandbox` holds customers, their CRM-based user lists, offline user data jobs and a set
of "known people" (Google's users, so that uploads match realistically), and serves the REST form of
OfflineUserDataJobService under any ``/v{N}`` prefix, plus Google's OAuth token endpoint:

=========================================================  ==============================================
``POST /token``                                            refresh-token grant → ``access_token``, ``expires_in``
``POST /vN/customers/{cid}/offlineUserDataJobs:create``    a PENDING job for a list, with job-level consent
``POST /vN/customers/{cid}/offlineUserDataJobs/{id}:addOperations``  operations, partial failure optional
``POST /vN/customers/{cid}/offlineUserDataJobs/{id}:run``  PENDING → RUNNING; a long-running ``Operation``
``POST /vN/customers/{cid}/googleAds:search``              GAQL over customer, user_list, offline_user_data_job
=========================================================  ==============================================

Every API call needs ``Authorization: Bearer`` with a token this sandbox issued and that has not expired
(sandbox clock), the ``developer-token`` header and, when the sandbox has a manager account, a
``login-customer-id`` header naming it (digits only). Job and operation rules live in
:mod:`connectors.sandbox._google_ads_store`; error shapes in :mod:`connectors.sandbox._google_ads_wire`.

Limits (:class:`GoogleAdsLimits`): at most ``max_identifiers_per_request`` identifiers in one
addOperations request (100,000); a request budget per rolling window and a daily operations quota, both
refused with HTTP 429 RESOURCE_EXHAUSTED carrying ``quotaErrorDetails.retryDelay``. Faults
(:mod:`connectors.sandbox.faults`): ``storm_429`` answers RESOURCE_TEMPORARILY_EXHAUSTED with
``storm_retry_delay`` (or the faults' ``retry_after``), ``error_rate`` answers 500/503 as google.rpc
Status and 502/504 as an HTML page, ``timeout_rate``/``reset_rate`` drop the connection before or after
the effect, ``latency_seconds``/``slow_rate`` delay answers through the injected ``sleep``, and
``partial_failure_rate`` fails single operations of an addOperations with a transient INTERNAL_ERROR,
and ``batch_rejection_share`` refuses the same operations (by first identifier) every time with
INCOMPATIBLE_USER_IDENTIFIER (a permanent per-operation error; the whole request without partial failure).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from connectors.sandbox import _google_ads_wire as wire
from connectors.sandbox._google_ads_gaql import search
from connectors.sandbox._google_ads_store import (
    Job,
    KnownPeople,
    UserList,
    check_user_data,
    operation_kind,
)
from connectors.sandbox.faults import Fate, FaultInjector, FaultSettings, InjectedDisconnect

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], datetime]
Body = dict[str, Any]

CONSENT_STATUSES = ("UNSPECIFIED", "UNKNOWN", "GRANTED", "DENIED")
_PACIFIC = ZoneInfo("America/Los_Angeles")
_API = re.compile(r"^/(?P<version>v\d+)/customers/(?P<cid>\d+)/(?P<rest>.+)$")
_ROUTES = {
    "offlineUserDataJobs:create": "create",
    "googleAds:search": "search",
}
_JOB_ROUTE = re.compile(r"^offlineUserDataJobs/(?P<job>\d+):(?P<verb>addOperations|run)$")
_USER_LIST = re.compile(r"^customers/(?P<cid>\d+)/userLists/(?P<id>\d+)$")


@dataclass(frozen=True, slots=True)
class GoogleAdsLimits:
    """The developer token's budgets (defaults: Basic access, apis.md §5.4)."""

    max_identifiers_per_request: int = 100_000
    requests_per_window: int | None = None  # Google publishes no per-second figure; None: unlimited
    window_seconds: float = 1.0
    daily_operations: int | None = 15_000  # one request is one operation; reset at midnight Pacific


@dataclass(slots=True)
class GoogleAdsStats:
    """What the sandbox saw, for assertions on outcomes."""

    requests: Counter[str] = field(default_factory=Counter)  # "POST :addOperations"
    status_codes: Counter[int] = field(default_factory=Counter)
    identifiers_received: int = 0
    largest_request: int = 0  # identifiers in the biggest addOperations request
    dropped_connections: int = 0
    tokens_issued: int = 0


class _App:
    def __init__(self, sandbox: GoogleAdsSandbox) -> None:
        self.sandbox = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.sandbox._serve(Request(scope, receive), send)


class GoogleAdsSandbox:
    """Google Ads customers in memory, served by :attr:`app`.

    ``customer_id`` names the customers the credentials reach; with ``manager_id`` they are reached only
    through that manager (``login-customer-id``). ``known_people`` are lists of UserIdentifiers in wire
    form (``[{"hashedEmail": "…"}, {"hashedPhoneNumber": "…"}]``). Jobs take ``processing_seconds`` of the
    sandbox clock from ``:run`` to their end. ``terms_accepted=False`` refuses jobs with
    CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS.
    """

    def __init__(
        self,
        *,
        developer_token: str = "sandbox-developer-token",  # noqa: S107 - the fake's well-known demo credential
        client_id: str = "sandbox-client.apps.googleusercontent.com",
        client_secret: str = "sandbox-client-secret",  # noqa: S107 - the fake's well-known demo credential
        refresh_token: str = "sandbox-refresh-token",  # noqa: S107 - the fake's well-known demo credential
        customer_id: str | Collection[str] = "1234567890",
        manager_id: str | None = None,
        clock: Clock | None = None,
        limits: GoogleAdsLimits | None = None,
        faults: FaultSettings | None = None,
        seed: int = 0,
        sleep: Sleep | None = None,
        known_people: Iterable[Iterable[Mapping[str, Any]]] = (),
        processing_seconds: float = 60.0,
        token_lifetime_seconds: int = 3_599,
        terms_accepted: bool = True,
        storm_retry_delay: float = 30.0,
    ) -> None:
        self.developer_token, self.client_id = developer_token, client_id
        self.client_secret, self.refresh_token = client_secret, refresh_token
        self.customers: set[str] = {customer_id} if isinstance(customer_id, str) else set(customer_id)
        self.manager_id = manager_id
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self.limits = limits or GoogleAdsLimits()
        self.faults = faults
        self.processing_seconds = processing_seconds
        self.token_lifetime_seconds = token_lifetime_seconds
        self.terms_accepted = terms_accepted
        self.storm_retry_delay = storm_retry_delay
        self.user_lists: dict[str, UserList] = {}
        self.jobs: dict[str, Job] = {}
        self.known = KnownPeople()
        self.known.add(known_people)
        self.stats = GoogleAdsStats()
        self._tokens: dict[str, datetime] = {}  # access token -> expiry
        self._sleep: Sleep = sleep or asyncio.sleep
        self._injector = FaultInjector(faults, seed) if faults is not None else None
        self._sent: list[datetime] = []  # request times in the rolling window
        self._daily: tuple[str, int] = ("", 0)  # (Pacific date, operations used)
        self._next_id = 1000
        self.app = Starlette(routes=[Route("/{path:path}", _App(self), methods=["GET", "POST"])])

    # ------------------------------------------------------------------------------------------------
    # Set-up and inspection without HTTP

    def create_user_list(self, name: str, *, upload_key_type: str = "CONTACT_INFO", crm_based: bool = True) -> str:
        """A Customer Match list (``crm_based=False``: a list of another kind, which jobs refuse); its id."""
        list_id = self._new_id()
        self.user_lists[list_id] = UserList(list_id, name, upload_key_type, crm_based)
        return list_id

    def fail_jobs(self, list_id: str, reason: str | None = "UNKNOWN") -> None:
        """Make the list's running jobs end FAILED with ``reason`` (None: succeed again)."""
        self.user_lists[list_id].fail_jobs = reason

    def add_known_people(self, people: Iterable[Iterable[Mapping[str, Any]]]) -> None:
        self.known.add(people)

    def member_values(self, list_id: str, kind: str = "hashedEmail") -> set[str]:
        """Every member's values of one identifier kind (``hashedEmail``, ``hashedPhoneNumber``, ``address``…)."""
        return {value for keys in self.user_lists[list_id].membership.members.values()
                for name, value in keys if name == kind}

    def member_count(self, list_id: str) -> int:
        return len(self.user_lists[list_id].membership.members)

    def job(self, resource_or_id: str) -> Job:
        """A job by id or resource name, brought up to date with the clock."""
        job = self.jobs[resource_or_id.rsplit("/", 1)[-1]]
        self._advance(job)
        return job

    def expire_access_tokens(self) -> None:
        """Every issued access token stops working now (as after an hour, or a revocation)."""
        self._tokens.clear()

    def reset_stats(self) -> None:
        self.stats = GoogleAdsStats()

    # ------------------------------------------------------------------------------------------------
    # The request pipeline

    async def _serve(self, request: Request, send: Send) -> None:
        path = request.url.path
        version = "v21"
        headers: dict[str, str] = {}
        html = False
        try:
            if request.method != "POST":
                raise wire.not_found(path)
            if path == "/token":
                self.stats.requests["POST /token"] += 1
                status, body = 200, await self._token(request)
            else:
                found = _API.match(path)
                if found is None:
                    raise wire.not_found(path)
                version, cid, rest = found.group("version"), found.group("cid"), found.group("rest")
                route = _ROUTES.get(rest)
                job_route = _JOB_ROUTE.match(rest)
                name = route or (job_route.group("verb") if job_route else None)
                self.stats.requests[f"POST :{name}"] += 1
                if name is None:
                    raise wire.not_found(path)
                status, body = await self._api(request, send, version, cid, name, job_route)
        except wire.AdsError as error:
            status, body, html, headers = error.status, error.body(version), error.html, error.headers
        except _TokenError as error:
            status, body = error.status, error.body
        self.stats.status_codes[status] += 1
        if html:
            payload, kind = wire.html_page(status), b"text/html; charset=UTF-8"
        else:
            payload, kind = json.dumps(body, separators=(",", ":")).encode(), b"application/json; charset=UTF-8"
        raw = [(b"content-type", kind), (b"content-length", str(len(payload)).encode())]
        raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": payload})

    async def _api(self, request: Request, send: Send, version: str, cid: str, name: str,
                   job_route: re.Match[str] | None) -> tuple[int, Body]:
        self._authenticate(request, cid)
        fault = self._injector.for_request() if self._injector is not None else None
        if fault is not None and fault.fate is Fate.STORM_429:
            delay = self.storm_retry_delay
            if self.faults is not None and self.faults.retry_after is not None:
                delay = float(self.faults.retry_after)
            raise wire.quota_error("RESOURCE_TEMPORARILY_EXHAUSTED", f"Too many requests. Retry in {delay:g} seconds.",
                                   delay, "Requests per developer token")
        self._spend()
        if self.faults is not None and self.faults.latency_seconds > 0:
            await self._sleep(self.faults.latency_seconds)
        if fault is not None and fault.delay > 0:
            await self._sleep(fault.delay)
        if fault is not None and fault.fate is Fate.SERVER_ERROR:
            raise wire.server_error(fault.status)
        if fault is not None and fault.fate is Fate.DROP_BEFORE:
            await self._drop(send, fault.stall)
        body = await _json_body(request)
        if name == "create":
            result = self._create_job(cid, body)
        elif name == "search":
            result = search(str(body.get("query") or ""), lambda r: self._rows(cid, r),
                            ("customer", "user_list", "offline_user_data_job"))
        else:
            assert job_route is not None
            job = self._job_of(cid, job_route.group("job"))
            result = self._add_operations(version, job, body) if name == "addOperations" else self._run(job)
        if fault is not None and fault.fate is Fate.DROP_AFTER:
            await self._drop(send, fault.stall)
        return 200, result

    def _authenticate(self, request: Request, cid: str) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise wire.unauthenticated("OAUTH_TOKEN_HEADER_INVALID", "The OAuth token in the header is not valid.")
        expiry = self._tokens.get(token.strip())
        if expiry is None:
            raise wire.unauthenticated("OAUTH_TOKEN_INVALID", "The OAuth token in the header is not valid.")
        if self.clock() >= expiry:
            raise wire.unauthenticated("OAUTH_TOKEN_EXPIRED", "The OAuth token in the header has expired.")
        developer = request.headers.get("developer-token")
        if developer != self.developer_token:  # never echoed: it is a credential
            raise wire.unauthenticated("DEVELOPER_TOKEN_INVALID", "The developer token is not valid.")
        login = request.headers.get("login-customer-id")
        if login is not None and not login.isdigit():
            raise wire.invalid_argument(wire.Failure("headerError", "INVALID_LOGIN_CUSTOMER_ID",
                                                     "The login customer ID could not be validated."))
        if cid not in self.customers or (self.manager_id is not None and login != self.manager_id):
            raise wire.permission_denied(
                "USER_PERMISSION_DENIED",
                "User doesn't have permission to access customer. Note: If you're accessing a client customer, "
                "the manager's customer id must be set in the 'login-customer-id' header.")

    def _spend(self) -> None:
        limits, now = self.limits, self.clock()
        if limits.daily_operations is not None:
            local = now.astimezone(_PACIFIC)
            day, used = self._daily
            if day != local.date().isoformat():
                day, used = local.date().isoformat(), 0
            if used >= limits.daily_operations:
                midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), _PACIFIC)
                raise wire.quota_error("RESOURCE_EXHAUSTED", "Too many requests: the daily operations quota is spent.",
                                       float(int((midnight - local).total_seconds()) + 1),
                                       "Number of operations for basic access")
            self._daily = (day, used + 1)
        if limits.requests_per_window is not None:
            horizon = now - timedelta(seconds=limits.window_seconds)
            self._sent = [t for t in self._sent if t > horizon]
            if len(self._sent) >= limits.requests_per_window:
                wait = (self._sent[0] - horizon).total_seconds()
                raise wire.quota_error("RESOURCE_TEMPORARILY_EXHAUSTED", "Too many requests in a short time.",
                                       max(wait, 0.001), "Requests per developer token")
            self._sent.append(now)

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

    async def _token(self, request: Request) -> Body:
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
        if form.get("grant_type") != "refresh_token":
            raise _TokenError(400, "unsupported_grant_type", "Invalid grant_type: " + str(form.get("grant_type")))
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            raise _TokenError(401, "invalid_client", "Unauthorized")
        if form.get("refresh_token") != self.refresh_token:
            raise _TokenError(400, "invalid_grant", "Token has been expired or revoked.")
        token = f"ya29.sandbox-{self._new_id()}-{len(self._tokens)}"
        self._tokens[token] = self.clock() + timedelta(seconds=self.token_lifetime_seconds)
        self.stats.tokens_issued += 1
        return {"access_token": token, "expires_in": self.token_lifetime_seconds,
                "scope": "https://www.googleapis.com/auth/adwords", "token_type": "Bearer"}

    def _create_job(self, cid: str, body: Body) -> Body:
        job = body.get("job")
        if not isinstance(job, Mapping) or job.get("type") not in ("CUSTOMER_MATCH_USER_LIST",
                                                                     "CUSTOMER_MATCH_WITH_ATTRIBUTES"):
            raise wire.invalid_argument(wire.Failure("fieldError", "REQUIRED",
                                                     "The job type must be a Customer Match type.",
                                                     (("job", None), ("type", None))))
        metadata = job.get("customerMatchUserListMetadata")
        metadata = metadata if isinstance(metadata, Mapping) else {}
        consent = metadata.get("consent") if isinstance(metadata.get("consent"), Mapping) else {}
        for key, path in (("adUserData", "ad_user_data"), ("adPersonalization", "ad_personalization")):
            value = consent.get(key, "UNSPECIFIED")
            if value not in CONSENT_STATUSES:
                raise wire.parse_error(f"job.customer_match_user_list_metadata.consent.{path}", value,
                                       "type.googleapis.com/google.ads.googleads.v21.enums.ConsentStatusEnum.ConsentStatus")
        found = _USER_LIST.match(str(metadata.get("userList") or ""))
        user_list = self.user_lists.get(found.group("id")) if found and found.group("cid") == cid else None
        if user_list is None:
            raise wire.invalid_argument(wire.job_error("INVALID_USER_LIST_ID", "The user list ID provided for the "
                                                       "job is invalid."))
        if not user_list.crm_based:
            raise wire.invalid_argument(wire.job_error("INVALID_USER_LIST_TYPE", "Type of the user list is not "
                                                       "applicable for the job."))
        if not self.terms_accepted:
            raise wire.invalid_argument(wire.job_error("CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS",
                                                       "Customer is not allowlisted for customer data or has not "
                                                       "accepted the customer data terms."))
        if body.get("validateOnly") is True:
            return {}
        job_id = self._new_id()
        self.jobs[job_id] = Job(job_id, cid, user_list, {
            "adUserData": str(consent.get("adUserData", "UNSPECIFIED")),
            "adPersonalization": str(consent.get("adPersonalization", "UNSPECIFIED"))}, self._now_ms())
        return {"resourceName": self.jobs[job_id].resource_name}

    def _job_of(self, cid: str, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None or job.customer_id != cid:
            raise wire.not_found(f"customers/{cid}/offlineUserDataJobs/{job_id}")
        self._advance(job)
        return job

    def _add_operations(self, version: str, job: Job, body: Body) -> Body:
        operations = body.get("operations")
        if not isinstance(operations, list) or not operations:
            raise wire.invalid_argument(wire.Failure("fieldError", "REQUIRED", "The operations field is required."))
        if job.status != "PENDING":
            raise wire.invalid_argument(wire.job_error("JOB_ALREADY_STARTED", "Operations can only be added to a "
                                                       "job that has not been run."))
        count = sum(len(op[kind].get("userIdentifiers") or []) for op in operations
                    for kind in ("create", "remove") if isinstance(op, Mapping) and isinstance(op.get(kind), Mapping))
        if count > self.limits.max_identifiers_per_request:
            raise wire.invalid_argument(wire.job_error(
                "TOO_MANY_USER_IDENTIFIERS", f"Too many user identifiers in one request: {count}; the limit is "
                f"{self.limits.max_identifiers_per_request}."))
        failures: list[wire.Failure] = []
        accepted: list[tuple[str, list[dict[str, Any]]]] = []
        kind_so_far = job.kind
        for index, operation in enumerate(operations):
            kind, user_data = operation_kind(operation)
            problems: list[wire.Failure] = []
            if kind is None:
                problems = [wire.Failure("fieldError", "REQUIRED", "An operation holds create, remove or removeAll.")]
            elif kind == "removeAll":
                if job.operations or accepted or index > 0:
                    problems = [wire.job_error("INVALID_OPERATION_ORDER",
                                               "removeAll must be the first operation of the job.")]
            elif kind_so_far not in (None, kind):
                problems = [wire.job_error("CONFLICTING_OPERATION", "Create and remove operations cannot be mixed "
                                           "in one job.")]
            else:
                problems = check_user_data(user_data, job.user_list.upload_key_type) or self._injected(user_data)
            if problems:
                failures += [p.at_operation(index) for p in problems]
                continue
            if kind != "removeAll":
                kind_so_far = kind
            identifiers = list(user_data.get("userIdentifiers") or []) if isinstance(user_data, Mapping) else []
            accepted.append((str(kind), identifiers))
        self.stats.identifiers_received += count
        self.stats.largest_request = max(self.stats.largest_request, count)
        if failures and body.get("enablePartialFailure") is not True:
            raise wire.invalid_argument(*failures)  # nothing of the request is kept
        if body.get("validateOnly") is not True:
            job.operations += accepted
            job.kind = kind_so_far
        return {"partialFailureError": wire.partial_failure_status(version, failures)} if failures else {}

    def _injected(self, user_data: Mapping[str, Any]) -> list[wire.Failure]:
        """Fault knobs for one valid operation: poison (by its first identifier) is refused for good, and
        ``partial_failure_rate`` fails it transiently."""
        if self._injector is None:
            return []
        first = user_data["userIdentifiers"][0]
        value = next(iter(first.values()))
        if self._injector.poisoned(json.dumps(value, sort_keys=True) if not isinstance(value, str) else value):
            return [wire.job_error("INCOMPATIBLE_USER_IDENTIFIER", "Incompatible user identifier.")]
        if self._injector.input_fails():
            return [wire.Failure("internalError", "INTERNAL_ERROR", "An internal error has occurred.")]
        return []

    def _run(self, job: Job) -> Body:
        if job.status != "PENDING":
            raise wire.invalid_argument(wire.job_error("JOB_ALREADY_STARTED", "This job has already been run."))
        job.status, job.run_ms = "RUNNING", self._now_ms()
        self._advance(job)
        return {"name": f"customers/{job.customer_id}/operations/{job.id}-run"}

    def _advance(self, job: Job) -> None:
        if job.status == "RUNNING" and job.run_ms is not None \
                and self._now_ms() >= job.run_ms + self.processing_seconds * 1000:
            job.finish(self.known)

    def _rows(self, cid: str, resource: str) -> list[dict[str, Any]]:
        if resource == "customer":
            return [{"resourceName": f"customers/{cid}", "id": cid, "descriptiveName": f"Sandbox customer {cid}"}]
        if resource == "user_list":
            return [{"resourceName": f"customers/{cid}/userLists/{ul.id}", "id": ul.id, "name": ul.name,
                     "type": "CRM_BASED" if ul.crm_based else "RULE_BASED",
                     "crmBasedUserList": {"uploadKeyType": ul.upload_key_type},
                     "sizeForSearch": str(len(ul.membership.members))} for ul in self.user_lists.values()]
        rows = []
        for job in self.jobs.values():
            if job.customer_id == cid:
                self._advance(job)
                rows.append(job.resource())
        return rows

    def _now_ms(self) -> int:
        return int(self.clock().timestamp() * 1000)

    def _new_id(self) -> str:
        self._next_id += 1
        return str(self._next_id)


class _TokenError(Exception):
    """An OAuth token endpoint error: ``{"error", "error_description"}`` with its status."""

    def __init__(self, status: int, code: str, description: str) -> None:
        super().__init__(code)
        self.status = status
        self.body = {"error": code, "error_description": description}


async def _json_body(request: Request) -> Body:
    raw = await request.body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise wire.AdsError(400, "INVALID_ARGUMENT", "Invalid JSON payload received.") from None
    if not isinstance(body, dict):
        raise wire.AdsError(400, "INVALID_ARGUMENT", "Invalid JSON payload received. Expected an object.")
    return body


__all__ = ["GoogleAdsLimits", "GoogleAdsSandbox", "GoogleAdsStats"]
