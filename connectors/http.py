"""The shared HTTP layer every connector receives from the framework.

It owns what connectors must not re-implement: the retry loop (tenacity, built from the frozen
:class:`RetrySettings`), ``Retry-After`` in seconds or HTTP-date form (clamped, no jitter added on top of
an explicit wait), the rule that waits imposed by a rate limit do not use up a request's retry budget, and
the rate budgets: a :class:`RateLimiter` per destination account (shared through :class:`RateBudgets`)
that models the vendor's rolling windows and daily quota exactly and is corrected live from its headers
(the limiter lives in :mod:`connectors.ratelimit`; its names are re-exported here).

A connector calls :meth:`HttpLayer.request` with a ``classify`` function that turns a non-success response
into one of the errors of :mod:`connectors.base`; that is how it declares which answers are transient. It
says which budgets a request draws from (``budgets``) and passes ``observe`` to read the vendor's headers.
"""

from __future__ import annotations

import asyncio
import email.utils
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import tenacity

from connectors.base import OutcomeUnknown, QuotaExhausted, RetryLater
from connectors.ratelimit import (
    DEFAULT_BUDGET,
    RATE_BUDGETS,
    Observe,
    RateBudgets,
    RateLimiter,
    RateObservation,
    Ticket,
    TokenBucket,
    account_identity,
)

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]
WallClock = Callable[[], datetime]
Classify = Callable[[httpx.Response], None]


@dataclass(frozen=True, slots=True)
class RetrySettings:
    """How hard to try one request. A value object: the tenacity policy is built from it per request."""

    attempts: int = 5                # tries for transient failures (rate-limit waits not counted)
    initial_wait: float = 0.5        # first exponential back-off step, seconds
    max_wait: float = 30.0           # cap of one exponential back-off step
    jitter: float = 0.25             # random seconds added to exponential steps (never to Retry-After)
    max_retry_after: float = 300.0   # clamp of a vendor-requested wait
    rate_limit_waits: int = 100      # how many rate-limit waits one request may sit through
    timeout: float = 30.0            # per-request network timeout




def parse_retry_after(value: str | None, *, now: datetime | None = None, cap: float = 300.0) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), clamped to [0, cap]."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), cap)


# --------------------------------------------------------------------------------------------------
# Rate budgets: how many requests a destination account lets us send, modelled as the vendor counts them



class _Budget:
    """Per-request counters behind the tenacity stop and wait functions."""

    def __init__(self, settings: RetrySettings, *, paced: bool = False) -> None:
        self.settings = settings
        self.paced = paced  # a rate limiter waits before every try: it paces retries after a 429
        self.failures = 0
        self.rate_waits = 0
        self._counted = 0  # attempt number last counted: tenacity asks wait and stop once per attempt each

    def _count(self, state: tenacity.RetryCallState) -> BaseException | None:
        exc = state.outcome.exception() if state.outcome else None
        if state.attempt_number != self._counted:
            self._counted = state.attempt_number
            if isinstance(exc, RetryLater) and exc.rate_limited:
                self.rate_waits += 1
            else:
                self.failures += 1
        return exc

    @staticmethod
    def retryable(exc: BaseException) -> bool:
        # An unknown outcome of a non-idempotent request must be looked up, not resent; a spent daily
        # quota will not come back within a request's lifetime.
        return isinstance(exc, RetryLater) and not isinstance(exc, OutcomeUnknown | QuotaExhausted)

    def stop(self, state: tenacity.RetryCallState) -> bool:
        exc = self._count(state)
        if isinstance(exc, QuotaExhausted):
            return True
        return self.failures >= self.settings.attempts or self.rate_waits > self.settings.rate_limit_waits

    def wait(self, state: tenacity.RetryCallState) -> float:
        exc = self._count(state)
        if isinstance(exc, RetryLater) and exc.retry_after is not None:
            return min(max(exc.retry_after, 0.0), self.settings.max_retry_after)
        if isinstance(exc, RetryLater) and exc.rate_limited:
            if self.paced:
                # The limiter took the refusal in (the window is full now) and knows when it frees up: a
                # whole interval on top would leave the budget idle.
                return 0.0
            steps = self.rate_waits
        else:
            steps = max(self.failures, 1)
        base = min(self.settings.initial_wait * 2 ** (steps - 1), self.settings.max_wait)
        return float(base + tenacity.wait_random(0, self.settings.jitter)(state))


