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
"""

from __future__ import annotations

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

    def __post_init__(self) -> None:
        for name in (
            "error_rate",
            "storm_429",
            "partial_failure_rate",
            "timeout_rate",
            "timeout_applies_share",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        if self.latency_seconds < 0 or self.timeout_stall_seconds < 0:
            raise ValueError("latencies must not be negative")


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


class InjectedDisconnect(httpx.RemoteProtocolError):
    """Raised by a sandbox app to drop a connection; an httpx transport error, as a real drop would be."""

    def __init__(self) -> None:
        super().__init__("Server disconnected without sending a complete response (injected fault).")


_SERVER_ERRORS = (500, 502, 503, 504)


class FaultInjector:
    """Deterministic draws of :class:`FaultSettings` outcomes, one stream for requests, one for inputs."""

    def __init__(self, settings: FaultSettings, seed: int) -> None:
        self.settings = settings
        self._requests = random.Random(f"{seed}:requests")
        self._inputs = random.Random(f"{seed}:inputs")

    def for_request(self) -> RequestFault:
        s = self.settings
        # Always draw four values so one request's fate never shifts the stream for the next.
        storm, error, timeout, pick = (self._requests.random() for _ in range(4))
        if storm < s.storm_429:
            return RequestFault(Fate.STORM_429, 429)
        if error < s.error_rate:
            return RequestFault(Fate.SERVER_ERROR, _SERVER_ERRORS[int(pick * len(_SERVER_ERRORS))])
        if timeout < s.timeout_rate:
            return RequestFault(Fate.DROP_AFTER if pick < s.timeout_applies_share else Fate.DROP_BEFORE)
        return RequestFault(Fate.NORMAL)

    def input_fails(self) -> bool:
        return self._inputs.random() < self.settings.partial_failure_rate
