"""The shared HTTP layer every connector receives from the framework.

It owns what connectors must not re-implement: the retry loop (tenacity, built from the frozen
:class:`RetrySettings`), ``Retry-After`` in seconds or HTTP-date form (clamped, no jitter added on top of
an explicit wait), a token-bucket rate limiter corrected live from the vendor's headers, and the rule
that waits imposed by a rate limit do not use up a request's retry budget.

A connector calls :meth:`HttpLayer.request` with a ``classify`` function that turns a non-success response
into one of the errors of :mod:`connectors.base`; that is how it declares which answers are transient.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import tenacity

from connectors.base import OutcomeUnknown, QuotaExhausted, RateLimit, RetryLater

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]
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


@dataclass(frozen=True, slots=True)
class RateObservation:
    """What a response's headers say about the budget: requests left in the current window."""

    remaining: int
    limit: int | None = None
    window_seconds: float | None = None


Observe = Callable[[httpx.Response], RateObservation | None]


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


class TokenBucket:
    """An async token bucket: ``requests`` per ``per_seconds``, corrected by what the vendor reports."""

    def __init__(self, limit: RateLimit, *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> None:
        self.capacity = float(limit.requests)
        self.rate = limit.requests / limit.per_seconds
        self.tokens = self.capacity
        self._clock = clock
        self._sleep = sleep
        self._stamp = clock()
        self._lock = asyncio.Lock()
        self.waited = 0.0  # seconds spent waiting, for metrics and benchmarks

    def _refill(self) -> None:
        now = self._clock()
        self.tokens = min(self.capacity, self.tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def acquire(self) -> None:
        async with self._lock:
            self._refill()
            if self.tokens < 1.0:
                wait = (1.0 - self.tokens) / self.rate
                self.waited += wait
                await self._sleep(wait)
                self._refill()
                # The wait was computed to earn exactly one token; float rounding in the refill must not
                # send us round again (with tiny waits a fake clock may not even move).
                self.tokens = max(self.tokens, 1.0)
            self.tokens -= 1.0

    def observe(self, seen: RateObservation) -> None:
        """The vendor's count wins when it is lower than ours (other apps share the budget)."""
        self._refill()
        self.tokens = min(self.tokens, float(seen.remaining))

    def drain(self) -> None:
        """After a 429: assume the window is spent."""
        self._refill()
        self.tokens = min(self.tokens, 0.0)


class _Budget:
    """Per-request counters behind the tenacity stop and wait functions."""

    def __init__(self, settings: RetrySettings) -> None:
        self.settings = settings
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
        limiter: TokenBucket | None = None,
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
        **kwargs: Any,
    ) -> httpx.Response:
        """Send with retries; return the first response ``classify`` accepts, or raise its final error.

        Transport failures before the request left (connect errors) are always retried; failures after it
        may have arrived (timeouts, resets) are retried only when ``idempotent``, otherwise they raise
        :class:`OutcomeUnknown` so the caller can look the effect up before creating again.
        """
        budget = _Budget(self.retry)
        retrying = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception(_Budget.retryable),
            stop=budget.stop,
            wait=budget.wait,
            sleep=self._sleep,
            reraise=True,
        )
        response: httpx.Response = await retrying(
            self._send_once, method, url, classify, observe, idempotent, kwargs
        )
        return response

    async def _send_once(
        self,
        method: str,
        url: str,
        classify: Classify,
        observe: Observe | None,
        idempotent: bool,
        kwargs: dict[str, Any],
    ) -> httpx.Response:
        if self.limiter is not None:
            await self.limiter.acquire()
        self.requests += 1
        try:
            response = await self.client.request(method, url, timeout=self.retry.timeout, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise RetryLater(f"could not connect: {type(exc).__name__}", connector=self.name) from None
        except httpx.TransportError as exc:
            if idempotent:
                raise RetryLater(f"no answer: {type(exc).__name__}", connector=self.name) from None
            raise OutcomeUnknown(f"sent, no answer: {type(exc).__name__}", connector=self.name) from None
        if observe is not None and self.limiter is not None:
            seen = observe(response)
            if seen is not None:
                self.limiter.observe(seen)
        try:
            classify(response)
        except RetryLater as exc:
            if exc.rate_limited:
                self.rate_limited += 1
                if self.limiter is not None:
                    self.limiter.drain()
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


__all__ = [
    "Classify",
    "HttpLayer",
    "Observe",
    "RateObservation",
    "RetrySettings",
    "TokenBucket",
    "build_client",
    "parse_retry_after",
]
