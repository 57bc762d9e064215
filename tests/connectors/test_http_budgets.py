"""Rate budgets: the rolling-window limiter, its correction by vendor headers, the daily quota, and the
per-account registry that lets pipelines share one budget."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import respx
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.base import Budget, QuotaExhausted, RateLimit, RetryLater
from connectors.http import (
    HttpLayer,
    RateBudgets,
    RateLimiter,
    RateObservation,
    RetrySettings,
    account_identity,
    build_client,
)

BASE = "https://api.example.test"
MIDNIGHT_UTC = datetime(2026, 6, 2, tzinfo=UTC)


class FakeTime:
    """An injected monotonic clock and wall clock: sleeping advances both instantly and records the wait."""

    def __init__(self, wall: datetime = MIDNIGHT_UTC - timedelta(hours=1)) -> None:
        self.now = 0.0
        self.start = wall
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return self.start + timedelta(seconds=self.now)

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def limiter(t: FakeTime, limit: RateLimit, *, slack: float | None = 0.0) -> RateLimiter:
    return RateLimiter(limit, clock=t.clock, sleep=t.sleep, now=t.wall, slack=slack, name="test")


async def sends(lim: RateLimiter, t: FakeTime, n: int, budgets: tuple[str, ...] | None = None) -> list[float]:
    """Acquire ``n`` times in a row; the moments the requests went."""
    out = []
    for _ in range(n):
        await lim.acquire(budgets)
        out.append(t.now)
    return out


def most_in_any_window(times: list[float], window: float) -> int:
    """The most sends in any half-open window-long span (a send leaves the window ``window`` after it went;
    a nanosecond of float rounding at that edge does not count)."""
    times = sorted(times)
    best, lo = 0, 0
    for hi, at in enumerate(times):
        while times[lo] <= at - window + 1e-9:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


# --- the rolling window ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_full_window_goes_at_once_then_each_send_waits_for_the_oldest_to_age_out() -> None:
    """10 per 10 s: ten go at once, the next ten exactly when the first ten leave the window (no refill drip)."""
    t = FakeTime()
    times = await sends(limiter(t, RateLimit(10, 10.0)), t, 25)
    assert times == [0.0] * 10 + [10.0] * 10 + [20.0] * 5
    assert t.waits == [10.0, 10.0]


@pytest.mark.anyio
async def test_slack_defaults_to_one_percent_of_the_window() -> None:
    """Without an explicit slack a send waits the window plus 1 % of it, a margin for network jitter."""
    t = FakeTime()
    times = await sends(limiter(t, RateLimit(2, 10.0), slack=None), t, 3)
    assert times == [0.0, 0.0, pytest.approx(10.1)]


@settings(max_examples=60, deadline=None)
@given(
    limit=st.integers(1, 8),
    gaps=st.lists(st.floats(0.0, 3.0, allow_nan=False), min_size=1, max_size=60),
)
def test_no_span_ever_holds_more_than_the_limit_and_no_send_waits_needlessly(
    limit: int, gaps: list[float]
) -> None:
    """Whatever the arrival pattern, no window-long span holds more than the limit, and a send that waited
    went the moment the send ``limit`` places back aged out (the budget is never left idle)."""

    async def run() -> list[tuple[float, float]]:
        t = FakeTime()
        lim = limiter(t, RateLimit(limit, 5.0))
        out = []
        for gap in gaps:
            t.now += gap
            asked = t.now
            await lim.acquire()
            out.append((asked, t.now))
        return out

    result = asyncio.run(run())
    went = [w for _, w in result]
    assert most_in_any_window(went, 5.0) <= limit
    for i, (asked, at) in enumerate(result):
        if at > asked:
            assert i >= limit
            assert at == pytest.approx(max(went[i - limit] + 5.0, went[i - 1]))


@pytest.mark.anyio
async def test_concurrent_callers_queue_first_come_first_served_within_the_limit() -> None:
    """Twelve tasks acquiring at once on a 5-per-second window go in three waves of five, in order."""
    t = FakeTime()
    lim = limiter(t, RateLimit(5, 1.0))
    went: list[tuple[int, float]] = []

    async def one(i: int) -> None:
        await lim.acquire()
        went.append((i, t.now))

    await asyncio.gather(*(one(i) for i in range(12)))
    assert [at for _, at in sorted(went)] == [0.0] * 5 + [1.0] * 5 + [2.0] * 2


@pytest.mark.anyio
async def test_a_request_draws_only_from_the_budgets_it_names() -> None:
    """Search requests spend the search budget, not the burst window; an unnamed request the burst window."""
    t = FakeTime()
    lim = limiter(t, RateLimit(100, 10.0, budgets=(Budget("search", 5, 1.0),)))
    searches = await sends(lim, t, 7, ("search",))
    assert searches == [0.0] * 5 + [1.0] * 2
    assert lim.remaining() == 100
    await lim.acquire()
    assert lim.remaining() == 99
    assert lim.remaining("search") == 3


@pytest.mark.anyio
async def test_a_request_naming_two_budgets_waits_for_both() -> None:
    """A request drawing from two windows goes when the fuller one has room, and spends both."""
    t = FakeTime()
    lim = limiter(t, RateLimit(3, 10.0, budgets=(Budget("search", 5, 1.0),)))
    times = await sends(lim, t, 4, ("default", "search"))
    assert times == [0.0, 0.0, 0.0, 10.0]
    assert lim.remaining("search") == 4


# --- correction by the vendor's headers -----------------------------------------------------------


@pytest.mark.anyio
async def test_vendor_counting_more_than_we_sent_adds_phantoms_that_age_out() -> None:
    """When the vendor counts requests we never made (another app), we wait for them to age out too."""
    t = FakeTime()
    lim = limiter(t, RateLimit(10, 10.0))
    ticket = await lim.acquire()
    t.now = 1.0
    lim.observe(RateObservation(remaining=2), ticket)  # the vendor counted 8, we sent 1
    assert lim.remaining() == 2
    times = await sends(lim, t, 3)
    assert times == [1.0, 1.0, 10.0]  # the third waits for our first send, which left first


@pytest.mark.anyio
async def test_requests_in_flight_do_not_count_as_someone_elses() -> None:
    """Honest headers that have not seen our later requests yet add nothing: no budget is wasted."""
    t = FakeTime()
    lim = limiter(t, RateLimit(10, 10.0))
    first = await lim.acquire()
    for _ in range(4):
        await lim.acquire()
    lim.observe(RateObservation(remaining=9), first)  # the vendor had only seen the first of five
    assert lim.remaining() == 5


@pytest.mark.anyio
async def test_vendor_limit_and_interval_replace_the_configured_window() -> None:
    """X-…-Max and -Interval-Milliseconds win over the configuration (a higher tier, a shorter window)."""
    t = FakeTime()
    lim = limiter(t, RateLimit(100, 10.0))
    ticket = await lim.acquire()
    lim.observe(RateObservation(remaining=2, limit=3, window_seconds=2.0), ticket)
    assert lim.window() == (3, 2.0)
    assert await sends(lim, t, 3) == [0.0, 0.0, 2.0]


@pytest.mark.anyio
async def test_a_429_fills_only_the_windows_the_request_drew_from() -> None:
    """After a 429 the next send on that budget waits a whole window; other budgets are untouched."""
    t = FakeTime()
    lim = limiter(t, RateLimit(100, 10.0, budgets=(Budget("search", 5, 1.0),)))
    await lim.acquire(("search",))
    lim.drain(("search",))
    assert lim.remaining("search") == 0
    assert lim.remaining() == 100
    assert await sends(lim, t, 1, ("search",)) == [1.0]


# --- the daily quota ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_spent_daily_quota_refuses_until_midnight_in_the_account_zone() -> None:
    """Past the quota acquire raises QuotaExhausted with the reset time (midnight, New York) and sends nothing;
    after the reset the quota is whole again."""
    t = FakeTime(wall=datetime(2026, 6, 1, 20, 0, tzinfo=UTC))  # 16:00 in New York
    lim = limiter(t, RateLimit(100, 10.0, daily=3, daily_reset_timezone="America/New_York"))
    await sends(lim, t, 3)
    with pytest.raises(QuotaExhausted) as info:
        await lim.acquire()
    assert info.value.resets_at == datetime(2026, 6, 2, 4, 0, tzinfo=UTC)
    assert info.value.retry_after == pytest.approx(8 * 3600)
    t.now += 8 * 3600
    await lim.acquire()
    assert lim.daily_remaining == 2


@pytest.mark.anyio
async def test_daily_remaining_header_lowers_the_quota_and_in_flight_requests_count() -> None:
    """Daily-Remaining shared with other apps wins; our requests still in flight are assumed to land."""
    t = FakeTime()
    lim = limiter(t, RateLimit(100, 10.0, daily=1000))
    first = await lim.acquire()
    await lim.acquire()  # still in flight when the first answer comes
    lim.observe(RateObservation(daily_remaining=50, daily_limit=1000), first)
    lim.release(first)
    assert lim.daily_remaining == 49


@pytest.mark.anyio
async def test_answers_from_before_the_reset_do_not_spend_the_new_day() -> None:
    """A slow answer counted yesterday (0 left) does not exhaust today's quota."""
    t = FakeTime(wall=MIDNIGHT_UTC - timedelta(seconds=1))
    lim = limiter(t, RateLimit(100, 10.0, daily=10))
    ticket = await lim.acquire()
    t.now += 2
    lim.observe(RateObservation(daily_remaining=0), ticket)
    assert lim.daily_remaining == 10


