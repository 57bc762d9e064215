"""Fault injection for the sandbox fakes: the outages, storms and partial failures real vendors produce.

:class:`FaultSettings` is a frozen value object; a sandbox builds a :class:`FaultInjector` from it and a
seed. Every request draws the same number of random values whatever happens to it, so the n-th request
meets the same fate on every run with the same seed (for one client sending requests in order).

What each knob does to a request, in the order they are applied:

``storm_429``
    The request is answered 429 with the vendor's rate-limit body (HubSpot: ``TEN_SECONDLY_ROLLING``)
    whatever the remaining budget, and does not count against the budget. ``retry_after`` adds a
    ``Retry-After`` header to these answers (HubSpot does not document one; off by default).
``latency_seconds``
    Every request waits this long (through the sandbox's injectable ``sleep``) before it is handled.
``error_rate``
    The request is answered 500, 502, 503 or 504 with the vendor's error body and has no effect.
``timeout_rate``
    The server stalls for ``timeout_stall_seconds``, then drops the connection after the status line,
    so the client never sees an answer. Over a real socket the client gets a protocol error (peer
    closed); through ``httpx.ASGITransport`` the app raises :class:`InjectedDisconnect`, which *is* an
    ``httpx.RemoteProtocolError``, so the client code path is the same. A share
    ``timeout_applies_share`` of dropped requests is processed first — its writes persist — which is
    the "sent, no answer" case an exactly-once outbox must survive.
``partial_failure_rate``
    Each input of a batch write fails on its own with this probability (a 207 entry in ``errors``;
    HubSpot: category ``INTERNAL_ERROR``, a transient failure the client should retry). Batch creates
    only fail per input when inputs carry ``objectWriteTraceId``, as on HubSpot.

Knobs added later draw from a second random stream, so the sequences above stay what they were for a
given seed. A sandbox honours them by reading :class:`RequestFault`'s ``stall`` and ``delay`` and calling
:meth:`FaultInjector.poisoned` and :class:`OtherApp` (the HubSpot sandbox does all of it):

``storm_429_length``
    A storm, once it starts, answers this many consecutive requests with 429.
``reset_rate``
    The connection is reset at once, with no stall (a load balancer dropping it); a share
    ``reset_applies_share`` of resets happen after the request took effect.
``slow_rate``
    The request is answered ``slow_seconds`` late (a slow tail, on top of ``latency_seconds``).
``batch_rejection_share``
    This share of batch-write inputs is poison: decided per input (its id, or for creates its trace id
    or properties) by the seed, not per request, so the same input is refused every time. A batch that
    holds one is refused whole — HubSpot's 400 ``VALIDATION_ERROR`` naming the input — and nothing in
    it is written; a client that splits the batch in halves isolates it.
``daily_quota``
    After this many requests in a day (of the sandbox clock, UTC) every request is a 429 ``DAILY`` until
    midnight, whatever the sandbox's limits say (and with none).
``other_app_share``
    Another app spends this share of the burst window, at a steady pace; the sandbox counts its requests
    against the same window and the daily quota. With ``other_app_hidden`` the rate-limit headers leave
    them out (they under-report), so a client pacing by headers alone meets 429s.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass
from enum import Enum

import httpx


@dataclass(frozen=True, slots=True)
class FaultSettings:
    """How often the sandbox misbehaves; every share is a probability in [0, 1]."""

    error_rate: float = 0.0
    latency_seconds: float = 0.0
    storm_429: float = 0.0
    retry_after: str | None = None
    partial_failure_rate: float = 0.0
    timeout_rate: float = 0.0
    timeout_stall_seconds: float = 0.0
    timeout_applies_share: float = 0.5
    storm_429_length: int = 1
    reset_rate: float = 0.0
    reset_applies_share: float = 0.5
    slow_rate: float = 0.0
    slow_seconds: float = 0.0
    batch_rejection_share: float = 0.0
    daily_quota: int | None = None
    other_app_share: float = 0.0
    other_app_hidden: bool = False

    def __post_init__(self) -> None:
        for name in (
            "error_rate",
            "storm_429",
            "partial_failure_rate",
            "timeout_rate",
            "timeout_applies_share",
            "reset_rate",
            "reset_applies_share",
            "slow_rate",
            "batch_rejection_share",
            "other_app_share",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        if self.latency_seconds < 0 or self.timeout_stall_seconds < 0 or self.slow_seconds < 0:
            raise ValueError("latencies must not be negative")
        if self.storm_429_length < 1:
            raise ValueError(f"storm_429_length must be at least 1, got {self.storm_429_length}")
        if self.daily_quota is not None and self.daily_quota < 0:
            raise ValueError(f"daily_quota must not be negative, got {self.daily_quota}")


class Fate(Enum):
    """What the fault injector decided for one request."""

    NORMAL = "normal"
    STORM_429 = "storm_429"
    SERVER_ERROR = "server_error"
    DROP_BEFORE = "drop_before"  # the connection drops before the request has any effect
    DROP_AFTER = "drop_after"  # the request takes effect, then the connection drops


@dataclass(frozen=True, slots=True)
class RequestFault:
    fate: Fate
    status: int = 200  # for SERVER_ERROR: which 5xx
    stall: float | None = None  # for DROP_*: seconds before the drop (None: ``timeout_stall_seconds``)
    delay: float = 0.0  # extra seconds before the answer (a slow response)


class InjectedDisconnect(httpx.RemoteProtocolError):
    """Raised by a sandbox app to drop a connection; an httpx transport error, as a real drop would be."""

    def __init__(self) -> None:
        super().__init__("Server disconnected without sending a complete response (injected fault).")


_SERVER_ERRORS = (500, 502, 503, 504)


class FaultInjector:
    """Deterministic draws of :class:`FaultSettings` outcomes, one stream for requests, one for inputs."""

    def __init__(self, settings: FaultSettings, seed: int) -> None:
        self.settings = settings
        self.seed = seed
        self._requests = random.Random(f"{seed}:requests")
        self._inputs = random.Random(f"{seed}:inputs")
        self._more = random.Random(f"{seed}:requests:more")  # the later knobs' own stream
        self._storm_left = 0

    def for_request(self) -> RequestFault:
        s = self.settings
        # Always draw the same values so one request's fate never shifts the stream for the next.
        storm, error, timeout, pick = (self._requests.random() for _ in range(4))
        reset, reset_pick, slow = (self._more.random() for _ in range(3))
        delay = s.slow_seconds if slow < s.slow_rate else 0.0
        if self._storm_left > 0:
            self._storm_left -= 1
            return RequestFault(Fate.STORM_429, 429)
        if storm < s.storm_429:
            self._storm_left = s.storm_429_length - 1
            return RequestFault(Fate.STORM_429, 429)
        if error < s.error_rate:
            return RequestFault(Fate.SERVER_ERROR, _SERVER_ERRORS[int(pick * len(_SERVER_ERRORS))], delay=delay)
        if timeout < s.timeout_rate:
            fate = Fate.DROP_AFTER if pick < s.timeout_applies_share else Fate.DROP_BEFORE
            return RequestFault(fate, delay=delay)
        if reset < s.reset_rate:
            fate = Fate.DROP_AFTER if reset_pick < s.reset_applies_share else Fate.DROP_BEFORE
            return RequestFault(fate, stall=0.0, delay=delay)
        return RequestFault(Fate.NORMAL, delay=delay)

    def input_fails(self) -> bool:
        return self._inputs.random() < self.settings.partial_failure_rate

    def poisoned(self, key: str) -> bool:
        """Whether a batch input (by its id or other stable key) makes its whole batch fail: the same answer
        for the same key and seed, whatever else the batch holds and in whatever order it comes."""
        share = self.settings.batch_rejection_share
        if share <= 0.0:
            return False
        digest = hashlib.blake2b(f"{self.seed}:poison:{key}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64 < share


class OtherApp:
    """Another app spending ``share`` of a rolling window of ``burst`` requests per ``window_ms`` at a steady
    pace: its requests fall every ``window_ms / (share * burst)`` ms, from the first moment it is asked about.
    """

    def __init__(self, share: float, burst: int, window_ms: int) -> None:
        self.window_ms = window_ms
        self.period_ms = window_ms / (share * burst) if share > 0 else math.inf
        self._next: float | None = None

    def due(self, now_ms: int) -> list[int]:
        """The other app's request times up to ``now_ms`` not reported before, in order. Those that left the
        window before anyone asked are skipped: they no longer count anywhere that matters."""
        if math.isinf(self.period_ms):
            return []
        if self._next is None:
            self._next = float(now_ms)
        horizon = now_ms - self.window_ms
        if self._next <= horizon:
            self._next += math.ceil((horizon - self._next) / self.period_ms) * self.period_ms
        times = []
        while self._next <= now_ms:
            times.append(int(self._next))
            self._next += self.period_ms
        return times
