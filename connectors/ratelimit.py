"""Rate budgets: a limiter per destination account that models the vendor's windows exactly.

A :class:`RateLimiter` keeps a log of send times per rolling window (the burst window and any named budget,
such as HubSpot's search-per-second) and the daily quota, and is corrected live from what the vendor's
headers report (:class:`RateObservation`). :class:`RateBudgets` shares one limiter per connector type and
account within a process, keyed without ever holding the secret. :mod:`connectors.http` applies them.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import hmac
import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from connectors.base import QuotaExhausted, RateLimit

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]
WallClock = Callable[[], datetime]

@dataclass(frozen=True, slots=True)
class RateObservation:
    """What a response's headers say about the budgets: requests left in a rolling window (``budget``,
    default the main one) and its size, and what is left of the daily quota. ``None``: not reported."""

    remaining: int | None = None
    limit: int | None = None
    window_seconds: float | None = None
    daily_remaining: int | None = None
    daily_limit: int | None = None
    budget: str = "default"  # DEFAULT_BUDGET


Observe = Callable[[httpx.Response], RateObservation | None]


DEFAULT_BUDGET = "default"  # the main rolling window: what a request draws from when it names no budget
SLACK_SHARE = 0.01  # default margin (share of a window) for the vendor's clock granularity and skew
_MEMORY_SECONDS = 60.0  # how long sends are remembered past their window, to compare with slow answers


class _Window:
    """One rolling window: at most ``limit`` sends in any ``seconds``-long span.

    The log holds send times in order: ours (reserved ones lie in the future) and phantoms that stand for
    requests someone else made against the same budget.
    """

    def __init__(self, limit: int, seconds: float, slack: float | None) -> None:
        self.limit = limit
        self.seconds = seconds
        self._slack = slack
        self.log: list[float] = []

    @property
    def slack(self) -> float:
        return self._slack if self._slack is not None else self.seconds * SLACK_SHARE

    def earliest(self, now: float) -> float:
        """The first moment a send fits: after every reserved send (first come, first served) and a full
        window plus the slack after the send ``limit`` places back, which is when the vendor forgets it."""
        log = self.log
        at = max(now, log[-1]) if log else now
        if len(log) >= self.limit:
            at = max(at, log[-self.limit] + self.seconds + self.slack)
        return at

    def count(self, after: float, until: float) -> int:
        """Sends in ``(after, until]``."""
        return bisect.bisect_right(self.log, until) - bisect.bisect_right(self.log, after)

    def add(self, at: float, n: int = 1) -> None:
        index = bisect.bisect_right(self.log, at)
        self.log[index:index] = [at] * n

    def move(self, old: float, new: float) -> None:
        """One send recorded at ``old`` is known to have reached the vendor no later than ``new``."""
        index = bisect.bisect_left(self.log, old)
        if index < len(self.log) and self.log[index] == old:
            del self.log[index]
            bisect.insort(self.log, new)

    def correct(self, used: int, sent_at: float, now: float) -> None:
        """The vendor counted ``used`` sends in its window when it answered a request sent at ``sent_at``.

        Its window ended somewhere in ``[sent_at, now]``; every send of ours it can have counted lies in
        ``(sent_at - window - slack, now]``. What that cannot explain, someone else sent: phantoms at
        ``now`` (the latest it can have been) fill the difference.
        """
        ours = self.count(sent_at - self.seconds - self.slack, now)
        if used > ours:
            self.add(now, used - ours)

    def fill(self, now: float) -> None:
        """The vendor says the window is spent: fill it up to the limit at ``now``."""
        missing = self.limit - self.count(now - self.seconds, now)
        if missing > 0:
            self.add(now, missing)

    def forget(self, now: float) -> None:
        horizon = now - self.seconds - self.slack - _MEMORY_SECONDS
        if self.log and self.log[0] <= horizon:
            del self.log[: bisect.bisect_right(self.log, horizon)]


class _DailyQuota:
    """A quota that comes back whole at midnight in one time zone (HubSpot: the account's)."""

    def __init__(self, limit: int, zone: str, now: WallClock) -> None:
        self.limit = limit
        self.used = 0
        self._zone = ZoneInfo(zone)
        self._now = now
        self.resets_at = self._next_reset(now())

    def _next_reset(self, moment: datetime) -> datetime:
        day = moment.astimezone(self._zone).date() + timedelta(days=1)
        return datetime.combine(day, dt_time(0), tzinfo=self._zone).astimezone(UTC)

    def roll(self) -> datetime:
        """Now; resets the count first when the reset time has passed."""
        now = self._now()
        if now >= self.resets_at:
            self.used = 0
            self.resets_at = self._next_reset(now)
        return now

    def check(self, name: str | None) -> None:
        now = self.roll()
        if self.used >= self.limit:
            wait = max((self.resets_at - now).total_seconds(), 0.0)
            message = f"the daily quota of {self.limit} requests is spent until {self.resets_at.isoformat()}"
            raise QuotaExhausted(message, connector=name, retry_after=wait, rate_limited=True,
                                 resets_at=self.resets_at)


@dataclass(frozen=True, slots=True)
class Ticket:
    """One admitted request: when it went, which windows it drew from, which quota period it counted in."""

    sent_at: float
    budgets: tuple[str, ...]
    period: datetime | None = None


def _wall_clock(clock: Clock) -> WallClock:
    """Wall time read through ``clock``: the real time for the real monotonic clock; for an injected clock,
    its seconds counted from the wall time at creation (so tests move the daily reset with their clock)."""
    if clock is time.monotonic:
        return lambda: datetime.now(UTC)
    anchor = datetime.now(UTC) - timedelta(seconds=clock())
    return lambda: anchor + timedelta(seconds=clock())


class RateLimiter:
    """Paces requests to one destination account's budgets, counted the way the vendor counts them.

    * Each rolling window (the main one and any named budget such as HubSpot's search-per-second) is a log
      of send times. A request goes at the first moment every window it draws from has room: when the
      send ``limit`` places back is a full window (plus a small slack for clock granularity) old, which is
      when the vendor forgets it. Against a vendor whose headers are honest that is no 429 and no idle
      budget.
    * A send is logged when it goes and moved to when its answer came: the vendor counted it somewhere in
      between, so a new send is only let go once the vendor has surely forgotten the old one, whatever the
      delays between our clock and its (waking late, encoding, the network).
    * A slot is reserved before the wait, so concurrent callers queue first come, first served; the
      bookkeeping is guarded by a thread lock (never held across a wait), so pipelines running in different
      threads can share one limiter.
    * The vendor's headers correct the model live: its limit and window replace ours, and when it counts
      more requests than ours could explain (another app or process spends the same budget), phantom sends
      fill the difference. A 429 fills the window. The daily quota follows ``Daily-Remaining`` and, once
      spent, refuses requests with :class:`QuotaExhausted` (carrying the reset time) without sending them.
    """

    def __init__(
        self,
        limit: RateLimit,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        now: WallClock | None = None,
        slack: float | None = None,
        name: str | None = None,
    ) -> None:
        self.limit = limit
        self.name = name
        self._clock = clock
        self._sleep = sleep
        self._now = now or _wall_clock(clock)
        self._slack = slack
        self._windows: dict[str, _Window] = {}
        self._daily: _DailyQuota | None = None
        self._closed_until: datetime | None = None  # a quota refusal with no daily quota to record it in
        self._lock = threading.Lock()
        self.reconfigure(limit)
        self.waited = 0.0  # seconds spent waiting, for metrics and benchmarks
        self.inflight = 0  # admitted requests whose answer has not come back

    def reconfigure(self, limit: RateLimit) -> None:
        """Take new configured budgets; what was sent stays counted."""
        with self._lock:
            self._reconfigure(limit)

    def _reconfigure(self, limit: RateLimit) -> None:
        self.limit = limit
        specs = {DEFAULT_BUDGET: (limit.requests, limit.per_seconds)}
        specs.update({b.name: (b.requests, b.per_seconds) for b in limit.budgets})
        for name, (requests, seconds) in specs.items():
            window = self._windows.get(name)
            if window is None:
                self._windows[name] = _Window(requests, seconds, self._slack)
            else:
                window.limit, window.seconds = requests, seconds
        if limit.daily is None:
            self._daily = None
        elif self._daily is None:
            self._daily = _DailyQuota(limit.daily, limit.daily_reset_timezone, self._now)
        else:
            self._daily.limit = limit.daily

    def window(self, budget: str = DEFAULT_BUDGET) -> tuple[int, float] | None:
        """The (limit, seconds) the limiter currently holds for ``budget``, ``None`` if it has none."""
        found = self._windows.get(budget)
        return (found.limit, found.seconds) if found is not None else None

    def remaining(self, budget: str = DEFAULT_BUDGET) -> int:
        """Sends ``budget`` would still take right now (reserved future sends count as spent)."""
        with self._lock:
            window = self._windows[budget]
            now = self._clock()
            taken = window.count(now - window.seconds, float("inf"))
            return max(window.limit - taken, 0)

    @property
    def daily_remaining(self) -> int | None:
        """What is left of the daily quota as the limiter counts it (``None``: no daily quota known)."""
        with self._lock:
            if self._daily is None:
                return None
            self._daily.roll()
            return max(self._daily.limit - self._daily.used, 0)

    async def acquire(self, budgets: Sequence[str] | None = None) -> Ticket:
        """Wait for room in the daily quota and in every named window (default: the main one), then spend it.

        A budget this limiter does not know does not limit. Raises :class:`QuotaExhausted` when the daily
        quota is spent, without waiting.
        """
        names = tuple(budgets) if budgets else (DEFAULT_BUDGET,)
        with self._lock:
            self._check_closed()
            period = None
            if self._daily is not None:
                self._daily.check(self.name)
                period = self._daily.resets_at
            now = self._clock()
            windows = [self._windows[n] for n in names if n in self._windows]
            slot = max((w.earliest(now) for w in windows), default=now)
            for window in windows:
                window.add(slot)
                window.forget(now)
            if self._daily is not None:
                self._daily.used += 1
            wait = slot - now
            self.waited += max(wait, 0.0)
        if wait > 0:
            # Cancelled while waiting, the reserved slot stays spent: a harmless over-count for one window.
            await self._sleep(wait)
        with self._lock:
            self.inflight += 1
        return Ticket(slot, names, period)

    def release(self, ticket: Ticket) -> None:
        """The request of ``ticket`` is answered (or failed). The vendor counted it somewhere between its
        send and now; from now on it is remembered as sent now, the latest it can have arrived, so it leaves
        our window no earlier than the vendor's whatever the network's delays."""
        with self._lock:
            self.inflight = max(self.inflight - 1, 0)
            now = self._clock()
            if now > ticket.sent_at:
                for name in ticket.budgets:
                    window = self._windows.get(name)
                    if window is not None:
                        window.move(ticket.sent_at, now)

    def observe(self, seen: RateObservation, ticket: Ticket | None = None) -> None:
        """Correct the model with what the vendor reported in the answer to ``ticket``'s request."""
        with self._lock:
            self._observe(seen, ticket)

    def _observe(self, seen: RateObservation, ticket: Ticket | None) -> None:
        now = self._clock()
        window = self._windows.get(seen.budget)
        if window is not None:
            if seen.limit is not None and seen.limit > 0:
                window.limit = seen.limit
            if seen.window_seconds is not None and seen.window_seconds > 0:
                window.seconds = seen.window_seconds
            if seen.remaining is not None:
                sent_at = ticket.sent_at if ticket is not None else now
                window.correct(window.limit - max(seen.remaining, 0), sent_at, now)
        self._observe_daily(seen, ticket)

    def _observe_daily(self, seen: RateObservation, ticket: Ticket | None) -> None:
        if seen.daily_remaining is None:
            return
        if self._daily is None:
            if seen.daily_limit is None:
                return
            self._daily = _DailyQuota(seen.daily_limit, self.limit.daily_reset_timezone, self._now)
        daily = self._daily
        daily.roll()
        if ticket is not None and ticket.period != daily.resets_at:
            return  # counted before our last reset: says nothing about the new day
        if seen.daily_limit is not None and seen.daily_limit > 0:
            daily.limit = seen.daily_limit
        # The vendor has not counted the other requests still in flight: assume they will all land.
        others = max(self.inflight - (1 if ticket is not None else 0), 0)
        daily.used = max(daily.limit - max(seen.daily_remaining, 0) + others, 0)

    def drain(self, budgets: Sequence[str] | None = None) -> None:
        """After a 429: the vendor says these windows (default: the main one) are spent right now."""
        with self._lock:
            now = self._clock()
            for name in budgets or (DEFAULT_BUDGET,):
                window = self._windows.get(name)
                if window is not None:
                    window.fill(now)

    def exhaust(self, retry_after: float | None = None, resets_at: datetime | None = None) -> None:
        """After the vendor refused for a spent quota: refuse locally, without sending, until ``resets_at``
        (or ``retry_after`` seconds from now; default: the daily quota's configured reset)."""
        with self._lock:
            now = self._now()
            until = resets_at
            if until is None and retry_after is not None:
                until = now + timedelta(seconds=retry_after)
            daily = self._daily
            if daily is None:
                self._closed_until = until
                return
            daily.roll()
            if until is not None:
                daily.resets_at = until  # the vendor's word over our idea of its time zone
            daily.used = max(daily.used, daily.limit)

    def _check_closed(self) -> None:
        until = self._closed_until
        if until is None:
            return
        now = self._now()
        if now >= until:
            self._closed_until = None
            return
        raise QuotaExhausted(f"the vendor's quota is spent until {until.isoformat()}", connector=self.name,
                             retry_after=(until - now).total_seconds(), rate_limited=True, resets_at=until)


TokenBucket = RateLimiter  # the limiter's earlier name, kept for existing imports


class RateBudgets:
    """The rate limiters of one process, one per destination account, so that every pipeline talking to the
    same account (same connector type, base URL and credentials) spends one shared budget.

    Limiters are also keyed by their clock: only callers that measure time alike can share a window (in
    production that is the whole process; each test's fake clock gets its own).
    """

    def __init__(self) -> None:
        self._limiters: dict[tuple[str, str, Clock], RateLimiter] = {}
        self._lock = threading.Lock()

    def limiter(
        self, kind: str, account: str, limit: RateLimit, *, clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> RateLimiter:
        """The shared limiter of ``account`` (see :func:`account_identity`); created on first use. A changed
        configured limit is taken over; the vendor's headers correct it again on the next answer."""
        key = (kind, account, clock)
        with self._lock:
            found = self._limiters.get(key)
            if found is None:
                found = self._limiters[key] = RateLimiter(limit, clock=clock, sleep=sleep, name=kind)
                return found
        if found.limit != limit:
            found.reconfigure(limit)
        return found

    def __len__(self) -> int:
        return len(self._limiters)

    def usage(self) -> list[dict[str, Any]]:
        """Each limiter's main window now: ``connector``, ``account`` (its keyed hash, shortened), ``used``
        (share of the window spent), ``limit``, ``per_seconds`` and ``waited_seconds`` (total paced). For
        /metrics and status; reads only."""
        with self._lock:
            limiters = list(self._limiters.items())
        out = []
        for (kind, account, _), limiter in limiters:
            window = limiter.window()
            if window is None or window[0] <= 0:
                continue
            out.append({"connector": kind, "account": account[:12],
                        "used": round(1 - limiter.remaining() / window[0], 4), "limit": window[0],
                        "per_seconds": window[1], "waited_seconds": round(limiter.waited, 3)})
        return out


_ACCOUNT_KEY = os.urandom(16)  # per process: account names cannot be matched against guessed tokens


def account_identity(base_url: str, headers: Mapping[str, str] | None = None) -> str:
    """A name for the account behind a base URL and its credentials (the client's headers): a keyed hash,
    so the token is neither kept nor shown, and the same credentials give the same name in this process."""
    mac = hmac.new(_ACCOUNT_KEY, base_url.rstrip("/").lower().encode(), hashlib.sha256)
    given = headers or {}
    for name in sorted(given, key=str.lower):
        mac.update(b"\0" + name.lower().encode() + b"\0" + given[name].encode())
    return mac.hexdigest()[:24]


RATE_BUDGETS = RateBudgets()  # the process-wide registry the framework uses


__all__ = [
    "DEFAULT_BUDGET",
    "RATE_BUDGETS",
    "Observe",
    "RateBudgets",
    "RateLimiter",
    "RateObservation",
    "Ticket",
    "TokenBucket",
    "account_identity",
]