@pytest.mark.anyio
async def test_quota_refusal_without_a_daily_quota_closes_the_limiter_until_the_given_time() -> None:
    """A vendor's long quota refusal (no daily quota configured) refuses locally until the time it gave, and
    then the limiter is fully open again (no quota of one request is left behind)."""
    t = FakeTime()
    lim = limiter(t, RateLimit(100, 10.0))
    lim.exhaust(retry_after=600)
    with pytest.raises(QuotaExhausted) as info:
        await lim.acquire()
    assert info.value.retry_after == pytest.approx(600)
    t.now += 600
    assert len(await sends(lim, t, 5)) == 5
    assert lim.daily_remaining is None


@pytest.mark.anyio
@respx.mock
async def test_http_layer_stops_at_a_spent_quota_without_sending() -> None:
    """Once a DAILY refusal came back, further requests raise QuotaExhausted without reaching the vendor."""
    t = FakeTime()
    lim = limiter(t, RateLimit(100, 10.0, daily=1000))
    route = respx.get(f"{BASE}/x").mock(return_value=httpx.Response(429))

    def classify(response: httpx.Response) -> None:
        if response.status_code == 429:
            raise QuotaExhausted("daily", status=429, retry_after=600, rate_limited=True)

    http = HttpLayer(build_client(BASE), name="t", retry=RetrySettings(jitter=0.0), limiter=lim, sleep=t.sleep)
    with pytest.raises(QuotaExhausted):
        await http.request("GET", "/x", classify=classify)
    with pytest.raises(QuotaExhausted) as info:
        await http.request("GET", "/x", classify=classify)
    assert route.call_count == 1
    assert info.value.retry_after == pytest.approx(600)
    assert http.rate_limited == 1