class HttpLayer:
    """What a connector receives: an ``httpx.AsyncClient`` behind a retry loop and a rate limiter."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        name: str,
        retry: RetrySettings | None = None,
        limiter: RateLimiter | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.client = client
        self.name = name
        self.retry = retry or RetrySettings()
        self.limiter = limiter
        self._sleep = sleep
        self.requests = 0        # requests sent, for metrics and tests
        self.rate_limited = 0    # 429s (or vendor equivalents) received

    async def request(
        self,
        method: str,
        url: str,
        *,
        classify: Classify,
        observe: Observe | None = None,
        idempotent: bool = True,
        budgets: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send with retries; return the first response ``classify`` accepts, or raise its final error.

        Each try first waits for room in the rate budgets named by ``budgets`` (default: the main window)
        and in the daily quota; that wait is not a retry. After a rate-limit refusal the vendor's
        ``Retry-After`` is honoured; without one the limiter (which now counts the refused windows as full)
        says when to try again, or, with no limiter, an exponential back-off.

        Transport failures before the request left (connect errors) are always retried; failures after it
        may have arrived (timeouts, resets) are retried only when ``idempotent``, otherwise they raise
        :class:`OutcomeUnknown` so the caller can look the effect up before creating again.
        """
        budget = _Budget(self.retry, paced=self.limiter is not None)
        retrying = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception(_Budget.retryable),
            stop=budget.stop,
            wait=budget.wait,
            sleep=self._sleep,
            reraise=True,
        )
        response: httpx.Response = await retrying(
            self._send_once, method, url, classify, observe, idempotent, budgets, kwargs
        )
        return response

    async def _send_once(
        self,
        method: str,
        url: str,
        classify: Classify,
        observe: Observe | None,
        idempotent: bool,
        budgets: Sequence[str] | None,
        kwargs: dict[str, Any],
    ) -> httpx.Response:
        limiter = self.limiter
        ticket = await limiter.acquire(budgets) if limiter is not None else None
        try:
            return await self._exchange(method, url, classify, observe, idempotent, ticket, kwargs)
        finally:
            if limiter is not None and ticket is not None:
                limiter.release(ticket)

    async def _exchange(
        self,
        method: str,
        url: str,
        classify: Classify,
        observe: Observe | None,
        idempotent: bool,
        ticket: Ticket | None,
        kwargs: dict[str, Any],
    ) -> httpx.Response:
        self.requests += 1
        try:
            response = await self.client.request(method, url, timeout=self.retry.timeout, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise RetryLater(f"could not connect: {type(exc).__name__}", connector=self.name) from None
        except httpx.TransportError as exc:
            if idempotent:
                raise RetryLater(f"no answer: {type(exc).__name__}", connector=self.name) from None
            raise OutcomeUnknown(f"sent, no answer: {type(exc).__name__}", connector=self.name) from None
        limiter = self.limiter
        if observe is not None and limiter is not None:
            seen = observe(response)
            if seen is not None:
                limiter.observe(seen, ticket)
        try:
            classify(response)
        except RetryLater as exc:
            if exc.rate_limited:
                self.rate_limited += 1
            if limiter is not None:
                if isinstance(exc, QuotaExhausted):
                    limiter.exhaust(exc.retry_after, exc.resets_at)
                elif exc.rate_limited:
                    limiter.drain(ticket.budgets if ticket is not None else None)
            raise
        return response


def build_client(
    base_url: str,
    *,
    headers: dict[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    max_connections: int = 10,
) -> httpx.AsyncClient:
    """The framework's client: one connection pool per connector, HTTP/1.1 keep-alive."""
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    return httpx.AsyncClient(base_url=base_url, headers=headers, transport=transport, limits=limits)


class Scrubber:
    """Removes every secret a connector holds from a text before it goes into an error or a log. Vendors do
    not echo credentials, but a proxy or a future message might; none leaves a connector. Tokens issued
    later (an OAuth access token) are added with :meth:`add`."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = {s for s in secrets if s}

    def add(self, secret: str) -> None:
        if secret:
            self._secrets.add(secret)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


__all__ = [
    "DEFAULT_BUDGET",
    "RATE_BUDGETS",
    "Classify",
    "HttpLayer",
    "Observe",
    "RateBudgets",
    "RateLimiter",
    "RateObservation",
    "RetrySettings",
    "Scrubber",
    "Ticket",
    "TokenBucket",
    "account_identity",
    "build_client",
    "parse_retry_after",
]