# --- the HTTP layer and the limiter together --------------------------------------------------------


@pytest.mark.anyio
@respx.mock
async def test_limiter_waits_are_not_retries() -> None:
    """A request that waits for the budget many times still has all its retries for real failures."""
    t = FakeTime()
    lim = limiter(t, RateLimit(1, 1.0))
    respx.get(f"{BASE}/x").mock(side_effect=[httpx.Response(200), httpx.Response(200), httpx.Response(503),
                                             httpx.Response(200)])

    def classify(response: httpx.Response) -> None:
        if response.status_code >= 500:
            raise RetryLater("server error", status=response.status_code)

    http = HttpLayer(build_client(BASE), name="t", retry=RetrySettings(attempts=2, initial_wait=0.5, jitter=0.0),
                     limiter=lim, sleep=t.sleep)
    for _ in range(3):
        await http.request("GET", "/x", classify=classify)
    assert http.requests == 4
    assert t.now == pytest.approx(3.0)  # one send per second, the 0.5 s back-off inside the wait for budget


@pytest.mark.anyio
@respx.mock
async def test_http_layer_feeds_headers_and_429s_to_the_requests_budgets() -> None:
    """observe() corrects the limiter with the answer's headers; a 429 drains the budgets the request named."""
    t = FakeTime()
    lim = limiter(t, RateLimit(100, 10.0, budgets=(Budget("search", 5, 1.0),)))
    respx.get(f"{BASE}/x").mock(return_value=httpx.Response(200, headers={"Remaining": "40"}))
    respx.post(f"{BASE}/search").mock(side_effect=[httpx.Response(429), httpx.Response(200)])

    def observe(response: httpx.Response) -> RateObservation | None:
        left = response.headers.get("Remaining")
        return RateObservation(remaining=int(left)) if left else None

    def classify(response: httpx.Response) -> None:
        if response.status_code == 429:
            raise RetryLater("slow down", status=429, rate_limited=True, retry_after=0.0)

    http = HttpLayer(build_client(BASE), name="t", retry=RetrySettings(jitter=0.0), limiter=lim, sleep=t.sleep)
    await http.request("GET", "/x", classify=classify, observe=observe)
    assert lim.remaining() == 40
    await http.request("POST", "/search", classify=classify, observe=observe, budgets=("search",))
    assert t.now == pytest.approx(1.0)  # the retry waited for the drained search window
    assert lim.remaining() == 40
    assert lim.inflight == 0


# --- sharing one budget per account ---------------------------------------------------------------


def test_account_identity_is_stable_and_never_shows_the_token() -> None:
    """The same base URL and credentials name the same account; another token another; the token is not in it."""
    token = "pat-na1-secret-0000"
    one = account_identity("https://api.hubapi.com/", {"Authorization": f"Bearer {token}"})
    assert one == account_identity("https://api.hubapi.com", {"authorization": f"Bearer {token}"})
    assert one != account_identity("https://api.hubapi.com", {"Authorization": "Bearer pat-na1-other"})
    assert one != account_identity("https://eu.hubapi.test", {"Authorization": f"Bearer {token}"})
    assert token not in one
    assert "secret" not in one


def test_registry_shares_one_limiter_per_account_and_clock() -> None:
    """Two pipelines on one account get the same limiter; another account or another clock its own."""
    budgets = RateBudgets()
    t, other = FakeTime(), FakeTime()
    first = budgets.limiter("hubspot", "acct-a", RateLimit(100, 10), clock=t.clock, sleep=t.sleep)
    assert budgets.limiter("hubspot", "acct-a", RateLimit(100, 10), clock=t.clock, sleep=t.sleep) is first
    assert budgets.limiter("hubspot", "acct-b", RateLimit(100, 10), clock=t.clock, sleep=t.sleep) is not first
    assert budgets.limiter("hubspot", "acct-a", RateLimit(100, 10), clock=other.clock) is not first
    assert len(budgets) == 3


def test_registry_takes_over_a_changed_configuration() -> None:
    """A changed configured limit (a tier upgrade) reaches the shared limiter; its sends stay counted."""
    budgets = RateBudgets()
    t = FakeTime()
    lim = budgets.limiter("hubspot", "a", RateLimit(100, 10), clock=t.clock, sleep=t.sleep)
    asyncio.run(lim.acquire())
    again = budgets.limiter("hubspot", "a", RateLimit(190, 10), clock=t.clock, sleep=t.sleep)
    assert again is lim
    assert lim.window() == (190, 10.0)
    assert lim.remaining() == 189


def test_pipelines_on_one_portal_share_a_budget_through_build_connector() -> None:
    """build_connector gives two connections to the same portal one limiter, and another token its own."""
    from sync.config import parse
    from sync.pipeline import Timing, build_connector

    def connection(token: str) -> dict[str, object]:
        return {"type": "hubspot", "token": token, "base_url": "https://api.hubapi.com"}

    settings = parse({
        "store": {"url": "sqlite://"},
        "connections": {"a": connection("tok-1"), "b": connection("tok-1"), "c": connection("tok-2")},
        "pipelines": {"p": {"source": "a", "destination": "b"}},
    }, env={})
    t = FakeTime()
    timing, budgets = Timing(sleep=t.sleep, monotonic=t.clock), RateBudgets()
    built = {name: build_connector(settings.connections[name], name, RetrySettings(), timing=timing,
                                   budgets=budgets) for name in ("a", "b", "c")}
    assert built["a"].http.limiter is built["b"].http.limiter
    assert built["c"].http.limiter is not built["a"].http.limiter
    assert built["a"].http.limiter is not None
    assert built["a"].http.limiter.window("search") == (5, 1.0)
